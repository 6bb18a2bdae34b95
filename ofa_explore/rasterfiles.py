"""A user's raster on disk, through GDAL: opening it (a file, or a dataset GDAL opens by name),
cheap samples of its values, its alpha band; failures become errors that name the file.

Below ``io`` (which works out what a raster is) and ``band_files`` (scenes as band files)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from .errors import BadInput, NotFound
from .fileio import existing_file
from .protocol import alpha_mask

SAMPLE_SIDE = 256  # pixels per side of the decimated read used for detection
# a dataset GDAL opens by name rather than a file: a driver's prefix (two or more characters,
# unlike a Windows drive) and a colon, or one of its virtual file systems
GDAL_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]+:(?!\\)|/vsi[a-z0-9_]+/)")


class RasterError(BadInput):
    """A raster that cannot be used as it is: ``problem`` says why, ``fix`` what to do."""


class GdalName(type(Path())):  # type: ignore[misc]
    """A dataset name GDAL opens (``GDAL_NAME``), kept as written: a Path would fold the '//'
    of '/vsizip//data/scene.zip/B04.tif' (an absolute archive path) into '/'."""

    def __new__(cls, name: str):
        self = super().__new__(cls, name)
        self._gdal_name = str(name)
        return self

    def __str__(self) -> str:
        return self._gdal_name

    def __fspath__(self) -> str:
        return self._gdal_name


def raster_path(path: str | Path) -> Path:
    """A raster's path as a Path, a GDAL dataset name as written (``GdalName``)."""
    return GdalName(str(path)) if GDAL_NAME.match(str(path)) else Path(path)


def existing_raster(path: str | Path) -> Path:
    """An existing raster file, or a GDAL dataset name ('GPKG:scenes.gpkg:t2020', a
    sub-dataset of a container; '/vsizip//data/scene.zip/B04.tif'), which GDAL then opens."""
    if GDAL_NAME.match(str(path)):
        return raster_path(path)
    return existing_file(
        path, "raster", RasterError, "give a raster file (or a list of band files)"
    )


def open_dataset(path: Path):
    """``rasterio.open`` for a user's file: GDAL's failures (not a raster, truncated, missing)
    become errors that name the file."""
    try:
        return rasterio.open(path)
    except (RasterioIOError, OSError) as err:
        if not Path(path).exists():
            raise NotFound(f"raster not found: {path}", "check the path") from None
        raise unreadable(path, err) from None


def open_file(path: Path) -> xr.DataArray:
    """A raster as rioxarray opens it, lazily; a file of several rasters (GDAL sub-datasets) is
    refused with their names, which open one."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            da = rioxarray.open_rasterio(path, cache=False, mask_and_scale=False)
    except (RasterioIOError, OSError) as err:
        raise unreadable(path, err) from None
    if isinstance(da, list) or isinstance(da, xr.Dataset):
        with warnings.catch_warnings():  # a container has no grid of its own
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_dataset(path) as src:
                names = list(src.subdatasets)
        shown = ", ".join(f"'{n}'" for n in names[:4]) + (", ..." if len(names) > 4 else "")
        raise RasterError(
            f"{path} holds {len(names)} rasters (GDAL sub-datasets: {shown})",
            "give one of them by its GDAL name, quoted, in place of the file",
        )
    return da


def read_sample(
    source: Path | Any, shape: tuple[int, int] | None = None, bands: Sequence[int] | None = None
) -> np.ndarray:
    """Values of all bands (or of ``bands``, 1-based) from a cheap look at the raster, as float64,
    nodata as stored.

    With overviews (or a small raster) a decimated read; otherwise a grid of small windows, so
    that a large compressed file is not decoded whole just to guess its units.
    """
    src = open_dataset(source) if isinstance(source, Path) else source
    try:
        side = shape or (min(SAMPLE_SIDE, src.height), min(SAMPLE_SIDE, src.width))
        indexes = list(bands or range(1, src.count + 1))
        if src.overviews(1) or src.height * src.width <= 4 * SAMPLE_SIDE**2 or shape:
            return src.read(
                indexes, out_shape=(len(indexes), *side), resampling=Resampling.nearest
            ).astype(np.float64)
        n, size = 8, SAMPLE_SIDE // 8  # 8 x 8 windows of 32 x 32 pixels, spread evenly
        rows = np.linspace(0, src.height - size, n).astype(int)
        cols = np.linspace(0, src.width - size, n).astype(int)
        return np.concatenate(
            [
                np.concatenate(
                    [src.read(indexes, window=Window(c, r, size, size)) for c in cols], axis=2
                )
                for r in rows
            ],
            axis=1,
        ).astype(np.float64)
    except RasterioIOError as err:
        raise RasterError(
            f"{getattr(src, 'name', source)} is corrupt or truncated: reading its "
            f"pixels failed ({first_line(err)})",
            "re-download or re-export the file",
        ) from None
    finally:
        if isinstance(source, Path):
            src.close()


def unreadable(path: Path, err: Exception) -> RasterError:
    return RasterError(
        f"cannot read {path} as a raster ({first_line(err)})",
        "is it a complete GeoTIFF/COG or another format GDAL reads?",
    )


def first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def alpha_band(path: Path) -> int | None:
    """The number of the file's alpha band, when it has one and other bands besides: a band of
    GDAL's colour interpretation alpha whose values are a mask's (``protocol.alpha_mask``)."""
    with open_dataset(path) as src:
        found = [i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
        dtype = np.dtype(src.dtypes[0])
        if len(found) != 1 or src.count < 2 or dtype.kind not in "iu":
            return None
        values = read_sample(src, bands=found).ravel()
    return found[0] if alpha_mask(values, np.iinfo(dtype).max) else None


def transparent_value(sample: np.ndarray) -> float | str | None:
    """What the bands hold where the alpha band says transparent (0), from a sample of the
    bands and, last, the alpha band: one value in every band (0 or 255, as GDAL and drone
    software write them), taken as nodata; else a note that transparent pixels are read as
    data; None where the sample has none."""
    clear = sample[-1] == 0
    if not clear.any():
        return None
    under = np.unique(sample[:-1][:, clear])
    if len(under) == 1:
        return float(under[0])
    return (
        f"its transparent pixels (alpha 0, {clear.mean():.0%} of a sample) hold varied values "
        "and are read as data"
    )


def select_bands(da: xr.DataArray, bands: list[int]) -> xr.DataArray:
    """The bands numbered ``bands`` (1-based), with per-band attributes (descriptions) to match."""
    count, index = da.sizes["band"], [b - 1 for b in bands]
    picked = da.isel(band=index)
    for key, value in da.attrs.items():
        if isinstance(value, tuple) and len(value) == count:
            picked.attrs[key] = tuple(value[i] for i in index)
    return picked
