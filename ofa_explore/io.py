"""Rasters in, xarray out: open any GDAL raster (or a set of single-band files) lazily as a
DataArray with band names, CRS, transform and nodata, and work out which modality it is and in
which units its values are stored.

Nothing here reads a whole raster: pixels are read window by window by the inference engine;
detection looks at a decimated sample.
"""

from __future__ import annotations

import json
import math
import os
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
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from .errors import BadInput, NotFound
from .fileio import existing_file
from .modalities import Modality, get_modality, hyperspectral_modality, list_modalities
from .protocol import (
    alpha_mask,
    band_label,
    band_subsets,
    band_wavelengths,
    is_8bit,
    names_sensor_bands,
    picked_bands,
    sensor_bands,
    sensor_candidates,
    subset_name,
)
from .scale import (
    ORDER_MARGIN,
    ORDER_SPREAD,
    ScaleFit,
    detect_conversion,
    scale_fit,
    span,
)

SAMPLE_SIDE = 256  # pixels per side of the decimated read used for detection
BAND_FILE_SUFFIXES = (".tif", ".tiff", ".jp2")  # the rasters a scene's folder is read from
ABSURD = 1e30  # a value this large is a float nodata marker (-3.4e38), not a measurement
CONVERSION_ATTR = "ofa_conversion"
MODALITY_ATTR = "ofa_modality"
FILL_ATTR = "ofa_fill"  # a value that marks a pixel as nodata when every band has it (a file
# without a nodata value whose integer pixels are 0 in every band: Landsat's scene borders)
NOTES_ATTR = "ofa_notes"  # what detection decided, one sentence each (results and tags repeat it)
BAND_FILES_ATTR = "ofa_band_files"  # a scene read from band files: the file of each band, in order
FILE_BANDS_ATTR = "ofa_file_bands"  # the file's bands read (1-based), where not all (picked, alpha)


class ScaleWarning(UserWarning):
    """The values do not fit the statistics of the modality that was asked for."""


class RasterError(BadInput):
    """A raster that cannot be used as it is: ``problem`` says why, ``fix`` what to do."""


# ---------------------------------------------------------------- opening
KEEP = "file"  # nodata default: whatever the file says
# a dataset GDAL opens by name rather than a file: a driver's prefix (two or more characters,
# unlike a Windows drive) and a colon, or one of its virtual file systems
GDAL_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]+:(?!\\)|/vsi[a-z0-9_]+/)")


def open_raster(
    source: str | Path | Sequence[str | Path],
    modality: str | Modality | None = None,
    nodata: float | None | str = KEEP,
    bands: Sequence[int] | None = None,
) -> xr.DataArray:
    """A raster as a lazy ``DataArray`` (band, y, x) whose ``band`` coordinate holds band names.

    ``source`` is one file GDAL reads (GeoTIFF, COG, JP2, VRT, ...) or a list of single-band files,
    which are stacked in the modality's band order and resampled to the finest grid among them,
    or a folder of them (its .tif, .tiff and .jp2 files).
    ``modality`` overrides detection; ``nodata`` overrides the file's nodata value (``None``
    unsets it, e.g. for NEON tiles that flag 255 although it is a valid bright pixel).
    ``bands`` picks bands of a single file by their 1-based numbers (as GIS software counts them),
    in the order given, before anything else looks at the file: detection then sees only them
    (picked of a file of unnamed bands whose count and values are one sensor's, such as
    Sentinel-2 L1C's 13: they are named as its bands, ``_picked_names``).
    A file whose bands carry their centre wavelengths (ENVI/EnMAP ``wavelength`` band tags)
    needs no modality: the wavelengths define it, and bands flagged bad (``bbl`` = 0) are left out.
    ``attrs["ofa_modality"]`` holds the modality record and
    ``attrs["ofa_conversion"]`` how to bring values into the modality's units
    (see ``to_model_units``).
    """
    given = _as_modality(modality)
    folder = isinstance(source, (str, Path)) and Path(source).is_dir()
    if folder:
        source = _folder_rasters(Path(cast("str | Path", source)))
    read_notes: list[str] = []
    subsets: list[tuple[Modality, Modality]] = []
    whole_sensor: Modality | None = None  # the sensor of a file whose bands were picked
    alpha, transparent = None, None  # a file's alpha band; what its transparent pixels hold
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
        da, sample, stack, read_notes = _open_stack(paths, given, folder)
        if stack is None:  # some of a sensor's bands, a file each
            subsets = _named_subsets(da, given)
        m = stack or subsets[0][0]
        tagged_cube, candidates = False, [m]
    else:
        path = _existing(cast("str | Path", source))  # one file (lists are handled above)
        da = whole = _open_file(path)
        if bands is not None:
            bands = _check_bands(bands, da.sizes["band"], path)
        alpha = _alpha_band(path)
        if alpha is not None and alpha not in (bands or []):
            # a mask, not imagery: RGBA orthophotos were read as NAIP's R, G, B and NIR
            if bands is None:
                bands = [b for b in range(1, da.sizes["band"] + 1) if b != alpha]
                read_notes.append(f"left out band {alpha}: the file's alpha band (transparency)")
            transparent = _transparent(path, alpha, bands)
        if bands is not None:
            da = _select_bands(da, bands)
            da.attrs[FILE_BANDS_ATTR] = list(bands)
            picked = _picked_names(path, whole, bands, given)
            if picked is not None:
                da.attrs["long_name"], whole_sensor, note = picked
                read_notes.append(note)
        sample = _sample(path, bands=bands)
        tagged = file_wavelengths(path, bands=bands)
        tagged_cube = (
            tagged is not None
            and (given is None or given.num_bands == len(tagged[1]) < da.sizes["band"])
            and not names_sensor_bands(_sensor_records(), _descriptions(da))
        )
        if tagged is not None and tagged_cube:
            waves, good = tagged
            da, sample = da.isel(band=good), sample[good]
            m = given or hyperspectral_modality(waves, gsd=abs(da.rio.resolution()[0]))
        else:
            subsets = _named_subsets(da, given or whole_sensor)
            if subsets:
                candidates = [subsets[0][0]]
            elif given is not None:
                candidates = [given]
            else:
                candidates = likely_modalities(da.sizes["band"], _descriptions(da), da.dtype)
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
    fill: float | None = 0 if infer_fill and (sample == 0).all(axis=0).any() else None
    if isinstance(transparent, str):
        read_notes.append(transparent)
    elif transparent is not None and infer_fill:
        fill = transparent  # what the file holds where its alpha band says transparent
    valid = _valid(sample, nodata, fill)
    if not np.isfinite(valid).any() and not isinstance(source, (list, tuple)):
        side = (min(SAMPLE_SIDE, da.sizes["y"]), min(SAMPLE_SIDE, da.sizes["x"]))
        full = _sample(
            _raster_path(cast("str | Path", source)), shape=side, bands=bands
        )  # confirm on a full decimated read
        valid = _valid(full, nodata, fill)
    if not np.isfinite(valid).any():
        raise RasterError(
            f"{_name(source)} has no pixel with data in every band (nodata value {nodata}, NaN "
            "and infinite values are no data); nothing to run the model on",
            "check the file, or its nodata value",
        )
    notes = list(read_notes)
    if fill is not None:
        da.attrs[FILL_ATTR] = fill
        share = (sample == fill).all(axis=0).mean()
        where = "transparent (alpha 0) and " if transparent is not None else ""
        notes.append(
            f"pixels that are {where}{fill:g} in every band ({share:.0%} of a sample) are "
            "taken as nodata, as the file declares none (give a nodata value to override)"
        )
    if tagged_cube:
        conversion = detect_conversion(valid, da.dtype, m)
    else:
        baseline = processing_baseline(source)
        if subsets:
            chosen, note = _closest_fitting(da, valid, subsets, baseline, source)
            candidates = [chosen]
            notes.append(note)
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
    with _open_dataset(_raster_path(path)) as src:
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
        with warnings.catch_warnings():  # a container has no grid of its own
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with _open_dataset(path) as src:
                names = list(src.subdatasets)
        shown = ", ".join(f"'{n}'" for n in names[:4]) + (", ..." if len(names) > 4 else "")
        raise RasterError(
            f"{path} holds {len(names)} rasters (GDAL sub-datasets: {shown})",
            "give one of them by its GDAL name, quoted, in place of the file",
        )
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


def _alpha_band(path: Path) -> int | None:
    """The number of the file's alpha band, when it has one and other bands besides: a band of
    GDAL's colour interpretation alpha whose values are a mask's (``protocol.alpha_mask``)."""
    with _open_dataset(path) as src:
        found = [i + 1 for i, c in enumerate(src.colorinterp) if c == ColorInterp.alpha]
        dtype = np.dtype(src.dtypes[0])
        if len(found) != 1 or src.count < 2 or dtype.kind not in "iu":
            return None
        values = _sample(src, bands=found).ravel()
    return found[0] if alpha_mask(values, np.iinfo(dtype).max) else None


def _transparent(path: Path, alpha: int, bands: list[int]) -> float | str | None:
    """What the bands hold where the alpha band says transparent (0), from a sample: one value
    in every band (0 or 255, as GDAL and drone software write them), taken as nodata; else a
    note that transparent pixels are read as data; None where the sample has none."""
    sample = _sample(path, bands=[*bands, alpha])
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


def _select_bands(da: xr.DataArray, bands: list[int]) -> xr.DataArray:
    """The bands numbered ``bands`` (1-based), with per-band attributes (descriptions) to match."""
    count, index = da.sizes["band"], [b - 1 for b in bands]
    picked = da.isel(band=index)
    for key, value in da.attrs.items():
        if isinstance(value, tuple) and len(value) == count:
            picked.attrs[key] = tuple(value[i] for i in index)
    return picked


def _open_stack(paths: list[Path], given: Modality | None, folder: bool = False):
    """Single-band files -> one lazy DataArray on the finest grid, in the modality's band order,
    with a note on the files left out (see ``_stack_sensor``); or, when they are some of a
    sensor's bands, in the order given, the bands named (modality None: ``_named_subsets``).
    A multi-band file is refused (a list or folder of scenes would otherwise read as some
    sensor's bands), except in a ``folder`` that holds two or more single-band files: there it
    is a scene's extra (Sentinel-2's TCI.jp2), left out with a note."""
    names, counts, area, byte = {}, {}, {}, 0  # description, band count, pixel area; bytes
    for p in paths:
        with _open_dataset(p) as src:
            counts[p], area[p] = src.count, abs(src.res[0] * src.res[1])
            if src.count == 1:
                names[p], byte = src.descriptions[0], byte + is_8bit(src.dtypes[0])
    multi = [p for p in paths if counts[p] != 1]
    if multi and (not folder or len(names) < 2):
        raise RasterError(
            f"{multi[0]} has {counts[multi[0]]} bands; a list of files (or a folder's files) "
            "must be one scene's single-band files",
            "give one multi-band file alone, or run each file on its own",
        )
    notes = []
    if multi:
        notes.append(
            f"left out {_file_names(multi, paths)}: "
            f"{'not single-band files' if len(multi) > 1 else 'not a single-band file'} (a "
            "scene's folder is read from its band files)"
        )
    coarser = _coarser_copies(names, area)
    if coarser:
        names = {p: d for p, d in names.items() if p not in coarser}
        notes.append(
            f"each band read from its finest file; left out the coarser "
            f"cop{'ies' if len(coarser) > 1 else 'y'} {_file_names(coarser, paths)}"
        )
    m, order = _stack_sensor(names, given, eight_bit=byte * 2 > len(names))
    left_out = [p for p in names if p not in order]
    if left_out:
        what = f"bands of '{m.name}' ({', '.join(m.bands)})" if m else "bands of a known sensor"
        notes.append(f"left out {_file_names(left_out, paths)}: not {what}")
    sources = [_open_dataset(p) for p in order]
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
    da.attrs[BAND_FILES_ATTR] = [str(p) for p in order]
    if m is None:
        da.attrs["long_name"] = tuple(_file_bands({p: names[p] for p in order}, given))
    return da, np.concatenate(samples, axis=0), m, notes


def _file_names(some: list[Path], paths: list[Path]) -> str:
    """File names for a note, without the prefix that all of ``paths`` share ('T33UUP_2017...
    _B02_10m.jp2' is '...B02_10m.jp2', 'LC08_L1TP_..._B10.TIF' '...B10.TIF')."""
    prefix = os.path.commonprefix([p.name for p in paths])
    prefix = prefix[: max(prefix.rfind("_"), prefix.rfind("-")) + 1]
    cut = len(prefix) if len(prefix) >= 6 and len(paths) > 1 else 0
    return ", ".join(("..." if cut else "") + p.name[cut:] for p in some)


def _coarser_copies(names: dict[Path, str | None], area: dict[Path, float]) -> list[Path]:
    """The files of a band that finer files of the same band make redundant (Sentinel-2 L2A
    has B02 at 10, 20 and 60 m): those of each band but the finest, when they differ in pixel
    size. Files of one band and pixel size are refused: in several folders, as several scenes
    (a folder of scene folders)."""
    bands = _registry_bands()
    by_band: dict[str, list[Path]] = {}
    for p, description in names.items():
        band = _file_band(p, description, bands)
        if band is not None:
            by_band.setdefault(band, []).append(p)
    coarser: list[Path] = []
    for band, files in by_band.items():
        if len({area[p] for p in files}) < len(files):  # two files of one band and size
            folders = sorted({p.parent.name for p in files})
            if len(folders) > 1:
                raise RasterError(
                    f"the files are of several scenes: band {band} is in {len(files)} files "
                    f"of the same pixel size, in {len(folders)} folders "
                    f"({', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''})",
                    "give one scene's folder or band files, and run each scene on its own",
                )
            raise RasterError(
                f"band {band} is in {len(files)} files of the same pixel size "
                f"({_file_names(files, list(names))})",
                "keep one file of each band",
            )
        if len(files) > 1:
            finest = min(files, key=lambda p: area[p])
            coarser.extend(p for p in files if p != finest)
    return sorted(coarser)


def _stack_sensor(
    names: dict[Path, str | None], given: Modality | None, eight_bit: bool
) -> tuple[Modality | None, list[Path]]:
    """The sensor a list of single-band files is from, and its files in its band order.

    A scene's folder holds more than a sensor's layout takes (Landsat's panchromatic, thermal
    and quality bands; Sentinel-2's SCL or TCI): the files of the sensor's bands are kept, the
    others left out. Without ``given``, the sensor is the one that the band count and names
    point to (``detect_modality``) when each of its bands is in a file; else, of the sensors
    whose bands the files hold, one of the data type's kind (8-bit layouts for bytes, others for
    wider types) before the others, then the one with the most bands. Files that hold some of
    a sensor's bands, and no sensor whole, give None (``_named_subsets`` reads them).
    ``names``: each file's band description; ``eight_bit``: whether most files hold bytes (a
    quality band may be bytes alone)."""
    paths = list(names)
    some = [given.to_dict()] if given else _sensor_records()
    bands = _file_bands(names, given)
    named = [p for p, band in zip(paths, bands) if band is not None]  # the files of a band
    some_of_one = bool(band_subsets(some, [band for band in bands if band is not None]))
    if given is not None:
        if some_of_one and not _holds(given, names):
            return None, named
        return given, _files_in_order(given, names)
    try:
        counted: Modality | None = detect_modality(len(paths), _file_bands(names, None), None)
    except RasterError as err:
        counted, unknown = None, err
    if counted is not None and _holds(counted, names):
        return counted, _files_in_order(counted, names)
    held = [get_modality(n) for n in list_modalities()]
    held = [s for s in held if s.num_bands < len(paths) and _holds(s, names)]
    if not held:
        if some_of_one:
            return None, named
        if counted is None:
            raise unknown
        return counted, _files_in_order(counted, names)  # says which band is missing

    def rank(s: Modality) -> tuple[bool, int]:
        return ("8-bit" in s.units) == eight_bit, s.num_bands

    best = [s for s in held if rank(s) == max(map(rank, held))]
    if len(best) > 1:
        raise RasterError(
            f"the files hold the bands of {' and of '.join(repr(s.name) for s in best)}",
            "say which with {modality}",
        )
    return best[0], _files_in_order(best[0], names)


def _band_files(m: Modality, names: dict[Path, str | None]) -> dict[str, list[Path]]:
    """The files that hold each band of ``m`` (``names``: each file's band description)."""
    found = {p: _file_band(p, names[p], m.bands) for p in names}
    return {band: [p for p in names if found[p] == band] for band in m.bands}


def _holds(m: Modality, names: dict[Path, str | None]) -> bool:
    """Whether each band of ``m`` is in exactly one of the files."""
    return all(len(files) == 1 for files in _band_files(m, names).values())


def _files_in_order(m: Modality, names: dict[Path, str | None]) -> list[Path]:
    """The file of each band of ``m``, in ``m``'s order; an error names a band in no file or in
    several."""
    order = []
    for band, files in _band_files(m, names).items():
        if len(files) != 1:
            raise RasterError(
                f"cannot tell which file holds band {band} of '{m.name}' (found {len(files)})",
                f"name the files with their band (e.g. ..._{band}.tif), or give one file per "
                f"band of {', '.join(m.bands)}",
            )
        order.extend(files)
    return order


def _named_subsets(da: xr.DataArray, given: Modality | None) -> list[tuple[Modality, Modality]]:
    """When the file names its bands and they are some of a sensor's (of ``given``'s, when
    given): each such sensor's record for those bands in the file's order, with the sensor
    (``band_subsets``; the values choose, ``_closest_fitting``). Sentinel-2's 10 m bands exported
    alone were refused: no sensor of four bands is Sentinel-2, yet the wavelength-conditioned
    embedding reads any bands."""
    if given is not None and given.num_bands == da.sizes["band"]:
        return []
    sensors = {s.name: s for s in ([given] if given else map(get_modality, list_modalities()))}
    records = [s.to_dict() for s in sensors.values()]
    found = band_subsets(records, _descriptions(da), None if given else da.dtype)
    return [(_some_bands(sensors[n], b), sensors[n]) for n, b in found]


def _some_bands(sensor: Modality, bands: list[str]) -> Modality:
    """``sensor``'s record for some of its bands, named and described as such."""
    some = sensor.select(bands, name=subset_name(sensor.name, bands))
    return replace(some, description=f"{', '.join(bands)} of {sensor.description}")


def _picked_names(
    path: Path, whole: xr.DataArray, bands: list[int], given: Modality | None
) -> tuple[tuple[str, ...], Modality, str] | None:
    """Names for bands picked of a file whose bands carry none, when its band count is one
    sensor's (13: Sentinel-2 L1C) and it is that sensor (``given``, or its values fit), with
    the sensor and a note; else None (the picked bands are then detected on their own, as
    before). Named, they are read as what they are, some of that sensor's bands: 12 of
    EuroSAT's 13 (B10 left out) were read as L2A's 12 in L2A's order (B09 as B8A, three more
    off by one); bands 2, 3, 4, 8 were refused."""
    if any(_descriptions(whole)):
        return None
    sensors = [given] if given else [get_modality(n) for n in list_modalities()]
    found = picked_bands([s.to_dict() for s in sensors], whole.sizes["band"], bands)
    if found is None:
        return None
    sensor = given or get_modality(found[0])
    if (
        given is None
        and not scale_fit(_valid(_sample(path), whole.rio.nodata, None), whole.dtype, sensor).fits
    ):
        return None
    note = (
        f"bands {', '.join(map(str, bands))} of the file's {sensor.num_bands} ('{sensor.name}') "
        f"are its {', '.join(found[1])}"
    )
    return tuple(found[1]), sensor, note


def _closest_fitting(
    da: xr.DataArray,
    sample: np.ndarray,
    subsets: list[tuple[Modality, Modality]],
    baseline: str | None,
    source: Any = "",
) -> tuple[Modality, str]:
    """Of ``subsets``, the first whose statistics the values fit, unless another's fit them
    ``ORDER_MARGIN`` times closer (band means over its own: Landsat-8's B2, B3, B4 are 1.0x
    Landsat-8's and 8.4x Sentinel-2 L1C's, while L1C's and L2A's means differ by less: 0.85x
    and 1.4x on an L1C scene); else the first, refused or warned about by ``_check_scale``.
    A sensor whose product the path names (Sentinel-2's 'MSIL2A' in a .SAFE's name) comes
    first. With a note on what reading it means."""
    named = [s for s in subsets if _names_product(s[1], source)]
    subsets = named + [s for s in subsets if s not in named]
    fits = [(_fit(da, sample, s[0], baseline), s) for s in subsets]
    off = [(abs(math.log(f.factor)), s) for f, s in fits if f.fits and f.factor > 0]
    if not off:
        return subsets[0][0], _subset_note(*subsets[0], [])
    margin = math.log(ORDER_MARGIN)
    closer = [o for o in off if o[0] + margin < off[0][0]]
    best = min(closer, key=lambda o: o[0]) if closer else off[0]
    others = [s[1].name for d, s in off if s is not best[1] and d < best[0] + margin]
    return best[1][0], _subset_note(*best[1], others)


def _names_product(sensor: Modality, source: Any) -> bool:
    """Whether a path of ``source`` names one of the sensor's products (its ``extra``'s
    "products": 'MSIL2A' in 'S2A_MSIL2A_20230612T102559_N0509_..._.SAFE/.../R20m')."""
    products = {p.upper() for p in sensor.extra.get("products", [])}
    paths = source if isinstance(source, (list, tuple)) else [source]
    return any(products & set(re.split(r"[_\-.\s/\\]", str(p).upper())) for p in paths)


def _subset_note(m: Modality, parent: Modality, others: list[str]) -> str:
    """What reading some of a sensor's bands means, and which sensors the values fit as well."""
    note = (
        f"its bands {', '.join(m.bands)} are {m.num_bands} of the {parent.num_bands} of "
        f"'{parent.name}', read alone (by their wavelengths where the model has no embedding "
        "of them)"
    )
    if others:
        note += f"; the values fit those of {' and '.join(map(repr, others))} too: to read "
        note += "them so, choose that sensor"
    return note


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
    sensors = _sensor_records()
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


def _folder_rasters(folder: Path) -> list[Path]:
    """A scene's folder (its band files, as Landsat and Sentinel-2 scenes are downloaded): the
    rasters in it, by name; where it has none, those of its subfolders (Sentinel-2 L2A's
    IMG_DATA holds R10m, R20m and R60m). A Sentinel-2 product's .SAFE folder: its IMG_DATA."""
    granules = sorted(folder.glob("GRANULE/*/IMG_DATA")) if folder.suffix.upper() == ".SAFE" else []
    if len(granules) == 1:
        folder = granules[0]

    def rasters(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in BAND_FILE_SUFFIXES)

    found = rasters(folder) or [
        p for sub in sorted(folder.iterdir()) if sub.is_dir() for p in rasters(sub)
    ]
    if not found:
        raise RasterError(
            f"{folder} is a folder with no raster files ({', '.join(BAND_FILE_SUFFIXES)})",
            "give a raster file, or the folder of a scene's band files",
        )
    return found


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


def _raster_path(path: str | Path) -> Path:
    """A raster's path as a Path, a GDAL dataset name as written (``GdalName``)."""
    return GdalName(str(path)) if GDAL_NAME.match(str(path)) else Path(path)


def _existing(path: str | Path) -> Path:
    """An existing raster file, or a GDAL dataset name ('GPKG:scenes.gpkg:t2020', a
    sub-dataset of a container; '/vsizip//data/scene.zip/B04.tif'), which GDAL then opens."""
    if GDAL_NAME.match(str(path)):
        return _raster_path(path)
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
    named = sensor_bands(m.to_dict(), _descriptions(da))
    if named is None or len(named) != m.num_bands or named == list(m.bands):
        return None
    return [named.index(b) for b in m.bands]


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
    paths = [_raster_path(p) for p in (source if isinstance(source, (list, tuple)) else [source])]
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
    named = sensor_bands(fit.modality.to_dict(), _descriptions(da)) is not None
    if named or not fit.spread >= ORDER_SPREAD:
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


def _sensor_records() -> list[dict[str, Any]]:
    """Every registered sensor's record, as the protocol's rules take them."""
    return [get_modality(n).to_dict() for n in list_modalities()]


def _registry_bands() -> list[str]:
    """Every band name of the registry, longest first (so that 'B8A' is found before 'B8')."""
    names = {b for n in list_modalities() for b in get_modality(n).bands}
    return sorted(names, key=len, reverse=True)


def _file_bands(names: dict[Path, str | None], given: Modality | None) -> list[str | None]:
    """The band each single-band file holds (``names``: their band descriptions), of
    ``given``'s or of any sensor's."""
    bands = given.bands if given else _registry_bands()
    return [_file_band(p, description, bands) for p, description in names.items()]


def _file_band(path: Path, description: str | None, bands: Sequence[str]) -> str | None:
    """The one of ``bands`` a single-band file holds: its description, else a band name in its
    file name."""
    label = (band_label(description) or "").upper()
    if label in {b.upper() for b in bands}:
        return next(b for b in bands if b.upper() == label)
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
