"""Scenes held in xarray: DataArrays, and Datasets of a variable a band.

``save_raster``: a scene of one's own (stackstac's, odc-stac's, rioxarray's) written as the
GeoTIFF that ``open_raster`` reads with all its rules: the band coordinate becomes the bands'
descriptions, which say what each band is ('B02', 'blue', 'nir08'). Written plainly with
rioxarray, the bands lost their names and were read by their count.

``opened_array``: a DataArray as the engine and ``change()`` read it. One that ``open_raster``
gave, after the user has worked on it (cropped, some bands selected, masked, divided into
reflectance): its attributes still said how the file was read, so bands selected by name were
refused (3 bands given to a 13-band sensor) and values divided by 10,000 were read as the
file's digital numbers, without a word (reconstruction error 0.985 against 8.7e-10 for the
trivial baseline). One of one's own (stackstac's, odc-stac's, rioxarray's) was refused, naming
``save_raster``: it is read in place with ``open_raster``'s rules, on a sample of it.

A hyperspectral cube is read by its bands' wavelengths, as a file tagged with them is: from a
``wavelength`` dimension or coordinate, or the bands' descriptions where rioxarray keeps them."""

from __future__ import annotations

import re
import tempfile
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from .errors import BadInput, OFAError, OutputExists, warn_user
from .fileio import atomic_output
from .io import (
    ASSIGN_CRS,
    CONVERSION_ATTR,
    FILE_BANDS_ATTR,
    FILL_ATTR,
    FITS_ATTR,
    MODALITY_ATTR,
    NOTES_ATTR,
    RasterError,
    ScaleWarning,
    on_its_grid,
    open_raster,
    raster_modality,
    subset_note,
    without_nodata,
)
from .modalities import Modality, get_modality, list_modalities, some_bands
from .protocol import band_names, count, subset_of
from .scale import (
    IMPOSSIBLE_WORDS,
    detect_conversion,
    impossible_values_note,
    reflectance_conversion,
    scale_fit,
)

Scene = xr.DataArray | xr.Dataset  # a Dataset: one variable a band (odc-stac's ``load``)
SCENES = (xr.DataArray, xr.Dataset)  # for isinstance

# the values looked at: SAMPLE_WINDOWS x SAMPLE_WINDOWS windows of SAMPLE_SIDE pixels, spread
# over the array (a lazily read file reads only them)
SAMPLE_WINDOWS = 4
SAMPLE_SIDE = 32

# a hyperspectral cube's spectral dimension, as xarray's readers name it (HyperCoast's
# "wavelength"), and the coordinates along it that flag its good bands (1) and bad ones (0)
SPECTRAL_DIMS = ("wavelength", "wavelengths")
GOOD_BAND_COORDS = ("bbl", "good_wavelengths")
# the bands' centre wavelengths as a coordinate: a cube's own, or stackstac's of STAC's eo:bands
# (in µm)
WAVELENGTH_COORDS = ("wavelength", "center_wavelength")
# GDAL's ENVI driver describes a band by its name and centre wavelength, "band 1 (418.24
# Nanometers)"; of a file's band tags, rioxarray keeps only those descriptions
_DESCRIBED_WAVELENGTH = re.compile(r"\(\s*(\d+(?:\.\d*)?)\s*([^\W\d_]*)\s*\)\s*$")


def save_raster(da: Scene, path: str | Path, overwrite: bool = False) -> Path:
    """``da`` (band, y, x; other dimensions of length one are dropped) as a tiled, compressed
    GeoTIFF at ``path`` with its band names, CRS, transform and nodata, written atomically;
    returns ``path``. Several dates or other dimensions are refused: select or reduce them."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExists(f"{path} exists", "pass {overwrite} to replace it")
    out = one_scene(da).rename(None)  # a dask array's name is no band's
    names = band_names_of(out)
    if names:
        out = out.assign_attrs(long_name=names)  # rioxarray's own are numbers: none to keep
    with atomic_output(path, suffix=".tmp.tif") as tmp:
        out.rio.to_raster(tmp, driver="GTiff", tiled=True, compress="DEFLATE")
        tags = wavelength_tags(out)
        if tags:
            with rasterio.open(tmp, "r+") as dst:
                _tag_bands(dst, tags)
    return path


def opened_array(da: Scene, modality: str | Modality | None = None) -> xr.DataArray:
    """``da`` as the engine reads it: a DataArray ``open_raster`` gave, with the record of its
    sensor made to fit what it holds now.

    * bands selected by name (``da.sel(band=["B02", "B03", "B04"])``) are read as those bands of
      the sensor (by their wavelengths where the model has no embedding of them), all of them
      in another order in the sensor's;
    * ``modality`` reads it as another sensor of as many bands;
    * values no longer in the units the file was read in (divided into reflectance, converted
      to dB) are read in the units they fit, with a note; values that fit none get a
      ``ScaleWarning``, as a file read as a sensor it does not fit does.

    A DataArray ``open_raster`` did not give is read as a file of it would be, from a sample
    (``_read_in_place``): its band names, values, data type, nodata and CRS."""
    if isinstance(da, xr.Dataset) or MODALITY_ATTR not in da.attrs:  # one's own: as its file
        return _read_in_place(da, modality)
    da = one_scene(da)  # (band, y, x), on the grid its coordinates give
    m = raster_modality(da)
    if modality is not None:
        da, m = _as_sensor(da, m, modality)
    else:
        da, m = _selected(da, m)
    return _checked_values(da, m)


def _as_sensor(
    da: xr.DataArray, m: Modality, modality: str | Modality
) -> tuple[xr.DataArray, Modality]:
    """The array read as ``modality`` (as many bands, in its order), with no conversion yet."""
    given = modality if isinstance(modality, Modality) else get_modality(modality)
    if (given.name, given.bands) == (m.name, m.bands):
        return _selected(da, m)
    if given.num_bands != da.sizes["band"]:
        held = [str(b) for b in da["band"].values]
        raise BadInput(
            f"the DataArray holds {da.sizes['band']} bands ({band_names(held)}) but "
            f"'{given.name}' has {given.num_bands}",
            "select that sensor's bands, or open the file with open_raster(path, modality=...)",
        )
    note = f"read as '{given.name}', as asked (open_raster read it as '{m.name}')"
    da = da.assign_coords(band=list(given.bands)).assign_attrs(
        {
            MODALITY_ATTR: given.to_dict(),
            CONVERSION_ATTR: None,  # judged from the values (``_checked_values``)
            NOTES_ATTR: [*da.attrs.get(NOTES_ATTR, []), note],
        }
    )
    return da, given


def _selected(da: xr.DataArray, m: Modality) -> tuple[xr.DataArray, Modality]:
    """The array and the record of the bands it holds now, of those ``open_raster`` read."""
    names = [str(b) for b in da["band"].values] if "band" in da.coords else []
    if names == list(m.bands):
        return da, m
    if len(set(names)) != len(names) or not set(names) <= set(m.bands):
        raise BadInput(
            f"the DataArray's bands ({band_names(names) or 'unnamed'}) are not bands of "
            f"'{m.name}' ({band_names(m.bands)}), as open_raster read them",
            "select bands by their names, e.g. da.sel(band=[...]), and keep the names",
        )
    if set(names) == set(m.bands):  # all of them, in another order: the sensor's
        return da.sel(band=list(m.bands)), m
    if m.kind == "hyperspectral":
        return _cube_selected(da, m, names)
    found = subset_of([get_modality(n).to_dict() for n in list_modalities()], m.name)
    sensor = get_modality(found[0]) if found else m  # some bands of some bands: of the sensor
    some = some_bands(sensor, names)
    notes = [*da.attrs.get(NOTES_ATTR, []), subset_note(some, sensor, [])]
    return da.assign_attrs({MODALITY_ATTR: some.to_dict(), NOTES_ATTR: notes}), some


def _cube_selected(
    da: xr.DataArray, m: Modality, names: list[str]
) -> tuple[xr.DataArray, Modality]:
    """Bands selected of a cube: a cube of their own, as ``open_raster`` reads bands picked of a
    cube's file (not 'some bands of' it, named after each of them)."""
    cube = replace(
        m.select(names, name=m.name),
        description=f"hyperspectral cube, {count(len(names), 'band')} of {m.description}",
    )
    note = (
        f"{count(len(names), 'band')} of the cube's {m.num_bands} ({min(cube.wavelengths):.3f}-"
        f"{max(cube.wavelengths):.3f} µm), read as a cube of their own, by their wavelengths"
    )
    notes = [*da.attrs.get(NOTES_ATTR, []), note]
    return da.assign_attrs({MODALITY_ATTR: cube.to_dict(), NOTES_ATTR: notes}), cube


def _checked_values(da: xr.DataArray, m: Modality) -> xr.DataArray:
    """The array with the conversion its values fit now: the one it was read with, else the
    one its values call for, with a note; else the one it had, with a ``ScaleWarning``. Values
    that did not fit when the file was opened (warned of then) are left as they are; a cube
    read by its wavelengths has its units judged again as they were then (``_checked_cube``)."""
    held = da.attrs.get(CONVERSION_ATTR)
    if held is not None and m.kind == "hyperspectral" and FITS_ATTR not in da.attrs:
        return _checked_cube(da, m, held)
    if held is not None and da.attrs.get(FITS_ATTR) is not True:
        return da
    sample = without_nodata(_sample(da), da.rio.nodata, da.attrs.get(FILL_ATTR))
    if not np.isfinite(sample).any():
        raise RasterError(
            "the DataArray has no pixel with data in every band in a sample of it (nodata "
            f"{da.rio.nodata}, NaN)",
            "check what it holds, or give a part of it with data",
        )
    if held is not None and scale_fit(sample, da.dtype, m, conversion=held).fits:
        return _warned_of_impossible_values(da, sample, held, m)
    fit = scale_fit(sample, da.dtype, m)  # as a file of these values would be read
    if held is None:  # read as a sensor it was not opened as
        note = fit.note()
    elif fit.fits:
        note = f"its values are not in the file's units: {fit.note()}"
    else:
        fit = scale_fit(sample, da.dtype, m, conversion=held)
        note = (
            f"the DataArray's values {fit.describe(da.dtype)} are {fit.mismatch()} the "
            f"statistics of '{m.name}' ({m.units}): the outputs will not mean much unless "
            "the values are in those units, as open_raster read them"
        )
    if not fit.fits:
        warn_user(note, ScaleWarning)
    notes = [*da.attrs.get(NOTES_ATTR, []), note]
    return da.assign_attrs({CONVERSION_ATTR: fit.conversion, NOTES_ATTR: notes})


def _checked_cube(da: xr.DataArray, m: Modality, held: dict) -> xr.DataArray:
    """A cube read by its wavelengths, whose units ``open_raster`` judged by the values alone
    (``detect_conversion``: floats in 0..1 are reflectance), judged again alike: values divided
    into reflectance since (or multiplied out of it) were read in the file's units, without a
    word. Integers, and a product's own gain, are left as they are."""
    if not np.issubdtype(da.dtype, np.floating) or held not in (
        {"kind": "none"},
        reflectance_conversion(m),
    ):
        return da
    sample = without_nodata(_sample(da), da.rio.nodata, da.attrs.get(FILL_ATTR))
    now = detect_conversion(sample, da.dtype, m)
    if now == held or not np.isfinite(sample).any():
        return _warned_of_impossible_values(da, sample, held, m)
    how = "reflectance (0-1), scaled to" if now["kind"] == "affine" else "they are, in"
    note = f"its values are not in the file's units: read as {how} its units ({m.units})"
    notes = [*da.attrs.get(NOTES_ATTR, []), note]
    return da.assign_attrs({CONVERSION_ATTR: now, NOTES_ATTR: notes})


def _warned_of_impossible_values(
    da: xr.DataArray, sample: np.ndarray, conversion: dict, m: Modality
) -> xr.DataArray:
    """The array, with a ``ScaleWarning`` and a note where its values lie below zero or
    wrapped around from there (``impossible_values_note``) and ``open_raster`` said nothing of
    it: values that were a file's own were told of when it was read."""
    notes = da.attrs.get(NOTES_ATTR, [])
    note = impossible_values_note(sample, da.dtype, conversion, m, "the DataArray")
    if note is None or any(w in n for n in notes for w in IMPOSSIBLE_WORDS):
        return da
    warn_user(note, ScaleWarning)
    return da.assign_attrs({NOTES_ATTR: [*notes, note]})


def _sample(da: xr.DataArray) -> np.ndarray:
    """Values of the array [C, h, w] as float64, nodata as stored: a few windows spread over
    it (a lazily read file reads only them), or, where none has a pixel with data (a scene
    mostly nodata), every n-th row and column of it."""
    height, width = da.sizes["y"], da.sizes["x"]
    rows, cols = min(SAMPLE_SIDE, height), min(SAMPLE_SIDE, width)
    starts_y = np.unique(np.linspace(0, height - rows, SAMPLE_WINDOWS).astype(int))
    starts_x = np.unique(np.linspace(0, width - cols, SAMPLE_WINDOWS).astype(int))
    windows = [
        _values(da.isel(y=slice(y, y + rows), x=slice(x, x + cols)))
        for y in starts_y
        for x in starts_x
    ]
    sample = np.concatenate(windows, axis=2)
    if np.isfinite(without_nodata(sample, da.rio.nodata, da.attrs.get(FILL_ATTR))).any():
        return sample
    side = SAMPLE_SIDE * SAMPLE_WINDOWS
    step_y, step_x = max(1, height // side), max(1, width // side)
    return _values(da.isel(y=slice(None, None, step_y), x=slice(None, None, step_x)))


def _values(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.transpose("band", "y", "x").values, dtype=np.float64)


def one_scene(scene: Scene) -> xr.DataArray:
    """``scene`` as (band, y, x): a Dataset's variables its bands, other dimensions of length one
    dropped, a single band given one; several dates, or no y and x, refused naming the fix."""
    da = scene.to_array("band") if isinstance(scene, xr.Dataset) else scene
    if "y" not in da.dims or "x" not in da.dims:
        dims = [str(d) for d in da.dims]
        lat = next((d for d in dims if d.lower() in ("lat", "latitude")), "lat")
        lon = next((d for d in dims if d.lower() in ("lon", "long", "longitude")), "lon")
        raise BadInput(
            f"the DataArray's dimensions are {', '.join(dims)}, without y and x",
            f"name them as rioxarray does: da.rename({lat}='y', {lon}='x')",
        )
    spectral = next((d for d in da.dims if str(d).lower() in SPECTRAL_DIMS), None)
    if spectral is not None and da.sizes.get("band", 1) == 1:  # a Dataset's one variable: a cube
        da = _spectral_as_bands(
            da.squeeze("band", drop=True) if "band" in da.dims else da, spectral
        )
    extra = [d for d in da.dims if d not in ("band", "y", "x")]
    many = [d for d in extra if da.sizes[d] > 1]
    if many:
        raise BadInput(
            f"the DataArray has {', '.join(f'{d} ({da.sizes[d]})' for d in many)} beside band, "
            "y and x: one scene at a time",
            f"select one with da.isel({many[0]}=0), or reduce it, e.g. da.median('{many[0]}')",
        )
    if extra:
        da = da.squeeze(extra, drop=True)
    if "band" not in da.dims:  # one band, its name kept where selected (da.sel(band="B04"))
        da = da.expand_dims("band") if "band" in da.coords else da.expand_dims(band=[1])
    if da.dims != ("band", "y", "x"):
        da = da.transpose("band", "y", "x")
    return on_its_grid(da)


def _spectral_as_bands(da: xr.DataArray, dim: object) -> xr.DataArray:
    """A cube's spectral dimension as its bands, numbered from 1, its values (if any) kept as
    their ``wavelength`` coordinate."""
    waves = da[dim] if dim in da.coords else None
    da = da.rename({dim: "band"}).assign_coords(band=np.arange(1, da.sizes[dim] + 1))
    if waves is not None:
        da = da.assign_coords(wavelength=("band", waves.values, waves.attrs))
    return da


def wavelength_tags(da: xr.DataArray) -> list[dict[str, str]] | None:
    """Each band's centre wavelength as a file's band tags (ENVI's ``wavelength`` and
    ``wavelength_units``, ``bbl`` where a coordinate flags the good bands), by which
    ``open_raster`` reads a cube: a cube it read, from its record; else from a coordinate of
    WAVELENGTH_COORDS along the bands (in its ``units``; without, nanometres above 30), a number
    for each band; else from band names that end in one, as GDAL describes an ENVI file's bands
    ("band 1 (418.24 Nanometers)"); None without them."""
    names = band_names_of(da) or ()
    m = raster_modality(da) if MODALITY_ATTR in da.attrs else None
    if m is not None and m.kind == "hyperspectral" and names and set(names) <= set(m.bands):
        held = dict(zip(m.bands, m.wavelengths))  # µm
        return [{"wavelength": repr(held[n]), "wavelength_units": "micrometers"} for n in names]
    coord = next((c for c in WAVELENGTH_COORDS if c in da.coords), None)
    waves = _numbers(da[coord]) if coord is not None and da[coord].dims == ("band",) else None
    if coord is not None and waves is not None:
        units = str(da[coord].attrs.get("units", ""))
        tags = [{"wavelength": repr(w), "wavelength_units": units} for w in waves]
    else:
        found = [_DESCRIBED_WAVELENGTH.search(name) for name in names]
        described = [f for f in found if f is not None]
        if not found or len(described) < len(found):
            return None
        tags = [{"wavelength": f.group(1), "wavelength_units": f.group(2)} for f in described]
    flags = next((da[c] for c in GOOD_BAND_COORDS if c in da.coords), None)
    if flags is not None and flags.dims == ("band",):
        for tag, good in zip(tags, flags.values):
            tag["bbl"] = "1" if good else "0"
    return tags


def _numbers(values: xr.DataArray) -> list[float] | None:
    """Finite numbers, one each (stackstac's ``center_wavelength`` is None for a band of none)."""
    try:
        numbers = [float(v) for v in values.values]
    except (TypeError, ValueError):
        return None
    return numbers if all(np.isfinite(numbers)) else None


def _tag_bands(dst: rasterio.io.DatasetWriter, tags: list[dict[str, str]]) -> None:
    for number, band in enumerate(tags, start=1):
        dst.update_tags(number, **band)


def band_names_of(da: xr.DataArray) -> tuple[str, ...] | None:
    """The bands' names: the band coordinate's ('B02', 'blue'), else, where it holds the file's
    band numbers as rioxarray numbers them, the file's descriptions of those bands (its
    ``long_name``); None where there are none."""
    values = list(da["band"].values) if "band" in da.coords else []
    if values and not all(isinstance(b, (int, float)) or str(b).isdigit() for b in values):
        return tuple(str(b) for b in values)
    described = da.attrs.get("long_name")
    described = (described,) if isinstance(described, str) else described
    if not values or not isinstance(described, (tuple, list)):
        return None
    numbers = [int(float(b)) for b in values]
    if not all(1 <= n <= len(described) for n in numbers):
        return None
    names = tuple(str(described[n - 1] or "") for n in numbers)
    return names if any(names) else None


def _read_in_place(da: Scene, modality: str | Modality | None) -> xr.DataArray:
    """A DataArray of one's own (stackstac's, odc-stac's) read with ``open_raster``'s rules, on
    a sample of it: a few windows of its values, its band names, data type, nodata and CRS
    written as a small GeoTIFF, which ``open_raster`` reads as it reads any file (its sensor,
    band order, units, notes). The DataArray is then read as that file was, lazily; where the
    rules speak of the sample's path, they speak of "the DataArray"."""
    da = one_scene(da)
    with tempfile.TemporaryDirectory(prefix="ofa-array-") as folder:
        path = Path(folder) / "sample.tif"
        _write_sample(da, path)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                seen = open_raster(path, modality)
        except OFAError as err:
            err.problem, err.fix = (_in_words(t, path) for t in (err.problem, err.fix))
            raise
    for warning in caught:  # the rules' warnings, of the DataArray
        warn_user(_in_words(str(warning.message), path), warning.category)
    held = da.isel(band=[b - 1 for b in seen.attrs[FILE_BANDS_ATTR]])
    kept = (CONVERSION_ATTR, MODALITY_ATTR, FILL_ATTR, FITS_ATTR)
    attrs = {k: v for k, v in seen.attrs.items() if k in kept}
    attrs[NOTES_ATTR] = [_in_words(n, path) for n in seen.attrs.get(NOTES_ATTR, [])]
    attrs["source"] = []  # no file: nothing to keep an output off
    return held.assign_coords(band=list(seen["band"].values)).assign_attrs(attrs)


def _write_sample(da: xr.DataArray, path: Path) -> None:
    """The windows of ``_sample`` side by side as a GeoTIFF, with the DataArray's band names,
    data type, nodata and CRS."""
    sample = _sample(da)
    dtype = np.dtype(da.dtype)
    if dtype == np.bool_:
        dtype = np.dtype("uint8")
    elif dtype == np.float16:
        dtype = np.dtype("float32")
    nodata = da.rio.nodata
    profile = {
        "driver": "GTiff",
        "dtype": dtype.name,
        "count": sample.shape[0],
        "height": sample.shape[1],
        "width": sample.shape[2],
        "crs": da.rio.crs,
        "transform": da.rio.transform(),
        "nodata": None if nodata is None else float(nodata),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(sample.astype(dtype))
        names = band_names_of(da)
        if names:
            dst.descriptions = names
        _tag_bands(dst, wavelength_tags(da) or [])


def _in_words(text: str, path: Path) -> str:
    """A rule's sentence of the sample's file, of the DataArray."""
    return (
        text.replace(f"{path}'s", "the DataArray's")
        .replace(str(path), "the DataArray")
        .replace(path.name, "the DataArray")
        .replace(ASSIGN_CRS, "da.rio.write_crs('EPSG:32633')")
    )
