"""The two dates as one raster: BEFORE and AFTER read together, band by band, as one lazy
DataArray on BEFORE's grid (AFTER warped onto it by GDAL where its grid differs, or moved
onto BEFORE's features), so the engine tiles a pair like any raster."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from xarray.backends import BackendArray
from xarray.core import indexing

from ..errors import BadInput
from ..io import (
    CONVERSION_ATTR,
    FILL_ATTR,
    MODALITY_ATTR,
    NOTES_ATTR,
    RasterError,
    _band_order,
    _open_file,
    open_raster,
    raster_modality,
)
from ..modalities import Modality
from ..scale import to_model_units


class _PairArray(BackendArray):
    """BEFORE's and AFTER's bands, in model units, as one lazily read [2C, H, W] float32 array:
    a pixel that either date has no data for is NaN in every band of its date."""

    def __init__(
        self,
        before: xr.DataArray,
        after: xr.DataArray,
        vrt: WarpedVRT | None = None,
        indexes: list[int] | None = None,
    ):
        self.before, self.after = before, after
        # the WarpedVRT that AFTER is read through (open while this lives) and AFTER's bands in
        # it, in the modality's order: read directly, as rioxarray's reads of a WarpedVRT
        # window took 10-20x as long (1000 px Sentinel-2, 64 px windows: 4.0 s against 0.2 s)
        self.vrt, self.indexes = vrt, indexes
        count = before.sizes["band"]
        self.shape = (2 * count, before.sizes["y"], before.sizes["x"])
        self.dtype = np.dtype("float32")

    def __deepcopy__(self, memo) -> _PairArray:
        return self  # read-only; a WarpedVRT cannot be copied (xarray copies on every write_*)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        bands, ys, xs = key
        dates = [_units(self._raw(da, ys, xs), da) for da in (self.before, self.after)]
        return np.concatenate(dates)[bands]

    def _raw(self, da: xr.DataArray, ys, xs) -> np.ndarray:
        if da is self.after and self.vrt is not None and isinstance(ys, slice):
            height, width = self.shape[1:]
            window = Window.from_slices(ys, xs, height=height, width=width)
            return self.vrt.read(self.indexes, window=window)
        return np.atleast_3d(da.isel(y=ys, x=xs).values)


def _units(raw: np.ndarray, da: xr.DataArray) -> np.ndarray:
    """A window's raw values in the modality's units, NaN where the pixel has no data."""
    values = to_model_units(raw, da.attrs.get(CONVERSION_ATTR, {"kind": "none"}))
    bad = ~np.isfinite(values).all(axis=0)
    nodata = da.rio.nodata
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        bad |= (raw == nodata).any(axis=0)
    fill = da.attrs.get(FILL_ATTR)
    if fill is not None:
        bad |= (raw == fill).all(axis=0)
    values = values.astype(np.float32)
    values[:, bad] = np.nan
    return values


def open_pair(
    before: str | Path,
    after: str | Path,
    modality: str | Modality | None = None,
    offset: tuple[float, float] | None = None,
) -> xr.DataArray:
    """The two dates as one lazy DataArray on BEFORE's grid, ready for the "change" task. AFTER
    on another grid or CRS is warped by GDAL; a raster of another sensor or band set, or one
    that does not overlap, or the same file twice, is a one-line BadInput.
    ``offset``: (rows, cols) of BEFORE's pixels by which AFTER's features lie off BEFORE's
    (``registration.phase_shift``); AFTER is then warped from there, onto BEFORE's features."""
    return pair_of(*open_dates(before, after, modality), Path(after), offset)


def open_dates(
    before: str | Path, after: str | Path, modality: str | Modality | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Both dates opened (``open_raster``), checked to be two rasters of one sensor and bands."""
    if Path(before).resolve() == Path(after).resolve():
        raise BadInput(
            f"BEFORE and AFTER are the same file, {Path(before).name}",
            "give the later date of the same place as AFTER",
        )
    first = open_raster(before, modality)
    m = raster_modality(first)
    count = _band_count(after)
    if modality is None and count not in (None, m.num_bands):  # all BEFORE's bands, not some
        raise BadInput(
            f"BEFORE is {m.name} ({m.num_bands} bands) but AFTER has {count} bands: the two "
            "dates must come from the same sensor and bands",
            "give two rasters with the same bands",
        )
    try:
        second = open_raster(after, modality or m)
    except RasterError as err:
        if modality is not None or "bands" not in err.context:
            raise
        raise BadInput(
            f"BEFORE is {m.name} ({m.num_bands} bands) but AFTER has {err.context['bands']} "
            "bands: the two dates must come from the same sensor and bands",
            "give two rasters with the same bands",
        ) from None
    m2 = raster_modality(second)
    if (m.name, m.bands) != (m2.name, m2.bands):
        raise BadInput(
            f"BEFORE is {m.name} ({m.num_bands} bands) but AFTER is {m2.name} "
            f"({m2.num_bands} bands): the two dates must come from the same sensor and bands",
            "give two rasters with the same bands",
        )
    return first, second


def _band_count(path: str | Path) -> int | None:
    """How many bands a raster has (None when GDAL cannot tell: ``open_raster`` then says why)."""
    try:
        with rasterio.open(path) as src:
            return int(src.count)
    except (rasterio.errors.RasterioIOError, OSError):
        return None


def pair_of(
    first: xr.DataArray,
    second: xr.DataArray,
    after: Path,
    offset: tuple[float, float] | None = None,
) -> xr.DataArray:
    """The pair of two opened dates (``open_pair``); ``after``: AFTER's file, for a warp."""
    m = raster_modality(first)
    vrt, indexes = None, None
    if offset is not None or not _same_grid(first, second):
        second, vrt, indexes = _warped(after, first, second, m, offset)
    # the pair: NaN marks nodata, values are in model units
    pair_modality = replace(
        m,
        bands=tuple(f"before_{b}" for b in m.bands) + tuple(f"after_{b}" for b in m.bands),
        wavelengths=m.wavelengths * 2,
        mean=m.mean * 2,
        std=m.std * 2,
        nodata=None,
    )
    lazy = indexing.LazilyIndexedArray(_PairArray(first, second, vrt, indexes))
    da = xr.DataArray(
        xr.Variable(("band", "y", "x"), lazy),
        coords={"band": list(pair_modality.bands), "y": first.y, "x": first.x},
    )
    da = da.rio.write_transform(first.rio.transform())
    if first.rio.crs is not None:
        da = da.rio.write_crs(first.rio.crs)
    da.attrs[MODALITY_ATTR] = pair_modality.to_dict()
    da.attrs[CONVERSION_ATTR] = {"kind": "none"}
    da.attrs[NOTES_ATTR] = [f"BEFORE: {n}" for n in first.attrs.get(NOTES_ATTR, [])] + [
        f"AFTER: {n}" for n in second.attrs.get(NOTES_ATTR, [])
    ]
    da.attrs["source"] = [first.attrs.get("source", ""), str(after)]
    return da


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    return (
        a.rio.crs == b.rio.crs
        and a.rio.shape == b.rio.shape
        and a.rio.transform().almost_equals(b.rio.transform())
    )


def _warped(
    path: Path,
    first: xr.DataArray,
    second: xr.DataArray,
    m: Modality,
    offset: tuple[float, float] | None = None,
) -> tuple[xr.DataArray, WarpedVRT, list[int]]:
    """AFTER warped onto BEFORE's grid (bilinear, GDAL), lazily, with AFTER's band order,
    nodata and units, the VRT and AFTER's bands in it (1-based, the modality's order); refused
    when the two do not overlap. With an ``offset`` (rows, cols), each pixel of BEFORE's grid
    reads AFTER that far away, where AFTER has its features."""
    if first.rio.crs is None or second.rio.crs is None:
        raise BadInput(
            "BEFORE and AFTER lie on different grids and one has no CRS, so AFTER cannot be "
            "placed on BEFORE's grid",
            "give both rasters a CRS, or the same grid",
        )
    left, bottom, right, top = transform_bounds(second.rio.crs, first.rio.crs, *second.rio.bounds())
    l1, b1, r1, t1 = first.rio.bounds()
    if left >= r1 or right <= l1 or bottom >= t1 or top <= b1:
        raise BadInput(
            f"BEFORE ({l1:.6g}, {b1:.6g}, {r1:.6g}, {t1:.6g}) and AFTER ({left:.6g}, "
            f"{bottom:.6g}, {right:.6g}, {top:.6g}, in BEFORE's CRS) do not overlap",
            "give two rasters of the same place",
        )
    src = rasterio.open(path)
    nodata = second.rio.nodata
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        nodata = second.attrs.get(FILL_ATTR, 0 if np.dtype(second.dtype).kind in "iu" else np.nan)
    rows, cols = offset or (0.0, 0.0)
    vrt = WarpedVRT(
        src,
        crs=first.rio.crs,
        transform=first.rio.transform() * Affine.translation(cols, rows),
        width=first.sizes["x"],
        height=first.sizes["y"],
        resampling=Resampling.bilinear,
        nodata=nodata,
    )
    raw = _open_file(vrt)  # rioxarray reads a WarpedVRT lazily
    order = _band_order(raw, m)
    warped = raw if order is None else raw.isel(band=order)
    indexes = [int(i) + 1 for i in (range(raw.sizes["band"]) if order is None else order)]
    warped = warped.rio.write_nodata(nodata, encoded=False)
    warped.attrs.update({k: v for k, v in second.attrs.items() if k != FILL_ATTR})
    warped.attrs[NOTES_ATTR] = second.attrs.get(NOTES_ATTR, []) + (
        [] if _same_grid(first, second) else ["warped onto BEFORE's grid (GDAL, bilinear)"]
    )  # a move onto BEFORE's features is the change task's note
    return warped, vrt, indexes
