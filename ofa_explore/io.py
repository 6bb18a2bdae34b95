"""Rasters in, xarray out: open any GDAL raster (or a set of single-band files) lazily as a
DataArray with band names, CRS, transform and nodata, and work out which modality it is and in
which units its values are stored.

Nothing here reads a whole raster: pixels are read window by window by the inference engine;
detection looks at a decimated sample.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .errors import BadInput, NotFound
from .fileio import existing_file
from .modalities import Modality, get_modality, hyperspectral_modality, list_modalities
from .protocol import band_wavelengths, sensor_candidates
from .scale import (
    ORDER_MARGIN,
    ORDER_SPREAD,
    ScaleFit,
    detect_conversion,
    scale_fit,
    span,
)

SAMPLE_SIDE = 256  # pixels per side of the decimated read used for detection
ABSURD = 1e30  # a value this large is a float nodata marker (-3.4e38), not a measurement
CONVERSION_ATTR = "ofa_conversion"
MODALITY_ATTR = "ofa_modality"
FILL_ATTR = "ofa_fill"  # a value that marks a pixel as nodata when every band has it (a file
# without a nodata value whose integer pixels are 0 in every band: Landsat's scene borders)
NOTES_ATTR = "ofa_notes"  # what detection decided, one sentence each (results and tags repeat it)


class ScaleWarning(UserWarning):
    """The values do not fit the statistics of the modality that was asked for."""


class RasterError(BadInput):
    """A raster that cannot be used as it is: ``problem`` says why, ``fix`` what to do."""


# ---------------------------------------------------------------- opening
KEEP = "file"  # nodata default: whatever the file says


def open_raster(
    source: str | Path | Sequence[str | Path],
    modality: str | Modality | None = None,
    nodata: float | None | str = KEEP,
    bands: Sequence[int] | None = None,
) -> xr.DataArray:
    """A raster as a lazy ``DataArray`` (band, y, x) whose ``band`` coordinate holds band names.

    ``source`` is one file GDAL reads (GeoTIFF, COG, JP2, VRT, ...) or a list of single-band files,
    which are stacked in the modality's band order and resampled to the finest grid among them.
    ``modality`` overrides detection; ``nodata`` overrides the file's nodata value (``None``
    unsets it, e.g. for NEON tiles that flag 255 although it is a valid bright pixel).
    ``bands`` picks bands of a single file by their 1-based numbers (as GIS software counts them),
    in the order given, before anything else looks at the file: detection then sees only them.
    A file whose bands carry their centre wavelengths (ENVI/EnMAP ``wavelength`` band tags)
    needs no modality: the wavelengths define it, and bands flagged bad (``bbl`` = 0) are left out.
    ``attrs["ofa_modality"]`` holds the modality record and
    ``attrs["ofa_conversion"]`` how to bring values into the modality's units
    (see ``to_model_units``).
    """
    given = _as_modality(modality)
    if isinstance(source, (list, tuple)):
        paths = [_existing(p) for p in source]
        if not paths:
            raise RasterError("empty list of files", "give one raster or its single-band files")
        if len(paths) == 1:
            return open_raster(paths[0], given, nodata, bands)
        if bands is not None:
            raise RasterError(
                "{bands} picks bands of one multi-band file, not of a list of single-band files",
                "give only the files of the bands you want",
            )
        da, sample, m = _open_stack(paths, given)
        tagged_cube, candidates = False, [m]
    else:
        path = _existing(cast("str | Path", source))  # one file (lists are handled above)
        da = _open_file(path)
        if bands is not None:
            bands = _check_bands(bands, da.sizes["band"], path)
            da = _select_bands(da, bands)
        sample = _sample(path, bands=bands)
        tagged = file_wavelengths(path, bands=bands)
        tagged_cube = tagged is not None and (
            given is None or given.num_bands == len(tagged[1]) < da.sizes["band"]
        )
        if tagged is not None and tagged_cube:
            waves, good = tagged
            da, sample = da.isel(band=good), sample[good]
            m = given or hyperspectral_modality(waves, gsd=abs(da.rio.resolution()[0]))
        else:
            candidates = (
                [given]
                if given
                else likely_modalities(da.sizes["band"], _descriptions(da), da.dtype)
            )
            m = candidates[0]
    if da.sizes["band"] != m.num_bands:
        raise RasterError(
            f"{_name(source)} has {da.sizes['band']} bands but modality '{m.name}' expects "
            f"{m.num_bands} bands ({', '.join(m.bands)})",
            "pick the matching {modality}, or give the bands in that order with {bands}",
            modality=m.name,
            bands=da.sizes["band"],
        )
    if da.rio.crs is None:
        warnings.warn(
            f"{_name(source)} has no CRS: continuing in pixel coordinates, so outputs "
            "will not be georeferenced. Assign one (e.g. gdal_edit.py -a_srs "
            "EPSG:32633 FILE) to get georeferenced outputs.",
            stacklevel=2,
        )
    infer_fill = nodata == KEEP and da.rio.nodata is None and da.dtype.kind in "iu"
    if nodata != KEEP:
        da = da.rio.write_nodata(nodata, encoded=False)
    nodata = cast("float | None", da.rio.nodata)
    fill = 0 if infer_fill and (sample == 0).all(axis=0).any() else None
    valid = _valid(sample, nodata, fill)
    if not np.isfinite(valid).any() and not isinstance(source, (list, tuple)):
        side = (min(SAMPLE_SIDE, da.sizes["y"]), min(SAMPLE_SIDE, da.sizes["x"]))
        full = _sample(
            Path(cast("str | Path", source)), shape=side, bands=bands
        )  # confirm on a full decimated read
        valid = _valid(full, nodata, fill)
    if not np.isfinite(valid).any():
        raise RasterError(
            f"{_name(source)} has no pixel with data in every band (nodata value {nodata}, NaN "
            "and infinite values are no data); nothing to run the model on",
            "check the file, or its nodata value",
        )
    notes = []
    if fill is not None:
        da.attrs[FILL_ATTR] = fill
        share = (sample == fill).all(axis=0).mean()
        notes.append(
            f"pixels that are 0 in every band ({share:.0%} of a sample) are taken as "
            "nodata, as the file declares none (give a nodata value to override)"
        )
    if tagged_cube:
        conversion = detect_conversion(valid, da.dtype, m)
    else:
        baseline = processing_baseline(source)
        fit = _check_scale(da, valid, candidates, given is not None, source, baseline)
        if given is None:
            fit = _by_band_order(da, valid, fit, baseline)
        m, conversion = fit.modality, fit.conversion
        notes.append(fit.note())
        if not isinstance(source, (list, tuple)):
            da = _order_bands(da, m)
    da = da.assign_coords(band=list(m.bands))
    da.attrs[MODALITY_ATTR] = m.to_dict()
    da.attrs[CONVERSION_ATTR] = conversion
    da.attrs[NOTES_ATTR] = notes
    da.attrs["source"] = (
        str(source) if not isinstance(source, (list, tuple)) else [str(p) for p in source]
    )
    return da


def file_wavelengths(
    path: str | Path, bands: Sequence[int] | None = None
) -> tuple[list[float], list[int]] | None:
    """Band centre wavelengths (µm) that a file carries per band, and the indices of the bands
    it does not flag as bad (``bbl`` = 0); ``None`` unless every band has a wavelength tag.
    ``bands`` (1-based numbers) looks at those bands only, in that order; indices count in them."""
    with _open_dataset(Path(path)) as src:
        tags = [src.tags(i) for i in (bands or range(1, src.count + 1))]
    return band_wavelengths(tags)


def raster_modality(da: xr.DataArray) -> Modality:
    """The modality record ``open_raster`` attached."""
    if MODALITY_ATTR not in da.attrs:
        raise RasterError(
            "this DataArray was not opened with ofa_explore.io.open_raster",
            "open it with open_raster(path, modality=...) first",
        )
    return Modality.from_dict(da.attrs[MODALITY_ATTR])


def _valid(sample: np.ndarray, nodata: float | None, fill: float | None) -> np.ndarray:
    """The sample with pixels the engine leaves out as NaN in every band: nodata in any band,
    fill in every band, NaN or infinite, or no number at all (float nodata such as -3.4e38)."""
    with np.errstate(invalid="ignore"):
        bad = ~(np.abs(sample) < ABSURD).all(axis=0)
    if nodata is not None:
        bad |= (sample == nodata).any(axis=0)
    if fill is not None:
        bad |= (sample == fill).all(axis=0)
    return np.where(bad, np.nan, sample)


def source_tags(da: xr.DataArray) -> dict[str, str]:
    """How a raster was read, as metadata tags for the outputs made from it: the modality, its
    units, the conversion applied and what detection decided."""
    m = raster_modality(da)
    conversion = da.attrs.get(CONVERSION_ATTR, {"kind": "none"})
    return {
        "ofa_modality": m.name,
        "ofa_units": m.units,
        "ofa_conversion": json.dumps(conversion, sort_keys=True),
        "ofa_notes": " ".join(da.attrs.get(NOTES_ATTR, [])),
    }


def _open_file(path: Path) -> xr.DataArray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            da = rioxarray.open_rasterio(path, cache=False, mask_and_scale=False)
    except (RasterioIOError, OSError) as err:
        raise _unreadable(path, err) from None
    if isinstance(da, list) or isinstance(da, xr.Dataset):
        raise RasterError(f"{path} holds several sub-datasets", "open one of them by its GDAL name")
    return da


def _check_bands(bands: Sequence[int], count: int, path: Path) -> list[int]:
    """1-based band numbers, each an existing band of the file, none twice."""
    bands = list(bands)
    if not bands:
        raise RasterError(
            "no bands picked", "give band numbers counted from 1 in {bands}, e.g. 4,3,2"
        )
    for i, band in enumerate(bands):
        if isinstance(band, bool) or not isinstance(band, (int, np.integer)):
            raise RasterError(
                f"band numbers are whole numbers counted from 1, got {band!r}",
                "give band numbers in {bands}, e.g. 4,3,2",
            )
        if not 1 <= band <= count:
            raise RasterError(
                f"band {band} does not exist: {path.name} has {count} bands "
                "(bands are numbered from 1)",
                "check {bands}",
                band=band,
            )
        if band in bands[:i]:
            raise RasterError(
                f"band {band} is picked twice",
                f"pick each of the {count} bands of {path.name} at most once in {{bands}}",
                band=band,
            )
    return [int(b) for b in bands]


def _select_bands(da: xr.DataArray, bands: list[int]) -> xr.DataArray:
    """The bands numbered ``bands`` (1-based), with per-band attributes (descriptions) to match."""
    count, index = da.sizes["band"], [b - 1 for b in bands]
    picked = da.isel(band=index)
    for key, value in da.attrs.items():
        if isinstance(value, tuple) and len(value) == count:
            picked.attrs[key] = tuple(value[i] for i in index)
    return picked


def _open_stack(paths: list[Path], given: Modality | None):
    """Single-band files -> one lazy DataArray on the finest grid, in the modality's band order."""
    m = given or detect_modality(len(paths), [_band_token(p, None) for p in paths], None)
    order = []
    for band in m.bands:
        match = [p for p in paths if _band_token(p, m) == band]
        if len(match) != 1:
            raise RasterError(
                f"cannot tell which file holds band {band} of '{m.name}' (found {len(match)})",
                f"name the files with their band (e.g. ..._{band}.tif), or give one file per "
                f"band of {', '.join(m.bands)}",
            )
        order.append(match[0])
    if len(paths) != len(order):
        extra = sorted(set(paths) - set(order))
        raise RasterError(
            f"files {', '.join(map(str, extra))} are not bands of '{m.name}'",
            "leave them out, or choose another {modality}",
        )
    sources = [_open_dataset(p) for p in order]
    for p, src in zip(order, sources):
        if src.count != 1:
            raise RasterError(
                f"{p} has {src.count} bands; a list of files must be single-band",
                "give one multi-band file alone, or single-band files",
            )
    finest = min(sources, key=lambda s: abs(s.res[0] * s.res[1]))
    arrays, samples = [], []
    for src in sources:
        vrt = WarpedVRT(
            src,
            crs=finest.crs,
            transform=finest.transform,
            width=finest.width,
            height=finest.height,
            resampling=Resampling.bilinear,
        )
        arrays.append(rioxarray.open_rasterio(vrt, cache=False, mask_and_scale=False))
        samples.append(
            _sample(src, shape=(min(SAMPLE_SIDE, finest.height), min(SAMPLE_SIDE, finest.width)))
        )
    da = xr.concat(cast("list[xr.DataArray]", arrays), dim="band")
    return da, np.concatenate(samples, axis=0), m


# ---------------------------------------------------------------- detection
def detect_modality(
    band_count: int, descriptions: Sequence[str | None] | None, dtype: Any
) -> Modality:
    """Guess the modality from the band count, band names and data type; ambiguity is an error
    that lists the candidates and the ``modality=`` override. (``open_raster`` also looks at the
    values, see ``_check_scale``.)"""
    found = likely_modalities(band_count, descriptions, dtype)
    if len(found) > 1:
        raise RasterError(
            f"{band_count} bands could be any of {', '.join(m.name for m in found)}",
            "say which with {modality}",
        )
    return found[0]


def likely_modalities(
    band_count: int, descriptions: Sequence[str | None] | None, dtype: Any
) -> list[Modality]:
    """The modalities a raster may be from its band count, band names and data type (see
    ``protocol.sensor_candidates``), most likely first; none is an error."""
    sensors = [get_modality(n).to_dict() for n in list_modalities()]
    found = sensor_candidates(
        sensors, band_count, descriptions, None if dtype is None else np.dtype(dtype).name
    )
    if not found:
        plural = "s" * (band_count != 1)
        raise RasterError(
            f"no known sensor has {band_count} band{plural}",
            "name its sensor with {modality} ({modalities} lists them; others can be "
            "registered), or give all the bands of the scene",
            bands=band_count,
        )
    return [get_modality(n) for n in found]


# ---------------------------------------------------------------- helpers
def _as_modality(modality: str | Modality | None) -> Modality | None:
    if modality is None or isinstance(modality, Modality):
        return modality
    return get_modality(modality)


def _existing(path: str | Path) -> Path:
    return existing_file(
        path, "raster", RasterError, "give a raster file (or a list of band files)"
    )


def _descriptions(da: xr.DataArray) -> list[str | None]:
    names = da.attrs.get("long_name")
    if isinstance(names, str):
        names = (names,)
    return list(names) if names else []


def _order_bands(da: xr.DataArray, m: Modality) -> xr.DataArray:
    """Reorder bands to the modality's order when the file names them in another order."""
    order = _band_order(da, m)
    return da if order is None else da.isel(band=order)


def _band_order(da: xr.DataArray, m: Modality) -> list[int] | None:
    """The file's band indices in the modality's order, when the file names its bands in
    another order; else None."""
    names = [d.upper() if d else None for d in _descriptions(da)]
    wanted = [b.upper() for b in m.bands]
    if len(names) == len(wanted) and set(names) == set(wanted) and names != wanted:
        return [names.index(b) for b in wanted]
    return None


# ---------------------------------------------------------------- value scale
def _fit(
    da: xr.DataArray, sample: np.ndarray, m: Modality, baseline: str | None = None
) -> ScaleFit:
    order = _band_order(da, m)
    return scale_fit(sample if order is None else sample[order], da.dtype, m, baseline)


def processing_baseline(source: Any) -> str | None:
    """The processing baseline a product names: a ``PROCESSING_BASELINE`` tag (GDAL's Sentinel-2
    driver writes it, and copies keep it), else the ``_Nxxyy_`` of a Sentinel-2 product's name
    in the path ('S2B_MSIL2A_20230612T102559_N0509_R108_T32UMU_...SAFE/.../B04.jp2')."""
    paths = [Path(p) for p in (source if isinstance(source, (list, tuple)) else [source])]
    for path in paths:
        with _open_dataset(path) as src:
            tags = src.tags()
        for key, value in tags.items():
            if "PROCESSING_BASELINE" in key.upper() and value.strip():
                return value.strip()
    for path in paths:
        found = re.search(r"_N(\d{2})(\d{2})_", str(path))
        if found:
            return f"{found[1]}.{found[2]}"
    return None


def _check_scale(
    da: xr.DataArray,
    sample: np.ndarray,
    candidates: list[Modality],
    given: bool,
    source: Any,
    baseline: str | None = None,
) -> ScaleFit:
    """The modality whose statistics the values fit, and how to convert them.

    Of the likely ``candidates`` (all with the raster's band count), the one the values fit;
    when none does, another modality with as many bands that they fit (8-bit DN of the same
    sensor, say); when none fits, the raster is refused with the scale named. A modality the
    caller gave is kept, with a ``ScaleWarning`` when the values do not fit it."""
    fits = [_fit(da, sample, m, baseline) for m in candidates]
    good = [f for f in fits if f.fits]
    m, values = candidates[0], fits[0].describe(da.dtype)
    expected = f"'{m.name}' ({m.units}, band means {span(m.mean)})"
    if given:
        if not good:
            warnings.warn(
                f"{_name(source)}'s values {values} are {fits[0].mismatch()} the statistics "
                f"of {expected}: the outputs will not mean much unless the values are "
                "converted to those units",
                ScaleWarning,
                stacklevel=3,
            )
        return fits[0]
    if not good:
        names = {c.name for c in candidates}
        others = [get_modality(n) for n in list_modalities() if n not in names]
        good = [_fit(da, sample, o, baseline) for o in others if o.num_bands == m.num_bands]
        good = [f for f in good if f.fits]
        fitting = sensor_candidates(
            [f.modality.to_dict() for f in good], m.num_bands, _descriptions(da), da.dtype
        )
        good = [f for f in good if f.modality.name in fitting]
    if len(good) == 1:
        return good[0]
    if good:
        raise RasterError(
            f"{_name(source)}'s values {values} could be any of "
            f"{', '.join(f.modality.name for f in good)}",
            "say which with {modality}",
        )
    raise RasterError(
        f"{_name(source)}'s values {values} are {fits[0].mismatch()} those of {expected} or "
        f"of any other {m.num_bands}-band sensor",
        "convert the file to those units, or name its sensor with {modality} ({modalities} "
        "lists them)",
    )


def _by_band_order(
    da: xr.DataArray, sample: np.ndarray, fit: ScaleFit, baseline: str | None
) -> ScaleFit:
    """The sensor whose band order the values follow, of those with as many bands as the file:
    ``fit`` (detection's), unless the file names no bands, its band means spread over the
    detected sensor's by ``ORDER_SPREAD`` or more, and another sensor's that the values fit
    spread ``ORDER_MARGIN`` times less (Landsat composites of SWIR1, NIR, red, green, which
    four unnamed 8-bit bands would otherwise be read as NAIP's red, green, blue and NIR)."""
    names = {d.upper() for d in _descriptions(da) if d}
    if names == {b.upper() for b in fit.modality.bands} or not fit.spread >= ORDER_SPREAD:
        return fit
    others = [
        _fit(da, sample, get_modality(n), baseline)
        for n in list_modalities()
        if n != fit.modality.name and get_modality(n).num_bands == fit.modality.num_bands
    ]
    closer = [o for o in others if o.fits and o.spread * ORDER_MARGIN <= fit.spread]
    if not closer:
        return fit
    return replace(min(closer, key=lambda o: o.spread), preferred_to=fit)


def _band_token(path: Path, m: Modality | None) -> str | None:
    """The band a single-band file holds: its description, else a band name in its file name."""
    with _open_dataset(path) as src:
        desc = src.descriptions[0] if src.count == 1 else None
    bands = (
        m.bands
        if m
        else sorted(
            {b for n in list_modalities() for b in get_modality(n).bands}, key=len, reverse=True
        )
    )
    if desc and desc.upper() in {b.upper() for b in bands}:
        return next(b for b in bands if b.upper() == desc.upper())
    tokens = re.split(r"[_\-.\s]", path.stem.upper())
    for band in bands:
        if band.upper() in tokens:
            return band
    return None


def _sample(
    source: Path | Any, shape: tuple[int, int] | None = None, bands: Sequence[int] | None = None
) -> np.ndarray:
    """Values of all bands (or of ``bands``, 1-based) from a cheap look at the raster, as float64,
    nodata as stored.

    With overviews (or a small raster) a decimated read; otherwise a grid of small windows, so
    that a large compressed file is not decoded whole just to guess its units.
    """
    src = _open_dataset(source) if isinstance(source, Path) else source
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
            f"pixels failed ({_first_line(err)})",
            "re-download or re-export the file",
        ) from None
    finally:
        if isinstance(source, Path):
            src.close()


def _open_dataset(path: Path):
    """``rasterio.open`` for a user's file: GDAL's failures (not a raster, truncated, missing)
    become errors that name the file."""
    try:
        return rasterio.open(path)
    except (RasterioIOError, OSError) as err:
        if not Path(path).exists():
            raise NotFound(f"raster not found: {path}", "check the path") from None
        raise _unreadable(path, err) from None


def _unreadable(path: Path, err: Exception) -> RasterError:
    return RasterError(
        f"cannot read {path} as a raster ({_first_line(err)})",
        "is it a complete GeoTIFF/COG or another format GDAL reads?",
    )


def _name(source: Any) -> str:
    return str(source) if not isinstance(source, (list, tuple)) else f"{len(source)} files"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
