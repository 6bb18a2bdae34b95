"""The two dates as one raster: BEFORE and AFTER read together, band by band, as one lazy
DataArray on BEFORE's grid (AFTER warped onto it by GDAL where its grid differs, or moved
onto BEFORE's features), so the engine tiles a pair like any raster."""

from __future__ import annotations

import math
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window
from xarray.backends import BackendArray
from xarray.core import indexing

from ..arrays import SCENES, Scene, opened_array
from ..band_files import BAND_FILES_ATTR
from ..detection import sensor_records
from ..errors import BadInput, warn_user
from ..io import (
    CONVERSION_ATTR,
    FILE_BANDS_ATTR,
    FILL_ATTR,
    MODALITY_ATTR,
    NOTES_ATTR,
    RasterError,
    open_raster,
    raster_modality,
)
from ..modalities import Modality
from ..protocol import bands_among_others, count, one_instrument, other_level
from ..rasterfiles import alpha_band, open_file, raster_path, select_bands
from ..scale import to_model_units

# a date the caller gave as a DataArray: warped from its values, as they may no longer be the
# file's (masked, scaled)
HELD_ATTR = "ofa_held"

Date = str | Path | Scene  # a raster's path (or scene folder), or a scene held in xarray

# two cubes' bands are one band each where their centres lie this close (nm): two acquisitions
# of one imaging spectrometer differ by their calibration, a fraction of a band's width (EnMAP's
# bands are 6.5-10 nm wide)
CUBE_WAVELENGTH_NM = 3.0


class _PairArray(BackendArray):
    """BEFORE's and AFTER's bands, in model units, as one lazily read [2C, H, W] float32 array:
    a pixel that either date has no data for is NaN in every band of its date."""

    def __init__(
        self,
        before: xr.DataArray,
        after: xr.DataArray,
        warps: list[tuple[WarpedVRT, list[int]]] | None = None,
    ):
        self.before, self.after = before, after
        # the WarpedVRTs that AFTER is read through (open while this lives; one, or one a band
        # file) and AFTER's bands in each, in the modality's order: read directly, as
        # rioxarray's reads of a WarpedVRT window took 10-20x as long (1000 px Sentinel-2,
        # 64 px windows: 4.0 s against 0.2 s)
        self.warps = warps
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
        # a row or column by number (``pair.isel(y=300)``) is read as a window of one: AFTER's
        # warped windows are slices, and its own grid is not BEFORE's
        points = [i + 1 for i, k in enumerate((ys, xs)) if isinstance(k, (int, np.integer))]
        ys, xs = (
            slice(int(k) % n, int(k) % n + 1) if isinstance(k, (int, np.integer)) else k
            for k, n in zip((ys, xs), self.shape[1:])
        )
        # only the bands asked for are read (a picture of both dates: 6 of 26), each date's
        # nodata then judged by those of its bands
        wanted = np.atleast_1d(np.arange(self.shape[0])[bands])
        count = self.shape[0] // 2
        parts, order = [], []
        for d, da in enumerate((self.before, self.after)):
            mine = sorted({int(b) - d * count for b in wanted if d * count <= b < (d + 1) * count})
            if mine:
                parts.append(_units(self._raw(da, ys, xs, mine), da))
                order += [d * count + b for b in mine]
        values = np.concatenate(parts)[[order.index(int(b)) for b in wanted]]
        if isinstance(bands, (int, np.integer)):
            values = values[0]
            points = [p - 1 for p in points]
        return values.squeeze(axis=tuple(points))

    def _raw(self, da: xr.DataArray, ys, xs, bands: list[int]) -> np.ndarray:
        """A date's raw values of its ``bands`` (0-based, the modality's order) in a window."""
        every = len(bands) == da.sizes["band"]
        if da is self.after and self.warps and isinstance(ys, slice):
            height, width = self.shape[1:]
            window = Window.from_slices(ys, xs, height=height, width=width)
            numbers = [(vrt, n) for vrt, ns in self.warps for n in ns]  # each band's VRT, number
            reads = []
            for vrt, _ in self.warps:  # each VRT once, for the bands asked of it
                asked = [numbers[b][1] for b in bands if numbers[b][0] is vrt]
                if asked:
                    reads.append(vrt.read(asked, window=window))
            return np.concatenate(reads)
        chosen = da if every else da.isel(band=bands)
        return np.atleast_3d(chosen.isel(y=ys, x=xs).values)


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
    return pair_of(*open_dates(before, after, modality), offset)


def open_dates(
    before: Date, after: Date, modality: str | Modality | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Both dates opened (``open_raster``: a file, or a folder of a scene's band files; a
    DataArray it gave, as it is now: ``opened_array``), checked to be two rasters of one sensor
    and bands."""
    if _same_date(before, after):
        same = (
            f"the same file, {Path(before).name}"
            if isinstance(before, (str, Path))
            else "the same DataArray"
        )
        raise BadInput(
            f"BEFORE and AFTER are {same}",
            "give the later date of the same place as AFTER",
        )
    first = _opened(before, modality, "BEFORE")
    m = raster_modality(first)
    if modality is None and m.kind == "hyperspectral":  # a cube: AFTER by its own wavelengths
        return first, _same_cube(m, _opened(after, None, "AFTER"))
    after_count = _band_count(after) if isinstance(after, (str, Path)) else None
    if modality is None and after_count not in (None, m.num_bands):  # all BEFORE's bands, not some
        raise _other_bands(m, after_count)
    opened = isinstance(after, xr.DataArray) and MODALITY_ATTR in after.attrs
    try:  # read as BEFORE's sensor, unless open_raster has read it already
        second = _opened(after, modality if opened else modality or m, "AFTER")
    except RasterError as err:
        if modality is not None or "bands" not in err.context:
            raise
        raise _other_bands(m, int(err.context["bands"])) from None
    m2 = raster_modality(second)
    if (m.name, m.bands) != (m2.name, m2.bands):
        raise _other_bands(m, m2)
    return first, second


def _other_bands(m: Modality, after: int | Modality) -> BadInput:
    """AFTER holds other bands than BEFORE's sensor ``m`` (as many as ``after``, or another
    sensor's). Where those are of BEFORE's instrument at another processing level
    (``protocol.other_level``: Sentinel-2 L2A's 12 bands against L1C's 13), the problem and
    the fix say so: an L1C and an L2A date had been refused as "the same sensor and bands"."""
    other: str | None
    if isinstance(after, Modality):
        other = after.name if one_instrument(m.to_dict(), after.to_dict()) else None
        said = f"AFTER is {after.name} ({count(after.num_bands, 'band')})"
    else:
        level = other_level(sensor_records(), m.to_dict(), after)
        other = level["name"] if level else None
        said = f"AFTER has {count(after, 'band')}" + (f", as {other} has" if other else "")
    problem = f"BEFORE is {m.name} ({count(m.num_bands, 'band')}) but {said}: the two dates"
    if other is not None:
        return BadInput(
            f"{problem} must come from the same sensor at the same processing level",
            f"give two {m.name} rasters or two {other} rasters",
        )
    fix = "give two rasters with the same bands"
    return BadInput(f"{problem} must come from the same sensor and bands", fix)


def _same_cube(m: Modality, second: xr.DataArray) -> xr.DataArray:
    """AFTER, read by its own wavelengths, as BEFORE's cube ``m``: as many bands, each within
    CUBE_WAVELENGTH_NM of BEFORE's, named as BEFORE's; else a BadInput saying what differs. Two
    EnMAP dates were refused, each read as 218 bands of its 224 (6 bad ones left out): AFTER was
    read as BEFORE's 218 ("BEFORE is hyperspectral (218 bands) but AFTER has 224 bands")."""
    m2 = raster_modality(second)
    fix = "give two rasters of the same sensor, with the same bands"
    if m2.kind != "hyperspectral" or m2.num_bands != m.num_bands:
        what = "a cube" if m2.kind == "hyperspectral" else m2.name
        raise BadInput(
            f"BEFORE is a cube of {count(m.num_bands, 'band')} ({min(m.wavelengths):.3f}-"
            f"{max(m.wavelengths):.3f} µm) but AFTER is {what} of {count(m2.num_bands, 'band')}",
            fix,
        )
    apart = np.abs(np.subtract(m.wavelengths, m2.wavelengths)) * 1000
    if apart.max() > CUBE_WAVELENGTH_NM:
        i = int(np.argmax(apart > CUBE_WAVELENGTH_NM))  # the first band apart
        raise BadInput(
            f"BEFORE's band {i + 1} lies at {m.bands[i]}, AFTER's at {m2.bands[i]} "
            f"({apart[i]:.1f} nm apart): the two cubes do not hold the same bands",
            fix,
        )
    return second.assign_coords(band=list(m.bands)).assign_attrs({MODALITY_ATTR: m.to_dict()})


def _opened(date: Date, modality: str | Modality | None, which: str) -> xr.DataArray:
    """A date as ``open_raster`` reads a path, or a DataArray as it is now (``opened_array``),
    marked as held: on another grid its values are warped, not its file's (``_warped``). A
    warning of "the DataArray" says which date (``which``: "BEFORE", "AFTER")."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(date, SCENES):
            opened = opened_array(date, modality).assign_attrs({HELD_ATTR: True})
        else:
            opened = open_raster(date, modality)
    for w in caught:
        text = str(w.message)
        if text.startswith("the DataArray"):
            warn_user(which + text.removeprefix("the DataArray"), w.category)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return opened


def _same_date(before: Date, after: Date) -> bool:
    """Whether BEFORE and AFTER are one file, or one DataArray."""
    if isinstance(before, SCENES) or isinstance(after, SCENES):
        return before is after
    return Path(before).resolve() == Path(after).resolve()


def date_files(date: Date) -> list[str]:
    """The files a date is read from: its path, or those an opened DataArray was read from."""
    return _files(date) if isinstance(date, SCENES) else [str(date)]


def _band_count(path: str | Path) -> int | None:
    """How many bands of a raster are imagery: not an alpha band, nor layers it names as none
    of a sensor's bands whose others it holds (``bands_among_others``). None when GDAL cannot
    tell, as of a folder, a zip or a container: ``open_raster`` then reads it or says why."""
    if Path(path).suffix.lower() == ".zip":  # a scene's zip (GDAL may take it for a product)
        return None
    try:
        with rasterio.open(path) as src:
            total, names = int(src.count), list(src.descriptions)
        if total == 0:  # a container of rasters
            return None
        kept = bands_among_others(sensor_records(), names)
        if kept is not None:
            return len(kept)
        return total - (alpha_band(raster_path(path)) is not None)  # a mask, not a band
    except (rasterio.errors.RasterioIOError, OSError):
        return None


def pair_of(
    first: xr.DataArray,
    second: xr.DataArray,
    offset: tuple[float, float] | None = None,
) -> xr.DataArray:
    """The pair of two opened dates (``open_pair``)."""
    m = raster_modality(first)
    warps = None
    if offset is not None or not _same_grid(first, second):
        second, warps = _warped(first, second, offset)
    # the pair: NaN marks nodata, values are in model units
    pair_modality = replace(
        m,
        bands=tuple(f"before_{b}" for b in m.bands) + tuple(f"after_{b}" for b in m.bands),
        wavelengths=m.wavelengths * 2,
        mean=m.mean * 2,
        std=m.std * 2,
        nodata=None,
    )
    lazy = indexing.LazilyIndexedArray(_PairArray(first, second, warps))
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
    da.attrs["source"] = _files(first) + _files(second)
    return da


def _files(date: Scene) -> list[str]:
    """The files a date was read from: one, or a scene's band files."""
    source = date.attrs.get("source", "")
    return [source] if isinstance(source, str) else list(source)


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    return (
        a.rio.crs == b.rio.crs
        and a.rio.shape == b.rio.shape
        and a.rio.transform().almost_equals(b.rio.transform())
    )


def _warped(
    first: xr.DataArray,
    second: xr.DataArray,
    offset: tuple[float, float] | None = None,
) -> tuple[xr.DataArray, list[tuple[WarpedVRT, list[int]]]]:
    """AFTER warped onto BEFORE's grid (bilinear, GDAL), lazily, with AFTER's band order,
    nodata and units, and the VRTs with AFTER's bands in each (1-based, the modality's order):
    one VRT of AFTER's file, or one of each of its band files, each warped from its own
    resolution; refused when the two do not overlap. With an ``offset`` (rows, cols), each
    pixel of BEFORE's grid reads AFTER that far away, where AFTER has its features."""
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
    nodata = second.rio.nodata
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        nodata = second.attrs.get(FILL_ATTR, 0 if np.dtype(second.dtype).kind in "iu" else np.nan)
    rows, cols = offset or (0.0, 0.0)
    if second.attrs.get(HELD_ATTR):
        return _warped_held(first, second, nodata, (rows, cols)), []
    vrts = [
        WarpedVRT(
            rasterio.open(path),
            crs=first.rio.crs,
            transform=first.rio.transform() * Affine.translation(cols, rows),
            width=first.sizes["x"],
            height=first.sizes["y"],
            resampling=Resampling.bilinear,
            nodata=nodata,
        )
        for path in second.attrs.get(BAND_FILES_ATTR, _files(second))
    ]
    raws = [open_file(vrt) for vrt in vrts]  # rioxarray reads a WarpedVRT lazily
    if len(vrts) > 1:  # a band file each, in the modality's order
        warped, warps = xr.concat(raws, dim="band"), [(vrt, [1]) for vrt in vrts]
    else:  # the file's bands that AFTER was read from, in the order it holds them
        numbers = list(second.attrs[FILE_BANDS_ATTR])
        warped, warps = select_bands(raws[0], numbers), [(vrts[0], numbers)]
    warped = warped.rio.write_nodata(nodata, encoded=False)
    warped.attrs.update({k: v for k, v in second.attrs.items() if k != FILL_ATTR})
    warped.attrs[NOTES_ATTR] = second.attrs.get(NOTES_ATTR, []) + (
        [] if _same_grid(first, second) else ["warped onto BEFORE's grid (GDAL, bilinear)"]
    )  # a move onto BEFORE's features is the change task's note
    return warped, warps


class _WarpedArray(BackendArray):
    """A DataArray AFTER warped onto BEFORE's grid (bilinear, GDAL through rasterio) a window at
    a time: each read warps the part of AFTER under the window, so memory is the window's, as a
    file's WarpedVRT reads it (it was warped whole, in memory, over BEFORE's extent)."""

    def __init__(
        self, source: xr.DataArray, crs, transform: Affine, shape: tuple[int, int], nodata: float
    ):
        self.source, self.crs, self.transform, self.nodata = source, crs, transform, nodata
        self.shape = (source.sizes["band"], *shape)
        self.dtype = np.dtype(source.dtype)

    def __deepcopy__(self, memo) -> _WarpedArray:
        return self  # read-only; xarray copies on every write_*

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        bands, ys, xs = key
        rows, cols = (np.arange(n)[k] for n, k in zip(self.shape[1:], (ys, xs)))
        if np.size(rows) == 0 or np.size(cols) == 0:
            return np.empty((self.shape[0], np.size(rows), np.size(cols)), self.dtype)[bands]
        top, left = int(np.min(rows)), int(np.min(cols))
        height, width = int(np.max(rows)) - top + 1, int(np.max(cols)) - left + 1
        window = self._warp(top, left, height, width)
        picked = window[:, np.atleast_1d(rows - top)][:, :, np.atleast_1d(cols - left)]
        index = tuple(0 if np.ndim(k) == 0 else slice(None) for k in (rows, cols))
        return picked[(slice(None),) + index][bands]

    def _warp(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """BEFORE's grid's rows top..top+height, columns left..left+width, of AFTER."""
        out = np.full((self.shape[0], height, width), self.nodata, dtype=self.dtype)
        to = self.transform * Affine.translation(left, top)
        x0, y0 = to * (0, 0)
        x1, y1 = to * (width, height)
        src = self.source
        box = transform_bounds(
            self.crs, src.rio.crs, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)
        )
        inverse = ~src.rio.transform()
        corners = [inverse * (x, y) for x in (box[0], box[2]) for y in (box[1], box[3])]
        c0, c1 = (f(c for c, _ in corners) for f in (min, max))
        r0, r1 = (f(r for _, r in corners) for f in (min, max))
        # the bilinear kernel's reach in AFTER's pixels: wider where the warp shrinks AFTER
        reach = 2 + math.ceil(max((c1 - c0) / width, (r1 - r0) / height))
        c0, r0 = max(0, math.floor(c0) - reach), max(0, math.floor(r0) - reach)
        c1, r1 = (
            min(src.sizes["x"], math.ceil(c1) + reach),
            min(src.sizes["y"], math.ceil(r1) + reach),
        )
        if c0 >= c1 or r0 >= r1:
            return out  # no part of AFTER under the window
        part = np.asarray(
            src.isel(y=slice(r0, r1), x=slice(c0, c1)).transpose("band", "y", "x").values
        )
        reproject(
            part,
            out,
            src_transform=src.rio.transform() * Affine.translation(c0, r0),
            src_crs=src.rio.crs,
            src_nodata=self.nodata,
            dst_transform=to,
            dst_crs=self.crs,
            dst_nodata=self.nodata,
            resampling=Resampling.bilinear,
        )
        return out


def _warped_held(
    first: xr.DataArray, second: xr.DataArray, nodata: float, offset: tuple[float, float]
) -> xr.DataArray:
    """A DataArray AFTER warped onto BEFORE's grid, moved by ``offset`` (rows, cols) as
    ``_warped`` moves a file, lazily (``_WarpedArray``)."""
    rows, cols = offset
    transform = first.rio.transform() * Affine.translation(cols, rows)
    shape = (first.sizes["y"], first.sizes["x"])
    lazy = indexing.LazilyIndexedArray(
        _WarpedArray(second.transpose("band", "y", "x"), first.rio.crs, transform, shape, nodata)
    )
    warped = xr.DataArray(
        xr.Variable(("band", "y", "x"), lazy),
        coords={"band": second["band"].values, "y": first.y, "x": first.x},
    )
    warped = warped.rio.write_transform(first.rio.transform()).rio.write_crs(first.rio.crs)
    warped = warped.rio.write_nodata(nodata, encoded=False)
    warped.attrs.update({k: v for k, v in second.attrs.items() if k != FILL_ATTR})
    warped.attrs[NOTES_ATTR] = second.attrs.get(NOTES_ATTR, []) + (
        [] if _same_grid(first, second) else ["warped onto BEFORE's grid (GDAL, bilinear)"]
    )
    return warped
