"""Write the change-detection section of docs/EVALUATION.md: `ofa change`'s zero-shot score
against the embedding distance alone, random-init embeddings and three band baselines, on the
8 labelled OSCD cities of the shared data (pixel level, on the label grid) and the Nanjing
Landsat-5 pair (255 = not labelled).

The OSCD change maps are CC BY-NC-SA: they are read from the shared data, never copied.

    python scripts/evaluate_change.py [--shared ../shared/data] [--threads 1]

It keeps what it measured in docs/change_evaluation.json; after an edit to the section's prose
or to HEAD_RECIPES, ``--write-only`` rewrites the section from those figures without measuring
again (a run takes 20-40 min on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from affine import Affine
from rasterio.windows import Window

from ofa_explore import change_detection as change_module
from ofa_explore.change_detection import terms as change_terms
from ofa_explore.checkpoint import load_checkpoint
from ofa_explore.downstream.change import (
    ChangePair,
    join_members,
    pair_tiles,
    train_change_head,
)
from ofa_explore.downstream.tasks import random_init
from ofa_explore.engine import predict_raster
from ofa_explore.heads import default_layers
from ofa_explore.io import CONVERSION_ATTR, open_raster
from ofa_explore.metrics import ranking_scores as scores
from ofa_explore.pretrained import load_pretrained
from ofa_explore.protocol import MISREGISTERED_PX, change_threshold
from ofa_explore.scale import to_model_units

ROOT = Path(__file__).resolve().parents[1]
# the methods, by their short names (the per-city table's columns)
LONG = {
    "trained head": "**trained change head** (`ofa train-head --task change`: 3 members "
    "from seeds 0, 1, 2, their logits averaged), leave-one-city-out, self-trained on the 4 "
    "unlabelled cities",
    "one member": "one member of it alone (seed 0; the trained head until 2026-12-06)",
    "random-init head": "one member (seed 0) trained on random-init embeddings",
    "default": "**zero-shot default** (`ofa change`: z(pixels) + "
    f"{change_terms.ANOMALY_WEIGHT:g} z(anomaly) + {change_terms.EMBEDDING_WEIGHT:g} "
    "z(embeddings))",
    "no anomaly": "the default without its anomaly term (the default until 2026-12-05)",
    "no embeddings": "its pixel and anomaly terms alone (embedding weight 0)",
    "anomaly only": "its anomalous-change term alone",
    "random-init": "zero-shot default with random-init embeddings",
    "embedding only": "embedding distance alone (1 - cosine, raw, upsampled)",
    "centred embedding": "the last block's embeddings centred (1 - cosine after subtracting "
    "each date's mean; the default's embedding term until 2026-12-06, now of block 6 of 8)",
    "abs(B04)": "abs(B04 difference)",
    "CVA": "change vector magnitude (standardised bands)",
    "1-cos bands": "1 - cosine of the band vectors",
}
START, END = "<!-- change-evaluation:start -->", "<!-- change-evaluation:end -->"
FIGURES = ROOT / "docs" / "change_evaluation.json"  # the last run's measurements
# AFTER moved this many pixels from BEFORE (south-east) to measure what misregistration costs
MOVES_PX = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
# the trained head's members' seeds (`ofa train-head`'s: MEMBERS from --seed 0); each alone
# gives the spread of one head
SEEDS = (0, 1, 2)
FIXED_THRESHOLDS = (1.5, 2.0, 2.5, 3.0, 3.5, 4.0)  # the masks' thresholds compared


def band_baselines(before: str, after: str) -> dict[str, np.ndarray]:
    """The issue's training-free baselines: bands standardised per scene (both dates together)."""
    b, a = (
        to_model_units(d.values, d.attrs[CONVERSION_ATTR])
        for d in map(open_raster, (before, after))
    )
    names = list(open_raster(before).band.values)
    std = np.concatenate([b, a], axis=2).std(axis=(1, 2))[:, None, None]
    red = names.index("B04") if "B04" in names else names.index("B3")  # Landsat TM red
    cos = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0) + 1e-12)
    return {
        "abs(B04 difference)": np.abs(a[red] - b[red]) / std[red],
        "change vector magnitude (standardised bands)": np.sqrt((((a - b) / std) ** 2).sum(0)),
        "1 - cosine of the band vectors": 1 - cos,
    }


def embedding_distances(model, before: str, after: str) -> tuple[np.ndarray, np.ndarray]:
    """1 - cosine of the two dates' patch embeddings, nearest-upsampled to pixels: raw, and
    with each date's mean embedding over the scene subtracted first."""
    e = [_values(predict_raster(model, p, "embed", precision="fp32")) for p in (before, after)]
    centred = [v - np.nanmean(v, axis=(1, 2), keepdims=True) for v in e]
    p = model.config.patch_size
    h, w = rasterio.open(before).shape

    def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        cos = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
        return np.repeat(np.repeat(1 - cos, p, 0), p, 1)[:h, :w]

    return distance(*e), distance(*centred)


def _values(result) -> np.ndarray:
    assert result.data is not None  # in memory: no output file was asked for
    return result.data.values


def zero_shot(
    model,
    before: str,
    after: str,
    embedding: float | None = None,
    anomaly: float | None = None,
) -> np.ndarray:
    """The zero-shot score with other weights of its terms (None: the shipped one)."""
    kept = change_terms.EMBEDDING_WEIGHT, change_terms.ANOMALY_WEIGHT
    if embedding is not None:
        change_terms.EMBEDDING_WEIGHT = embedding
    if anomaly is not None:
        change_terms.ANOMALY_WEIGHT = anomaly
    try:
        return _values(change_module.change(before, after, model=model))[0]
    finally:
        change_terms.EMBEDDING_WEIGHT, change_terms.ANOMALY_WEIGHT = kept


def with_otsu(model, before: str, after: str, head: str | None = None) -> tuple:
    """The score (as ``change()`` gives it) and the mask of ``--threshold otsu``."""
    result = change_module.change(before, after, model=model, head=head, threshold="otsu")
    score, mask = _values(result)
    return score, mask == 1


def mask_scores(y: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """F1 of a 0/1 mask against the labels, and the share of pixels it marks."""
    hits = int((y.astype(bool) & mask).sum())
    return 2 * hits / max(int(y.sum()) + int(mask.sum()), 1), float(mask.mean())


def threshold_figures(y: np.ndarray, score: np.ndarray, otsu_mask: np.ndarray, head: bool) -> dict:
    """F1 and share marked at the default threshold (``--threshold auto``), Otsu's and the
    FIXED_THRESHOLDS, of one score's pixels (a city, or the cities pooled)."""
    return {
        "change": float(y.mean()),
        "auto": mask_scores(y, score >= change_threshold(head)),
        "otsu": mask_scores(y, otsu_mask),
        "fixed": {f"{t:g}": mask_scores(y, score >= t) for t in FIXED_THRESHOLDS},
    }


def _crop(path: str | Path, to: Path, window: Window, transform: Affine | None = None) -> str:
    """A window of a GeoTIFF as its own file, with its band descriptions and tags (and
    ``transform`` in place of its georeferencing, if given)."""
    with rasterio.open(path) as src:
        profile = src.profile | {
            "width": window.width,
            "height": window.height,
            "transform": transform or src.window_transform(window),
        }
        data, descriptions = src.read(window=window), src.descriptions
        tags = src.tags()
        band_tags = [src.tags(i + 1) for i in range(src.count)]
    with rasterio.open(to, "w", **profile) as out:
        out.write(data)
        out.descriptions = descriptions
        out.update_tags(**tags)
        for i, band in enumerate(band_tags):
            out.update_tags(i + 1, **band)
    return str(to)


def _moved(path: str | Path, to: Path, pixels: float) -> str:
    """A copy of a GeoTIFF whose georeferencing is moved ``pixels`` to the south-east (along
    the diagonal): warped back onto its own grid, its features lie that far from where they
    were, as a date that was not co-registered."""
    step = pixels / np.sqrt(2)
    with rasterio.open(path) as src:
        window = Window(0, 0, src.width, src.height)
        transform = src.transform * Affine.translation(step, step)
    return _crop(path, to, window, transform)


def misregistration(model, shared: Path, align: bool = True, labelled_only: bool = False) -> dict:
    """The zero-shot default's AP with AFTER moved MOVES_PX away from BEFORE (pooled over the
    8 OSCD cities, and Nanjing), and the offset ``change()`` measures (``checks``), against the
    move, for every pair of the shared data (the unlabelled cities too, unless
    ``labelled_only``); ``align``: ``change(align=True)``."""
    found: dict = {"moves": list(MOVES_PX), "pooled": [], "nanjing": [], "measured": {}}
    labelled = {name: (before, after, label) for name, before, after, label in pairs(shared)}
    everything = [(n, b, a) for n, (b, a, _) in labelled.items()] + [
        (p.name, str(p.before), str(p.after))
        for p in ([] if labelled_only else unlabelled_pairs(shared))
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for move in MOVES_PX:
            ys, ss = [], []
            for name, before, after in everything:
                moved = _moved(after, Path(tmp) / Path(after).name, move) if move else after
                result = change_module.change(before, moved, model=model, align=align)
                c = result.checks
                found["measured"].setdefault(name, []).append(
                    [c["shift_rows"], c["shift_cols"], c["shift_coherence"]]
                )
                if name not in labelled:
                    continue
                with rasterio.open(labelled[name][2]) as src:
                    label = src.read(1)
                keep = label != 255
                y, s = (label[keep] == 1).astype(np.uint8), _values(result)[0][keep]
                if "oscd" in before:
                    ys.append(y)
                    ss.append(s)
                else:
                    found["nanjing"].append(scores(y, s))
            found["pooled"].append(scores(np.concatenate(ys), np.concatenate(ss)))
            print(f"moved {move} px: pooled {found['pooled'][-1]}", flush=True)
    return found


def sub_scenes(
    model,
    before: str,
    after: str,
    label: Path,
    size: int = 400,
    head=None,
    least_change: int = 0,
    to_edges: bool = False,
) -> list[dict]:
    """Each size x size window of a pair on a half-window grid (``to_edges``: its last row and
    column of windows moved to the scene's edges), scored as a scene of its own (its own
    calibration): the default's AP, the default's without its anomaly term and, with ``head``
    (a model with a change head), the head's, against abs(B04)'s and the best band baseline's,
    on the window's labelled pixels; windows with fewer than ``least_change`` changed pixels
    left out."""
    found = []
    with rasterio.open(label) as src:
        height, width = src.shape

    def starts(length: int) -> list[int]:
        grid = range(0, length - size + 1, size // 2)
        if not to_edges:
            return list(grid)
        return sorted({min(i, length - size) for i in range(0, length - size // 2, size // 2)})

    with tempfile.TemporaryDirectory() as tmp:
        for y in starts(height):
            for x in starts(width):
                window = Window(x, y, size, size)
                b, a, lab = (
                    _crop(p, Path(tmp) / f"{y}_{x}_{Path(p).name}", window)
                    for p in (before, after, label)
                )
                with rasterio.open(lab) as src:
                    mask = src.read(1)
                keep = mask != 255
                y_true = (mask[keep] == 1).astype(np.uint8)
                if y_true.sum() < max(least_change, 1):
                    continue
                bands = {n: scores(y_true, v[keep])[1] for n, v in band_baselines(b, a).items()}
                best = max(bands, key=bands.__getitem__)
                found.append(
                    {
                        "window": [y, x],
                        "labelled": int(keep.sum()),
                        "change": float(y_true.mean()),
                        "best band baseline": [best, bands[best]],
                        "abs(B04)": bands["abs(B04 difference)"],
                        "default": scores(y_true, zero_shot(model, b, a)[keep])[1],
                        "no anomaly": scores(y_true, zero_shot(model, b, a, anomaly=0.0)[keep])[1],
                    }
                )
                if head is not None:
                    scored = change_module.change(b, a, model=head, head="change")
                    found[-1]["head"] = scores(y_true, _values(scored)[0][keep])[1]
    return found


# the OSCD cities' sub-scenes: windows of this many pixels (the cities are 600-1200 px), and
# the fewest changed pixels a window must have to be scored
OSCD_WINDOW_PX = 300
OSCD_WINDOW_CHANGE = 100


def pairs(shared: Path) -> list[tuple[str, str, str, Path]]:
    manifest = json.loads((shared / "change" / "manifest.json").read_text())
    found = []
    for item in manifest["items"]:
        name = item.get("city") or item.get("site")
        paths = [shared / "change" / f["path"] for f in item["files"]]
        label = [p for p in paths if p.name.endswith("_change.tif")]
        if not label:
            continue
        before, after = sorted(p for p in paths if re.search(r"_\d{8}\.tif$", p.name))
        found.append((name, str(before), str(after), label[0]))
    return found


def unlabelled_pairs(shared: Path) -> list[ChangePair]:
    """The OSCD cities of the shared data without a change map: the head's self-training."""
    manifest = json.loads((shared / "change" / "manifest.json").read_text())
    found = []
    for item in manifest["items"]:
        paths = sorted(shared / "change" / f["path"] for f in item["files"])
        if "oscd" in str(paths[0]) and not any(p.name.endswith("_change.tif") for p in paths):
            found.append(ChangePair(paths[0], paths[1], None))
    return found


def held_out_heads(
    model, found: list[tuple[str, str, str, Path]], seeds: tuple[int, ...], shared: Path
):
    """For each OSCD city and seed, a copy of ``model`` with a change head trained on the other
    cities and self-trained on the unlabelled ones (the backbone's inputs of every city
    computed once); and the seconds it took."""
    layers = default_layers(model.config.depth)
    tiles = {
        name: pair_tiles(model, ChangePair(Path(b), Path(a), label), layers)
        for name, b, a, label in found
    }
    extra = [pair_tiles(model, pair, layers) for pair in unlabelled_pairs(shared)]
    for name in tiles:
        others = [t for n, t in tiles.items() if n != name]
        for seed in seeds:
            held = copy.deepcopy(model)
            t0 = time.perf_counter()
            train_change_head(
                held, "change", others, layers, "s2_l1c", seed=seed, unlabelled=extra, members=1
            )
            yield name, seed, held, time.perf_counter() - t0


def ensemble(members: dict[int, object]):
    """A copy of the first model whose change head is the members' heads joined, as `ofa
    train-head` joins the members it trains from seeds 0, 1, 2 (``join_members``)."""
    model = copy.deepcopy(next(iter(members.values())))
    join_members(model, "change", [m.heads["change"] for m in members.values()])
    return model


def calibrated_by_labels(y: np.ndarray, s: np.ndarray, bins: int = 200) -> np.ndarray:
    """An oracle: ``s`` replaced by the share of change among the city's pixels of its score
    bin (quantile bins, made non-decreasing), so that pooled over cities, only each city's own
    ranking counts and no longer how its scores compare with another city's. NaN (no data in a
    date) ranks last, as ``ranking_scores`` ranks it."""
    s = np.where(np.isfinite(s), s, np.nanmin(s) - 1.0)
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    index = np.clip(np.searchsorted(edges, s) - 1, 0, bins - 1)
    counts = np.maximum(np.bincount(index, minlength=bins), 1)
    share = np.maximum.accumulate(np.bincount(index, weights=y, minlength=bins) / counts)
    return share[index] + 1e-9 * (s - s.min()) / (np.ptp(s) + 1e-12)  # ties keep their order


# The head recipes measured on cached inputs, pooled AP by seed (the harness is not kept: each
# line records leave-one-city-out runs of the light head with the one change named).
HEAD_RECIPES = [
    ("the light head, 6 epochs (the default before self-training)", "0.232 / 0.210 / 0.241"),
    ("**+ self-training on the 4 unlabelled cities (shipped)**", "0.254 / 0.243 / 0.246"),
    ("+ a second round of self-training (pseudo-labels from the self-trained head)", "0.258"),
    ("+ self-training on the held-out city's own images as well (at prediction)", "0.222"),
    ("the token maps of the last block only", "0.201"),
    ("no token maps (the image channels alone)", "0.162"),
    ("the token maps of all 8 blocks instead of 4", "0.229 / 0.198"),
    ("a random-init backbone (timm's init, std 0.02)", "0.212 / 0.224"),
    ("the GPU round's backbone (`configs/gpu.yaml`, 6 min on a lent H200; not shipped)", "0.229"),
    (
        "each date upsampled 2x before the backbone (token maps every 4 px; 4x the backbone's "
        "cost)",
        "0.244 / 0.229 / 0.240",
    ),
    ("the same, self-trained", "0.251 / 0.254"),
    ("each date upsampled 4x (token maps every 2 px; 16x the cost)", "0.247"),
    (
        "the backbone's last 4 blocks fine-tuned with the head (learning rate 1e-4; each date "
        "flipped and rotated before the backbone: 0.231 with none fine-tuned)",
        "0.235",
    ),
    ("the same, with batches of one city each", "0.185"),
    ("a pixel branch with two more 3 x 3 convolutions (dilation 1 and 2)", "0.234"),
    ("a small U-Net on the bands (64 to 8 px, the token maps joining at 8 px)", "0.198"),
    ("dropout on the token maps", "0.212"),
    ("each date's bands jittered in gain and offset", "0.237 (0.231 with that pixel branch)"),
    ("the dates swapped at random (which date is which carries information)", "0.205"),
    ("AFTER moved by up to a pixel each way (misregistration)", "0.247 / 0.223 / 0.233"),
    (
        "two more grids of training tiles at other offsets (other token maps of the same "
        "places), 3 epochs over 2.3 times the tiles",
        "0.241 / 0.225 / 0.233",
    ),
    ("the loss on logits standardised per city (batches of one city)", "0.175 / 0.172"),
    ("eight flips and rotations averaged at prediction", "0.233"),
    ("the logits of two seeds averaged", "0.226"),
    ("the output averaged over 3 x 3 to 7 x 7 px (with the 1-px shift)", "- / 0.229-0.230 (0.223)"),
    ("the output's maximum over 3 x 3 px (with the 1-px shift)", "- / 0.219 (0.223)"),
    (
        "2026-12-06, with the anomaly term and the 64-tile calibration (the shipped recipe "
        "0.288 there): copy-paste change, 100 more tiles per training city, each with 1-4 "
        "labelled changes of the other training cities pasted into AFTER (their bands "
        "standardised by their city, put back in the host's units; saclay_e, nantes and pisa "
        "rose, bercy fell from 0.267 to 0.064)",
        "0.275",
    ),
    ("the same, each change pasted into both dates (its BEFORE too)", "0.228"),
    ("the same, with as many unchanged places of those cities pasted as no change", "0.223"),
    (
        "2026-12-06, as above (the shipped recipe 0.288 / 0.284): the token maps' difference "
        "taken after subtracting each date's mean map over the scene, per block (as the "
        "embedding term centres the last block's tokens)",
        "0.250 / 0.243",
    ),
    ("the same, and the mean of the two dates' token maps centred too", "0.259 / 0.255"),
    ("3 epochs instead of 6 (2026-12-06, as above)", "0.269 / 0.269"),
    ("9 epochs instead of 6 (2026-12-06, as above)", "0.272 / 0.244"),
    (
        "2026-12-06, as above (the recipe then shipped 0.288 / 0.284 / 0.270): **AFTER's "
        "residuals from BEFORE (each band less its least-squares prediction from all of "
        "BEFORE's, in residual deviations, absolute) averaged over 5 x 5 px in place of the "
        "dates' absolute difference (shipped)**",
        "0.317 / 0.296 / 0.290",
    ),
    ("the same without the 5 x 5 px window", "0.310 / 0.295 / 0.279"),
    (
        "the same, fitted again 4 times, each time without the 10% of pixels whose residuals "
        "are the most unusual (Mahalanobis distance)",
        "0.308 / 0.292",
    ),
    ("the residuals (5 x 5 px) beside the absolute difference (4C + 3 channels)", "0.305 / 0.289"),
    ("the residuals both ways (BEFORE's from AFTER's too), averaged", "0.297 / 0.286"),
    ("the residuals fitted per tile of 64 px instead of over the scene", "0.295 / 0.289"),
    (
        "with those residuals, the token maps' difference replaced the same way (per block, "
        "AFTER's tokens less their ridge prediction from BEFORE's over the scene)",
        "0.259",
    ),
    (
        "both dates' bands left out of the image (the difference and the terms kept)",
        "0.268 / 0.266",
    ),
    (
        "2026-12-06, on the inputs of the residuals' recipe as shipped (0.316 / 0.296 there): "
        "self-training's pseudo-labels from the top 1% of scores as change instead of 2%",
        "0.316 / 0.296",
    ),
    ("the top 4% as change", "0.317 / 0.290"),
    ("the bottom 50% as no change instead of 70%", "0.317 / 0.297"),
    ("the bottom 85% as no change", "0.314 / 0.295"),
    (
        "the head's BatchNorm statistics recomputed on the held-out city's tiles at prediction "
        "(AdaBN; seed 0 0.316 there): of the token maps' and the image's",
        "0.219",
    ),
    ("the same, of the token maps' alone", "0.218"),
    ("the same, of the image's alone", "0.315"),
    (
        "2026-12-06, on the inputs of the recipe shipped with blended tiles (0.315 / 0.301 / "
        "0.292 there): **a focal loss, gamma 2, changed pixels still weighed 5x (shipped)**",
        "0.321 / 0.308 / 0.320",
    ),
    ("the same, gamma 1", "0.323 / 0.299"),
    ("the same, gamma 3", "0.322 / 0.298"),
    ("gamma 2, changed pixels weighed 2x", "0.314 / 0.309"),
    ("gamma 2, changed pixels weighed 10x", "0.292"),
    ("a learning rate of 4e-3 instead of 2e-3 (no focal loss)", "0.313 / 0.305"),
    ("a width of 64 instead of 32 (no focal loss; 2.3 times the training time)", "0.310 / 0.316"),
    ("AFTER's residuals signed instead of absolute (no focal loss)", "0.310 / 0.301"),
    (
        "each city (and unlabelled city) the same share of every epoch, its tiles drawn again "
        "(no focal loss)",
        "0.283 / 0.304",
    ),
    (
        "the head's z(logit) plus the zero-shot score, weight 0.1, 0.3 or 1 (no focal loss; "
        "seed 0)",
        "0.307, 0.289, 0.260",
    ),
    (
        "each city's logits scaled by the mean and deviation of its lowest 90% (no focal loss; "
        "not shipped, as above: it would change the score's scale; with the focal loss 0.332 / "
        "0.310)",
        "0.322 / 0.303 / 0.298",
    ),
    (
        "2026-12-06, with the focal loss (0.324 / 0.308 there, seeds 0, 1): the eight flips and "
        "rotations of each tile averaged at prediction (seed 0)",
        "0.322",
    ),
    (
        "**the logits smoothed by a Gaussian of 1 px (shipped)** or 2 px at prediction (seed "
        "0; with 1 px, 0.005 higher in each of 5 heads measured)",
        "0.330, 0.332",
    ),
    ("the 60 m bands (B01, B09, B10) left out of the head's image", "0.318 / 0.323"),
    ("only the 10 m bands (B02, B03, B04, B08) in the head's image", "0.337 / 0.308"),
    (
        "2026-12-06, the shipped recipe (0.337 / 0.319 / 0.340 by seed, as above): the scores of "
        "the three seeds' heads averaged (and standardised again); three times the training and "
        "the head's passes",
        "0.347",
    ),
    (
        "2026-12-06, the 3-member head through `ofa change` (0.353 there): each pixel's score half "
        "its own and half its segment's mean, standardised again (Felzenszwalb's segmentation of "
        "both dates' visible, near-infrared and SWIR bands over the whole scene, scikit-image, "
        "scale 10, segments of at least 5 px); higher in each of the 8 cities, by 0.003 to 0.015, "
        "not shipped: a new dependency for a gain within the seeds' spread, and the engine's tiles "
        "would cut the segments (the zero-shot default: 0.233 against 0.228)",
        "0.364",
    ),
    ("the same, segments of at least 20 px (the zero-shot default: 0.241)", "0.365"),
    ("the same, SLIC superpixels of about 30 px instead", "0.361"),
    (
        "the score through a guided filter instead (He et al. 2010; the guide the mean of those "
        "bands, radius 2 px, epsilon 0.01; no new dependency), higher in 5 of 8 cities",
        "0.363",
    ),
    (
        "2026-12-06, the 3-member head trained on the other 7 labelled cities alone (a CSV "
        "without unlabelled rows: no self-training; 0.353 with them): AUROC 0.913, best F1 0.394; "
        "higher in 4 of 8 cities (pisa 0.281 to 0.335, bercy 0.293 to 0.319), lower in 4 "
        "(aguasclaras 0.247 to 0.212, abudhabi 0.446 to 0.416, nantes 0.481 to 0.451)",
        "0.331",
    ),
    (
        "2026-12-07, on the head's inputs cached as training reads them (each held-out city's "
        "logits standardised over its tiles; there the shipped 3 members, seeds 0, 1, 2, score "
        "0.338): 3 members each trained without one more of the 7 training cities, a different "
        "one each (bagging by city, for members that differ in what they saw), seeds 0, 1, 2; "
        "higher in 5 of 8 cities (pisa 0.267 to 0.325, rennes 0.451 to 0.460), lower in 3 "
        "(aguasclaras 0.219 to 0.183, abudhabi 0.437 to 0.418)",
        "0.332",
    ),
]


# The same rows with the backbones shipped before, as this script measured them (pooled AUROC /
# AP / best F1 on the 8 cities), oldest first.
EARLIER_ROUNDS = {
    "first round (9000 steps of configs/demo.yaml, no time pairs; 2026-12-02)": {
        "trained head": (0.871, 0.232, 0.293),
        "default": (0.838, 0.190, 0.263),
        "embedding only": (0.446, 0.017, 0.038),
        "centred embedding": (0.601, 0.043, 0.076),
    },
    "second round (then 3000 steps of configs/round2.yaml, time pairs; 2026-12-03)": {
        "trained head": (0.873, 0.211, 0.286),
        "default": (0.846, 0.199, 0.277),
        "embedding only": (0.498, 0.021, 0.048),
        "centred embedding": (0.637, 0.064, 0.104),
    },
}


def main(shared: Path, threads: int, checkpoint: Path | None = None) -> None:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    model = load_checkpoint(checkpoint) if checkpoint else load_pretrained()
    oscd = [p for p in pairs(shared) if "oscd" in p[1]]
    trained: dict[str, dict[int, object]] = {}
    times = []
    for name, seed, held, seconds in held_out_heads(model, oscd, SEEDS, shared):
        trained.setdefault(name, {})[seed] = held
        times.append(seconds)
        print(f"head without {name}, seed {seed}: {seconds:.0f} s", flush=True)
    random_model = random_init(model, 0)  # timm's init, as docs/EVALUATION.md's other tables
    random_heads = {  # one member (seed 0): compare it with "one member"
        name: held for name, _, held, _ in held_out_heads(random_model, oscd, (0,), shared)
    }
    methods = list(LONG)
    per: dict[str, dict[str, tuple[float, float, float]]] = {}
    pooled_s: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    pooled_y: list[np.ndarray] = []
    nanjing: dict[str, tuple[float, float, float]] = {}
    windows: list[dict] = []
    city_windows: dict[str, list[dict]] = {}  # the OSCD cities' sub-scenes
    seed_s: dict[int, list[np.ndarray]] = {seed: [] for seed in SEEDS}
    oracle_s: list[np.ndarray] = []
    # the masks' thresholds: the default score's and each seed's head, per city and pooled
    masked: dict[str, dict[str, dict]] = {}
    masked_s: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for name, before, after, label_path in pairs(shared):
        with rasterio.open(label_path) as src:
            label = src.read(1)
        keep = label != 255
        y = (label[keep] == 1).astype(np.uint8)
        bands = band_baselines(before, after)
        raw, centred = embedding_distances(model, before, after)
        no_embeddings = zero_shot(model, before, after, embedding=0.0)
        pixels_only = zero_shot(model, before, after, embedding=0.0, anomaly=0.0)
        default, otsu_mask = with_otsu(model, before, after)
        masks = {"default": (default[keep], otsu_mask[keep])}
        found = {
            "default": default,
            "no anomaly": zero_shot(model, before, after, anomaly=0.0),
            "no embeddings": no_embeddings,
            "anomaly only": no_embeddings - pixels_only,  # ANOMALY_WEIGHT * z(anomaly)
            "random-init": zero_shot(random_model, before, after),
            "embedding only": raw,
            "centred embedding": centred,
            "abs(B04)": bands["abs(B04 difference)"],
            "CVA": bands["change vector magnitude (standardised bands)"],
            "1-cos bands": bands["1 - cosine of the band vectors"],
        }
        if name in trained:  # Nanjing is Landsat: no head of its sensor to hold out
            for seed, held in trained[name].items():
                head = with_otsu(held, before, after, head="change")
                masks[f"head, seed {seed}"] = (head[0][keep], head[1][keep])
                seed_s[seed].append(head[0][keep])
                if seed == SEEDS[0]:
                    found["one member"] = head[0]
            joined = ensemble(trained[name])
            head = with_otsu(joined, before, after, head="change")
            city_windows[name] = sub_scenes(
                model,
                before,
                after,
                label_path,
                size=OSCD_WINDOW_PX,
                head=joined,
                least_change=OSCD_WINDOW_CHANGE,
                to_edges=True,
            )
            masks[f"head, {len(SEEDS)} members"] = (head[0][keep], head[1][keep])
            found["trained head"] = head[0]
            oracle_s.append(calibrated_by_labels(y, found["trained head"][keep]))
            found["random-init head"] = _values(
                change_module.change(before, after, model=random_heads[name], head="change")
            )[0]
        row = {m: scores(y, found[m][keep]) for m in methods if m in found}
        for kind, (s, o) in masks.items():
            masked.setdefault(kind, {})[name] = threshold_figures(y, s, o, kind != "default")
            if "oscd" in before:
                masked_s.setdefault(kind, []).append((s, o))
        if "oscd" in before:
            per[name] = row
            pooled_y.append(y)
            for m in methods:
                pooled_s[m].append(found[m][keep])
        else:
            nanjing = row
            windows = sub_scenes(model, before, after, label_path)
        print(name, f"{time.perf_counter() - t0:.0f} s", flush=True)
    y_all = np.concatenate(pooled_y)
    pooled = {m: scores(y_all, np.concatenate(pooled_s[m])) for m in methods}
    head_seeds = {seed: scores(y_all, np.concatenate(v)) for seed, v in seed_s.items()}
    oracle = scores(y_all, np.concatenate(oracle_s))
    for kind, pieces in masked_s.items():
        s, o = (np.concatenate(v) for v in zip(*pieces))
        masked[kind]["pooled"] = threshold_figures(y_all, s, o, kind != "default")
    figures = {
        "pooled": pooled,
        "per": per,
        "nanjing": nanjing,
        "chance": float(y_all.mean()),
        "seconds": time.perf_counter() - t0,
        "train_seconds": float(np.mean(times)),
        "head_seeds": {str(seed): v for seed, v in head_seeds.items()},
        "oracle": oracle,
        "nanjing_windows": windows,
        "city_windows": city_windows,
        "thresholds": masked,
        "misregistration": {
            "kept": misregistration(model, shared, align=False),
            "aligned": misregistration(model, shared, labelled_only=True),
        },
    }
    FIGURES.write_text(json.dumps(figures, indent=1) + "\n")
    write(figures)


# the trained head's AP per city (seed 0) before its logits were smoothed (2026-12-06)
UNSMOOTHED_HEAD = {
    "aguasclaras": 0.257,
    "bercy": 0.298,
    "bordeaux": 0.122,
    "nantes": 0.510,
    "rennes": 0.516,
    "saclay_e": 0.278,
    "abudhabi": 0.419,
    "pisa": 0.285,
}


# the trained head's AP per city (seed 0) before AFTER was aligned (2026-12-06)
UNALIGNED_HEAD = {
    "aguasclaras": 0.266,
    "bercy": 0.306,
    "bordeaux": 0.126,
    "nantes": 0.521,
    "rennes": 0.507,
    "saclay_e": 0.284,
    "abudhabi": 0.428,
    "pisa": 0.264,
}


def _city_changes(per: dict, method: str, before: dict[str, float]) -> str:
    """'higher in 6 of 8 cities (a 0.257 to 0.266, ...), lower in 2 (...)' against ``before``."""
    now = {city: per[city][method][1] for city in before}
    up = [c for c in before if round(now[c], 3) > before[c]]
    down = [c for c in before if round(now[c], 3) < before[c]]

    def listed(cities: list[str]) -> str:
        return ", ".join(f"{c} {before[c]:.3f} to {now[c]:.3f}" for c in cities)

    text = f"higher in {len(up)} of {len(before)} cities ({listed(up)})"
    return text + (f", lower in {len(down)} ({listed(down)})" if down else "")


def misregistration_section(found: dict | None) -> list[str]:
    """What dates off each other cost, AFTER kept where it lies and moved onto BEFORE's
    features (the default), and how well ``change()`` measures the offset."""
    if not found:
        return []
    kept, aligned = found["kept"], found["aligned"]
    moves = kept["moves"]
    measured = {n: np.array(v) for n, v in kept["measured"].items()}
    true = np.array(moves) / np.sqrt(2)
    error = max(float(np.abs(v[:, :2] - v[0, :2] - true[:, None]).max()) for v in measured.values())
    own = {n: float(np.hypot(*v[0, :2])) for n, v in measured.items()}
    off = sorted((n for n in own if own[n] >= 0.5), key=own.__getitem__)
    coherence = [float(v[0, 2]) for v in measured.values()]

    def row(label: str, values: list) -> str:
        return f"| {label} | " + " | ".join(f"{v[1]:.3f}" for v in values) + " |"

    return [
        "Dates off each other (misregistration; 2026-12-06). `change()` measures how far "
        "AFTER's features lie from BEFORE's by phase correlation of the calibration's sample "
        "(`ofa_explore.registration`; `checks['shift_rows']`, `['shift_cols']`) and, by "
        f"default, warps AFTER onto BEFORE's features from {MISREGISTERED_PX:g} px "
        "(`--no-align` keeps it where it lies, and warns). Below, each pair's AFTER georeferenced "
        "further south-east by the move, then warped back onto BEFORE's grid by GDAL as any "
        "AFTER on another grid is; the zero-shot default's AP:",
        "",
        "| AFTER moved (px) | " + " | ".join(f"{m:g}" for m in moves) + " |",
        "|---|" + "---|" * len(moves),
        row("8 OSCD cities pooled, AFTER kept where it lies (`--no-align`)", kept["pooled"]),
        row("the same, AFTER moved onto BEFORE's features (the default)", aligned["pooled"]),
        row("Nanjing, `--no-align`", kept["nanjing"]),
        row("Nanjing, the default", aligned["nanjing"]),
        "",
        f"The offset measured on all {len(measured)} pairs of the shared data (the 4 "
        f"unlabelled cities too) is within {error:.2f} px of each move (the pair's own offset "
        "taken off). Their own offsets: "
        + ", ".join(f"{n} {own[n]:.1f} px" for n in reversed(off))
        + f", the other {len(own) - len(off)} under 0.5 px; "
        f"coherence {min(coherence):.2f}-{max(coherence):.2f} (unrelated images: about 0.01). "
        "The band baselines above read the files as they are.",
        "",
    ]


def city_windows_section(found: dict | None) -> list[str]:
    """The OSCD cities in sub-scenes, each its own scene: how often the zero-shot default and
    the trained head rank change above the band baselines where a scene is smaller and its
    change another mix."""
    if not found:
        return []
    every = [w for windows in found.values() for w in windows]
    best = np.array([w["best band baseline"][1] for w in every])
    default, head = (np.array([w[k] for w in every]) for k in ("default", "head"))

    def row(city: str, windows: list[dict]) -> str:
        b = np.array([w["best band baseline"][1] for w in windows])
        d, h = (np.array([w[k] for w in windows]) for k in ("default", "head"))
        a = np.array([w["abs(B04)"] for w in windows])
        change = [w["change"] for w in windows]
        return (
            f"| {city} | {len(windows)} | {min(change):.1%}-{max(change):.1%} | "
            f"{(d > a).sum()} | {(d > b).sum()} | {np.min(d - b):+.3f} | "
            f"{np.median(h):.3f} ({h.min():.3f}-{h.max():.3f}) | {(h > b).sum()} | "
            f"{(h > d).sum()} |"
        )

    below = [
        f"{city} ({w['window'][0]}, {w['window'][1]}; change {w['change']:.1%}) "
        f"{w['default']:.3f} against {w['best band baseline'][0]} {w['best band baseline'][1]:.3f}"
        for city, windows in found.items()
        for w in windows
        if w["default"] <= w["best band baseline"][1]
    ]
    return [
        f"The 8 OSCD cities in sub-scenes of {OSCD_WINDOW_PX} x {OSCD_WINDOW_PX} px (on a grid "
        "of half a window, so they overlap, the last ones at the scene's edges; windows with "
        "fewer than "
        f"{OSCD_WINDOW_CHANGE} changed pixels left out), each scored as a scene of its own "
        "(its own calibration), as Nanjing's above: a smaller scene with another mix of change "
        "and land. The trained head is the city's leave-one-city-out head of the rows above "
        "(3 members). AP on each window's pixels; the counts are windows:",
        "",
        "| city | windows | change | default above abs(B04) | default above the best band "
        "baseline | the default's lowest margin over it | trained head: median AP (lowest-"
        "highest) | head above the best band baseline | head above the default |",
        "|---|---|---|---|---|---|---|---|---|",
        *(row(city, windows) for city, windows in found.items()),
        "",
        f"In all {len(every)} windows, the default is above the best band baseline in "
        f"{(default > best).sum()} (median margin {np.median(default - best):+.3f}) and the "
        f"trained head in {(head > best).sum()} (median margin {np.median(head - best):+.3f}); "
        f"the head's AP is at least 0.45 in {(head >= 0.45).sum()} (median "
        f"{np.median(head):.3f})."
        + (f" The default is not above it in: {'; '.join(below)}." if below else ""),
        "",
    ]


def threshold_section(masked: dict | None) -> list[str]:
    """The masks' thresholds: F1 and share marked at `--threshold auto`, Otsu's and fixed
    values, for the zero-shot default and the trained head."""
    if not masked:
        return []
    heads = sorted(k for k in masked if k != "default")  # "head, seed 0", ...
    zero, head = change_threshold(False), change_threshold(True)

    def cell(f1_share: list) -> str:
        return f"{f1_share[0]:.2f} ({f1_share[1]:.1%})"

    def per_city(kind: str, pick) -> list[float]:
        return [pick(v)[0] for c, v in masked[kind].items() if c not in ("pooled", "nanjing")]

    def summary(kind: str, pick) -> str:
        f1 = per_city(kind, pick)
        return f"{pick(masked[kind]['pooled'])[0]:.3f} / {np.mean(f1):.3f} / {min(f1):.2f}"

    lines = [
        "The mask's threshold (2026-12-06). `--threshold auto`, the default of the QGIS "
        f"dialog and of the widget's slider, is {zero:g} for the zero-shot score and {head:g} "
        "for a trained head's (`ofa_explore.protocol.CHANGE_THRESHOLDS`). Both scores are in "
        "standard deviations of the scene's scores, but the zero-shot score's tail is long "
        "and a head's standardised logit nearly Gaussian, so 3 marks far less with a head. "
        "Otsu's split (`--threshold otsu`, of the calibration sample's scores) looks for two "
        "classes of some size, and change here is 1-4% of a city. F1 of the mask and, in "
        "brackets, the share of the pixels it marks (the trained head: its 3 members; Nanjing: its "
        "labelled pixels):",
        "",
        f"| city | change | zero-shot default at {zero:g} | zero-shot, Otsu | trained head at "
        f"{head:g} | trained head, Otsu |",
        "|---|---|---|---|---|---|",
    ]
    for city, row in masked["default"].items():
        h = masked[heads[0]].get(city) if heads else None
        lines.append(
            f"| {city} | {row['change']:.1%} | {cell(row['auto'])} | {cell(row['otsu'])} | "
            + (f"{cell(h['auto'])} | {cell(h['otsu'])} |" if h else "- | - |")
        )
    kinds = ["default", *heads]
    nanjing = masked["default"].get("nanjing")

    def on_nanjing(pick) -> str:
        return f" | {pick(nanjing)[0]:.3f} |" if nanjing else " | - |"

    lines += [
        "",
        "Each threshold on the 8 OSCD cities, F1 pooled / the mean of the cities' F1 / the "
        "lowest city's F1 (each seed's head trained as above), and on Nanjing:",
        "",
        "| threshold | zero-shot default | "
        + " | ".join(f"trained {k}" for k in heads)
        + " | zero-shot default on Nanjing |",
        "|---|" + "---|" * (len(kinds) + 1),
    ]
    for t in masked["default"]["pooled"]["fixed"]:
        pick = lambda v, t=t: v["fixed"][t]  # noqa: E731
        lines.append(f"| {t} | " + " | ".join(summary(k, pick) for k in kinds) + on_nanjing(pick))
    otsu = lambda v: v["otsu"]  # noqa: E731
    lines += ["| Otsu | " + " | ".join(summary(k, otsu) for k in kinds) + on_nanjing(otsu), ""]
    best = {  # each head's threshold of the highest pooled F1
        k: max(masked[k]["pooled"]["fixed"], key=lambda t, k=k: masked[k]["pooled"]["fixed"][t][0])
        for k in heads
    }
    zero_pooled = {t: v[0] for t, v in masked["default"]["pooled"]["fixed"].items()}
    top = max(zero_pooled, key=zero_pooled.__getitem__)
    lines += [
        "Why these: with a head, the highest pooled F1 is at "
        + ", ".join(f"{t} ({k})" for k, t in best.items())
        + ", and at 3 the lowest city's F1 is "
        + " / ".join(f"{min(per_city(k, lambda v: v['fixed']['3'])):.2f}" for k in heads)
        + f" (too few pixels left marked). The zero-shot score keeps {zero:g}: "
        f"{top} is a little higher on the OSCD cities (pooled F1 {zero_pooled[top]:.3f} against "
        f"{zero_pooled[f'{zero:g}']:.3f}) but lower on Nanjing"
        + (
            f" ({nanjing['fixed'][top][0]:.3f} against {nanjing['fixed'][f'{zero:g}'][0]:.3f}), "
            f"where change is {nanjing['change']:.0%} of the labelled pixels and Otsu's split "
            f"does well ({nanjing['otsu'][0]:.3f}): it needs a changed class of some size."
            if nanjing
            else "."
        ),
        "",
    ]
    return lines


def section(figures: dict) -> str:
    """The section of docs/EVALUATION.md, from a run's figures (``main``'s, or FIGURES')."""
    methods = list(LONG)
    pooled, per, nanjing = figures["pooled"], figures["per"], figures["nanjing"]
    chance, seconds, train_seconds = (
        figures["chance"],
        figures["seconds"],
        figures["train_seconds"],
    )
    head_seeds, oracle = figures["head_seeds"], figures["oracle"]
    lowest, highest = (f(v[1] for v in head_seeds.values()) for f in (min, max))
    lines = [
        START,
        "## Change between two dates (OSCD Sentinel-2, 8 labelled cities; Nanjing Landsat-5)",
        "",
        "Written by `scripts/evaluate_change.py`. Pixel level on the label grid; AUROC / average "
        f"precision (AP) / best F1. Chance AP = the change fraction, {chance:.3f} pooled. "
        "Pooled = all pixels of the 8 cities together, so a score that means the same in every "
        "city matters. Only the trained head learns from labels: for each city, a head "
        "trained on the change maps of the other 7 cities (leave-one-city-out; frozen "
        "backbone, 6 epochs), then self-trained on the images of the 4 OSCD cities of the "
        "shared data that have no change map (brasilia, montpellier, norcia, valencia: rows "
        "without a mask in the CSV; the head marks their top 2% of scores as change and their "
        "bottom 70% as no change, and a new head trains on both; "
        f"{train_seconds:.0f} s a head on this CPU), so every row scores cities it has not "
        "seen. Nanjing has no trained row: the head reads Sentinel-2 L1C, Nanjing is Landsat-5.",
        "",
        "| method | pooled AUROC | pooled AP | pooled best F1 |",
        "|---|---|---|---|",
        *(
            f"| {LONG[m]} | {pooled[m][0]:.3f} | {pooled[m][1]:.3f} | {pooled[m][2]:.3f} |"
            for m in methods
        ),
        "",
        "Per city, AUROC / AP / best F1:",
        "",
        "| city | " + " | ".join(methods) + " |",
        "|---|" + "---|" * len(methods),
        *(
            f"| {city} | "
            + " | ".join(f"{r[m][0]:.2f} / {r[m][1]:.3f} / {r[m][2]:.2f}" for m in methods)
            + " |"
            for city, r in per.items()
        ),
        "",
    ]
    if nanjing:
        lines += [
            "Nanjing (Landsat-5 TM, 6 bands uint8, through the wavelength-conditioned path; "
            "only the labelled pixels; abs(B04) is the red band B3 there), AUROC / AP / best F1:",
            "",
            "| method | AUROC | AP | best F1 |",
            "|---|---|---|---|",
            *(
                f"| {LONG[m]} | {nanjing[m][0]:.3f} | {nanjing[m][1]:.3f} | {nanjing[m][2]:.3f} |"
                for m in methods
                if m in nanjing
            ),
            "",
        ]
    windows = figures.get("nanjing_windows", [])
    if windows:
        won = sum(w["default"] > w["best band baseline"][1] for w in windows)
        won_before = sum(w["no anomaly"] > w["best band baseline"][1] for w in windows)
        lines += [
            f"Nanjing in {len(windows)} sub-scenes of 400 x 400 px (on a grid of half a "
            "window, so they overlap), each scored as a scene of its own (its own "
            "calibration): a pair of another place and size might rank like any of them. AP "
            "on each window's labelled pixels:",
            "",
            "| window (row, column) | labelled px | change | best band baseline | default | "
            "without its anomaly term |",
            "|---|---|---|---|---|---|",
            *(
                f"| {w['window'][0]}, {w['window'][1]} | {w['labelled']} | "
                f"{w['change']:.0%} | {w['best band baseline'][0]}: "
                f"{w['best band baseline'][1]:.3f} | {w['default']:.3f} | "
                f"{w['no anomaly']:.3f} |"
                for w in windows
            ),
            "",
            f"The default is above the best band baseline in {won} of {len(windows)} "
            f"sub-scenes, without its anomaly term in {won_before}.",
            "",
        ]
    lines += city_windows_section(figures.get("city_windows"))
    lines += threshold_section(figures.get("thresholds"))
    lines += misregistration_section(figures.get("misregistration"))
    lines += [
        "How the trained head was chosen (leave-one-city-out, pooled AP on these 8 cities): "
        "the head's output as a probability ranked worse pooled (0.176) than the zero-shot "
        "score (0.190) although it beat it in 7 of 8 cities, as its scale differs from city to "
        "city; its logit standardised over the scene like the zero-shot score gave 0.222-0.224 "
        "at 12 epochs (by thread count; 0.241 with statistics from the whole scene instead of "
        "16 sample tiles), and adding the zero-shot score to it did not help (0.238 at weight "
        "0.5, 0.225 at 1). Then, each against those 12 epochs: 6 epochs 0.232 (the default), "
        "24 epochs 0.184 (it overfits 7 cities), a width of 64 instead of 32 0.222, changed "
        "pixels weighed 1x instead of 5x 0.230, and both 6 epochs and 1x 0.229. A "
        "full-resolution decoder (the segmentation head's) took ~3 min an epoch on this CPU "
        "(other jobs running) against 3-15 s for the light head that replaced it.",
        "",
        "The calibration sample (2026-12-05): the head's inputs and its logits' z now come "
        "from 64 tiles spread over each scene (`HEAD_SAMPLE_TILES`), in training and at "
        "prediction, instead of the zero-shot score's 16: pooled AP with seeds 0, 1, 2 rose "
        "from 0.244 / 0.252 / 0.243 to 0.278 / 0.285 / 0.275 (36 tiles, seed 0: 0.275); with "
        "seed 0 higher in 6 of the 8 cities (saclay_e 0.155 to 0.202, pisa 0.180 to 0.217), "
        "lower in bercy (0.340 to 0.315) and rennes (0.499 to 0.495); without self-training "
        "(the 8 labelled cities alone), seed 0: 0.257. The zero-shot default "
        "with 64 tiles: 0.199 against 0.195, not worth 4 times its calibration's cost.",
        "",
        "The anomaly term in the head's image (2026-12-05; see the zero-shot default's below): "
        "the head reads it as a third z-scored term beside the pixel and embedding terms "
        "(3C + 3 channels; a head trained before is refused with the advice to train it "
        "again). Leave-one-city-out through `ofa change` as in the row above, seeds 0, 1, 2: "
        "pooled AP 0.296 / 0.291 / 0.279 against 0.278 / 0.285 / 0.275 without it (AUROC "
        "0.895 / 0.894 / 0.896 against 0.879 / 0.895 / 0.887; best F1 with seed 0 0.367 "
        "against 0.337), higher with each seed but by less than the seeds' spread with two; "
        "with seed 0 higher in 5 "
        "cities (aguasclaras 0.161 to 0.199, abudhabi 0.359 to 0.389, pisa 0.217 to 0.245), "
        "lower in bercy (0.315 to 0.285), nantes (0.449 to 0.425) and rennes (0.495 to 0.490), "
        "the cities where abs(B04) is strongest, as with the zero-shot default.",
        "",
        "AFTER's residuals in the head's image (2026-12-06): the C channels of the dates' "
        "absolute difference gave way to AFTER's bands less their prediction from all of "
        "BEFORE's bands by least squares over the calibration sample (`residual_fit`; a change "
        "the whole scene shares, such as the season or the light, is close to a linear map of "
        "the bands and costs little there, where the difference counts it everywhere), in "
        "residual deviations, absolute, averaged over 5 x 5 px like the terms "
        "(`after_residuals`; a head trained before is refused with the advice to train it "
        "again). On the cached inputs of the recipes below (the recipe then shipped 0.288 / "
        "0.284 / 0.270 with seeds 0, 1, 2): 0.317 / 0.296 / 0.290, higher with each seed; with "
        "seed 0 higher in 7 of 8 cities (saclay_e 0.217 to 0.292, pisa 0.221 to 0.288, bercy "
        "0.267 to 0.292, rennes 0.444 to 0.473), lower in aguasclaras (0.183 to 0.178). "
        "Through `ofa change` (its tiles then cropped, as below): seeds 0, 1, 2 0.324 / 0.302 "
        "/ 0.300 against 0.296 / 0.291 / 0.279 before. In the zero-shot score's pixel term, the "
        "residuals' mean over its bands in place of the difference's: pooled AP 0.212 against "
        "0.213, rennes 0.453, below abs(B04)'s 0.465 (the two added: 0.215, rennes 0.465; "
        "Nanjing 0.834 and 0.838 against 0.832); not shipped.",
        "",
        "Blended tiles (2026-12-06): the head reads the token maps of its tile alone, so where "
        "`ofa change` took each 64 px tile's centre (48 px, the engine's default for every "
        "task), the map stepped at the centres' edges, a grid of squares on it (on valencia, "
        "the mean step between neighbouring pixels across those edges was 2.6 times the step "
        "elsewhere). A head's tiles now lie every 32 px and each pixel is their mean weighted "
        "by a tent falling from each tile's centre to its edges (`engine/blend.py`): 1.04 "
        "times there. Pooled AP with the same heads (seeds 0, 1), by how the tiles were put "
        "together: centres of 64 px tiles every 48 px (as before) 0.324 / 0.302; every 32 px "
        "0.319 / 0.297; a plain mean of tiles every 48 px 0.322 / 0.302; the tent-weighted "
        "mean of tiles every 32 px (shipped) 0.324 / 0.305; every 16 px (4 times the tiles) "
        "0.324 / 0.304. Ranking is no better, the map is seamless; the head's `ofa change` "
        "costs more (bench/RESULTS.md). Through `ofa change`, seeds 0, 1, 2: 0.325 / 0.305 / "
        "0.300. The zero-shot score keeps cropped centres: its goal is a cost of at most 2.2 "
        "embeds.",
        "",
        "The embedding term at pixel resolution (2026-12-06): upsampled bilinearly "
        "(`to_pixels`) instead of repeating each patch's value over its 8 x 8 px, which drew "
        "every patch as a square on the zero-shot map (on valencia the mean step across the "
        "patches' edges was 1.45 times the step elsewhere, now 1.04; across the cropped tile "
        "centres' edges 1.44, now 1.16). Ranking is the same: the zero-shot default's "
        "pooled AP 0.213 before, 0.215 after, measured side by side then (the rows above are "
        "today's, after later changes). The head's image reads the "
        "term the same way: seeds 0, 1, 2 0.324 / 0.310 / 0.305 against 0.325 / 0.305 / "
        "0.300 before.",
        "",
        "The embedding term's block (2026-12-06): the zero-shot default compares the token "
        "maps after 6 of the encoder's 8 blocks (`EMBEDDING_DEPTH`, 3/4 of the blocks) instead "
        "of the last block's, so the backbone does a quarter less work on both dates (`ofa "
        "change` 1.7x an embed instead of 2.0-2.1x, bench/RESULTS.md). The default's pooled AP "
        "on the 8 OSCD cities / AP on Nanjing, measured side by side: after the last block "
        "0.2280 / 0.831, after block 6 0.2273 / 0.830, block 4 0.225 / 0.828, block 2 0.223 / "
        "0.828; per city, block 6 is within 0.004 of the last block's (higher in 2 of the 9 "
        "pairs, lower in 6). Through this script then: 0.227 / 0.830 (now, with the visible "
        f"bands' share below: {pooled['default'][1]:.3f} / {nanjing['default'][1]:.3f}). A "
        "change head "
        "reads the last block's maps, in training and when it scores, as it did; the row of "
        "the last block's embeddings centred is the term as it was.",
        "",
        "The focal loss (2026-12-06): the head trains on its weighted cross-entropy with each "
        "pixel's term times (1 - p)^2, p the probability it gives the pixel's true label "
        "(`focal_loss`, gamma 2; changed pixels still weighed 5x), so the many unchanged pixels "
        "it already gets right count less. On the cached inputs (the recipe before it 0.315 / "
        "0.301 / 0.292 with seeds 0, 1, 2): 0.321 / 0.308 / 0.320, higher with each seed "
        "(other exponents and weights in the table below). Through `ofa change`, its row "
        "above before its logits were smoothed (below), seeds 0, 1, 2: 0.334 / 0.315 / 0.336 "
        "against 0.324 / 0.310 / 0.305 before; with seed 0 higher in 4 of 8 cities "
        "(aguasclaras 0.210 to 0.257, nantes 0.438 to 0.510, abudhabi 0.406 to 0.419, bercy "
        "0.289 to 0.298), lower in 4 (rennes 0.530 to 0.516, bordeaux 0.135 to 0.122, pisa "
        "0.294 to 0.285, saclay_e 0.281 to 0.278). The head on random-init embeddings fell: "
        "0.264 against 0.294 before. A focal loss tried on the inputs of "
        "2026-12-05 (gamma 2 with alpha 0.75, that is changed pixels weighed 3x) had scored "
        "0.268 against 0.273 (below).",
        "",
        "Smoothed logits (2026-12-06): the head's logits pass a Gaussian of 1 px "
        "(`HEAD_SMOOTH_PX`, within each tile before the tiles blend) before they are "
        "standardised, so single pixels of change count less. Pooled AP through `ofa change`, "
        "seeds 0, 1, 2: "
        + " / ".join(f"{v[1]:.3f}" for v in head_seeds.values())
        + " against 0.334 / 0.315 / 0.336 unsmoothed (AUROC "
        + " / ".join(f"{v[0]:.3f}" for v in head_seeds.values())
        + " against 0.902 / 0.896 / 0.901), the head on random-init embeddings "
        f"{pooled['random-init head'][1]:.3f} against 0.264: higher with every head, by less "
        "than the seeds' spread; with seed 0 "
        + _city_changes(per, "one member", UNSMOOTHED_HEAD)
        + ". Smoothing within each tile makes every step between neighbouring pixels smaller "
        "but the blend's: on bercy, with the small head of tests/test_change_head.py, the step "
        "across the blended tiles' edges is 1.11 times the step elsewhere, 1.05 unsmoothed "
        "(cropped tile centres: 1.59 and 1.25). On cached inputs a Gaussian of 2 px scored "
        "0.332 against 0.330 for 1 px (seed 0), with a blurrier map: not shipped.",
        "",
        "Aligned dates (2026-12-06; the misregistration table below): `ofa change` and `ofa "
        "train-head --task change` warp AFTER onto BEFORE's features when they lie "
        f"{MISREGISTERED_PX:g} px or more apart; of the shared pairs, abudhabi "
        "(1.4 px). Pooled AP through `ofa change`, seeds 0, 1, 2: "
        + " / ".join(f"{v[1]:.3f}" for v in head_seeds.values())
        + " against 0.337 / 0.319 / 0.340 before (AUROC "
        + " / ".join(f"{v[0]:.3f}" for v in head_seeds.values())
        + " against 0.903 / 0.897 / 0.904); with seed 0 "
        + _city_changes(per, "one member", UNALIGNED_HEAD)
        + f" (the other cities' heads learnt from abudhabi aligned; abudhabi's scored it "
        "aligned). The head on "
        f"random-init embeddings {pooled['random-init head'][1]:.3f} against 0.265; the "
        f"zero-shot default {pooled['default'][1]:.3f} against 0.215 (abudhabi "
        f"{per['abudhabi']['default'][1]:.3f} against 0.351; the other cities unchanged).",
        "",
        "Self-training (2026-12-04): without the unlabelled cities the same row scored pooled "
        "AP 0.221 / 0.210 / 0.230 with seeds 0, 1, 2 (AUROC 0.878 / 0.882 / 0.874; this "
        "script before the change); on the cached inputs 0.232 / 0.210 / 0.241 became 0.254 / "
        "0.243 / 0.246, higher with every seed, in AUROC and best F1 too, but not in every "
        "city (pisa lost 0.02-0.04 with each seed, nantes and rennes with two of three).",
        "",
        "Three members (2026-12-06): `ofa train-head --task change` trains "
        f"{len(head_seeds)} heads alike from seeds "
        + ", ".join(str(seed) for seed in head_seeds)
        + " (`--members`; each self-trained on its own pseudo-labels) and averages their logits "
        "(`heads.ChangeEnsemble`), since one head's AP depends on its seed: pooled AP "
        f"{pooled['trained head'][1]:.3f} (AUROC {pooled['trained head'][0]:.3f}, best F1 "
        f"{pooled['trained head'][2]:.3f}) against "
        + " / ".join(f"{v[1]:.3f}" for v in head_seeds.values())
        + " for each member alone; against the seed-0 member alone, "
        + _city_changes(
            per, "trained head", {c: round(r["one member"][1], 3) for c, r in per.items()}
        )
        + ". Its cost is the training, once per member (three times one head's); in `ofa "
        "change` the backbone runs once and the three heads are light beside it.",
        "",
        "How far it is from the issue's goal (AP 0.45 pooled, not reached; the head is above "
        "every band baseline and the zero-shot default here): one head trained with seeds "
        + ", ".join(str(seed) for seed in head_seeds)
        + " gives pooled AP "
        + " / ".join(f"{v[1]:.3f}" for v in head_seeds.values())
        + " (AUROC "
        + " / ".join(f"{v[0]:.3f}" for v in head_seeds.values())
        + "), so differences of 0.02 in the choices above are within the noise. Before the "
        "anomaly term joined the head's image (seeds 0, 1, 2: 0.278 / 0.285 / 0.275), the "
        "mean of the three seeds' scores (an ensemble of three heads, three times the "
        "training; measured 2026-12-05) scored 0.285 (AUROC 0.890), no more than the best "
        "seed alone: not shipped then; nor was leaving the 1 px band along the edges of "
        "labelled change out of training (0.273 / 0.275, seeds 0, 1), self-training on the "
        "held-out city's own images as well (0.276), a learning rate of 1e-3 or 4e-3 instead of"
        " 2e-3 (0.261, 0.283) or changed pixels weighed 10x instead of 5x (0.273; seed 0 each, "
        "where the recipe then shipped scores 0.278). With each city's scores recalibrated by "
        "its own labels (an oracle no user has: each score replaced by the change share of "
        "its quantile bin in that city), the row's pooled AP "
        f"would be {oracle[1]:.3f}: what holds the head back is how it ranks pixels within a "
        "city, not how scores compare between cities.",
        "",
        "More recipes (2026-12-05, on the head's inputs cached as training reads them, with "
        "the 64-tile calibration, each held-out city's logits standardised over all its "
        "tiles; there the shipped recipe scores 0.273 / 0.275 with seeds 0, 1): a focal loss "
        "(gamma 2, alpha 0.75) instead of the weighted cross-entropy 0.268; a width of 64 "
        "instead of 32 0.255; nine spectral-index channels added to the head's image (each "
        "date's NDVI, NDBI and MNDWI and their absolute differences) 0.259 / 0.254; the head's "
        "inputs from tiles of 128 px instead of 64 (4 times the context of each token; 6 "
        "times the training time) 0.255 in batches of 4 tiles (as many steps as the shipped "
        "recipe; 0.234 in batches of 16), though its mean AP per city rose (0.275 against "
        "0.267: pisa 0.293 against 0.209, rennes 0.526 against 0.450), and its standardised "
        "logits averaged with the shipped recipe's (weight 0.25 or 0.5, on the label grid) "
        "0.276 or 0.268 against 0.279 for the shipped recipe alone. How the logits are "
        "put on one scale matters more: pooled, the raw logits score 0.182 and the logits "
        "less each city's median 0.246, against 0.273 standardised (shipped). None shipped. "
        "Other scales (2026-12-06, the same logits of seeds 0 and 1 rescaled, where "
        "standardised they score 0.288 / 0.284): each city's median and MAD 0.293 / 0.290, "
        "mean and deviation of its lowest 80% 0.293 / 0.292, the posterior of a two-Gaussian "
        "mixture 0.264 / 0.258, each city's quantiles 0.253 / 0.256; the oracle 0.324 / 0.322. "
        "Not shipped: a gain of 0.006 that would change every head score's scale. The zero-shot "
        "terms scaled by their median and MAD instead of their mean and deviation: pooled AP "
        "0.198 against 0.213 (the lowest 90%'s mean and deviation 0.214).",
        "",
        "What pre-training brings to it: the row trained on random-init embeddings "
        f"({pooled['random-init head'][1]:.3f} here, self-trained like the trained head's, one "
        f"seed) against the trained head's seeds {lowest:.3f}-{highest:.3f} (above); without "
        "the anomaly term in the head's image it was 0.241 against 0.275-0.285, with the "
        "calibration from 16 tiles 0.219 against 0.243-0.252, and on the cached tiles of the "
        "recipes below 0.212 / 0.224 against 0.232 / 0.210 / 0.241: the pre-trained token maps "
        "help the head a little, less as the image channels the head reads get better. "
        "On the cached tiles the centred embedding term alone ranks change better with "
        "random-init embeddings (AP 0.114) than with the shipped ones (0.086) or the GPU "
        "round's (0.098): what pre-training has taught so far makes the embeddings no more "
        "sensitive to this change by themselves.",
        "",
        "Recipes tried for the head (2026-12-04; leave-one-city-out on the 8 cities with the "
        "head's inputs cached, each city standardised over all its tiles, the pixel term then "
        "of the visible bands; pooled AP by seed; the rows in bold were shipped, the others "
        "did not rise above the seeds' spread):",
        "",
        "| recipe | pooled AP, seed 0 / 1 / 2 |",
        "|---|---|",
        *(f"| {recipe} | {result} |" for recipe, result in HEAD_RECIPES),
        "",
        "These cities are harder than the other labelled OSCD cities, on which the project is "
        "evaluated (`shared/notes/change-feasibility.md` measured 6 of them): abs(B04) scores "
        "AP 0.285 there against 0.069 here, and the note's per-pixel logistic regression (both "
        "dates' bands, their absolute differences and their 7 x 7 means), trained on these 8 "
        "cities, 0.246 there; trained leave-one-city-out here (on the head's cached image "
        "channels) it scores 0.104 (AUROC 0.753). The trained head scores about "
        f"{pooled['trained head'][1] / 0.104:.1f} times that here; what it scores on the other "
        "cities cannot be measured with the shared data.",
        "",
        "How the default was chosen (pooled AP on these 8 cities, measured while building it): "
        "the bands standardised per date instead of over both dates together lift abs(B04) "
        "from 0.069 to 0.096 and the change vector from 0.056 to 0.089; averaging the "
        "difference over a window tolerates misregistration (visible bands: 3 x 3 px 0.128, "
        "5 x 5 0.125, 7 x 7 0.114; the minimum over 1-px shifts did worse, 0.080); "
        "standardising the score per scene (z) lifts the pooled AP most (0.125 to 0.195), as "
        "every city then shares a scale; raw embedding distances add nothing at any weight "
        "(0.195 at weights -0.1 to 0.1, worse above), centred ones add a little at weight "
        "0.25-0.5 (0.199 to 0.215-0.219 on full-scene statistics). Products of the two terms "
        "did worse (0.03-0.05). With the first-round backbone the random-init embeddings did "
        "as well as the shipped model's (0.194 against 0.190): the embedding term helped as a "
        "patch-level texture difference, not through what pre-training taught. Compare the "
        "rows above for the backbone shipped now (random init here: timm's, std 0.02).",
        "",
        "Which bands the pixel term averages (2026-12-05). Each band's difference alone (5 x 5 "
        "px, z per city), AP per city: here the visible bands B02-B04 rank change best (a "
        "geometric mean over the 8 cities of 1.7 times abs(B04)'s pixel-level AP), SWIR (B11, "
        "B12) about as well as abs(B04) (0.9-1.0 times), the red edge and near infrared "
        "(B06-B8A) worse (0.7-0.8 times; they mostly see the vegetation's season), except in "
        "abudhabi (desert: every band alike); on Nanjing SWIR ranks best (0.80 each), then red "
        "0.73, near infrared 0.46. So the pixel term reads the visible and SWIR bands (0.45-0.70 "
        "and 1.5-2.5 µm without the water-vapour band: B02-B04, B11, B12 of Sentinel-2; B1-B3, "
        "B5, B7 of TM), and the embedding weight is 0.25. The zero-shot default, as cities "
        "above abs(B04) / pooled AP / Nanjing AP (best band baseline there 0.787): visible "
        "bands (0.4-0.7 µm) at weight 0.5, the choice until 2026-12-04: 0.202 pooled, 0.739 on "
        "Nanjing; 0.4-2.5 µm without the water-vapour and cirrus bands at weight 0.5, the "
        "choice until 2026-12-05: 4 of 8 / 0.195 / 0.817, below abs(B04) in rennes (0.394 "
        "against 0.465), the city where abs(B04) ranks change best (on the other OSCD cities it "
        "is the best band baseline too, AP 0.285); visible and SWIR at weight 0.25, now: 7 "
        "of 8 / 0.195 / 0.800 (rennes 0.486; AUROC 0.868 against 0.844). On full-scene "
        "statistics, for the choice: visible "
        "and SWIR at weight 0 / 0.25 / 0.5: 7 / 7 / 6 of 8 cities, pooled 0.187 / 0.202 / "
        "0.206, Nanjing 0.795 / 0.808 / 0.813; the visible bands counted twice (z(visible) + "
        "z(0.4-2.5 µm), weight 0.5): 7 of 8, 0.222, but Nanjing 0.790, too close to its best "
        "band baseline; the weighted mean with visible bands counted 2-6 times: 0.213-0.229, "
        "Nanjing 0.763-0.807, 6-7 cities.",
        "",
        "The visible bands' share of the pixel term (2026-12-07). With the anomaly term (below) "
        "holding Nanjing, the visible bands could count more again: the pixel term is now the "
        "mean of the bands' differences weighted so that the visible range makes 0.8 of it and "
        "the SWIR range 0.2, each range's share split equally among its bands "
        "(`PIXEL_RANGE_SHARES`; for Sentinel-2 and TM, each visible band 2.7 times a SWIR band; "
        "a sensor with bands in one range only is as before). The zero-shot default through "
        "`ofa change` by the visible range's share, as cities above abs(B04) / pooled AP / "
        "Nanjing AP / Nanjing's sub-scenes above their best band baseline: 0.6 (the 5 bands "
        "alike, the choice until 2026-12-07) 7 of 8 / 0.228 / 0.830 / 7 of 9; 0.75: 7 / 0.234 "
        "/ 0.821 / 7; 0.8 (now) 8 / 0.236 / 0.818 / 7; 0.82: 8 / 0.236 / 0.816 / 7; 0.86: 8 / "
        "0.237 / 0.813 / 5; 0.88: 8 / 0.238 / 0.811 / 5. Bercy, the one city below abs(B04) "
        "before (0.130 against 0.147), goes 0.144 / 0.150 / 0.151 / 0.155 / 0.158 and rennes, "
        "where abs(B04) ranks change best (0.465), 0.473 (before) / 0.489 / 0.493 / 0.495 / "
        "0.498 / 0.500: the margin over abs(B04), which is the best band baseline on the OSCD "
        "cities the project is evaluated on, widens where it was thinnest. The anomaly term's "
        "weight with the visible share at 0.82: 0.25: 8 / 0.232 / 0.800 / 5; 0.5 (kept): 8 / "
        "0.236 / 0.816 / 7; 0.75: 7 / 0.236 / 0.823 / 6. The embedding term's weight with the "
        "share at 0.8: 0 (the row above) 0.227 pooled; 0.25 (kept) 8 / 0.236 / 0.818 / 7; "
        "0.375: 7 / 0.237 / 0.819 / 7 (bercy 0.145); 0.5: 6 / 0.237 / 0.820 / 6 (bercy 0.139, "
        "rennes 0.462).",
        "",
        "The anomalous-change term (2026-12-05). On 400 x 400 px sub-scenes of Nanjing the "
        "default without it was above the best band baseline in only 4 of 9 (1 - cosine of "
        "the band vectors ranked the southern ones best by up to 0.07), so the Landsat half "
        "of the zero-shot goal hung on which part of a scene is evaluated. The Gaussian "
        "anomalous change detector (Theiler and Perkins 2006: the Mahalanobis distance of "
        "both dates' pixel-term bands under their joint covariance, less each date's own, so "
        "a change the whole scene shares, such as a season, costs nothing) was the best of "
        "the detectors tried on those bands; then its weight, with the calibration from 16 "
        "tiles, 0 / 0.25 / 0.5 / 0.75: pooled AP 0.195 / 0.208 / 0.213 / 0.213, Nanjing 0.800 "
        "/ 0.826 / 0.832 / 0.836, sub-scenes above their best band baseline 4 / 7 / 7 / 6 of "
        "9; saclay_e 0.059 / 0.111 / 0.160 / 0.190 and pisa 0.164 / 0.182 / 0.192 / 0.198 "
        "rise, but bercy falls 0.162 / 0.141 / 0.130 / 0.122 (abs(B04) 0.147) and rennes "
        "0.486 / 0.481 / 0.476 / 0.470 (abs(B04) 0.465): in the two cities where abs(B04) is "
        "strongest the margin over it shrinks. The others, on full-scene statistics, as "
        "pooled AP / Nanjing's margin over its best band baseline (the default without the "
        "term: 0.195 / +0.013): the term alone 0.209 / +0.051 (rennes 0.040 below abs(B04)); "
        "the chronochrome (AFTER predicted from BEFORE by least squares, the residual's "
        "Mahalanobis distance) both ways 0.165 / -0.090 (one way, Nanjing -0.128); the "
        "Gaussian detector over 0.4-2.5 µm instead of the pixel term's bands, at weight 0.5: "
        "0.229 / +0.052, but rennes 0.006 below abs(B04) where the pixel term's bands keep it "
        "0.019 above (0.223 / +0.045; one band set for both terms, too); without the 5 x 5 px "
        "window 0.217 / +0.042; 1 - cosine of the visible and SWIR band vectors instead, at "
        "weights 0.1 to 1: 0.188 to 0.119 / +0.032 to +0.072, trading OSCD for Landsat.",
        "",
        "Against the backbones shipped before, pooled AUROC / AP / best F1, "
        + "; ".join(f"{i + 1}: {round_}" for i, round_ in enumerate(EARLIER_ROUNDS))
        + f"; {len(EARLIER_ROUNDS) + 1}: the backbone shipped now: "
        + "; ".join(
            f"{LONG[m]}: "
            + " -> ".join(
                " / ".join(f"{v:.3f}" for v in rows[m]) for rows in EARLIER_ROUNDS.values()
            )
            + f" -> {' / '.join(f'{v:.3f}' for v in pooled[m])}"
            for m in next(iter(EARLIER_ROUNDS.values()))
            if m in pooled
        )
        + ". The trained head's last figures include self-training (without it, as the "
        "rounds before were measured: 0.878 / 0.221 / 0.291) and its calibration from 64 tiles "
        "(from 16: 0.876 / 0.244 / 0.319) and the anomaly term in its image (without it: 0.879 "
        "/ 0.278 / 0.337) and AFTER's residuals in place of the dates' difference (without "
        "them: 0.895 / 0.296 / 0.367) and its focal loss (without it, with blended tiles and "
        "the embedding term interpolated: 0.901 / 0.324 / 0.373) and its logits smoothed by a "
        "Gaussian of 1 px (without it: 0.902 / 0.334 / 0.382) and its 3 members (one alone, "
        "seed 0: "
        + " / ".join(f"{v:.3f}" for v in pooled["one member"])
        + "), and all the last figures the "
        "pixel "
        "term of the visible and SWIR bands, the visible range's share 0.8 (with the 5 bands "
        "alike, as before 2026-12-07: trained head 0.910 / 0.353 / 0.405, zero-shot default "
        "0.886 / 0.227 / 0.323), at weight 0.25 (with the visible bands at weight "
        "0.5, as before 2026-12-04: trained head 0.876 / 0.245 / 0.319, zero-shot default "
        "0.850 / 0.202 / 0.281; with 0.4-2.5 µm at weight 0.5: 0.879 / 0.242 / 0.319 and "
        "0.844 / 0.195 / 0.279); the zero-shot default's last figures include its anomaly "
        "term at weight 0.5 (without it: "
        + " / ".join(f"{v:.3f}" for v in pooled["no anomaly"])
        + ").",
        "",
        f"({seconds:.0f} s on this machine.)",
        END,
    ]
    return "\n".join(lines)


def write(figures: dict) -> None:
    """Put the section into docs/EVALUATION.md (in place of the one there)."""
    doc = ROOT / "docs" / "EVALUATION.md"
    text = doc.read_text()
    new = section(figures)
    if START in text:
        text = text[: text.index(START)] + new + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + new + "\n"
    doc.write_text(text)
    print(new)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped checkpoint")
    parser.add_argument(
        "--write-only",
        action="store_true",
        help=f"rewrite the section from {FIGURES.name} without measuring",
    )
    parser.add_argument(
        "--misregistration",
        action="store_true",
        help=f"measure only what misregistration costs, into {FIGURES.name}, and rewrite",
    )
    options = parser.parse_args()
    if options.misregistration:
        torch.set_num_threads(options.threads)
        figures = json.loads(FIGURES.read_text())
        model = load_pretrained()
        figures["misregistration"] = {
            "kept": misregistration(model, options.shared, align=False),
            "aligned": misregistration(model, options.shared, labelled_only=True),
        }
        FIGURES.write_text(json.dumps(figures, indent=1) + "\n")
        write(figures)
    elif options.write_only:
        write(json.loads(FIGURES.read_text()))
    else:
        main(options.shared, options.threads, options.checkpoint)
