"""A scene as single-band files, as Landsat and Sentinel-2 scenes are downloaded (a folder, a
list, a .SAFE product): which files hold which sensor's bands, which are left out and why, and
the bands stacked lazily on the finest grid among them."""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import rioxarray
import xarray as xr
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT

from .detection import detect_modality, registry_bands, sensor_records
from .modalities import Modality, get_modality, list_modalities
from .protocol import (
    band_key,
    band_label,
    band_names,
    band_subsets,
    common_names,
    is_8bit,
    sensor_label,
)
from .rasterfiles import SAMPLE_SIDE, RasterError, open_dataset, raster_path, read_sample

# the rasters a scene's folder is read from (.img: ENVI, as in SNAP's .data folders, or ERDAS)
BAND_FILE_SUFFIXES = (".tif", ".tiff", ".jp2", ".img")
BAND_FILES_ATTR = "ofa_band_files"  # a scene read from band files: the file of each band, in order


def product_folder(path: Path) -> Path | None:
    """The folder of band files that a product's header file stands for, read as the product,
    all its bands: a Sentinel-2 product's MTD_MSIL1C.xml or MTD_MSIL2A.xml (which GDAL's driver
    opens as a container of one raster a resolution) its .SAFE folder; SNAP's BEAM-DIMAP
    header (a .dim, which GDAL does not read) its .data folder of ENVI band files. None for
    any other path."""
    name = path.name.upper()
    if name.startswith("MTD_MSIL") and name.endswith(".XML") and path.is_file():
        return path.parent
    if path.suffix.lower() == ".dim" and path.with_suffix(".data").is_dir():
        return path.with_suffix(".data")
    return None


def folder_rasters(folder: Path) -> list[Path]:
    """A scene's folder (its band files, as Landsat and Sentinel-2 scenes are downloaded): the
    rasters in it, by name; where it has none, those of its subfolders (Sentinel-2 L2A's
    IMG_DATA holds R10m, R20m and R60m). A Sentinel-2 product's .SAFE folder: its IMG_DATA.
    A zip of one (a Sentinel-2 product as downloaded): the same files in it, read by GDAL."""
    if folder.is_file():
        return _zip_rasters(folder)
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


def _zip_rasters(archive: Path) -> list[Path]:
    """The band files of the scene in a zip, as GDAL dataset names ('/vsizip//data/S2A_...zip/
    S2A_....SAFE/GRANULE/.../IMG_DATA/R10m/..._B02_10m.jp2'): those under IMG_DATA (a
    Sentinel-2 product), else those of the shallowest folder that holds rasters."""
    try:
        with zipfile.ZipFile(archive) as z:
            members = sorted(m for m in z.namelist() if m.lower().endswith(BAND_FILE_SUFFIXES))
    except zipfile.BadZipFile as err:
        raise RasterError(f"{archive} is not a readable zip ({err})", "download it again") from None
    found = [m for m in members if "/IMG_DATA/" in f"/{m}"]
    if not found and members:
        top = min(m.count("/") for m in members)
        found = [m for m in members if m.count("/") == top]
    if not found:
        raise RasterError(
            f"{archive} is a zip with no raster files ({', '.join(BAND_FILE_SUFFIXES)})",
            "give a raster file, or the zip or folder of a scene's band files",
        )
    return [raster_path(f"/vsizip/{archive.resolve()}/{m}") for m in found]


def open_stack(paths: list[Path], given: Modality | None, folder: bool = False):
    """Single-band files -> one lazy DataArray on the finest grid, in the modality's band order,
    with a note on the files left out (see ``_stack_sensor``); or, when they are some of a
    sensor's bands, in the order given, the bands named (modality None: ``io`` reads them as
    some of a sensor's).
    A multi-band file is refused (a list or folder of scenes would otherwise read as some
    sensor's bands), except in a ``folder`` that holds two or more single-band files: there it
    is a scene's extra (Sentinel-2's TCI.jp2), left out with a note."""
    names, counts, area, byte = {}, {}, {}, 0  # description, band count, pixel area; bytes
    for p in paths:
        with open_dataset(p) as src:
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
    product = _product_bands(list(names), given)
    if product is not None:
        names, note = product
        notes.append(note)
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
        what = f"bands of '{m.name}' ({band_names(m.bands)})" if m else "bands of a known sensor"
        notes.append(f"left out {_file_names(left_out, paths)}: not {what}")
    sources = [open_dataset(p) for p in order]
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
            read_sample(
                src, shape=(min(SAMPLE_SIDE, finest.height), min(SAMPLE_SIDE, finest.width))
            )
        )
    da = xr.concat(cast("list[xr.DataArray]", arrays), dim="band")
    da.attrs[BAND_FILES_ATTR] = [str(p) for p in order]
    if m is None:
        da.attrs["long_name"] = tuple(_file_bands({p: names[p] for p in order}, given))
    return da, np.concatenate(samples, axis=0), m, notes


def _product_bands(
    paths: list[Path], given: Modality | None
) -> tuple[dict[Path, str | None], str] | None:
    """Band files of a product that names a sensor's bands its own way (``extra.product_bands``:
    HLS L30's B05 is Sentinel-2's B8A): each kept file with the sensor's band as its name, and
    a note on what was read and left out; None when the files are of no such product. Read by
    their own names, HLS L30's B05-B07 (near and shortwave infrared) were Sentinel-2's red-edge
    bands, and S30's surface reflectance was L1C's top-of-atmosphere (reconstruct 4.7x and 4.3x
    the trivial baseline's error; read so, 0.94x and 0.76x)."""
    if len(paths) < 2:
        return None
    words = [set(re.split(r"[_\-.\s]", p.name.upper())) for p in paths]
    for sensor in [given] if given else [get_modality(n) for n in list_modalities()]:
        for product, table in sensor.extra.get("product_bands", {}).items():
            if not all(set(product.upper().split(".")) <= w for w in words):
                continue
            tokens = _band_tokens(dict.fromkeys(paths))
            bands = {p: _file_band(tokens[p], None, list(table)) for p in paths}
            kept = {p: table[b] for p, b in bands.items() if b is not None}
            held = [b for b in dict.fromkeys(bands.values()) if b is not None]
            renamed = [f"its {b} is {table[b]}" for b in held if table[b] != b]
            whose = sensor_label(sensor.to_dict())
            note = f"read as {product.replace('.', ' ')}, whose bands are {whose}'s"
            note += f" ({', '.join(renamed)})" if renamed else ""
            left_out = [p for p in paths if p not in kept]
            if left_out:
                note += f"; left out {_file_names(left_out, paths)}: none of its bands"
            return kept, note
    return None


def _file_names(some: list[Path], paths: list[Path]) -> str:
    """File names for a note, without the prefix that all of ``paths`` share ('T33UUP_2017...
    _B02_10m.jp2' is '...B02_10m.jp2', 'LC08_L1TP_..._B10.TIF' '...B10.TIF')."""
    prefix = os.path.commonprefix([p.name for p in paths])
    prefix = prefix[: max(prefix.rfind("_"), prefix.rfind("-"), prefix.rfind(".")) + 1]
    cut = len(prefix) if len(prefix) >= 6 and len(paths) > 1 else 0
    return ", ".join(("..." if cut else "") + p.name[cut:] for p in some)


def _coarser_copies(names: dict[Path, str | None], area: dict[Path, float]) -> list[Path]:
    """The files of a band that finer files of the same band make redundant (Sentinel-2 L2A
    has B02 at 10, 20 and 60 m): those of each band but the finest, when they differ in pixel
    size. Files of one band and pixel size are refused: in several folders, as several scenes
    (a folder of scene folders)."""
    bands, tokens = registry_bands(), _band_tokens(names)
    by_band: dict[str, list[Path]] = {}
    for p, description in names.items():
        band = _file_band(tokens[p], description, bands)
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
    a sensor's bands, and no sensor whole, give None (``io`` reads them as those bands).
    ``names``: each file's band description; ``eight_bit``: whether most files hold bytes (a
    quality band may be bytes alone)."""
    paths = list(names)
    some = [given.to_dict()] if given else sensor_records()
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
    """The files that hold each band of ``m`` (``names``: each file's band description), its
    bands as files may spell them (``band_key``: SNAP and Earth Engine name Sentinel-2's
    'B01' 'B1'; a folder of them was read as Landsat-8's B1-B7 and B9)."""
    tokens, aliases = _band_tokens(names), common_names(m.to_dict())
    found = {p: _file_band(tokens[p], names[p], m.bands, aliases) for p in names}
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
                f"band of {band_names(m.bands)}",
            )
        order.extend(files)
    return order


def _file_bands(names: dict[Path, str | None], given: Modality | None) -> list[str | None]:
    """The band each single-band file holds (``names``: their band descriptions), of
    ``given``'s or of any sensor's."""
    bands, tokens = (given.bands if given else registry_bands()), _band_tokens(names)
    return [_file_band(tokens[p], description, bands) for p, description in names.items()]


def _band_tokens(names: dict[Path, str | None]) -> dict[Path, list[str]]:
    """Each file name's words that can name its band: its stem split at '_', '-', '.' and
    spaces, less the words that every file's name begins with (the product's name: ASF's
    Sentinel-1 'S1A_IW_…_RTC30_G_gpuned_…_VV.tif' has a 'G', which read as RGB's green in its
    dem, inc_map and ls_map files: 'band G is in 3 files')."""
    tokens = {p: re.split(r"[_\-.\s]", p.stem.upper()) for p in names}
    words = list(tokens.values())
    shared = 0
    while len(words) > 1 and all(len(w) > shared + 1 for w in words):
        if len({w[shared] for w in words}) > 1:
            break
        shared += 1
    return {p: w[shared:] for p, w in tokens.items()}


def _file_band(
    tokens: list[str],
    description: str | None,
    bands: Sequence[str],
    aliases: dict[str, str] | None = None,
) -> str | None:
    """The one of ``bands`` a single-band file holds: its description, else a band name among
    its file name's words (``_band_tokens``), the words of a name such as Landsat
    Collection 2's 'SR_B1' in a row (each file of USGS's Level-2 folder was taken for its 'B1',
    a Landsat-7 band of another wavelength). ``aliases``, for one sensor's bands: its common
    names ('blue.tif', 'nir08.tif' as Earth Search names Sentinel-2's files), and each band's
    name also as ``band_key`` spells it: a file's 'B1' is Sentinel-2's 'B01', but a file's
    'B01' is never Landsat's 'B1'."""
    keyed = aliases is not None
    names = {band: [band] for band in bands}
    for alias, band in (aliases or {}).items():
        names.setdefault(band, []).append(alias)

    def spellings(word: str) -> set[str]:
        return {word.upper(), band_key(word)} if keyed else {word.upper()}

    label = (band_label(description) or "").upper()
    for band in bands:
        if any(label in spellings(name) for name in names[band]):
            return band
    for band in bands:
        for name in names[band]:
            words = [spellings(w) for w in re.split(r"[_\-.\s]", name.upper())]
            for i in range(len(tokens) - len(words) + 1):
                if all(tokens[i + j] in word for j, word in enumerate(words)):
                    return band
    return None
