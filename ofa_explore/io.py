"""Rasters in, xarray out: open any GDAL raster (or a set of single-band files) lazily as a
DataArray with band names, CRS, transform and nodata, and work out which modality it is and in
which units its values are stored.

Nothing here reads a whole raster: pixels are read window by window by the inference engine;
detection looks at a decimated sample. Below it: ``rasterfiles`` (GDAL's files, samples of their
values, alpha bands), ``band_files`` (a scene's single-band files) and ``detection`` (the sensor
a header points to).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from .band_files import folder_rasters, open_stack, product_folder
from .detection import detect_modality as detect_modality  # re-exported: the public rule
from .detection import likely_modalities, sensor_records, some_bands_hint
from .enmap_product import band_tags, product_image, reflectance_scale
from .errors import warn_user
from .modalities import (
    Modality,
    get_modality,
    hyperspectral_modality,
    list_modalities,
    some_bands,
)
from .protocol import (
    band_names,
    band_subsets,
    band_wavelengths,
    bands_among_others,
    count,
    is_8bit,
    names_sensor_bands,
    picked_bands,
    sensor_bands,
    sensor_candidates,
    sensors_among,
)
from .rasterfiles import (
    SAMPLE_SIDE,
    RasterError,
    alpha_band,
    existing_raster,
    open_dataset,
    open_file,
    raster_path,
    read_sample,
    select_bands,
    transparent_value,
)
from .scale import (
    ODD_SPREAD,
    ORDER_MARGIN,
    ORDER_SPREAD,
    ScaleFit,
    detect_conversion,
    impossible_values_note,
    scale_fit,
    span,
)

ABSURD = 1e30  # a value this large is a float nodata marker (-3.4e38), not a measurement
CONVERSION_ATTR = "ofa_conversion"
MODALITY_ATTR = "ofa_modality"
FILL_ATTR = "ofa_fill"  # a value that marks a pixel as nodata when every band has it (a file
# without a nodata value whose integer pixels are 0 in every band: Landsat's scene borders)
# whether the values fitted the sensor's statistics when the file was opened (absent where
# open_raster did not judge them: a cube tagged with its wavelengths)
FITS_ATTR = "ofa_fits"
# how a file is given a CRS, in the warning of a raster without one
ASSIGN_CRS = "gdal_edit.py -a_srs EPSG:32633 FILE"
NOTES_ATTR = "ofa_notes"  # what detection decided, one sentence each (results and tags repeat it)
# a single file's bands (1-based) in the order the DataArray holds them: some (picked, without
# an alpha band), or in another order (by name, by the values: ``_stored_order``)
FILE_BANDS_ATTR = "ofa_file_bands"


class ScaleWarning(UserWarning):
    """The values do not fit the statistics of the modality that was asked for."""


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
    if isinstance(source, (str, Path)):  # MTD_MSIL*.xml, SNAP's .dim; EnMAP's METADATA.XML
        source = product_folder(Path(source)) or product_image(Path(source)) or source
    folder = isinstance(source, (str, Path)) and (
        Path(source).is_dir() or (Path(source).suffix.lower() == ".zip" and Path(source).is_file())
    )
    if folder:  # a scene's folder, or its zip as downloaded
        source = folder_rasters(Path(cast("str | Path", source)))
    read_notes: list[str] = []
    subsets: list[tuple[Modality, Modality]] = []
    whole_sensor: Modality | None = None  # the sensor of a file whose bands were picked
    alpha, transparent = None, None  # a file's alpha band; what its transparent pixels hold
    if isinstance(source, (list, tuple)):
        paths = [existing_raster(p) for p in source]
        if not paths:
            raise RasterError("empty list of files", "give one raster or its single-band files")
        if len(paths) == 1:
            return open_raster(paths[0], given, nodata, bands)
        if bands is not None:
            raise RasterError(
                "{bands} picks bands of one multi-band file, not of a list of single-band files",
                "give only the files of the bands you want",
            )
        da, sample, stack, read_notes = open_stack(paths, given, folder)
        if stack is None:  # some of a sensor's bands, a file each
            subsets = _named_subsets(da, given)
        m = stack or subsets[0][0]
        tagged_cube, candidates = False, [m]
    else:
        path = existing_raster(cast("str | Path", source))  # one file (lists are handled above)
        da = whole = open_file(path)
        if bands is not None:
            bands = _check_bands(bands, da.sizes["band"], path)
        else:
            bands = _without_other_layers(da, given, read_notes, path)
        alpha, with_alpha = alpha_band(path), None
        if alpha is not None and alpha not in (bands or []):
            # a mask, not imagery: RGBA orthophotos were read as NAIP's R, G, B and NIR
            if bands is None:
                bands = [b for b in range(1, da.sizes["band"] + 1) if b != alpha]
                read_notes.append(f"left out band {alpha}: the file's alpha band (transparency)")
            with_alpha = read_sample(path, bands=[*bands, alpha])  # one read for both
            transparent = transparent_value(with_alpha)
        if bands is not None:
            da = select_bands(da, bands)
            picked = _picked_names(path, whole, bands, given)
            if picked is not None:
                da.attrs["long_name"], whole_sensor, note = picked
                read_notes.append(note)
        sample = read_sample(path, bands=bands) if with_alpha is None else with_alpha[:-1]
        tagged = file_wavelengths(path, bands=bands)
        tagged_cube = (
            tagged is not None
            and (given is None or given.num_bands == len(tagged[1]) < da.sizes["band"])
            and not names_sensor_bands(sensor_records(), _descriptions(da))
        )
        if tagged is not None and tagged_cube:
            waves, good = tagged
            marker = cast("float | None", da.rio.nodata if nodata == KEEP else nodata)
            empty = [
                i for i in good if np.isnan(without_nodata(sample[i : i + 1], marker, None)).all()
            ]
            if empty and len(empty) < len(good):  # a product's water-vapour bands, all nodata
                numbers = [bands[i] if bands else i + 1 for i in empty]
                read_notes.append(
                    f"left out {count(len(numbers), 'band')} {_numbers_text(numbers)}: no "
                    "data in any pixel of a sample"
                )
                waves = [w for w, i in zip(waves, good) if i not in empty]
                good = [i for i in good if i not in empty]
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
            f"{_name(source)} has {count(da.sizes['band'], 'band')} but modality '{m.name}' "
            f"expects {count(m.num_bands, 'band')} ({band_names(m.bands)})",
            "pick the matching {modality}"
            + (
                some_bands_hint(da.sizes["band"], m)
                if da.sizes["band"] < m.num_bands and m.kind != "hyperspectral"
                else ""
            )
            + ", or give the bands in that order with {bands}",
            modality=m.name,
            bands=da.sizes["band"],
        )
    if da.rio.crs is None:
        warn_user(
            f"{_name(source)} has no CRS: continuing in pixel coordinates, so outputs "
            f"will not be georeferenced. Assign one (e.g. {ASSIGN_CRS}) to get georeferenced "
            "outputs."
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
    valid = without_nodata(sample, nodata, fill)
    if not np.isfinite(valid).any() and not isinstance(source, (list, tuple)):
        side = (min(SAMPLE_SIDE, da.sizes["y"]), min(SAMPLE_SIDE, da.sizes["x"]))
        full = read_sample(
            raster_path(cast("str | Path", source)), shape=side, bands=bands
        )  # confirm on a full decimated read
        valid = without_nodata(full, nodata, fill)
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
        conversion = _product_conversion(source, m) or detect_conversion(valid, da.dtype, m)
    else:
        baseline = processing_baseline(source)
        if subsets:
            chosen, note = _closest_fitting(da, valid, subsets, baseline, source)
            candidates = [chosen]
            notes.append(note)
        fit = _check_scale(da, valid, candidates, given is not None, source, baseline)
        if given is None:
            fit = _by_band_order(da, valid, fit, baseline)
        stored = _stored_order(da, valid, fit, baseline)
        if stored is not None:
            fit, order = stored
            da = da.isel(band=order)
        m, conversion = fit.modality, fit.conversion
        da.attrs[FITS_ATTR] = fit.fits
        notes.append(fit.note())
        _warn_of_odd_bands(fit, source)
        if not isinstance(source, (list, tuple)):
            da = _order_bands(da, m)
    impossible = impossible_values_note(valid, da.dtype, conversion, m, _name(source))
    if impossible is not None:  # below zero, or wrapped around from there
        warn_user(impossible, ScaleWarning)
        notes.append(impossible)
    if not isinstance(source, (list, tuple)):  # rioxarray numbers a file's bands from 1
        da.attrs[FILE_BANDS_ATTR] = [int(b) for b in da["band"].values]
    da = da.assign_coords(band=list(m.bands))
    da.attrs[MODALITY_ATTR] = m.to_dict()
    da.attrs[CONVERSION_ATTR] = conversion
    da.attrs[NOTES_ATTR] = notes
    da.attrs["source"] = (
        str(source) if not isinstance(source, (list, tuple)) else [str(p) for p in source]
    )
    return on_its_grid(da)


def on_its_grid(da: xr.DataArray) -> xr.DataArray:
    """``da`` on the grid its x and y coordinates give, north up: rioxarray keeps a file's
    transform in ``spatial_ref`` and gives it back after ``coarsen``, a step (``isel(x=slice(None,
    None, 2))``) or y turned around, so outputs lay on the file's pixel size (a map of half the
    area, or of the area south of it) without a word. A raster with y ascending (a south-up
    file, or a DataArray turned) is read turned north up, as the model saw its imagery."""
    if min(da.sizes.get("x", 0), da.sizes.get("y", 0)) < 2 or not {"x", "y"} <= set(da.coords):
        return da  # no grid to read from coordinates: as given
    held, given = da.rio.transform(), da.rio.transform(recalc=True)
    if given.e > 0 or given.a < 0:  # y ascending, x descending: north up, east right
        flip = slice(None, None, -1)
        da = da.isel(y=flip if given.e > 0 else slice(None), x=flip if given.a < 0 else slice(None))
        held, given = None, da.rio.transform(recalc=True)
    tolerance = 1e-3 * min(abs(given.a), abs(given.e))  # of a pixel
    if held is not None and all(abs(h - g) <= tolerance for h, g in zip(held[:6], given[:6])):
        return da
    return da.rio.write_transform(given)


def file_wavelengths(
    path: str | Path, bands: Sequence[int] | None = None
) -> tuple[list[float], list[int]] | None:
    """Band centre wavelengths (µm) that a file carries per band, and the indices of the bands
    it does not flag as bad (``bbl`` = 0); ``None`` unless every band has a wavelength tag.
    ``bands`` (1-based numbers) looks at those bands only, in that order; indices count in them."""
    with open_dataset(raster_path(path)) as src:
        tags = [src.tags(i) for i in (bands or range(1, src.count + 1))]
    found = band_wavelengths(tags)
    product = band_tags(path) if found is None else None  # an EnMAP product's METADATA.XML
    if product is not None and len(product) >= len(tags):
        return band_wavelengths([product[i - 1] for i in (bands or range(1, len(tags) + 1))])
    return found


def _product_conversion(source: Any, m: Modality) -> dict[str, Any] | None:
    """How an EnMAP product's numbers become the modality's units, from the gain and offset its
    METADATA.XML gives (reflectance = number x gain + offset); None for other files, or where
    the numbers are in those units already (gain 0.0001, offset 0, as reflectance x 10000)."""
    tags = band_tags(source) if isinstance(source, (str, Path)) else None
    if tags is None:
        return None
    scale = reflectance_scale(tags)
    if scale is None:
        raise RasterError(
            f"{source}: its METADATA.XML gives the bands different gains and offsets",
            "make them reflectance first, e.g. with the EnMAP-Box's 'Import EnMAP L2A product'",
        )
    gain, offset = scale
    if math.isclose(gain, m.scale) and math.isclose(offset, m.offset, abs_tol=1e-12):
        return None
    return {"kind": "affine", "scale": gain / m.scale, "offset": (offset - m.offset) / m.scale}


def raster_modality(da: xr.DataArray) -> Modality:
    """The modality record ``open_raster`` attached."""
    if MODALITY_ATTR not in da.attrs:
        raise RasterError(
            "this DataArray was not opened with ofa_explore.io.open_raster",
            "open its file with open_raster(path, modality=...), or give the DataArray to "
            "predict_raster or change(), which read it as such a file (a scene of your own "
            "too: stackstac's, odc-stac's)",
        )
    return Modality.from_dict(da.attrs[MODALITY_ATTR])


def without_nodata(sample: np.ndarray, nodata: float | None, fill: float | None) -> np.ndarray:
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


def _check_bands(bands: Sequence[int], total: int, path: Path) -> list[int]:
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
        if not 1 <= band <= total:
            raise RasterError(
                f"band {band} does not exist: {path.name} has {count(total, 'band')} "
                "(bands are numbered from 1)",
                "check {bands}",
                band=band,
            )
        if band in bands[:i]:
            raise RasterError(
                f"band {band} is picked twice",
                f"pick each of the {total} bands of {path.name} at most once in {{bands}}",
                band=band,
            )
    return [int(b) for b in bands]


def _without_other_layers(
    da: xr.DataArray, given: Modality | None, notes: list[str], path: Path
) -> list[int] | None:
    """The numbers of a file's bands that are all of a sensor's (of ``given``'s, when given),
    where the file names the others as none of them (``bands_among_others``: an Earth Engine
    export's AOT, SCL, TCI and QA layers), with a note of what was left out; else None."""
    names = _descriptions(da)
    sensors = [given.to_dict()] if given else sensor_records()
    kept, why = bands_among_others(sensors, names), ", which the others are"
    if kept is None and given is None and names_sensor_bands(sensors, names):
        kept, why = _sensor_among_named(da, names, path) or (None, "")
    if kept is None:
        return None
    others = [i for i in range(1, len(names) + 1) if i not in kept]
    shown = ", ".join(str(names[i - 1]) for i in others[:6])
    more = f" and {len(others) - 6} more" if len(others) > 6 else ""
    band, them = ("band", "it") if len(others) == 1 else ("bands", "them")
    notes.append(
        f"left out {band} {_numbers_text(others)} ({shown}{more}): the file names {them} as "
        f"none of the sensor's bands{why}"
    )
    return kept


def _sensor_among_named(
    da: xr.DataArray, names: list[str | None], path: Path
) -> tuple[list[int], str] | None:
    """Of a file whose band names are all some sensor's (Earth Engine's Landsat-8 B1 ... B11
    are 11 of Sentinel-2's 13 by name), the numbers of all of another sensor's bands among
    them (Landsat-8 Level-1's B1-B7 and B9), when band by band their means follow that
    sensor's (within ``ORDER_SPREAD``) and the first reading's spread ``ORDER_MARGIN`` times
    wider (Landsat-8's B1 ... B11 read as Sentinel-2's spread 1013x), with why, a clause for
    the note; None otherwise."""
    records = sensor_records()
    subsets, wholes = band_subsets(records, names, da.dtype), sensors_among(records, names)
    kind = [w for w in wholes if ("8-bit" in get_modality(w[0]).units) == is_8bit(da.dtype)]
    wholes = kind or wholes  # of the data type's kind first, as ``band_subsets`` ranks them
    if not subsets or not wholes:
        return None
    sample, baseline = (
        without_nodata(read_sample(path), da.rio.nodata, None),
        processing_baseline(path),
    )
    first = scale_fit(sample, da.dtype, some_bands(get_modality(subsets[0][0]), subsets[0][1]))
    found = []
    for name, numbers in wholes:
        sensor = get_modality(name)
        held = sensor_bands(sensor.to_dict(), [names[n - 1] for n in numbers]) or []
        index = [numbers[held.index(band)] - 1 for band in sensor.bands]
        fit = scale_fit(sample[index], da.dtype, sensor, baseline)
        if fit.fits and fit.spread < ORDER_SPREAD and fit.spread * ORDER_MARGIN <= first.spread:
            why = (
                f"; band by band the others' means follow those of '{name}' (within "
                f"{fit.spread:.1f}x) rather than those of '{first.modality.name}' "
                f"({first.spread:.0f}x apart), whose band names they all are"
            )
            found.append((fit.spread, numbers, why))
    if not found:
        return None
    _, numbers, why = min(found)
    return numbers, why


def _numbers_text(numbers: Sequence[int]) -> str:
    """Band numbers as GIS users read them: '13-23', '8, 10-12'."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


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
    return [(some_bands(sensors[n], b), sensors[n]) for n, b in found]


def _picked_names(
    path: Path, whole: xr.DataArray, bands: list[int], given: Modality | None
) -> tuple[tuple[str, ...], Modality, str] | None:
    """Names for bands picked of a file whose bands carry none, when its band count is one
    sensor's (13: Sentinel-2 L1C) and it is that sensor (``given``, or its values fit), with
    the sensor and a note; else None (the picked bands are then detected on their own, as
    before). Named, they are read as what they are, some of that sensor's bands: 12 of
    EuroSAT's 13 (B10 left out) were read as L2A's 12 in L2A's order (B09 as B8A, three more
    off by one); bands 2, 3, 4, 8 were refused. A file in another order of the sensor's bands
    (``_stored_order``: Sentinel-2's by wavelength, B8A after B08) is named in that order."""
    if any(_descriptions(whole)):
        return None
    sensors = [given] if given else [get_modality(n) for n in list_modalities()]
    found = picked_bands([s.to_dict() for s in sensors], whole.sizes["band"], bands)
    if found is None:
        return None
    sensor, names, how = given or get_modality(found[0]), found[1], ""
    if given is None or sensor.extra.get("band_orders"):  # the values say if, and in what order
        values = without_nodata(read_sample(path), whole.rio.nodata, None)
        baseline = processing_baseline(path)
        fit = scale_fit(values, whole.dtype, sensor, baseline)
        if given is None and not fit.fits:  # the values must fit the sensor the count names
            return None
        stored = _stored_order(whole, values, fit, baseline)
        if stored is not None:
            held = dict(zip(stored[1], sensor.bands))  # the file's band index -> sensor band
            names = [held[number - 1] for number in bands]
            how = f" ({stored[0].stored_as}, as the file holds them)"
    note = (
        f"bands {', '.join(map(str, bands))} of the file's {sensor.num_bands} ('{sensor.name}') "
        f"are its {', '.join(names)}{how}"
    )
    return tuple(names), sensor, note


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
    if any(f.fits and f.dark is None for f, _ in fits):  # L1C's blue this dark: another product
        fits = [(f, s) for f, s in fits if f.dark is None]
    off = [(abs(math.log(f.factor)), s) for f, s in fits if f.fits and f.factor > 0]
    if not off:
        return subsets[0][0], subset_note(*subsets[0], [])
    margin = math.log(ORDER_MARGIN)
    closer = [o for o in off if o[0] + margin < off[0][0]]
    best = min(closer, key=lambda o: o[0]) if closer else off[0]
    # band by band (as ``_by_band_order``): Earth Engine's Landsat-8 B1 ... B7 were 7 of
    # Sentinel-2's 13 (B5, Landsat's NIR, as the red edge): 5.2x apart, against 1.0x
    spread = next(f.spread for f, s in fits if s is best[1])
    flatter = [(f, s) for f, s in fits if f.fits and f.spread * ORDER_MARGIN <= spread]
    if spread >= ORDER_SPREAD and flatter:
        fit, chosen = min(flatter, key=lambda fs: fs[0].spread)
        note = subset_note(*chosen, []) + (
            f"; band by band its means follow this sensor's (within {fit.spread:.1f}x) rather "
            f"than those of '{best[1][1].name}' ({spread:.1f}x apart), whose band names they "
            "carry too"
        )
        return chosen[0], note
    others = [s[1].name for d, s in off if s is not best[1] and d < best[0] + margin]
    return best[1][0], subset_note(*best[1], others)


def _names_product(sensor: Modality, source: Any) -> bool:
    """Whether a path of ``source`` names one of the sensor's products (its ``extra``'s
    "products": 'MSIL2A' in 'S2A_MSIL2A_20230612T102559_N0509_..._.SAFE/.../R20m'; or the
    products that hold its bands under their own names, "product_bands": 'HLS.L30', every
    word of it in the path)."""
    extra = sensor.extra
    products = [
        str(p).upper().split(".")
        for p in [*extra.get("products", []), *extra.get("product_bands", {})]
    ]
    paths = source if isinstance(source, (list, tuple)) else [source]
    for path in paths:
        words = set(re.split(r"[_\-.\s/\\]", str(path).upper()))
        if any(set(product) <= words for product in products):
            return True
    return False


def subset_note(m: Modality, parent: Modality, others: list[str]) -> str:
    """What reading some of a sensor's bands means, and which sensors the values fit as well."""
    note = (
        f"its bands {band_names(m.bands)} are {m.num_bands} of the {parent.num_bands} of "
        f"'{parent.name}', read alone (by their wavelengths where the model has no embedding "
        "of them)"
    )
    if others:
        note += f"; the values fit those of {' and '.join(map(repr, others))} too: to read "
        note += "them so, choose that sensor"
    return note


# ---------------------------------------------------------------- detection


# ---------------------------------------------------------------- helpers
def _as_modality(modality: str | Modality | None) -> Modality | None:
    if modality is None or isinstance(modality, Modality):
        return modality
    return get_modality(modality)


def _descriptions(da: xr.DataArray) -> list[str | None]:
    names = da.attrs.get("long_name")
    if isinstance(names, str):
        names = (names,)
    return list(names) if names else []


def _order_bands(da: xr.DataArray, m: Modality) -> xr.DataArray:
    """Reorder bands to the modality's order when the file names them in another order."""
    order = band_order(da, m)
    return da if order is None else da.isel(band=order)


def band_order(da: xr.DataArray, m: Modality) -> list[int] | None:
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
    order = band_order(da, m)
    return scale_fit(sample if order is None else sample[order], da.dtype, m, baseline)


def processing_baseline(source: Any) -> str | None:
    """The processing baseline a product names: a ``PROCESSING_BASELINE`` tag (GDAL's Sentinel-2
    driver writes it, and copies keep it), else the ``_Nxxyy_`` of a Sentinel-2 product's name
    in the path ('S2B_MSIL2A_20230612T102559_N0509_R108_T32UMU_...SAFE/.../B04.jp2')."""
    paths = [raster_path(p) for p in (source if isinstance(source, (list, tuple)) else [source])]
    for path in paths:
        with open_dataset(path) as src:
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
            warn_user(
                f"{_name(source)}'s values {values} are {fits[0].mismatch()} the statistics "
                f"of {expected}: the outputs will not mean much unless the values are "
                "converted to those units",
                ScaleWarning,
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
        f"lists them{some_bands_hint(m.num_bands)})",
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


def _warn_of_odd_bands(fit: ScaleFit, source: Any) -> None:
    """A ``ScaleWarning`` when the band means follow the sensor's nowhere near (``ODD_SPREAD``):
    Earth Engine's Landsat-8 B1 ... B11, which only Sentinel-2's band names cover, read as
    Sentinel-2's spread 1013x."""
    if fit.spread >= ODD_SPREAD:
        warn_user(
            f"{_name(source)}'s band means, each over those of '{fit.modality.name}', spread "
            f"{fit.spread:.0f}x ({fit.odd_bands()}), where a scene of it spreads under 100x: "
            "the bands may be another sensor's, or in another order, and the outputs will not "
            "mean much; name the file's bands, or its sensor",
            ScaleWarning,
        )


def _name(source: Any) -> str:
    """A raster in a sentence: its path, or "the 15-file scene" ("15 files's band means")."""
    if isinstance(source, (list, tuple)):
        return f"the {len(source)}-file scene"
    return str(source)


# how much more closely a band must follow its anchor (``extra.follows``) in another order,
# and how closely at least: B8A follows B07 at 0.94 or more, and by 0.028 or more over the band
# of the other order in its place, on the shared OSCD dates and BigEarthNet patches; a scene
# of water, whose near-infrared bands are noise, follows nothing closely
FOLLOWS_MARGIN = 0.02
FOLLOWS_AT_LEAST = 0.9


def _follows(sample: np.ndarray, m: Modality, index: list[int]) -> float:
    """How closely, pixel by pixel, the file's band at the place of the band the sensor's
    ``extra.follows`` names follows its anchor's (correlation), the file's bands read as the
    sensor's in ``index`` (the file's band of each sensor band); nan without such a rule or
    enough pixels."""
    rule = m.extra.get("follows")
    if not rule or rule["band"] not in m.bands or rule["anchor"] not in m.bands:
        return math.nan
    band = sample[index[m.bands.index(rule["band"])]].ravel()
    anchor = sample[index[m.bands.index(rule["anchor"])]].ravel()
    ok = np.isfinite(band) & np.isfinite(anchor)
    if ok.sum() < 16 or band[ok].std() == 0 or anchor[ok].std() == 0:
        return math.nan
    return float(np.corrcoef(band[ok], anchor[ok])[0, 1])


def _stored_order(
    da: xr.DataArray, sample: np.ndarray, fit: ScaleFit, baseline: str | None
) -> tuple[ScaleFit, list[int]] | None:
    """When a file that names none of its bands holds all of the sensor's bands in another
    order that files use (``extra.band_orders``: Sentinel-2 L1C's 13 by wavelength, B8A after
    B08, as OSCD stores them, where EuroSAT's order puts it last) and its band means follow that
    order: the fit in it and the file's band indices in the sensor's order. Read in EuroSAT's
    order, such a file had B8A as B09, B09 as the cirrus band B10, and so on, without a word.
    As between sensors (``_by_band_order``): the sensor's own order must spread its band means
    ``ORDER_SPREAD`` or more, and the other ``ORDER_MARGIN`` times less. In signed units (dB),
    where means do not spread: the sensor's own order must break a band's brightness over
    another (``extra.brighter``: VV over VH; VH before VV, as a stack of files sorted by name
    holds them, was read as VV and VH), and the other keep it. Where the means do not tell,
    a band that follows another pixel by pixel as only it does (``extra.follows``: B8A with
    B07) does: the other order must put a band there that follows it ``FOLLOWS_MARGIN`` more
    closely, its means no further apart (Sentinel-2 L2A stacked in name order, B8A last)."""
    m = fit.modality
    signed = math.isnan(fit.spread)
    if any(_descriptions(da)) or da.sizes["band"] != m.num_bands:
        return None
    own = _follows(sample, m, list(range(m.num_bands)))
    found = []
    for order in m.extra.get("band_orders", []):
        if sorted(order["bands"]) != sorted(m.bands):  # some of the sensor's bands (a subset)
            continue
        index = [order["bands"].index(band) for band in m.bands]
        other = scale_fit(sample[index], da.dtype, m, baseline)
        twin = _follows(sample, m, index)
        if signed:
            rule = m.extra.get("brighter") or {}
            follows = fit.dimmer_than_expected() and not other.dimmer_than_expected()
            why = (
                f"read in this sensor's order its {rule.get('band')} would be dimmer than its "
                f"{rule.get('than')}, which is brighter in no scene of it"
            )
        elif fit.spread >= ORDER_SPREAD and other.spread * ORDER_MARGIN <= fit.spread:
            follows, why = (
                True,
                (
                    f"their means follow this sensor's bands in that order (within "
                    f"{other.spread:.1f}x) rather than in its own ({fit.spread:.0f}x apart)"
                ),
            )
        else:  # pixel by pixel a band follows its anchor there, and the means are no worse
            rule = m.extra.get("follows") or {}
            closely = twin >= max(FOLLOWS_AT_LEAST, own + FOLLOWS_MARGIN)
            follows = closely and other.spread <= fit.spread
            why = (
                f"pixel by pixel the band in {rule.get('band')}'s place in that order follows "
                f"{rule.get('anchor')} as only {rule.get('band')} does (correlation "
                f"{twin:.3f}, against {own:.3f} in this sensor's own order)"
            )
        if other.fits and follows:
            found.append((replace(other, stored_as=order["name"], stored_why=why), index))
    return found[0] if found else None
