"""A change head trained on labelled pairs: ``ofa train-head --task change --data PAIRS.csv``.

PAIRS.csv has the columns ``before,after,mask`` (paths relative to the CSV); a mask is on
BEFORE's grid with 1 = change, 0 = no change, 255 = not labelled. A row with an empty mask is
an unlabelled pair: the head trained on the labelled pairs marks its most and least changed
pixels (pseudo-labels), and a new head trains on both (self-training; it ranked change better
in OSCD cities it had not seen, docs/EVALUATION.md). The backbone stays frozen, so each pair is
calibrated as ``ofa change`` calibrates it, cut into model-sized tiles, and the head's inputs
(``change_detection.terms.head_inputs``) of every tile with a labelled pixel are computed once
(about 150 bytes a pixel; ``check_inputs_fit`` refuses what would not fit in memory); then only
the head trains, on those inputs, flipped and rotated. That keeps the 8 labelled OSCD cities
under a few minutes on a 2-core CPU (bench/RESULTS.md).
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F

from ..engine.run import GDAL_CACHE_BYTES
from ..errors import BadInput, NotFound
from ..heads import ChangeEnsemble, change_image_channels, default_layers
from ..io import raster_modality
from ..model import OFANet

IGNORE = 255
COLUMNS = ("before", "after", "mask")
POS_WEIGHT = 5.0  # changed pixels are 1-4% of a city: weigh them up (measured 1, 2, 5 and 10)
# the focal loss's exponent (0: plain cross-entropy). Leave-one-city-out on OSCD, cached inputs,
# seeds 0-2: pooled AP 0.315 / 0.301 / 0.292 with 0, 0.321 / 0.308 / 0.320 with 2; seeds 0, 1:
# 0.323 / 0.299 with 1, 0.322 / 0.298 with 3 (docs/EVALUATION.md)
FOCAL_GAMMA = 2.0
EPOCHS = 6  # leave-one-city-out on OSCD: 6 epochs pooled AP 0.232, 12: 0.224, 24: 0.184;
# on the inputs of 2026-12-06 (seeds 0, 1): 3: 0.269 / 0.269, 6: 0.288 / 0.284, 9: 0.272 / 0.244
# self-training on unlabelled pairs: their top share of scores becomes change, their bottom
# share no change, the rest stays unlabelled (leave-one-city-out on OSCD, cached inputs, seeds
# 0-2: pooled AP 0.232 / 0.210 / 0.241 without, 0.254 / 0.243 / 0.246 with its 4 unlabelled
# cities; docs/EVALUATION.md)
PSEUDO_CHANGE = 0.02
PSEUDO_NO_CHANGE = 0.7
UNLABELLED = 254  # a valid pixel of an unlabelled pair until pseudo-labelled; never trained on
# a change head is this many heads trained alike from seeds seed, seed + 1, ..., their logits
# averaged (``heads.ChangeEnsemble``): one head's leave-one-city-out AP on OSCD depends on its
# seed (0.353 / 0.326 / 0.349), three scored 0.353 (docs/EVALUATION.md); each member costs
# one head's training
MEMBERS = 3


@dataclass
class ChangePair:
    """One labelled pair of the CSV (absolute paths)."""

    before: Path
    after: Path
    mask: Path | None  # None: an unlabelled pair (self-training)

    @property
    def name(self) -> str:
        return self.before.parent.name or self.before.stem


@dataclass
class PairTiles:
    """A pair's tiles as the head reads them: levels [T, 2L, D, h, w] and image
    [T, 3C + 3, H, W] (float16), labels [T, H, W] (uint8, 255 ignored)."""

    name: str
    levels: torch.Tensor
    image: torch.Tensor
    labels: torch.Tensor


def read_change_pairs(path: str | Path) -> list[ChangePair]:
    """The pairs of a CSV; a missing column or file is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"{path} is not a CSV file of pairs", "give a CSV with before,after,mask")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise BadInput(
                f"{path} has no {', '.join(missing)} column (it has "
                f"{', '.join(reader.fieldnames or []) or 'none'})",
                "give the CSV the columns before,after,mask",
            )
        rows = list(reader)
    if not rows:
        raise BadInput(f"{path} lists no pairs", "add rows: before,after,mask")
    pairs = []
    for line, row in enumerate(rows, start=2):
        given = {c: (row[c] or "").strip() for c in COLUMNS}
        paths = {c: path.parent / v if v else None for c, v in given.items()}
        for column, file in paths.items():
            if file is None and column == "mask":
                continue  # an unlabelled pair
            if file is None or not file.is_file():
                raise NotFound(
                    f"{path.name} line {line}: {column} file {file or '(empty)'} does not exist",
                    "fix the path (relative to the CSV)",
                )
        before, after = paths["before"], paths["after"]
        assert before is not None and after is not None  # checked above
        pairs.append(ChangePair(before=before, after=after, mask=paths["mask"]))
    if all(p.mask is None for p in pairs):
        raise BadInput(
            f"{path.name}: no pair has a mask (all {len(pairs)} are unlabelled)",
            "give at least one pair a mask; unlabelled pairs only help a head trained on labels",
        )
    return pairs


def read_mask(pair: ChangePair, shape: tuple[int, int]) -> np.ndarray:
    """The pair's labels (uint8, 1/0/255) on BEFORE's grid, UNLABELLED everywhere for a pair
    without a mask; another size, other values or no change pixel at all is a one-line
    BadInput."""
    if pair.mask is None:
        return np.full(shape, UNLABELLED, np.uint8)
    with rasterio.open(pair.mask) as src:
        mask = src.read(1)
    if mask.shape != shape:
        raise BadInput(
            f"mask {pair.mask.name} is {mask.shape[1]}x{mask.shape[0]} px but BEFORE "
            f"{pair.before.name} is {shape[1]}x{shape[0]} px",
            "give masks on BEFORE's grid",
        )
    values = set(np.unique(mask).tolist())
    if not values <= {0, 1, IGNORE}:
        raise BadInput(
            f"mask {pair.mask.name} holds values {sorted(values - {0, 1, IGNORE})[:5]}",
            "use 1 = change, 0 = no change, 255 = not labelled",
        )
    if 1 not in values:
        raise BadInput(
            f"mask {pair.mask.name} has no change pixel (no 1)",
            "label some change in it, or leave the pair out",
        )
    return mask.astype(np.uint8)


@torch.no_grad()
def pair_tiles(
    model: OFANet, pair: ChangePair, layers: list[int], batch_size: int = 32
) -> PairTiles:
    """The head's inputs on non-overlapping model-sized tiles covering the pair (edge tiles
    moved inside), calibrated (and AFTER aligned) as ``ofa change`` does the whole pair; only
    the tiles with a pixel to train on (``pair_corners``), each read on its own, so a large
    scene labelled in a few places costs what those places do, and an unlabelled one at most
    UNLABELLED_TILES tiles."""
    from ..change_detection import calibrated_pair
    from ..change_detection.calibration import HEAD_SAMPLE_TILES, date_modality
    from ..change_detection.terms import head_inputs

    size = model.config.img_size
    with rasterio.open(pair.before) as src:
        height, width = src.height, src.width
    if height < size or width < size:
        raise BadInput(
            f"{pair.before.name} is {width}x{height} px, smaller than one tile ({size} px)",
            "give larger pairs",
        )
    mask = read_mask(pair, (height, width))
    pair_da, stats = calibrated_pair(
        model,
        pair.before,
        pair.after,
        modality=None,
        tile=size,
        threshold=None,
        head="zero-shot",  # the head's inputs are calibrated as the zero-shot score's,
        samples=HEAD_SAMPLE_TILES,
        for_head=True,  # but for the embedding term's block: the last, as a head reads it
    )
    m = date_modality(raster_modality(pair_da))
    count = m.num_bands
    levels, images, labels = [], [], []

    def embed(chips: list[np.ndarray]) -> None:
        t = torch.from_numpy(_fill(np.stack(chips)))
        lv, image = head_inputs(model, t[:, :count], t[:, count:], m, stats, layers)
        levels.append(torch.stack(lv, dim=1).half())
        images.append(image.half())

    pending: list[np.ndarray] = []
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # as the engine reads: a bounded cache
        for y, x in pair_corners(pair, mask, size):
            chip = pair_da[:, y : y + size, x : x + size].values  # [2C, size, size], NaN: none
            chip_labels = np.where(
                np.isfinite(chip).all(axis=0), mask[y : y + size, x : x + size], IGNORE
            )
            if (chip_labels == IGNORE).all():
                continue  # labelled only where a date has no data
            pending.append(chip)
            labels.append(torch.from_numpy(chip_labels.astype(np.uint8)))
            if len(pending) == batch_size:
                embed(pending)
                pending = []
    if pending:
        embed(pending)
    if not labels:
        raise BadInput(
            f"{pair.name}: no pixel to train on (labelled, where both dates have data)",
            "label pixels where both dates have data, or leave the pair out",
        )
    return PairTiles(pair.name, torch.cat(levels), torch.cat(images), torch.stack(labels))


# an unlabelled pair gives self-training at most this many tiles, spread over it (each of the 4
# unlabelled OSCD cities has 28-64 tiles of the shipped model's 64 px), so a whole scene added
# unlabelled costs what a city does, not what the scene does
UNLABELLED_TILES = 256


def pair_corners(pair: ChangePair, mask: np.ndarray, size: int) -> list[tuple[int, int]]:
    """The tiles of ``pair`` that ``pair_tiles`` reads (``tile_corners`` of its mask); of an
    unlabelled pair, at most UNLABELLED_TILES of them, evenly spread."""
    corners = tile_corners(mask, size)
    if pair.mask is None and len(corners) > UNLABELLED_TILES:
        picked = np.linspace(0, len(corners) - 1, UNLABELLED_TILES).round().astype(int)
        corners = [corners[i] for i in picked]
    return corners


def tile_corners(labels: np.ndarray, size: int) -> list[tuple[int, int]]:
    """The top-left corners of the size-px tiles that cover ``labels`` (edge tiles moved
    inside) and hold a pixel that is not IGNORE: labelled, or any pixel of an unlabelled pair
    (``pair_tiles`` drops the tiles whose labels lie only where a date has no data)."""
    height, width = labels.shape
    return [
        (y, x)
        for y in _starts(height, size)
        for x in _starts(width, size)
        if (labels[y : y + size, x : x + size] != IGNORE).any()
    ]


def _starts(length: int, size: int) -> list[int]:
    return sorted({min(i, length - size) for i in range(0, length, size)})


# the share of the memory free at the start that the head's cached inputs may take: the rest is
# for the model, the tiles being read and the head's training
INPUTS_MEMORY_SHARE = 0.6


def check_inputs_fit(model: OFANet, pairs: list[ChangePair], layers: list[int]) -> int:
    """The bytes the head's inputs of ``pairs`` will take (``pair_tiles``), from their masks
    (read and checked here, before any pair is embedded); more than INPUTS_MEMORY_SHARE of the
    free memory is a one-line BadInput that says how to need less."""
    from ..check_setup import free_memory_gb

    size, patch = model.config.img_size, model.config.patch_size
    tokens = 2 * len(layers) * model.config.embed_dim * (size // patch) ** 2
    tiles = need = 0
    for pair in pairs:
        with rasterio.open(pair.before) as src:
            shape, bands = src.shape, src.count
        if min(shape) < size:  # pair_tiles says so
            continue
        count = len(pair_corners(pair, read_mask(pair, shape), size))
        tiles += count  # float16 token maps and image, uint8 labels
        need += count * (2 * (tokens + change_image_channels(bands) * size * size) + size * size)
    free = free_memory_gb()
    if free is not None and need > INPUTS_MEMORY_SHARE * free * 1e9:
        raise BadInput(
            f"the head's inputs of these pairs would take {need / 1e9:.1f} GB ({tiles} tiles of "
            f"{size} px: those with labels, and up to {UNLABELLED_TILES} of each unlabelled "
            f"pair), more than this machine can spare ({free:.1f} GB free)",
            "mark what is not labelled 255 in the masks (only tiles with labels are read), "
            "crop the pairs to their labelled areas, or leave out unlabelled pairs",
        )
    return need


def _fill(chips: np.ndarray) -> np.ndarray:
    """NaN pixels filled with each chip's band means over its valid pixels, as the engine's
    tile reader fills nodata."""
    chips = chips.astype(np.float32)
    bad = ~np.isfinite(chips)
    if bad.any():
        means = np.nanmean(np.where(bad, np.nan, chips), axis=(2, 3), keepdims=True)
        chips = np.where(bad, np.nan_to_num(means), chips)
    return chips


def train_change_head(
    model: OFANet,
    name: str,
    tiles: list[PairTiles],
    layers: list[int],
    modality: str,
    epochs: int = EPOCHS,
    lr: float = 2e-3,
    batch_size: int = 16,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    unlabelled: list[PairTiles] | None = None,
    members: int = MEMBERS,
) -> list[float]:
    """Add change head ``name``: ``members`` heads trained on the tiles' cached inputs (AdamW,
    cosine schedule, ``focal_loss``, 255 ignored) from seeds ``seed``, ``seed + 1``, ...,
    joined (``join_members``); the last member's loss per epoch.
    With ``unlabelled`` pairs' tiles, each member pseudo-labels them and a new member trains
    on both (self-training)."""
    per_member = 2 if unlabelled else 1  # rounds of training
    rounds = per_member * members

    def counted(before: int) -> Callable[[int, int, float], None] | None:
        """Progress over all rounds: epochs 1..2E per member when self-training."""
        if progress is None:
            return None
        return lambda done, total, loss: progress(before + done, rounds * total, loss)

    def train(on: list[PairTiles], member: int, done: int) -> list[float]:
        return _train_head(
            model,
            name,
            on,
            layers=layers,
            modality=modality,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed + member,
            progress=counted(done),
        )

    trained, losses = [], []
    for member in range(members):
        done = member * per_member * epochs
        losses = train(tiles, member, done)
        if unlabelled:
            pseudo = [pseudo_labelled(model.heads[name], t) for t in unlabelled]
            losses = train(tiles + pseudo, member, done + epochs)
        trained.append(model.heads[name])
    if members > 1:
        join_members(model, name, trained)
    return losses


def join_members(model: OFANet, name: str, members: list[torch.nn.Module]) -> None:
    """Make change head ``name`` of ``model`` the ``ChangeEnsemble`` of ``members`` (trained
    ChangeHeads of that name's record, e.g. from models trained with other seeds); its record's
    ``members`` rebuilds it from a checkpoint."""
    model.heads[name] = ChangeEnsemble(members).eval().requires_grad_(False)
    model.heads.info[name]["members"] = len(members)


@torch.no_grad()
def pseudo_labelled(head: torch.nn.Module, tiles: PairTiles) -> PairTiles:
    """An unlabelled pair's tiles labelled by a trained head: the top PSEUDO_CHANGE of its
    scores over the pair's valid pixels as change, the bottom PSEUDO_NO_CHANGE as no change,
    the rest (and nodata) not labelled."""
    logits = torch.cat(
        [
            head(list(lv.float().unbind(1)), im.float())[:, 0]
            for lv, im in zip(tiles.levels.split(32), tiles.image.split(32))
        ]
    )
    valid = tiles.labels == UNLABELLED
    labels = torch.full_like(tiles.labels, IGNORE)
    if valid.any():
        low, high = np.quantile(logits[valid].numpy(), [PSEUDO_NO_CHANGE, 1 - PSEUDO_CHANGE])
        labels[valid & (logits >= float(high))] = 1
        labels[valid & (logits <= float(low))] = 0
    return PairTiles(tiles.name, tiles.levels, tiles.image, labels)


def _train_head(
    model: OFANet,
    name: str,
    tiles: list[PairTiles],
    layers: list[int],
    modality: str,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    progress: Callable[[int, int, float], None] | None,
) -> list[float]:
    torch.manual_seed(seed)
    model.heads.add(name, ["change"], kind="change", modality=modality, layers=layers)
    head = model.heads[name]
    labels = torch.cat([t.labels for t in tiles])  # uint8; the inputs stay in their tiles
    first = torch.tensor([0] + [len(t.labels) for t in tiles]).cumsum(0)
    if (labels == UNLABELLED).any():
        raise ValueError("unlabelled tiles go to `unlabelled=`, to be pseudo-labelled first")
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * math.ceil(len(labels) / batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))
    )
    generator = torch.Generator().manual_seed(seed)
    losses = []
    head.train()
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(labels), generator=generator)
            total, seen = 0.0, 0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:  # BatchNorm needs two samples
                    continue
                levels, image = _gathered(tiles, first, index)
                lv, im, y = _dihedral(levels.float(), image.float(), labels[index], generator)
                logits = head(list(lv.unbind(1)), im)[:, 0]
                known = y != IGNORE
                if not known.any():
                    continue
                loss = focal_loss(logits[known], (y[known] == 1).float(), POS_WEIGHT, FOCAL_GAMMA)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total, seen = total + loss.item() * len(index), seen + len(index)
            losses.append(total / max(seen, 1))
            if progress:
                progress(epoch + 1, epochs, losses[-1])
    finally:
        head.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return losses


def _gathered(
    tiles: list[PairTiles], first: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The token maps and images of tiles ``index`` (numbered across ``tiles`` in order,
    ``first``: each pair's first number), in that order, without joining all the pairs' inputs
    into one tensor first (that held them twice)."""
    pair = (torch.searchsorted(first, index, right=True) - 1).tolist()
    local = (index - first[pair]).tolist()
    return (
        torch.stack([tiles[p].levels[i] for p, i in zip(pair, local)]),
        torch.stack([tiles[p].image[i] for p, i in zip(pair, local)]),
    )


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, pos_weight: float, gamma: float
) -> torch.Tensor:
    """Binary cross-entropy, changed pixels weighed ``pos_weight``, each pixel's term times
    (1 - p)^gamma for p the probability the head gives its true label (Lin et al. 2017): the
    many unchanged pixels it already gets right count less, the doubtful ones more."""
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = torch.where(target > 0, pos_weight, 1.0)
    return (weight * (1 - torch.exp(-bce)) ** gamma * bce).mean()


def _dihedral(levels, image, labels, generator):
    """One random flip/rotation per batch for token maps, image and labels alike."""
    k = int(torch.randint(4, (1,), generator=generator))
    flip = bool(torch.randint(2, (1,), generator=generator))
    levels = torch.rot90(levels, k, dims=(-2, -1))
    image = torch.rot90(image, k, dims=(-2, -1))
    labels = torch.rot90(labels, k, dims=(-2, -1))
    if flip:
        levels, image, labels = levels.flip(-1), image.flip(-1), labels.flip(-1)
    return levels, image, labels


def fit_change_head(
    model: OFANet,
    data: str | Path,
    name: str = "change",
    *,
    layers: list[int] | None = None,
    epochs: int = EPOCHS,
    val_fraction: float = 0.0,
    seed: int = 0,
    members: int = MEMBERS,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Add change head ``name`` trained on the pairs of the CSV ``data`` (its unlabelled pairs
    through self-training; ``members`` heads from seeds ``seed``, ``seed + 1``, ...,
    averaged: ``train_change_head``). With ``val_fraction`` > 0, that share of the labelled
    pairs (at least one) is held out and scored through ``ofa_explore.change`` (AUROC, average
    precision, best F1 over their labelled pixels)."""
    from ..change_detection import change
    from ..metrics import ranking_scores

    if members < 1:
        raise BadInput(
            f"a change head has one member or more, not {members}",
            "give a whole number from 1 as {members}",
        )
    t0 = time.perf_counter()
    pairs = read_change_pairs(data)
    unlabelled = [p for p in pairs if p.mask is None]
    labelled_pairs = [p for p in pairs if p.mask is not None]
    held = max(1, round(len(labelled_pairs) * val_fraction)) if val_fraction > 0 else 0
    if held and held >= len(labelled_pairs):
        raise BadInput(
            f"{len(labelled_pairs)} labelled pair(s) cannot hold {val_fraction:.0%} out and "
            "train on the rest",
            "add pairs or set the validation fraction to 0",
        )
    order = np.random.default_rng(seed).permutation(len(labelled_pairs))
    val = [labelled_pairs[i] for i in sorted(order[:held])]
    train = [labelled_pairs[i] for i in sorted(order[held:])]
    modality = _common_modality(pairs)
    layers = layers or default_layers(model.config.depth)
    check_inputs_fit(model, train + unlabelled, layers)
    tiles: list[PairTiles] = []
    extra: list[PairTiles] = []
    for i, pair in enumerate(train + unlabelled):
        (tiles if pair.mask is not None else extra).append(pair_tiles(model, pair, layers))
        if progress:
            progress("reading pairs", i + 1, len(train) + len(unlabelled))
    losses = train_change_head(
        model,
        name,
        tiles,
        layers,
        modality,
        epochs=epochs,
        seed=seed,
        progress=(lambda done, total, _loss: progress("training", done, total))
        if progress
        else None,
        unlabelled=extra,
        members=members,
    )
    labels = torch.cat([t.labels for t in tiles])
    labelled, changed = int((labels != IGNORE).sum()), int((labels == 1).sum())
    model.heads.info[name]["trained_on"] = (
        f"{Path(data).name}: {len(train)} pairs ({', '.join(t.name for t in tiles)}), "
        f"{labelled} labelled px, {changed / max(labelled, 1):.1%} change"
        + (
            f"; self-trained on {len(extra)} unlabelled ({', '.join(t.name for t in extra)})"
            if extra
            else ""
        )
    )
    report: dict[str, Any] = {
        "head": name,
        "members": members,
        "pairs": len(train),
        "unlabelled": len(extra),
        "labelled": labelled,
        "changed": changed,
        "loss": losses[-1],
        "seconds": time.perf_counter() - t0,
        "val": [p.name for p in val],
    }
    if val:
        y, s = [], []
        for pair in val:
            result = change(pair.before, pair.after, model=model, head=name)
            assert result.data is not None
            with rasterio.open(pair.mask) as src:
                mask = src.read(1)
            known = mask != IGNORE
            y.append(mask[known] == 1)
            s.append(result.data.values[0][known])
        report.update(
            zip(("auroc", "ap", "best_f1"), ranking_scores(np.concatenate(y), np.concatenate(s)))
        )
        model.heads.info[name].update(
            {k: round(report[k], 4) for k in ("auroc", "ap", "best_f1")}, held_out=report["val"]
        )
    return report


def _common_modality(pairs: list[ChangePair]) -> str:
    """The sensor of the pairs' BEFORE rasters; pairs of several sensors are refused."""
    from ..io import open_raster

    names = {p.name: raster_modality(open_raster(p.before)).name for p in pairs}
    if len(set(names.values())) > 1:
        raise BadInput(
            "the pairs come from several sensors ("
            + ", ".join(f"{k}: {v}" for k, v in names.items())
            + ")",
            "train one change head per sensor",
        )
    return next(iter(names.values()))
