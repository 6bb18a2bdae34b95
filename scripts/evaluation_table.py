"""Write docs/EVALUATION.md: the shipped backbone against random initialisation and the bands'
own statistics on the shared real data (EuroSAT scene classification and EnMAP land cover by
linear probe and kNN; NEON tree-crown segmentation with a frozen-backbone head). Every number in
the file comes from this script; the only numbers it does not measure itself are the earlier
recipes in ``TRIED``, recorded when they were measured. Run from the repository root:
``python scripts/evaluation_table.py [SHARED_DATA_DIR] [--checkpoint C]`` (about 25 minutes on
2 CPU cores); ``--tried-only`` rewrites only the table of recipes tried (from ``TRIED``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np
import rasterio

from ofa_explore import load_checkpoint, load_pretrained
from ofa_explore.checkpoint import model_from_metadata, read_metadata
from ofa_explore.downstream import (
    compare_with_random_init,
    fit_segmentation_head,
    read_segmentation_scenes,
)
from ofa_explore.downstream.datasets import IGNORE_INDEX, boxes_to_mask
from ofa_explore.downstream.tasks import random_init
from ofa_explore.heads import DEFAULT_POOL
from ofa_explore.pretrained import shipped_checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
SEG_EPOCHS, SEEDS = 30, (0, 1, 2)  # fold assignments (and segmentation-head seeds)
INIT_SEEDS = (0, 1, 2, 3, 4)  # random-init networks (timm's init: normal, std 0.02)
POOLS = ("mean", "mean+std")  # EuroSAT features compared both ways
GOAL_POOL = "mean"  # the goal is judged on the features' mean, as the issues measured it
GOAL_POINTS = 10  # issues 12 and 27: beat random initialisation by this many points on EuroSAT
CHANGE_BLOCK = ("<!-- change-evaluation:start -->", "<!-- change-evaluation:end -->")

# Recipes measured before the shipped one (EuroSAT, linear probe / kNN, 5-fold by geo_group,
# 1 seed), as recorded when they ran; random initialisation scored 0.53-0.60 / 0.50-0.52.
TRIED = [
    ("MAE, 6000 steps of 32 chips (the previous shipped model)", "0.57 / 0.53"),
    ("MAE, random-resized crops [0.25, 1], EuroSAT weighted up, 2500 steps", "0.56 / 0.51"),
    ("the same with norm_pix_loss", "0.51 / 0.43"),
    ("MAE + CAN-style contrastive term between two masked views, 1500 steps", "0.53 / 0.50"),
    ("MAE, mask ratio 0.9, EuroSAT 3x, crops [0.3, 1], bf16, 6000 steps", "0.54 / 0.50"),
    (
        "MAE + InfoNCE between two crops (EuroSAT only, script outside the pipeline), 2000 "
        "steps of 32",
        "0.59 / 0.57",
    ),
    ("mean+std pooling of the previous model's tokens (384 features)", "0.63 (random 0.65)"),
    # issue 27's protocol from here on (3 fold assignments; random init: 5 timm-initialised
    # networks, the same for every checkpoint of one architecture), measured 2026-12-03
    (
        "first round (`demo.yaml`, 9000 steps; shipped until the second round), mean pooling",
        "0.670 / 0.643 (random init 0.583 / 0.524; band mean+std 0.675 / 0.580)",
    ),
    ("the same, mean+std pooling", "0.699 / 0.651 (random init 0.694 / 0.565)"),
    (
        "second round (`round2.yaml`: time pairs, from the first round's weights) after 2250 "
        "of its 3000 steps, mean / mean+std pooling",
        "0.694 / 0.661; 0.727 / 0.657",
    ),
    (
        "second round, all 3000 steps (shipped until the third round), mean pooling",
        "0.699 / 0.669 (random init 0.582 / 0.524; band mean+std 0.677 / 0.580)",
    ),
    ("the same, mean+std pooling", "0.721 (random init 0.692)"),
    (
        "third round (`round3.yaml`, shipped) as measured before shipping, mean / mean+std",
        "0.713 / 0.694; 0.748 / 0.694",
    ),
    (
        "the third round's recipe plus a HOG loss on the hidden patches (`round4_hog.yaml`, "
        "objective.hog 1.0, MaskFeat's target), the same 3500 steps from the same second-round "
        "weights, mean / mean+std pooling; change zero-shot pooled AP 0.202 (the same as the "
        "third round); not shipped",
        "0.694 / 0.674; 0.738 / 0.674",
    ),
    (
        "a GPU round (`configs/gpu.yaml`: the second round's sources packed to 41 MiB, 2486 "
        "steps of 256 chips in 6 min on a lent H200, from the third round's weights), mean / "
        "mean+std pooling; EnMAP 70.3% (third round 76.8%); the trained change head 0.229 "
        "pooled AP (third round 0.232, cached inputs, seed 0); not shipped (2026-12-04)",
        "0.705 / 0.694; 0.728",
    ),
]


def neon_scene(shared: Path, folder: Path) -> Path:
    """The NEON tile and its 61 tree boxes as an images/ + masks/ pair (1 = inside a box)."""
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    with rasterio.open(shared / "neon_rgb" / "OSBS_029.tif") as src:
        profile, image = src.profile, src.read()
    profile.update(nodata=None)  # 255 is a valid pixel here
    with rasterio.open(folder / "images" / "OSBS_029.tif", "w", **profile) as dst:
        dst.write(image)
    mask = boxes_to_mask(shared / "neon_rgb" / "OSBS_029.csv", image.shape[1:])
    profile.update(count=1, dtype="uint8")
    with rasterio.open(folder / "masks" / "OSBS_029.tif", "w", **profile) as dst:
        dst.write(mask[None])
    return folder


def enmap_scenes(shared: Path, folder: Path) -> Path:
    """The 18 EnMAP tiles and their labels as images/ + masks/ (label 0, background, becomes
    the ignore value; classes 1-6 become 0-5)."""
    source = shared / "enmap_potsdam"
    for sub in ("images", "masks"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for label_path in sorted((source / "labels").glob("*.tif")):
        shutil.copyfile(source / "images" / label_path.name, folder / "images" / label_path.name)
        with rasterio.open(label_path) as src:
            labels, profile = src.read(1).astype(np.int64), src.profile
        mask = np.where(labels == 0, IGNORE_INDEX, labels - 1).astype(np.uint8)
        profile.update(dtype="uint8", nodata=None)
        with rasterio.open(folder / "masks" / label_path.name, "w", **profile) as dst:
            dst.write(mask[None])
    return folder


def segmentation_rows(model_path: Path | None, shared: Path) -> list[tuple[str, float, float]]:
    meta = read_metadata(model_path or shipped_checkpoint_path())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scene = neon_scene(shared, Path(tmp))
        for label in ("pre-trained", "random init"):
            scores = []
            for seed in SEEDS:
                if label == "random init":
                    model = random_init(model_from_metadata(meta), seed)
                else:
                    model = load(model_path)
                report = fit_segmentation_head(model, scene, "trees", epochs=SEG_EPOCHS, seed=seed)
                scores.append(report["miou"])
            rows.append((label, float(np.mean(scores)), float(np.std(scores))))
    return rows


def load(model_path: Path | None):
    return load_checkpoint(model_path) if model_path else load_pretrained()


def table(rows: list[dict]) -> str:
    return "\n".join(
        f"| {r['backbone']} | {r['method']} | {r['accuracy']:.1%} | "
        f"{r['accuracy_std']:.1%} | {r['macro_f1']:.3f} |"
        for r in rows
    )


def score(rows: list[dict], backbone: str, method: str = "linear") -> float:
    return next(r["accuracy"] for r in rows if r["backbone"] == backbone and r["method"] == method)


def verdict(eurosat: list[dict]) -> str:
    """What the EuroSAT numbers say, against the goal of issue 12."""
    pre, rnd, bands = (score(eurosat, b) for b in ("pre-trained", "random init", "band mean+std"))
    gain = (pre - rnd) * 100
    knn = (score(eurosat, "pre-trained", "knn") - score(eurosat, "random init", "knn")) * 100
    spread = next(
        r["accuracy_std"]
        for r in eurosat
        if r["backbone"] == "pre-trained" and r["method"] == "linear"
    )
    met = gain >= GOAL_POINTS and pre > bands
    head = "**Goal met**" if met else "**Goal not met**"
    text = (
        f"{head} (frozen features at least {GOAL_POINTS} points above random initialisation "
        f"and above the bands' mean+std, linear probe on EuroSAT): pre-trained {pre:.1%}, "
        f"random init {rnd:.1%} ({gain:+.1f} points; kNN {knn:+.1f}), band mean+std "
        f"{bands:.1%} ({(pre - bands) * 100:+.1f} points)."
    )
    if abs(pre - bands) < spread:
        text += (
            f" The margin over the bands' own statistics is inside the spread between "
            f"folds (±{spread:.1%}): on these 150 chips the features are as good as colour "
            "alone, not clearly better."
        )
    return text


TRIED_HEADING = "## Recipes tried before this one"


def tried_table() -> str:
    return "| recipe | linear / kNN |\n|---|---|\n" + "\n".join(
        f"| {recipe} | {result} |" for recipe, result in TRIED
    )


def rewrite_tried(out: Path) -> None:
    """Only the table of recipes tried (``--tried-only``): a recipe measured and not shipped
    is recorded without measuring the shipped backbone again; the rest of the file stays."""
    lines = out.read_text().splitlines()
    start = lines.index(TRIED_HEADING)
    first = next(i for i in range(start, len(lines)) if lines[i].startswith("| recipe |"))
    end = first
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    out.write_text("\n".join([*lines[:first], tried_table(), *lines[end:]]) + "\n")


def main(shared: Path, model_path: Path | None) -> None:
    model = load(model_path)
    meta = read_metadata(model_path or shipped_checkpoint_path())
    prov = meta.get("provenance", {})
    by_pool = {
        pool: compare_with_random_init(
            model, shared / "eurosat" / "index.csv", seeds=SEEDS, init_seeds=INIT_SEEDS, pool=pool
        )
        for pool in POOLS
    }
    eurosat = by_pool[GOAL_POOL]
    pooling = "\n".join(
        f"| {pool}{' (default of scene heads)' if pool == DEFAULT_POOL else ''} | "
        + " | ".join(f"{score(rows, b):.1%}" for b in ("pre-trained", "random init"))
        + f" | {(score(rows, 'pre-trained') - score(rows, 'random init')) * 100:+.1f} |"
        for pool, rows in by_pool.items()
    )
    with tempfile.TemporaryDirectory() as tmp:
        scenes = read_segmentation_scenes(
            enmap_scenes(shared, Path(tmp)), classes=[f"class {i}" for i in range(1, 7)]
        )
        enmap = compare_with_random_init(
            load(model_path), scenes, folds=6, seeds=SEEDS, init_seeds=INIT_SEEDS
        )
    seg = segmentation_rows(model_path, shared)
    seg_lines = "\n".join(f"| {label} | {mean:.3f} | {sd:.3f} |" for label, mean, sd in seg)
    name = model_path.name if model_path else "ofa_explore/data/ofa_tiny_demo.safetensors"
    rounds = [str(r["steps"]) for r in reversed(prov.get("earlier_rounds", []))]
    earlier = f", continuing earlier rounds of {' and '.join(rounds)} steps" if rounds else ""
    text = f"""# Evaluation: does the shipped backbone help downstream?

Measured {dt.date.today()} on {platform.machine()} CPU with `python scripts/evaluation_table.py`
(checkpoint `{name}`: {prov.get("steps", "?")} pre-training steps{earlier} on
{prov.get("trained_on", "a CPU")}; data in `../shared/data`). This file is written by that
script alone.

{verdict(eurosat)}

## EuroSAT-MS scene classification (Sentinel-2 L1C, 10 classes, 150 chips)
Frozen features ({GOAL_POOL} of the patch tokens), a logistic-regression linear
probe (weight decay chosen by inner cross-validation) and a cosine kNN (k = 20). 5-fold
cross-validation in which whole spatial groups (`geo_group` of `index.csv`) stay on one side,
repeated with {len(SEEDS)} fold assignments; "random init" is the same network initialised the
way timm initialises a ViT (normal, std 0.02), the mean of {len(INIT_SEEDS)} such networks, each
cross-validated the same way; "± fold sd" is the spread between folds. "band mean+std" is no
network at all: each band's mean and standard deviation per chip. The chips were in the
pre-training data without their labels. Same numbers from the command line:
`ofa evaluate --data ../shared/data/eurosat/index.csv --probe`.

| features | method | accuracy | ± fold sd | macro-F1 |
|---|---|---|---|---|
{table(eurosat)}

Pooling, linear probe, same protocol ("mean+std": the tokens' mean and their standard deviation
over the chip, 2 x 192 numbers). Scene heads (`ofa train-head`, the shipped `eurosat_landcover`)
pool with `{DEFAULT_POOL}` by default, the most accurate; the goal above is judged on the mean,
where what pre-training adds is not mixed with what the pooling adds (see random init):

| pooling | pre-trained | random init | difference (points) |
|---|---|---|---|
{pooling}

## EnMAP land cover (hyperspectral, 218 good bands, 18 tiles of 32 x 32 px at 30 m)
Through the wavelength-conditioned patch embedding (the wavelengths come from the files):
one frozen token per 8 x 8-pixel patch, labelled with the majority of its labelled pixels
(6 classes of the EnMAP-Box Potsdam labels; patches less than a quarter labelled left out:
{enmap[0]["chips"]} patches), linear probe and kNN as above, 6 folds by whole tiles,
{len(SEEDS)} fold assignments, {len(INIT_SEEDS)} random-init networks. "band mean+std": each
patch's band means and deviations (436 numbers).
Other tiles of the same scene were in the pre-training data (without labels).

| features | method | accuracy | ± fold sd | macro-F1 |
|---|---|---|---|---|
{table(enmap)}

## NEON tree crowns (RGB 0.1 m, 400 x 400 px, 61 boxes rasterised as a mask)
Segmentation head on the frozen backbone ({SEG_EPOCHS} epochs, flips/rotations), trained on the
top 80% of the tile's rows of 64-px tiles, scored (mIoU, background + tree) on the rest; mean and
spread over {len(SEEDS)} seeds.

| backbone | mIoU | sd |
|---|---|---|
{seg_lines}

{TRIED_HEADING}
EuroSAT, linear probe / kNN, as recorded when each was measured; the configuration of the
shipped recipe is in the model card. Until the second round (issue 27) the protocol had 1 seed
and random init as MAE initialises (random init scored 0.53-0.60 / 0.50-0.52 then); from the
second round on, the protocol above (mean of 3 fold assignments; random init: 5 timm-initialised
networks).

{tried_table()}

The shipped `eurosat_landcover` head is a linear probe on these frozen features; its held-out
accuracy is in the model card.

## GEO-Bench (the OFA-Net paper's 12 tasks)
With GEO-Bench downloaded (`pip install geobench h5py`, `geobench-download`), this runs the
frozen-backbone protocol on every task found and prints the table (linear probe and kNN
accuracy, micro-F1 for m-bigearthnet, mIoU of a light segmentation head):

    ofa evaluate --benchmark geobench --root $GEO_BENCH_DIR \
        [--checkpoint converted_dofa.safetensors]

GEO-Bench is not available on this machine, so no numbers are recorded here; the reader is
tested on folders of the same layout built from the shared EuroSAT and NEON data.
"""
    out = ROOT / "docs" / "EVALUATION.md"
    out.parent.mkdir(exist_ok=True)
    if out.is_file() and CHANGE_BLOCK[0] in out.read_text():  # scripts/evaluate_change.py's part
        old = out.read_text()
        start, end = old.index(CHANGE_BLOCK[0]), old.index(CHANGE_BLOCK[1]) + len(CHANGE_BLOCK[1])
        text += "\n" + old[start:end] + "\n"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shared", nargs="?", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped checkpoint")
    parser.add_argument(
        "--tried-only", action="store_true", help="rewrite only the table of recipes tried"
    )
    args = parser.parse_args()
    if args.tried_only:
        rewrite_tried(ROOT / "docs" / "EVALUATION.md")
    else:
        main(args.shared, args.checkpoint)
