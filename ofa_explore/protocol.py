"""What both sides of the QGIS process boundary share: task names and their outputs, output
naming, the JSON events of ``ofa <task> --progress json``, checkpoint metadata read from the
file's header, wavelength band tags, the sensor hint and the change mask's default thresholds.

Standard library only (no torch, no numpy): the QGIS plugin's build copies this file and
``errors.py`` into the plugin (``ofa_explore_qgis/_shared/``), so QGIS's Python reads the same
names, events and facts as the engine without importing it. The package uses these functions
too, so each rule exists once.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .errors import BadInput, NotFound, literal

SHIPPED_CHECKPOINT = "ofa_tiny_demo.safetensors"  # in the package's data folder
METADATA_KEY = "ofa_explore"  # the safetensors ``__metadata__`` key holding our JSON
MODALITIES_FILE = "modalities.json"  # sensor facts, in the package's data folder
WEIGHTS_FILE = "weights.json"  # published weights, in the package's data folder
TIF_SUFFIXES = (".tif", ".tiff")
QUICKLOOK = ".png"  # the small picture of a result beside its output: <stem>.png
CHANGE_THRESHOLD_TAG = "ofa_change_threshold"  # a change map's tag: the mask's threshold
# change: the threshold a change map's mask takes by default (`--threshold auto`, the QGIS
# dialog, the widget's slider), in standard deviations of the scene's scores, per score. The
# zero-shot score's tail is long, a trained head's standardised logit nearly Gaussian: with the
# 3-member head 3 marked 0.04-1.4% of the 8 labelled OSCD cities, 2.5 0.4-2.6% and the highest
# pooled F1, 0.40 (of each member alone too: 0.39-0.40; docs/EVALUATION.md)
CHANGE_THRESHOLDS = {"zero-shot": 3.0, "head": 2.5}
CHANGE_HEAD_TAG = "ofa_change_head"  # a change map's tag: the trained head that scored it
# change: the colour ramp's length above the threshold (QGIS's style, the widget), per score,
# so that the strongest tenth of the changed pixels is drawn dark: the 90th percentile of the
# scores above the threshold was 6.6-13.5 for the zero-shot score (3 + 6 = 9) and 3.0-4.4 for
# the 3-member head's (2.5 + 1.5 = 4), leave-one-city-out on the 8 labelled OSCD cities
CHANGE_SPANS = {"zero-shot": 6.0, "head": 1.5}
# change: the ramp's colours from the threshold to the threshold + span (ColorBrewer YlOrRd:
# more change, darker), below the threshold transparent (QGIS's style, the quicklook)
CHANGE_COLORS = ("#fed976", "#fd8d3c", "#e31a1c", "#800026")
# two sensors' bands are one band where their centres lie this close (µm): Sentinel-2 L1C's and
# L2A's lie at the same wavelengths; Landsat 7's and 8's red, NIR and SWIR are 7-39 nm apart
SAME_BAND_UM = 0.01
SCENE_THRESHOLDS = ("auto", "otsu")  # thresholds by name: the engine sets the value
# change: AFTER's features this many pixels or more off BEFORE's (phase correlation) are warped
# onto them, or warned of (``--no-align``): 1 px off cost the zero-shot default 13% of its
# pooled AP on the 8 OSCD cities, 3 px half (docs/EVALUATION.md; change_detection)
MISREGISTERED_PX = 1.0
# the QGIS dialog's and Processing's switch for it (unticked: `--no-align`)
ALIGN_LABEL = f"Move After onto Before's features when {MISREGISTERED_PX:g} px or more off"
ALIGN_HELP = (
    "Two dates that are not co-registered show every edge as change: After's offset from "
    "Before is measured by phase correlation, and After is moved onto Before's features. "
    "Unticked, After is read where its georeferencing puts it, and a warning says how far off "
    "it lies."
)
# change: a mask that marks this share of the pixels or more is warned of. Change was 0.7-3.8%
# of each labelled OSCD city (16% of Nanjing's labelled pixels, sampled towards change); Otsu's
# split of a trained head's score marked 21-45% of them at F1 0.04-0.26, and the zero-shot
# score's at most 18% (docs/EVALUATION.md): a mask this wide is most likely a low threshold
WIDESPREAD_CHANGE = 0.25


# ---------------------------------------------------------------- tasks
@dataclass(frozen=True)
class Task:
    """A task as every shell names it."""

    name: str  # the engine's task and the CLI verb
    help: str  # what it writes, for `ofa -h`
    title: str  # menu and dialog title
    verb: str  # "Classifying ..." in a running job's name
    suffix: str  # <layer>_<suffix>.tif in the plugin's output folder
    layer: str  # "<layer> <layer word>": the result's name in the Layers panel
    # files written beside the output <stem><suffix>: "_pca" -> <stem>_pca<suffix>; one that
    # starts with a dot is a file extension of its own: ".png" -> <stem>.png (the quicklook, only
    # written when asked for, yet counted so that overwrite checks and clean-ups see it)
    companions: tuple[str, ...] = (QUICKLOOK,)
    # the EngineSettings fields only this task reads (its own options of `ofa <task>`), as the
    # engine's Task.options lists them: the CLI builds its parser from here without torch
    options: tuple[str, ...] = ()
    # the rasters it reads, as its verb names them: one (`ofa <task> RASTER...`, the parser
    # cli_raster builds from here), or change's two dates (`ofa change BEFORE AFTER`, cli_change)
    inputs: tuple[str, ...] = ("raster",)


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "classify",
            "class map from the checkpoint's classification head",
            "Classify layer",
            "Classifying",
            "classes",
            "classes",
            options=("head",),
        ),
        Task(
            "embed",
            "patch embeddings (all D bands) and a PCA colour view",
            "Embed layer",
            "Embedding",
            "embedding",
            "embedding (PCA colours)",
            companions=("_pca", QUICKLOOK),
        ),
        Task(
            "reconstruct",
            "masked reconstruction in the input's bands",
            "Reconstruct layer",
            "Reconstructing",
            "reconstruction",
            "reconstruction",
            options=("mask_ratio", "seed"),
        ),
        Task(
            "change",
            "change score (and 0/1 mask) between two dates of the same place",
            "Change between two layers…",
            "Comparing",
            "change",
            "change",
            companions=(".gpkg", QUICKLOOK),  # polygons when asked for; the picture unless not
            inputs=("before", "after"),
        ),
    )
}
TASK_NAMES = tuple(TASKS)


def task(name: str) -> Task:
    """The task called ``name``; an unknown name is a BadInput that lists the tasks."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise BadInput(
            f"unknown task {name!r}", f"choose one of {', '.join(TASK_NAMES)}", task=name
        ) from None


# ---------------------------------------------------------------- output naming
def pca_path(path: str | os.PathLike) -> Path:
    """The PCA colour view written beside an embedding: ``<stem>_pca<suffix>``."""
    return companion_path(path, "_pca")


def quicklook_path(path: str | os.PathLike) -> Path:
    """The quicklook PNG beside an output: ``<stem>.png``."""
    return companion_path(path, QUICKLOOK)


def companion_path(path: str | os.PathLike, companion: str) -> Path:
    """A companion file of the output ``path`` (see ``Task.companions``)."""
    path = Path(path)
    if companion.startswith("."):
        return path.with_name(path.stem + companion)
    return path.with_name(path.stem + companion + path.suffix)


def output_files(path: str | os.PathLike, task_name: str) -> list[Path]:
    """Every file a task may write for the output ``path``: the output and its companions (the
    quicklook last)."""
    return [Path(path)] + [companion_path(path, c) for c in task(task_name).companions]


def scene_output(folder: str | os.PathLike, scene: str | os.PathLike, task_name: str) -> Path:
    """Where one of several scenes goes: ``FOLDER/<scene stem>_<task>.tif``."""
    return Path(folder) / f"{Path(scene).stem}_{task(task_name).name}.tif"


def safe_stem(name: str, default: str = "layer") -> str:
    """A layer name as a file name: runs of anything but letters, digits, ``.``, ``-`` and
    ``_`` become one ``_``."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or default


def layer_output(folder: str | os.PathLike, layer_name: str, task_name: str) -> Path:
    """``<layer>_<suffix>.tif`` in ``folder`` (suffix: ``classes``, ``embedding``,
    ``reconstruction``, ``change``), numbered (``_2``, ``_3``...) rather than replacing any file
    the task would write."""
    folder = Path(folder)
    stem = f"{safe_stem(layer_name)}_{task(task_name).suffix}"
    candidate, n = folder / f"{stem}.tif", 1
    while any(p.exists() for p in output_files(candidate, task_name)):
        n += 1
        candidate = folder / f"{stem}_{n}.tif"
    return candidate


# GDAL's virtual file systems of archives, which a dataset name may nest ('/vsizip//data/x.zip/
# B04.tif'), and those of other machines, whose rasters are not on this one
ARCHIVE_VSI = re.compile(r"/vsi(?:zip|tar|gzip|7z|rar)/")
REMOTE_SOURCES: tuple[str, ...] = (
    *("/vsicurl", "/vsis3", "/vsigs", "/vsiaz", "/vsiadls", "/vsioss", "/vsiswift"),
    *("/vsihdfs", "/vsiwebhdfs", "http://", "https://", "ftp://"),
)


def local_file(source: str) -> str | None:
    """The file on this machine that a raster source reads: the source itself, or the file a
    GDAL dataset name holds ('GPKG:/data/x.gpkg:t2020', '/vsizip//data/scene.zip/B04.tif',
    'SENTINEL2_L2A:/vsizip//data/S2B.zip/S2B.SAFE/MTD_MSIL2A.xml:10m:EPSG_32633',
    'NETCDF:"/data/sst.nc":sst'), which QGIS layers of those files have as their source; None
    for a raster elsewhere (/vsicurl/, a URL) or a file that is not there."""
    if Path(source).is_file():
        return source
    if any(remote in source for remote in REMOTE_SOURCES):
        return None
    for token in re.findall(r'(?<![\w])(?:[A-Za-z]:)?[/\\][^:"|]+', ARCHIVE_VSI.sub("/", source)):
        for candidate in (Path(token), *Path(token).parents):
            if candidate.is_file():
                return str(candidate)
    return None


# ---------------------------------------------------------------- words in results
def count(n: int, word: str) -> str:
    """``1 tile``, ``2 tiles``: a number with its noun."""
    return f"{n} {word}{'s' * (n != 1)}"


def band_names(bands: Sequence[str], most: int = 16) -> str:
    """A sensor's bands in a sentence: all of a multispectral one's, the first and last few of
    a hyperspectral one's (EnMAP's 202 names made a refusal a screenful)."""
    if len(bands) <= most:
        return ", ".join(bands)
    return f"{', '.join(bands[:3])} … {', '.join(bands[-2:])}"


def class_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The classes found (a ``result`` event's ``areas``), largest first, one a line: hectares
    where the CRS is in metres, else pixels, and the share; the CLI prints it, QGIS shows it."""
    found = [r for r in rows if r["pixels"]]
    width = max((len(r["class"]) for r in found), default=0)
    return "\n".join(
        f"  {r['class']:<{width}}  "
        + (f"{r['hectares']:>12,.1f} ha" if r["hectares"] is not None else f"{r['pixels']:>12,} px")
        + f"  {r['share']:>6.1%}"
        for r in found
    )


# ---------------------------------------------------------------- JSON events
# `ofa <task> --progress json` prints one JSON object per line on stdout, nothing else:
#   start        task, modality, bands, input             before the first batch
#   progress     done, total, percent (0-100, 1 decimal)  per batch
#   result       path, pca_path, device, seconds, tiles, classes, colors, head, modality,
#                precision, areas, input_bounds, quicklook, notes, warnings,
#                checks                                   on success (exit 0)
#   error        kind, problem, fix, message              exit 2 (an OFAError) or 1 (a bug:
#                                                         kind "failed", traceback on stderr)
#   cancelled    message                                  Ctrl-C or SIGTERM (exit 130)
#   warning      message                                  any time: something the user should
#                                                         know (values that do not fit the
#                                                         sensor given, no CRS, ...)
# several scenes (-o FOLDER):
#   scenes       total, cluster                           first
#   scene        input, output, done, total, error, seconds, tiles, modality   per scene
#   scenes_done  total, failed                            last (exit 3 when any failed)
# `ofa serve` (a worker kept for many jobs, e.g. by the QGIS plugin) reads one JSON job a line
# on stdin (JOBS, job_line, parse_job) and writes the events above, each job's with its "id":
#   ready        version, pid, protocol                   once, when the engine is imported
#   result       ... + model_loads (models loaded by this worker so far), cached (this job's
#                model was loaded before)
EVENTS = (
    "ready",
    "start",
    "progress",
    "warning",
    "result",
    "error",
    "cancelled",
    "scenes",
    "scene",
    "scenes_done",
)
FINAL_EVENTS = ("result", "error", "cancelled", "scenes_done")
FAILED = "failed"  # the error kind of an unexpected exception


def event(name: str, **fields: Any) -> dict[str, Any]:
    """An event as a dict, ``{"event": name, **fields}``."""
    if name not in EVENTS:
        raise ValueError(f"unknown event {name!r}; known: {', '.join(EVENTS)}")
    return {"event": name, **fields}


def event_line(message: Mapping[str, Any]) -> str:
    """One event as the line a worker writes (JSON, ending in a newline)."""
    return json.dumps(dict(message)) + "\n"


def parse_event(line: str) -> dict[str, Any] | None:
    """The event on a worker's output line; None for a line that is not one."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) and message.get("event") in EVENTS else None


def ready_event(version: str, pid: int) -> dict[str, Any]:
    return event("ready", version=version, pid=pid, protocol=SERVE_PROTOCOL)


def start_event(task_name: str, modality: str, bands: int, source: str) -> dict[str, Any]:
    return event("start", task=task_name, modality=modality, bands=bands, input=source)


def progress_event(done: int, total: int) -> dict[str, Any]:
    return event(
        "progress", done=done, total=total, percent=round(100 * done / total, 1) if total else 100.0
    )


def error_event(
    kind: str, problem: str, fix: str = "", message: str | None = None
) -> dict[str, Any]:
    """An ``error`` event from its parts (``OFAError.to_event`` builds it from an error)."""
    return event(
        "error",
        kind=kind,
        problem=problem,
        fix=fix,
        message=problem if message is None else message,
    )


def cancelled_event(message: str) -> dict[str, Any]:
    return event("cancelled", message=message)


# ---------------------------------------------------------------- `ofa serve` jobs
#   {"job": "run", "id": 3, "argv": ["classify", "scene.tif", "-o", "classes.tif", ...]}
#        the arguments of `ofa` for one task and one scene (`--progress json` is implied)
#   {"job": "cancel", "id": 3}   stops job 3 at its next batch (its outputs removed), `cancelled`
#   {"job": "quit"}              cancels the running job and ends the worker; EOF on stdin ends
#                                it once the jobs sent have run
JOBS = ("run", "cancel", "quit")
SERVE_PROTOCOL = 1  # the version of these lines; `ready` says it


def job_line(kind: str, job_id: int | str | None = None, argv: Sequence[str] = ()) -> str:
    """One job as the line a program writes to `ofa serve` (JSON, ending in a newline)."""
    message: dict[str, Any] = {"job": kind}
    if job_id is not None:
        message["id"] = job_id
    if kind == "run":
        message["argv"] = [str(a) for a in argv]
    return json.dumps(message) + "\n"


def parse_job(line: str) -> dict[str, Any]:
    """The job on a line written to `ofa serve`; a line that is no job is a BadInput."""
    try:
        message = json.loads(line)
    except ValueError:
        message = None
    if not isinstance(message, dict) or message.get("job") not in JOBS:
        raise BadInput(
            f"not a job: {literal(repr(line.strip()[:200]))}",
            'write one JSON object a line: {{"job": "run", "id": 1, "argv": [...]}}, '
            '{{"job": "cancel", "id": 1}} or {{"job": "quit"}}',
        )
    if message["job"] != "quit" and not isinstance(message.get("id"), (int, str)):
        raise BadInput(f'a {message["job"]} job needs an "id" (a number or a string)')
    argv = message.get("argv")
    if message["job"] == "run" and not (
        isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)
    ):
        raise BadInput(
            'a run job needs "argv": the arguments of `ofa` as strings',
            'e.g. ["classify", "scene.tif", "-o", "classes.tif"]',
        )
    return message


# ---------------------------------------------------------------- checkpoint metadata
MAX_HEADER = 100_000_000  # bytes; a safetensors header larger than this is not ours


def read_checkpoint_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata ofa-explore stores in a checkpoint, read from the safetensors header
    only (8 bytes of length, then the JSON header; no tensors read, no torch)."""
    path = Path(path)
    if not path.exists():
        raise NotFound(
            f"the model file {path} does not exist", "choose it in {checkpoint}", path=str(path)
        )
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            if not 0 < size < MAX_HEADER:
                raise ValueError
            raw = f.read(size)
            if len(raw) != size:
                raise ValueError
        meta = json.loads(json.loads(raw)["__metadata__"][METADATA_KEY])
        if not isinstance(meta, dict):
            raise ValueError
    except (ValueError, KeyError, TypeError, OSError):  # UnicodeDecodeError is a ValueError
        raise BadInput(
            f"{path.name} is not an OFA Explore model (a .safetensors file written by ofa-explore)",
            "published weights must be converted first with "
            "`ofa convert`, or be given by name in {checkpoint}",
            path=str(path),
        ) from None
    return meta


# ---------------------------------------------------------------- wavelength band tags
def band_wavelength(tags: Mapping[str, str]) -> float | None:
    """A band's centre wavelength in µm from its tags (ENVI/EnMAP ``wavelength`` with
    ``wavelength_units``; keys in any case); None without a readable one. Without units, a value
    above 30 is taken as nanometres."""
    tags = {str(k).lower(): v for k, v in tags.items()}
    try:
        wave = float(tags.get("wavelength"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    units = str(tags.get("wavelength_units", "")).strip().lower()
    nanometres = units.startswith("nano") or units == "nm" or (not units and wave > 30)
    return wave / 1000.0 if nanometres else wave


def bad_band(tags: Mapping[str, str]) -> bool:
    """Whether a band's tags flag it as bad (``bbl`` = 0)."""
    tags = {str(k).lower(): v for k, v in tags.items()}
    return str(tags.get("bbl", "1")).strip() in ("0", "0.0")


def band_wavelengths(tags: Sequence[Mapping[str, str]]) -> tuple[list[float], list[int]] | None:
    """Per-band tags -> (wavelengths in µm of the good bands, the indices of those bands);
    None unless every band has a wavelength, or when every band is flagged bad."""
    waves = [band_wavelength(t) for t in tags]
    if not waves or any(w is None for w in waves):
        return None
    good = [i for i, t in enumerate(tags) if not bad_band(t)]
    return ([waves[i] for i in good], good) if good else None  # type: ignore[misc]


# ---------------------------------------------------------------- the sensor hint
def load_sensor_facts(data_folder: str | os.PathLike) -> list[dict[str, Any]]:
    """The built-in sensor records (plain dicts) of ``data/modalities.json``."""
    data = json.loads((Path(data_folder) / MODALITIES_FILE).read_text(encoding="utf-8"))
    return list(data["modalities"])


def is_8bit(dtype: Any) -> bool:
    """Whether a data type name is one byte per value (numpy ``uint8``, GDAL ``Byte``)."""
    return str(dtype).lower() in ("uint8", "byte", "|u1", "u1")


# GDAL's GeoTIFF writer calls the fourth band of any 4-band 8-bit file alpha unless told
# otherwise, so an R, G, B, NIR file written with default settings (rasterio's too) says that its
# NIR band is the alpha band: a band is taken for one only when its values are a mask's
ALPHA_SHARE = 0.99  # of a sample of the band, at least this share transparent (0) or opaque


def alpha_mask(values: Iterable[float], opaque: float) -> bool:
    """Whether a band that GDAL calls alpha is a transparency mask: its values (a sample) are
    all but 1% 0 or ``opaque`` (its data type's largest value), as drone software and
    ``gdalwarp -dstalpha`` write them; a NIR band is not."""
    values = list(values)
    binary = sum(1 for v in values if v == 0 or v == opaque)
    return bool(values) and binary >= ALPHA_SHARE * len(values)


def sensor_candidates(
    sensors: Iterable[Mapping[str, Any]],
    band_count: int,
    names: Sequence[str | None] | None = None,
    dtype: Any = None,
) -> list[str]:
    """The sensors a raster may be, from its band count, band names and data type: those with
    that many bands; of them, those whose band names are the raster's (when every band is
    named and any matches); of several, the 8-bit layouts for bytes, then the ones marked for
    detection (``autodetect``). One name is an answer; several are ambiguous; none: unknown."""
    candidates = [s for s in sensors if len(s["bands"]) == band_count]
    by_name = [s for s in candidates if sensor_bands(s, names) is not None]
    candidates = by_name or candidates
    if len(candidates) > 1 and dtype is not None and is_8bit(dtype):
        candidates = [s for s in candidates if "8-bit" in str(s.get("units", ""))] or candidates
    if len(candidates) > 1:
        candidates = [s for s in candidates if s.get("autodetect")] or candidates
    return [str(s["name"]) for s in candidates]


def sensor_hint(
    sensors: Iterable[Mapping[str, Any]],
    band_count: int,
    names: Sequence[str | None] | None = None,
    dtype: Any = None,
) -> str | None:
    """The one sensor the raster looks like, or None when none or several fit; bands named as
    some of a sensor's are read as those (``band_subsets``, named by ``subset_name``), unless
    they are bands of several sensors that spell them differently: Sentinel-2 L1C's and L2A's
    B02, B03, B04 are the first's unless the values say otherwise, while of Landsat-8's B2,
    B3, B4 and Sentinel-2's the values decide (``io.open_raster``), as they do where all of
    another sensor's bands are among them (Earth Engine's Landsat-8 B1 ... B11)."""
    sensors = list(sensors)
    subsets = band_subsets(sensors, names, dtype)
    if subsets:
        alike = all(bands == subsets[0][1] for _, bands in subsets)
        among = sensors_among(sensors, names or [])
        return subset_name(*subsets[0]) if alike and not among else None
    found = sensor_candidates(sensors, band_count, names, dtype)
    return found[0] if len(found) == 1 else None


# A single band does not tell a sensor apart, and the model learns little from one: a file of
# one named band (a Sentinel-2 product's B08.tif opened alone) stays refused
MIN_SUBSET_BANDS = 2


def band_key(name: str) -> str:
    """A sensor's band name as a file may spell it: upper case, a band number of one or two
    digits without its leading zero (Sentinel-2's 'B08' is Earth Engine's 'B8'; EnMAP's 'B008'
    stays itself)."""
    upper = name.strip().upper()
    number = re.fullmatch(r"B(\d{1,2})([A-Z]?)", upper)
    return f"B{int(number[1])}{number[2]}" if number else upper


def band_label(description: str | None) -> str | None:
    """The band name a band's description gives: all of it, or what precedes its first comma
    (GDAL's Sentinel-2 driver, and the files QGIS saves of its layers, describe the red band
    as 'B4, central wavelength 665 nm')."""
    label = (description or "").split(",")[0].strip()
    return label or None


def sensor_bands(sensor: Mapping[str, Any], names: Sequence[str | None] | None) -> list[str] | None:
    """The sensor's band that each of a raster's band names is (``band_label``), in the
    raster's order; None unless each names another band of it. A file's 'B2' is Sentinel-2's
    'B02'; a file's 'B02' is not Landsat's 'B2'; 'nir08' is Sentinel-2's 'B8A' and Landsat-8's
    'SR_B5', as STAC and Earth Search name them (``common_names``)."""
    bands = [str(b) for b in sensor["bands"]]
    keys = {**{band_key(b): b for b in bands}, **{b.upper(): b for b in bands}}
    keys |= {name.upper(): str(band) for name, band in common_names(sensor).items()}
    labels = [band_label(n) for n in (names or [])]
    picked = [keys.get(label.upper()) if label else None for label in labels]
    if not picked or None in picked or len(set(picked)) != len(picked):
        return None
    return cast("list[str]", picked)


def common_names(sensor: Mapping[str, Any]) -> dict[str, str]:
    """A sensor's bands by the names STAC (eo:common_name) and Earth Search give them ('blue',
    'nir08', 'swir16'; ``extra.common_names``), as files and band descriptions may carry them."""
    return dict((sensor.get("extra") or {}).get("common_names", {}))


def names_sensor_bands(
    sensors: Iterable[Mapping[str, Any]], names: Sequence[str | None] | None
) -> bool:
    """Whether a raster's band names are bands of a known sensor, all or some (at least
    ``MIN_SUBSET_BANDS``): they then say what the bands are before any wavelength tags do, as
    GDAL's Sentinel-2 layers carry both (read by their tags, they were a 'hyperspectral' sensor
    of Sentinel-2's wavelengths, but without its statistics)."""
    if len(names or []) < MIN_SUBSET_BANDS:
        return False
    return any(
        sensor_bands(s, names) is not None for s in sensors if s.get("kind") != "hyperspectral"
    )


def bands_among_others(
    sensors: Iterable[Mapping[str, Any]], names: Sequence[str | None] | None
) -> list[int] | None:
    """Of a raster whose bands are all named: the numbers (1-based) of the bands that are all of
    a sensor's, when the others are none of its bands (an Earth Engine export of Sentinel-2 L2A
    holds its 12 bands, then AOT, WVP, SCL, TCI_R ... QA60: 'no known sensor has 23 bands').
    None when some band is unnamed, all are a sensor's, no sensor's bands are all there, or two
    sensors' are on other bands. Some of a sensor's bands beside others are not enough: Earth
    Engine names Landsat's bands B1 ... B11 too."""
    names, sensors = list(names or []), list(sensors)
    if not names or None in [band_label(n) for n in names] or names_sensor_bands(sensors, names):
        return None  # unnamed, or all a sensor's (``band_subsets``, ``sensor_candidates``)
    found = {tuple(numbers) for _, numbers in sensors_among(sensors, names)}
    largest = max(map(len, found), default=0)
    best = [numbers for numbers in found if len(numbers) == largest]
    return list(best[0]) if len(best) == 1 else None


def sensors_among(
    sensors: Iterable[Mapping[str, Any]], names: Sequence[str | None]
) -> list[tuple[str, list[int]]]:
    """Each sensor all of whose bands a raster's band names hold, beside others that are none of
    its bands: its name and the numbers (1-based) of those bands. Earth Engine's Landsat-8
    B1 ... B11 hold Landsat-8 Level-1's B1-B7 and B9 beside B8, B10 and B11."""
    names, found = list(names), []
    for s in sensors:
        if s.get("kind") == "hyperspectral":
            continue
        numbers = [i for i, n in enumerate(names, 1) if sensor_bands(s, [n]) is not None]
        whole = sensor_bands(s, [names[i - 1] for i in numbers])
        if whole is not None and len(whole) == len(s["bands"]) < len(names):
            found.append((str(s["name"]), numbers))
    return found


def band_subsets(
    sensors: Iterable[Mapping[str, Any]],
    names: Sequence[str | None] | None,
    dtype: Any = None,
) -> list[tuple[str, list[str]]]:
    """The sensors of which a raster's bands, every one named, are some but not all, each with
    those bands in the raster's order (a file of Sentinel-2's 10 m bands alone, named 'B02',
    'B03', 'B04', 'B08' or 'B2' ... 'B8'); none when a sensor has exactly these bands (one of
    the data type's kind: 'blue', 'green', 'red', 'nir' of 16 bits are Sentinel-2's, not NAIP's
    R, G, B, NIR of 8), or for fewer than ``MIN_SUBSET_BANDS``. Hyperspectral sensors are left
    out (their files carry wavelengths). Of several, those of the data type's kind (8-bit
    layouts for bytes, the others for wider types), then the ones marked for detection first;
    the values decide between them (``io.open_raster``)."""
    if len(names or []) < MIN_SUBSET_BANDS:
        return []
    sensors = [s for s in sensors if s.get("kind") != "hyperspectral"]
    byte = None if dtype is None else is_8bit(dtype)
    found: list[tuple[Mapping[str, Any], list[str]]] = []
    for s in sensors:
        picked = sensor_bands(s, names)
        if picked is None:
            continue
        if len(picked) == len(s["bands"]):
            if byte is None or ("8-bit" in str(s.get("units", ""))) == byte:
                return []
            continue  # all of a sensor's bands of another data type: no reading of these
        found.append((s, picked))
    if byte is not None:
        found = [f for f in found if ("8-bit" in str(f[0].get("units", ""))) == byte] or found
    found.sort(key=lambda f: not f[0].get("autodetect"))
    return [(str(s["name"]), bands) for s, bands in found]


def picked_bands(
    sensors: Iterable[Mapping[str, Any]], count: int, numbers: Sequence[int]
) -> tuple[str, list[str]] | None:
    """Bands picked by their numbers (1-based) of a file of ``count`` unnamed bands: the one
    sensor of ``count`` bands and those of its bands; None when all bands are picked, or no
    sensor or several have ``count`` (4: NAIP's, Gaofen's or Landsat composites' order)."""
    of_count = [s for s in sensors if len(s["bands"]) == count]
    if not numbers or len(numbers) == count or len(of_count) != 1:
        return None
    bands = [str(b) for b in of_count[0]["bands"]]
    return str(of_count[0]["name"]), [bands[n - 1] for n in numbers]


def export_subsets(
    sensors: Iterable[Mapping[str, Any]], band_count: int | None = None
) -> list[tuple[str, str, str]]:
    """Some of a sensor's bands that files commonly hold alone (``extra.exports``: Sentinel-2's
    10 m bands), ``band_count`` of them (None: all): each one's ``subset_name``, its sensor as
    people call it (``sensor_label``) and what the bands are ("10 m bands B02, B03, B04, B08").
    A file of unnamed bands is never read as some of a sensor's by itself; these are what the
    user can name it."""
    found = []
    for s in sensors:
        for export in (s.get("extra") or {}).get("exports", []):
            if band_count in (None, len(export["bands"])):
                name = subset_name(str(s["name"]), export["bands"])
                words = f"{export['name']} {', '.join(export['bands'])}"
                found.append((name, sensor_label(s), words))
    return found


def one_instrument(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two sensors are one instrument's products at two processing levels (Sentinel-2
    L1C's 13 bands and L2A's 12): the same kind and resolution, and all bands but one of the
    one with more within ``SAME_BAND_UM`` of the other's."""
    if a["name"] == b["name"] or not a.get("gsd") or (a["kind"], a["gsd"]) != (b["kind"], b["gsd"]):
        return False
    fewer, more = sorted((a["wavelengths"], b["wavelengths"]), key=len)
    shared = sum(min(abs(w - v) for v in more) <= SAME_BAND_UM for w in fewer)
    return shared >= len(more) - 1


def other_level(
    sensors: Iterable[Mapping[str, Any]], sensor: Mapping[str, Any], band_count: int
) -> Mapping[str, Any] | None:
    """The sensor a raster of ``band_count`` bands is read as when none is given, where it is
    ``sensor``'s instrument at another processing level (``one_instrument``): a date of 12
    bands beside an L1C date of 13 is L2A. None when no such sensor has as many bands."""
    return next(
        (
            s
            for s in sensors
            if s.get("autodetect") and len(s["bands"]) == band_count and one_instrument(sensor, s)
        ),
        None,
    )


def sensor_label(sensor: Mapping[str, Any]) -> str:
    """A sensor as people call it ("Sentinel-2 L1C", "NAIP-style aerial R, G, B, NIR"): its
    description up to its details (", 13 bands ...", " (8-bit)"), else its name."""
    return re.split(r", \d| \(", str(sensor.get("description") or sensor["name"]))[0]


def subset_name(sensor: str, bands: Sequence[str]) -> str:
    """The name of some of a sensor's bands read alone: 's2_l1c_b02_b03_b04_b08'."""
    return "_".join(_name_part(part) for part in [sensor, *bands])


def subset_of(sensors: Iterable[Mapping[str, Any]], name: str) -> tuple[str, list[str]] | None:
    """The sensor and bands that a ``subset_name`` names (None when it names none)."""
    for s in sorted(sensors, key=lambda s: -len(str(s["name"]))):
        prefix = f"{s['name']}_"
        if not name.startswith(prefix):
            continue
        parts = {_name_part(str(b)): str(b) for b in s["bands"]}
        rest, bands = name[len(prefix) :], []
        while rest:
            part = max((p for p in parts if f"{rest}_".startswith(f"{p}_")), key=len, default=None)
            if part is None:
                break
            bands.append(parts[part])
            rest = rest[len(part) + 1 :]
        if not rest and bands:
            return str(s["name"]), bands
    return None


def _name_part(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower())


def change_span(head: bool) -> float:
    """The length of a change map's colour ramp above its threshold, in standard deviations:
    of a trained change head's score when ``head``, else of the zero-shot score
    (``CHANGE_SPANS``)."""
    return CHANGE_SPANS["head" if head else "zero-shot"]


def change_threshold(head: bool) -> float:
    """The default threshold of a change map's mask: of a trained change head's score when
    ``head``, else of the zero-shot score (``CHANGE_THRESHOLDS``)."""
    return CHANGE_THRESHOLDS["head" if head else "zero-shot"]


def change_ramp(tags: Mapping[str, str]) -> tuple[float, float]:
    """Where a change map's colours start and how far they run (threshold, span), from its
    file's tags: the threshold the engine used (Otsu's is known only then), else the default
    of the score that drew it (a trained head's or the zero-shot score's)."""
    head = bool(tags.get(CHANGE_HEAD_TAG))
    value = tags.get(CHANGE_THRESHOLD_TAG)
    threshold = float(value) if value else change_threshold(head=head)
    return threshold, change_span(head=head)
