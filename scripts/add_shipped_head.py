"""Fit the shipped land-cover head (EuroSAT's 10 classes) on the shipped backbone and store it in
the shipped checkpoint; update the head section of its model card.

Run from the repository root: ``python scripts/add_shipped_head.py [SHARED_DATA_DIR]``.
The head is a linear probe on frozen pooled features (``heads.DEFAULT_POOL``: the tokens' mean
and spread), fitted on the EuroSAT chips of
../shared/data with whole spatial groups (``geo_group``) held out for its validation score.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ofa_explore.checkpoint import load_checkpoint, save_checkpoint
from ofa_explore.downstream import evaluate_head, fit_scene_head, read_labelled_chips
from ofa_explore.heads import DEFAULT_POOL
from ofa_explore.pretrained import shipped_checkpoint_path

ROOT = Path(__file__).resolve().parents[1]
HEAD = "eurosat_landcover"
# map colours a land-cover reader expects (crops yellow/orange, forest green, water blue ...)
COLORS = {
    "AnnualCrop": "#e6c229",
    "Forest": "#1b7837",
    "HerbaceousVegetation": "#a6d96a",
    "Highway": "#7f7f7f",
    "Industrial": "#984ea3",
    "Pasture": "#d9ef8b",
    "PermanentCrop": "#f17c1e",
    "Residential": "#e41a1c",
    "River": "#4292c6",
    "SeaLake": "#08306b",
}
CARD_MARK = "## Shipped head"
SEED = 0


def main(shared: Path) -> None:
    path = shipped_checkpoint_path()
    model = load_checkpoint(path)
    for name in list(model.heads):  # idempotent: refit from scratch
        del model.heads[name]
    data = read_labelled_chips(shared / "eurosat" / "index.csv")
    report = fit_scene_head(model, data, HEAD, colors=[COLORS[c] for c in data.classes], seed=SEED)
    keep = {
        k: v
        for k, v in model.provenance.items()
        if k not in ("saved_at", "ofa_explore_version", "torch_version")
    }
    save_checkpoint(model, path, dtype=torch.float16, **keep)

    # the numbers of the file as shipped (half precision), on the same held-out chips
    from ofa_explore.downstream.probes import train_val_split

    shipped = load_checkpoint(path)
    _, val = train_val_split(len(data), 0.2, data.groups, data.targets, SEED)
    scores = evaluate_head(shipped, data.subset(val), HEAD)
    print(
        f"{HEAD}: fitted accuracy {report['accuracy']:.3f}; as shipped (fp16) "
        f"{scores['accuracy']:.3f}, macro-F1 {scores['macro_f1']:.3f} on {len(val)} chips"
    )
    write_card(shipped, scores, len(val), report["train"])


def write_card(model, scores: dict, n_val: int, n_train: int) -> None:
    card_path = shipped_checkpoint_path().parent / "MODEL_CARD.md"
    card = card_path.read_text()
    card = card[: card.index(CARD_MARK)].rstrip() + "\n\n" if CARD_MARK in card else card + "\n"
    classes = model.heads.info[HEAD]["classes"]
    recall = {
        c: row[i] / max(sum(row), 1) for i, (c, row) in enumerate(zip(classes, scores["confusion"]))
    }
    best = ", ".join(c for c, r in recall.items() if r == 1.0) or "no class"
    worst = min(recall, key=recall.get)
    rows = "\n".join(
        f"| {i} {c} | " + " | ".join(f"{v}" for v in row) + " |"
        for i, (c, row) in enumerate(zip(classes, scores["confusion"]))
    )
    card += f"""{CARD_MARK}: `{HEAD}` (default of `ofa classify` for Sentinel-2 L1C)
A linear probe (standardised features pooled as `{DEFAULT_POOL}`, logistic regression) on the
frozen backbone,
fitted on {n_train} EuroSAT-MS chips of `../shared/data/eurosat` (10 classes, 15 per class);
{n_val} chips of whole spatial groups (`geo_group`) held out. Rebuild:
`python scripts/add_shipped_head.py`.

**Validation (held-out chips, as shipped in fp16): accuracy {scores["accuracy"]:.1%}, macro-F1
{scores["macro_f1"]:.3f}** ({n_val} chips, so one chip is {1 / n_val:.1%}; chance is 10%). This
is a small demonstration head, not a land-cover product. The held-out groups do not cover the
classes evenly (see the row sums below): {best} held-out chips were all recognised, {worst} the
least. How its frozen backbone compares with the same network randomly initialised and
with the bands' own statistics, cross-validated: docs/EVALUATION.md.

Confusion on the held-out chips (rows: true class; columns: predicted, in the same order):

| true class | {" | ".join(str(i) for i in range(len(classes)))} |
|---|{"---|" * len(classes)}
{rows}
"""
    card_path.write_text(card)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
