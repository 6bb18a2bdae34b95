"""The downstream jobs a user runs (and the CLI calls): fit a head on labelled data and save
it with the model, score a head, compare a backbone with random initialisation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..checkpoint import model_from_metadata
from ..errors import BadInput
from ..heads import DEFAULT_POOL, check_pool
from ..inputs import normalize, require_embedding
from ..metrics import classification_scores, segmentation_scores
from ..modalities import Modality
from ..model import OFANet
from .datasets import (
    IGNORE_INDEX,
    LabelError,
    LabelledChips,
    SegmentationScenes,
    load_chips,
    load_masks,
    read_labelled_chips,
    read_segmentation_scenes,
    scene_tiles,
    tile_pairs,
)
from .features import extract_features
from .probes import cross_validate, fit_linear_probe, train_val_split
from .training import predict, train_head

METHODS = ("linear", "finetune")
BAND_STATS = "band mean+std"  # the no-network baseline of compare_with_random_init
Progress = Callable[[str, int, int], None]  # (stage, done, total)


def fit_scene_head(
    model: OFANet,
    data: LabelledChips | str | Path,
    name: str,
    *,
    modality: str | Modality | None = None,
    method: str = "linear",
    trainable_blocks: int = 0,
    epochs: int = 30,
    val_fraction: float = 0.2,
    colors: Sequence[str] | None = None,
    pool: str = DEFAULT_POOL,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Add scene head ``name`` to ``model``, fitted on the chips' train split; returns (and
    stores in ``model.heads.info[name]``) its scores on the held-out split.

    ``method="linear"``: logistic regression on frozen pooled features (a linear probe; ``pool``:
    see ``OFANet.pooled_features``).
    ``method="finetune"``: that probe, then gradient training of the head and the last
    ``trainable_blocks`` encoder blocks (-1: all). Fine-tuning changes the shared backbone, so
    the model's other heads are removed. The new head becomes the model's default.
    """
    if method not in METHODS:
        raise BadInput(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    check_pool(pool)
    data = data if isinstance(data, LabelledChips) else read_labelled_chips(data)
    x, m = load_chips(
        data.paths, modality, _chip_size(model, data.paths[0], modality), _stage(progress, "read")
    )
    require_embedding(model, m)
    y = data.targets
    train, val = train_val_split(len(y), val_fraction, data.groups, y, seed)
    if method == "finetune" and trainable_blocks:
        _drop_heads(model)
    model.heads.add(name, data.classes, pool=pool, modality=m.name, colors=colors)
    model.heads.set_default(name)  # a freshly fitted head is the one users expect next
    features = extract_features(
        model, x[train], m, pool=pool, progress=_stage(progress, "features")
    )
    probe = fit_linear_probe(
        features,
        y[train],
        len(data.classes),
        groups=[data.groups[i] for i in train] if data.groups else None,
        seed=seed,
    )
    model.heads[name].set_linear_probe(probe.mean, probe.var, probe.weight, probe.bias)
    if method == "finetune":
        stage = _stage(progress, "fine-tune")
        train_head(
            model,
            name,
            x[train],
            y[train],
            m,
            trainable_blocks,
            epochs,
            seed=seed,
            progress=(lambda e, n, _loss: stage(e, n)) if stage else None,
        )
    scores = classification_scores(predict(model, name, x[val], m), y[val], len(data.classes))
    model.heads.info[name].update(
        method=method,
        trainable_blocks=trainable_blocks if method == "finetune" else 0,
        trained_on=f"{_data_name(data.source)} ({len(train)} chips; {len(val)} held out"
        f"{', by group' if data.groups else ''})",
        validation=_summary(scores),
    )
    return {"head": name, "classes": data.classes, "train": len(train), "val": len(val), **scores}


def fit_segmentation_head(
    model: OFANet,
    data: SegmentationScenes | str | Path,
    name: str,
    *,
    modality: str | Modality | None = None,
    trainable_blocks: int = 0,
    epochs: int = 60,
    val_fraction: float = 0.2,
    lr: float = 3e-3,
    augment: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Add segmentation head ``name``, trained on model-sized tiles of the scenes; held-out
    tiles (whole scenes when there are several, else the bottom rows) give the mIoU."""
    data = data if isinstance(data, SegmentationScenes) else read_segmentation_scenes(data)
    x, y, groups, m = scene_tiles(model.config.img_size, data, modality)
    require_embedding(model, m)
    if len(data) > 1:
        train, val = train_val_split(len(y), val_fraction, [g[0] for g in groups], None, seed)
    else:  # one scene: the last rows of tiles are held out
        rows = np.array([g[1] for g in groups])
        cut = np.quantile(rows, 1 - val_fraction)
        train, val = np.flatnonzero(rows < cut), np.flatnonzero(rows >= cut)
        if not len(train) or not len(val):
            raise BadInput(
                "the scene is too small to hold rows out",
                "lower the validation fraction or add scenes",
            )
    scores = fit_segmentation_arrays(
        model,
        name,
        x[train],
        y[train],
        x[val],
        y[val],
        data.classes,
        m,
        epochs,
        trainable_blocks,
        lr,
        seed,
        data.colors,
        augment,
        progress,
    )
    model.heads.info[name]["trained_on"] = (
        f"{_data_name(data.source)} ({len(train)} tiles; {len(val)} held out)"
    )
    return {"head": name, "classes": data.classes, "train": len(train), "val": len(val), **scores}


def fit_segmentation_arrays(
    model: OFANet,
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    classes: Sequence[str],
    modality: Modality,
    epochs: int = 60,
    trainable_blocks: int = 0,
    lr: float = 3e-3,
    seed: int = 0,
    colors: Sequence[str] | None = None,
    augment: bool = True,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Add segmentation head ``name``, train it on tiles ``x`` [N, C, S, S] / masks ``y``
    [N, S, S], and score it (mIoU) on the validation tiles. Fine-tuning blocks
    (``trainable_blocks``) changes the shared backbone, so the model's other heads are removed."""
    if trainable_blocks:
        _drop_heads(model)
    model.heads.add(name, classes, kind="segmentation", modality=modality, colors=colors)
    model.heads.set_default(name)
    stage = _stage(progress, "train")
    losses = train_head(
        model,
        name,
        x,
        y,
        modality,
        trainable_blocks,
        epochs,
        lr=lr,
        batch_size=16,
        augment=augment,
        seed=seed,
        progress=(lambda e, n, _loss: stage(e, n)) if stage else None,
    )
    scores = segmentation_scores(predict(model, name, x_val, modality), y_val, len(classes))
    train_scores = segmentation_scores(predict(model, name, x, modality), y, len(classes))
    model.heads.info[name].update(
        method="finetune" if trainable_blocks else "frozen",
        trainable_blocks=trainable_blocks,
        validation={"miou": round(scores["miou"], 4)},
    )
    return {"train_miou": train_scores["miou"], "losses": losses, **scores}


def evaluate_head(
    model: OFANet,
    data: LabelledChips | SegmentationScenes | str | Path,
    head: str | None = None,
    modality: str | Modality | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Scores of a head on labelled data (all of it): accuracy, macro-F1 and confusion matrix,
    or mIoU for a segmentation head. Labels the head does not know are an error."""
    if _is_segmentation_data(data):
        data = data if isinstance(data, SegmentationScenes) else read_segmentation_scenes(data)
        x, y, _, m = scene_tiles(model.config.img_size, data, modality)
        name = model.heads.select(head, "segmentation", m)
        info = model.heads.info[name]
        if y[y != IGNORE_INDEX].max(initial=0) >= len(info["classes"]):
            raise LabelError(
                f"the masks have class values beyond the {len(info['classes'])} "
                f"classes of head {name!r} ({', '.join(info['classes'])})"
            )
        scores = segmentation_scores(predict(model, name, x, m), y, len(info["classes"]))
    else:
        data = data if isinstance(data, LabelledChips) else read_labelled_chips(data)
        x, m = load_chips(
            data.paths,
            modality,
            _chip_size(model, data.paths[0], modality),
            _stage(progress, "read"),
        )
        name = model.heads.select(head, None, m)
        info = model.heads.info[name]
        data = data.with_classes(info["classes"])
        scores = classification_scores(
            predict(model, name, x, m), data.targets, len(info["classes"])
        )
    return {"head": name, "kind": info["kind"], "classes": info["classes"], **scores}


def random_init(model: OFANet, seed: int) -> OFANet:
    """The same architecture and modalities (no heads), initialised the way timm initialises a ViT
    (weights normal with std 0.02, as timm's ``trunc_normal_``, whose bounds of ±2 never bite
    at that std; biases 0; norms 1 and 0): the stronger
    of the usual random baselines for frozen features, so the one to beat."""
    meta = {
        "config": model.config.to_dict(),
        "modalities": {n: v.to_dict() for n, v in model.modalities.items()},
    }
    torch.manual_seed(seed)
    net = model_from_metadata(meta)
    for module in net.modules():
        if isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            torch.nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)
        elif isinstance(module, torch.nn.LayerNorm):
            torch.nn.init.ones_(module.weight)
            torch.nn.init.zeros_(module.bias)
    torch.nn.init.normal_(net.cls_token, std=0.02)
    return net


def compare_with_random_init(
    model: OFANet,
    data: LabelledChips | SegmentationScenes | str | Path,
    *,
    modality: str | Modality | None = None,
    folds: int = 5,
    seeds: Sequence[int] = (0, 1, 2),
    init_seeds: Sequence[int] = (0, 1, 2, 3, 4),
    pool: str = DEFAULT_POOL,
    k: int = 20,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Linear-probe and kNN accuracy (cross-validated, group-aware when the data has groups) of
    the model's frozen features, of the same architecture randomly initialised (``random_init``,
    one network per ``init_seeds``), and of no network at all (each band's mean and standard
    deviation: what colour alone gives).

    Labelled chips: one pooled feature per chip (``pool``: see ``OFANet.pooled_features``).
    Segmentation scenes (images + masks): one token per patch, labelled with the majority class
    of its labelled pixels (patches less than a quarter labelled are left out), folds split by
    scene. Every score is the mean over the ``seeds`` fold assignments (and, for random init,
    over the networks); ``accuracy_std`` is the spread between folds."""
    if _is_segmentation_data(data):
        scenes = data if isinstance(data, SegmentationScenes) else read_segmentation_scenes(data)
        x, m, y, keep, groups = _labelled_patches(model, scenes, modality)
        require_embedding(model, m)
        num_classes = len(scenes.classes)

        def features(net: OFANet) -> np.ndarray:
            return _patch_tokens(net, x, m)[keep]

        stats = _patch_band_stats(model, x, m)[keep]
    else:
        chips = data if isinstance(data, LabelledChips) else read_labelled_chips(data)
        x, m = load_chips(
            chips.paths,
            modality,
            _chip_size(model, chips.paths[0], modality),
            _stage(progress, "read"),
        )
        require_embedding(model, m)
        y, groups, num_classes = chips.targets, chips.groups, len(chips.classes)

        def features(net: OFANet) -> np.ndarray:
            return extract_features(net, x, m, pool=pool)

        normalised = normalize(torch.from_numpy(x), m)
        stats = torch.cat([normalised.mean((2, 3)), normalised.std((2, 3))], 1).numpy()
    backbones: dict[str, Callable[[], list[np.ndarray]]] = {
        "pre-trained": lambda: [features(model)],
        "random init": lambda: [features(random_init(model, s)) for s in init_seeds],
        BAND_STATS: lambda: [stats],
    }
    rows = []
    for label, make in backbones.items():
        runs, total = [], len(seeds) * (len(init_seeds) if label == "random init" else 1)
        for f in make():
            for seed in seeds:
                runs.append(cross_validate(f, y, num_classes, groups, folds, seed, k))
                if progress:
                    progress(label, len(runs), total)
        for method in ("linear", "knn"):
            rows.append(
                {
                    "backbone": label,
                    "method": method,
                    "accuracy": float(np.mean([r[method]["accuracy"] for r in runs])),
                    "accuracy_std": float(np.mean([r[method]["accuracy_std"] for r in runs])),
                    "macro_f1": float(np.mean([r[method]["macro_f1"] for r in runs])),
                    "folds": folds,
                    "repeats": len(seeds),
                    "networks": len(init_seeds) if label == "random init" else 1,
                    "chips": len(y),
                }
            )
    return rows


def _labelled_patches(model: OFANet, scenes: SegmentationScenes, modality: str | Modality | None):
    """Tiles of every scene (at most the model's image size), and for every patch of every tile
    its majority class, whether it is labelled enough to use, and its scene."""
    sizes = [
        min(_patch_floor(s, model.config.patch_size) for s in _raster_shape(path))
        for path in scenes.images
    ]
    size = min([model.config.img_size, *sizes])
    if size < model.config.patch_size:
        raise BadInput(f"a scene is smaller than one {model.config.patch_size}-pixel patch")
    tiles, labels, keep, groups, found = [], [], [], [], None
    p = model.config.patch_size
    for i, (image_path, mask_path) in enumerate(zip(scenes.images, scenes.masks)):
        image, found = load_chips([image_path], modality or found)
        mask = load_masks([mask_path])[0]
        for tile, tile_mask, _ in tile_pairs(image[0], mask, size, found):
            tiles.append(tile)
            patches = tile_mask.reshape(size // p, p, size // p, p).transpose(0, 2, 1, 3)
            patches = patches.reshape(-1, p * p)
            for patch in patches:
                valid = patch[(patch != IGNORE_INDEX) & (patch < len(scenes.classes))]
                counts = np.bincount(valid, minlength=len(scenes.classes))
                labels.append(int(counts.argmax()))
                keep.append(len(valid) >= p * p / 4)
                groups.append(i)
    keep = np.asarray(keep)
    return (
        np.stack(tiles),
        found,
        np.asarray(labels)[keep],
        keep,
        [g for g, k in zip(groups, keep) if k],
    )


@torch.no_grad()
def _patch_tokens(model: OFANet, x: np.ndarray, m: Modality, batch: int = 32) -> np.ndarray:
    """Frozen patch tokens of every tile, flattened: [N * L, D]."""
    model.eval()
    out = [
        model.forward_features(torch.from_numpy(x[i : i + batch]), m)[:, 1:]
        for i in range(0, len(x), batch)
    ]
    return torch.cat(out).flatten(0, 1).numpy()


def _patch_band_stats(model: OFANet, x: np.ndarray, m: Modality) -> np.ndarray:
    """Each patch's per-band mean and standard deviation (normalised units): [N * L, 2C]."""
    patches = model.patchify(normalize(torch.from_numpy(x), m))  # [N, L, p*p*C]
    patches = patches.unflatten(-1, (-1, x.shape[1]))  # [N, L, p*p, C]
    return torch.cat([patches.mean(2), patches.std(2)], -1).flatten(0, 1).numpy()


def _raster_shape(path: Path) -> tuple[int, int]:
    import rasterio

    with rasterio.open(path) as src:
        return src.height, src.width


def _patch_floor(side: int, patch: int) -> int:
    return side // patch * patch


# ---------------------------------------------------------------- helpers
def _is_segmentation_data(data) -> bool:
    if isinstance(data, (LabelledChips, SegmentationScenes)):
        return isinstance(data, SegmentationScenes)
    path = Path(data)
    if path.is_dir():
        return (path / "images").is_dir() and (path / "masks").is_dir()
    if path.suffix.lower() == ".csv" and path.is_file():
        with open(path) as f:
            return "mask" in f.readline().strip().split(",")
    return False


def _chip_size(model: OFANet, first: Path, modality) -> int | None:
    """Keep the chips' size when the model can take it, else resize to the model's image size."""
    from ..io import open_raster

    da = open_raster(first, modality)
    side = da.sizes["y"]
    p = model.config.patch_size
    return None if side == da.sizes["x"] and side % p == 0 else model.config.img_size


def _drop_heads(model: OFANet) -> None:
    """Heads fitted on a backbone that is about to change would silently go wrong: remove them."""
    for name in list(model.heads):
        del model.heads[name]


def _summary(scores: dict[str, Any]) -> dict[str, Any]:
    return {
        "accuracy": round(scores["accuracy"], 4),
        "macro_f1": round(scores["macro_f1"], 4),
        "count": scores["count"],
    }


def _stage(progress: Progress | None, name: str):
    if progress is None:
        return None
    return lambda done, total: progress(name, done, total)


def _data_name(source: str) -> str:
    """The data's folder and file name ("eurosat/index.csv"): enough to say what the head saw,
    without the trainer's own folders, which would travel in every copy of the model."""
    parts = Path(str(source)).parts
    return "/".join(parts[-2:]) if parts else ""
