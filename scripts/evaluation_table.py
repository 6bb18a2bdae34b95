"""Write docs/EVALUATION.md: the shipped backbone against random initialisation on the shared
real data (EuroSAT scene classification by linear probe and kNN; NEON tree-crown segmentation
with a frozen-backbone head). Run from the repository root:
``python scripts/evaluation_table.py [SHARED_DATA_DIR]`` (about 5 minutes on 2 CPU cores)."""

from __future__ import annotations

import datetime as dt
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
import torch

from ofa_explore import load_pretrained
from ofa_explore.checkpoint import model_from_metadata, read_metadata
from ofa_explore.downstream import compare_with_random_init, fit_segmentation_head
from ofa_explore.downstream.datasets import boxes_to_mask
from ofa_explore.pretrained import shipped_checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
SEG_EPOCHS, SEEDS = 30, (0, 1, 2)


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


def segmentation_rows(shared: Path) -> list[tuple[str, float, float]]:
    meta = read_metadata(shipped_checkpoint_path())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scene = neon_scene(shared, Path(tmp))
        for label in ("pre-trained", "random init"):
            scores = []
            for seed in SEEDS:
                if label == "random init":
                    torch.manual_seed(seed)
                model = model_from_metadata(meta) if label == "random init" else load_pretrained()
                report = fit_segmentation_head(model, scene, "trees", epochs=SEG_EPOCHS,
                                               seed=seed)
                scores.append(report["miou"])
            rows.append((label, float(np.mean(scores)), float(np.std(scores))))
    return rows


def main(shared: Path) -> None:
    model = load_pretrained()
    probe = compare_with_random_init(model, shared / "eurosat" / "index.csv", seeds=SEEDS)
    seg = segmentation_rows(shared)
    lines = [f"| {r['backbone']} | {r['method']} | {r['accuracy']:.1%} | "
             f"{r['accuracy_std']:.1%} | {r['macro_f1']:.3f} |" for r in probe]
    seg_lines = [f"| {label} | {mean:.3f} | {sd:.3f} |" for label, mean, sd in seg]
    text = f"""# Evaluation: does the shipped backbone help downstream?

Measured {dt.date.today()} on {platform.machine()} CPU with `python scripts/evaluation_table.py`
(shipped checkpoint `ofa_explore/data/ofa_tiny_demo.safetensors`; data in `../shared/data`).

## EuroSAT-MS scene classification (Sentinel-2 L1C, 10 classes, 150 chips)
Frozen features (mean of the patch tokens), a logistic-regression linear probe (weight decay
chosen by inner cross-validation) and a cosine kNN (k = 20). 5-fold cross-validation in which
whole spatial groups (`geo_group` of `index.csv`) stay on one side, repeated with {len(SEEDS)}
seeds (fold assignment and random initialisation); "± fold sd" is the spread between folds.
"band mean+std" is no network at all: each band's mean and standard deviation per chip.
Same numbers from the command line: `ofa evaluate --data ../shared/data/eurosat/index.csv --probe`.

| features | method | accuracy | ± fold sd | macro-F1 |
|---|---|---|---|---|
{chr(10).join(lines)}

## NEON tree crowns (RGB 0.1 m, 400 x 400 px, 61 boxes rasterised as a mask)
Segmentation head on the frozen backbone ({SEG_EPOCHS} epochs, flips/rotations), trained on the
top 80% of the tile's rows of 64-px tiles, scored (mIoU, background + tree) on the rest; mean and
spread over {len(SEEDS)} seeds.

| backbone | mIoU | sd |
|---|---|---|
{chr(10).join(seg_lines)}

## What this says
**The shipped backbone does not beat random initialisation.** On EuroSAT its frozen features
score about the same as a randomly initialised network of the same shape, and both below the
bands' own means and deviations; on the tree crowns the frozen pre-trained tokens do no better
than random ones either. At this scale (ViT-Tiny, 6000 steps on a 2-core CPU, a few hundred
chips per modality) masked-image pre-training has taught the encoder to reconstruct (see the
model card) but not to summarise scenes better than colour does.
Tried and measured before writing this (linear probe / kNN, same protocol, 5-fold, 1 seed),
none of which moved the scores beyond the fold spread: random-resized crops (`crop_scale`
[0.25, 1]) with EuroSAT weighted up, 2500 steps: 0.56 / 0.51; the same with `norm_pix_loss`:
0.51 / 0.43; a CAN-style contrastive term between two masked views, 1500 steps: 0.53 / 0.50
(dropped again, as it did not help). The way forward is more data and compute (the recipe is in
`pretraining/`; `torchrun` on GPUs) or published weights: convert DOFA weights with
`ofa convert` and run the same command with `--checkpoint` to add them to this table.

The shipped `eurosat_landcover` head is therefore a demonstration of the workflow (train,
save, `ofa classify`, QGIS), not evidence of good features; its held-out accuracy is in the
model card.

## GEO-Bench (the OFA-Net paper's 12 tasks)
With GEO-Bench downloaded (`pip install geobench h5py`, `geobench-download`), this runs the
frozen-backbone protocol on every task found and prints the table (linear probe and kNN
accuracy, micro-F1 for m-bigearthnet, mIoU of a light segmentation head):

    ofa evaluate --benchmark geobench --root $GEO_BENCH_DIR [--checkpoint converted_dofa.safetensors]

Tasks whose bands match no embedding of the model (m-so2sat, m-brick-kiln, m-forestnet for the
shipped model) are listed as skipped; wavelength-conditioned weights (DOFA) run them. GEO-Bench
is not available on this machine, so no numbers are recorded here; the reader is tested on
folders of the same layout built from the shared EuroSAT and NEON data.
"""
    out = ROOT / "docs" / "EVALUATION.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
