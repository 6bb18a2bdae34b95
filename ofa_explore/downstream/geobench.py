"""GEO-Bench (Lacoste et al. 2023) task folders, read without the ``geobench`` package, and the
OFA-Net paper's 12-task evaluation over them.

Layout: ``ROOT/{classification,segmentation}_v1.0/<task>/`` with ``default_partition.json``
({"train"|"valid"|"test": [sample names]}), ``band_stats.json`` and one ``<sample>.hdf5`` per
sample: a dataset per band (named like ``"02 - Blue"``, dated bands get ``_YYYY-MM-DD``), a
``"label"`` dataset for segmentation, and a root attribute ``"pickle"`` holding the band order and
the scene label. GEO-Bench pickles name its own classes; they are read with an unpickler that
only rebuilds plain data (numpy arrays, dates) and turns every other class into an inert record,
so no code from the file can run.
"""

from __future__ import annotations

import ast
import io
import json
import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BadInput
from ..metrics import classification_scores
from ..modalities import Modality, get_modality
from ..model import OFANet
from .datasets import tile_pairs
from .features import extract_features
from .probes import fit_linear_probe, knn_predict
from .tasks import fit_segmentation_arrays

BENCHMARKS = ("classification_v1.0", "segmentation_v1.0")


@dataclass(frozen=True)
class GeoBenchTask:
    name: str
    kind: str  # classification | multilabel | segmentation
    modality: str | None  # built-in modality the bands map onto; None: wavelengths only
    band_order: str = "names"  # "names": match band names; "stored": file order (mislabelled)
    note: str = ""
    true_bands: tuple[str, ...] = ()  # real band ids of the first stored bands, where mislabelled


# The OFA-Net paper's downstream tasks: GEO-Bench's six classification and six segmentation
# tasks. Metric: top-1 accuracy, F1 for the multi-label m-bigearthnet, mIoU for segmentation.
GEOBENCH_TASKS = (
    GeoBenchTask(
        "m-eurosat",
        "classification",
        "s2_l1c",
        "stored",
        "bands stored in EuroSAT order (B8A last) under standard-order names",
    ),
    GeoBenchTask("m-bigearthnet", "multilabel", "s2_l2a"),
    GeoBenchTask(
        "m-so2sat",
        "classification",
        None,
        "S1 complex channels + 10 S2 bands; S2 bands used, by wavelength",
    ),
    GeoBenchTask(
        "m-brick-kiln",
        "classification",
        None,
        "13 stored names, real bands B1-B5,B7,B8A,B8,B11,B12 + true colour; by wavelength",
        true_bands=("B01", "B02", "B03", "B04", "B05", "B07", "B8A", "B08", "B11", "B12"),
    ),
    GeoBenchTask("m-forestnet", "classification", None, "Landsat-8, 6 bands; by wavelength"),
    GeoBenchTask("m-pv4ger", "classification", "rgb"),
    GeoBenchTask("m-pv4ger-seg", "segmentation", "rgb"),
    GeoBenchTask("m-nz-cattle", "segmentation", "rgb"),
    GeoBenchTask("m-NeonTree", "segmentation", "rgb", note="RGB bands only"),
    GeoBenchTask("m-cashew-plant", "segmentation", "s2_l2a"),
    GeoBenchTask("m-SA-crop-type", "segmentation", "s2_l2a"),
    GeoBenchTask("m-chesapeake", "segmentation", "rgbn"),
)
ALIASES = {
    "m-cashew-plantation": "m-cashew-plant",
    "m-chesapeake-landcover": "m-chesapeake",
    "m-chesapeake-lancover": "m-chesapeake",
}  # GEO-Bench v0.9 folder names
RGB_NAMES = {"red": "R", "green": "G", "blue": "B", "nearinfrared": "NIR", "nir": "NIR"}
LANDSAT_NAMES = {
    "02 - blue": "SR_B2",
    "03 - green": "SR_B3",
    "04 - red": "SR_B4",
    "05 - nir": "SR_B5",
    "06 - swir1": "SR_B6",
    "07 - swir2": "SR_B7",
}


class GeoBenchError(BadInput):
    """A GEO-Bench folder or sample that cannot be read; the message says which and why."""


# ---------------------------------------------------------------- reading
@dataclass
class GeoBenchData:
    task: GeoBenchTask
    folder: Path
    images: dict[str, np.ndarray]  # split -> [N, C, H, W] in the modality's band order
    labels: dict[str, np.ndarray]  # split -> [N], [N, K] (multi-label) or [N, H, W]
    classes: list[str]
    modality: Modality


def find_tasks(root: str | Path) -> dict[str, Path]:
    """Task folders under ``root`` (the folder holding the ``*_v1.0`` benchmarks, or one)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise GeoBenchError(
            f"GEO-Bench folder not found: {root}. Download GEO-Bench (`pip "
            "install geobench && geobench-download`) and pass its folder"
        )
    parents = [root / b for b in BENCHMARKS if (root / b).is_dir()] or [root]
    found = {}
    for parent in parents:
        for folder in sorted(parent.iterdir()):
            if folder.is_dir() and (folder / "default_partition.json").is_file():
                found[ALIASES.get(folder.name, folder.name)] = folder
    if not found:
        raise GeoBenchError(
            f"no GEO-Bench task folders (with default_partition.json) under "
            f"{root}; expected {root}/classification_v1.0/m-eurosat/ ..."
        )
    return found


def read_task(
    folder: str | Path,
    task: GeoBenchTask,
    partition: str = "default",
    max_per_split: int | None = None,
    modality: Modality | None = None,
) -> GeoBenchData:
    """All samples of a task's partition, bands mapped onto the task's modality."""
    folder = Path(folder)
    part_file = folder / f"{partition}_partition.json"
    if not part_file.is_file():
        raise GeoBenchError(
            f"{part_file} not found; partitions here: "
            f"{', '.join(p.name for p in folder.glob('*_partition.json'))}"
        )
    splits = json.loads(part_file.read_text())
    stats = _read_json(folder / "band_stats.json")
    images, labels, modality_of = {}, {}, modality
    for split in ("train", "valid", "test"):
        names = splits.get(split, [])[:max_per_split]
        chips, targets = [], []
        for name in names:
            bands, order, label = read_sample(folder / f"{name}.hdf5")
            if modality_of is None:
                modality_of = task_modality(task, order, stats)
            chips.append(_select_bands(bands, order, task, modality_of))
            targets.append(label)
        if chips:
            images[split] = np.stack(chips).astype(np.float32)
            labels[split] = np.stack([np.asarray(t) for t in targets])
    if "train" not in images or "test" not in images:
        raise GeoBenchError(f"{folder}: the {partition} partition needs train and test samples")
    return GeoBenchData(
        task, folder, images, labels, _class_names(folder, task, labels), modality_of
    )


def read_sample(path: Path) -> tuple[dict[str, np.ndarray], list[str], Any]:
    """(bands by name without date suffix, band order as stored, label) of one sample."""
    import h5py

    if not path.is_file():
        raise GeoBenchError(f"sample {path} is listed in the partition but missing")
    try:
        with h5py.File(path, "r") as f:
            attrs = _safe_unpickle(f.attrs["pickle"]) if "pickle" in f.attrs else {}
            bands = {_undated(k): np.asarray(f[k]) for k in f.keys() if not k.startswith("label")}
            label = np.asarray(f["label"]) if "label" in f else None
    except OSError as err:
        raise GeoBenchError(f"{path} is not a readable HDF5 file ({err})") from None
    if label is None:
        label = attrs.get("label") if isinstance(attrs, dict) else None
        if label is None:
            raise GeoBenchError(
                f"{path} has no label (neither a 'label' dataset nor one in its attributes)"
            )
    order = [_undated(b) for b in attrs.get("bands_order", [])] if isinstance(attrs, dict) else []
    return bands, order or sorted(bands), label


class _Record:
    """Stands in for any class named in a GEO-Bench pickle: keeps its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _SafeUnpickler(pickle.Unpickler):
    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("collections", "OrderedDict"),
        ("copyreg", "_reconstructor"),
        ("builtins", "object"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        return type(name, (_Record,), {"__module__": "geobench_record"})


def _safe_unpickle(raw: Any) -> Any:
    data = raw
    if isinstance(raw, str):  # GEO-Bench stores str(pickle.dumps(...))
        data = ast.literal_eval(raw)
    if isinstance(data, np.void):
        data = data.tobytes()
    return _SafeUnpickler(io.BytesIO(bytes(data))).load()


def task_modality(task: GeoBenchTask, order: list[str], stats: dict) -> Modality:
    """The built-in modality of the task, or (by wavelength) one made from its band names and
    ``band_stats.json``, which only wavelength-conditioned models can embed."""
    if task.modality:
        return get_modality(task.modality)
    ids, waves, mean, std = [], [], [], []
    s2, landsat = get_modality("s2_l1c"), get_modality("landsat_oli")
    names = order[: len(task.true_bands)] if task.true_bands else order
    for i, name in enumerate(names):
        band = task.true_bands[i] if task.true_bands else _band_id(name, task)
        for ref in (s2, landsat):
            if band in ref.bands and name in stats:
                ids.append(name)
                waves.append(ref.wavelengths[ref.bands.index(band)])
                mean.append(float(stats[name]["mean"]))
                std.append(float(stats[name]["std"]) or 1.0)
                break
    if not ids:
        raise GeoBenchError(f"{task.name}: no band with a known wavelength and band statistics")
    name = "geobench_" + re.sub(r"[^a-z0-9]+", "_", task.name.lower()).strip("_")
    return Modality(
        name=name,
        bands=tuple(ids),
        wavelengths=tuple(waves),
        gsd=None,
        mean=tuple(mean),
        std=tuple(std),
        units="as stored by GEO-Bench",
        description=f"GEO-Bench {task.name} bands",
        source="band_stats.json",
    )


def _select_bands(
    bands: dict[str, np.ndarray], order: list[str], task: GeoBenchTask, m: Modality
) -> np.ndarray:
    if task.band_order == "stored":  # names are wrong; positions are right
        arrays = [bands[name] for name in order[: m.num_bands]]
    elif not task.modality:
        arrays = [bands[name] for name in m.bands]
    else:
        by_id = {_band_id(name, task): array for name, array in bands.items()}
        missing = [b for b in m.bands if b not in by_id]
        if missing:
            raise GeoBenchError(
                f"{task.name}: bands {missing} of '{m.name}' not found among {sorted(bands)}"
            )
        arrays = [by_id[b] for b in m.bands]
    if len(arrays) != m.num_bands:
        raise GeoBenchError(
            f"{task.name}: {len(arrays)} bands found, '{m.name}' needs {m.num_bands}"
        )
    return np.stack([a.astype(np.float32) for a in arrays])


def _band_id(name: str, task: GeoBenchTask) -> str:
    """GEO-Bench band name -> our band id ('02 - Blue' -> 'B02', '08A - ...' -> 'B8A')."""
    low = name.lower().strip()
    if task.name == "m-forestnet" and low in LANDSAT_NAMES:
        return LANDSAT_NAMES[low]
    if low in RGB_NAMES:
        return RGB_NAMES[low]
    match = re.match(r"^(\d+)(a?)\s*-", low)
    if match:
        number, a = match.groups()
        return f"B{int(number)}A" if a else f"B{int(number):02d}"
    return name


def _undated(name: str) -> str:
    return re.sub(r"_\d{4}-\d{2}-\d{2}$", "", name)


def _class_names(folder: Path, task: GeoBenchTask, labels: dict[str, np.ndarray]) -> list[str]:
    names = None
    spec = folder / "task_specs.pkl"
    if spec.is_file():
        try:
            specs = _SafeUnpickler(io.BytesIO(spec.read_bytes())).load()
            label_type = getattr(specs, "label_type", None)
            for key in ("_class_names", "class_names", "class_name"):
                value = getattr(label_type, key, None)
                if isinstance(value, (list, tuple)) and value:
                    names = [str(v) for v in value]
                    break
        except Exception:  # noqa: BLE001 - names are a nicety; numbers still work
            names = None
    if names is None:
        all_labels = np.concatenate([v.reshape(len(v), -1) for v in labels.values()])
        count = all_labels.shape[1] if task.kind == "multilabel" else int(all_labels.max()) + 1
        names = [f"class_{i}" for i in range(count)]
    return names


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


# ---------------------------------------------------------------- evaluation
def run_geobench(
    model: OFANet,
    root: str | Path,
    tasks: Sequence[str] | None = None,
    partition: str = "default",
    max_per_split: int | None = None,
    seg_epochs: int = 20,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[dict[str, Any]]:
    """Frozen-backbone scores on each GEO-Bench task found under ``root``: linear probe and kNN
    (classification; F1 for multi-label), a light segmentation head's mIoU (segmentation).
    Train on ``train``, score on ``test``. Tasks the model cannot embed are reported, not run."""

    found = find_tasks(root)
    wanted = list(tasks) if tasks else [t.name for t in GEOBENCH_TASKS if t.name in found]
    known = {t.name: t for t in GEOBENCH_TASKS}
    rows = []
    for i, name in enumerate(wanted):
        name = ALIASES.get(name, name)
        if name not in known:
            raise GeoBenchError(f"unknown GEO-Bench task {name!r}; known: {', '.join(known)}")
        task = known[name]
        row: dict[str, Any] = {"task": name, "kind": task.kind}
        if name not in found:
            rows.append({**row, "skipped": "not found under the root folder"})
            continue
        data = read_task(found[name], task, partition, max_per_split)
        m = data.modality
        if m.name not in model.patch_embeds and model.wavelength_embed is None:
            rows.append(
                {
                    **row,
                    "skipped": f"needs a '{m.name}' embedding or a wavelength-"
                    "conditioned model (e.g. converted DOFA weights)",
                }
            )
            continue
        train_x, test_x = data.images["train"], data.images["test"]
        train_y, test_y = data.labels["train"], data.labels["test"]
        k = len(data.classes)
        if task.kind == "segmentation":
            size = model.config.img_size
            train_x, train_y = _tiled(train_x, train_y, size, m)
            test_x, test_y = _tiled(test_x, test_y, size, m)
            scores = fit_segmentation_arrays(
                model,
                f"geobench_{name}",
                train_x,
                train_y,
                test_x,
                test_y,
                data.classes,
                m,
                seg_epochs,
            )
            del model.heads[f"geobench_{name}"]
            row.update(metric="mIoU", segmentation=scores["miou"])
        else:
            f_train = extract_features(model, train_x, m)
            f_test = extract_features(model, test_x, m)
            if task.kind == "multilabel":
                probe = fit_linear_probe(f_train, train_y, k, multilabel=True)
                row.update(
                    metric="micro-F1", linear=_micro_f1(probe.logits(f_test).numpy() > 0, test_y)
                )
            else:
                probe = fit_linear_probe(f_train, train_y, k)
                row.update(
                    metric="accuracy",
                    linear=classification_scores(probe.predict(f_test), test_y, k)["accuracy"],
                    knn=classification_scores(knn_predict(f_train, train_y, f_test, k), test_y, k)[
                        "accuracy"
                    ],
                )
        rows.append({**row, "train": len(train_x), "test": len(test_x)})
        if progress:
            progress("geobench", i + 1, len(wanted))
    return rows


def _tiled(images: np.ndarray, masks: np.ndarray, size: int, m: Modality):
    tiles = [t for image, mask in zip(images, masks) for t in tile_pairs(image, mask, size, m)]
    return np.stack([t[0] for t in tiles]), np.stack([t[1] for t in tiles])


def _micro_f1(pred: np.ndarray, target: np.ndarray) -> float:
    pred, target = pred.astype(bool), target.astype(bool)
    tp = (pred & target).sum()
    denominator = pred.sum() + target.sum()
    return float(2 * tp / denominator) if denominator else 0.0


def format_table(rows: list[dict[str, Any]]) -> str:
    """The paper-style table: one row per task, frozen-backbone scores in percent."""

    def pct(v):
        return "" if v is None else f"{100 * v:.1f}"

    lines = [
        "| task | metric | linear probe | kNN | segmentation head | train / test |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "skipped" in r:
            lines.append(f"| {r['task']} | | | | | skipped: {r['skipped']} |")
            continue
        lines.append(
            f"| {r['task']} | {r['metric']} | {pct(r.get('linear'))} | "
            f"{pct(r.get('knn'))} | {pct(r.get('segmentation'))} | "
            f"{r['train']} / {r['test']} |"
        )
    return "\n".join(lines)


__all__ = [
    "GEOBENCH_TASKS",
    "GeoBenchTask",
    "GeoBenchError",
    "find_tasks",
    "read_task",
    "read_sample",
    "run_geobench",
    "format_table",
]
