"""Turn a finished pre-training run into the shipped checkpoint and its model card.

    python -m pretraining.model_card --run runs/demo --config pretraining/configs/demo.yaml \\
        --out ofa_explore/data

Evaluates masked reconstruction on the held-out (validation) chips of every modality and on every
shipped sample against the trivial baseline (hidden pixels = mean of the visible ones), saves the
model in half precision and writes MODEL_CARD.md beside it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from ofa_explore import load_checkpoint, save_checkpoint
from ofa_explore.demo import SAMPLES, sample_chip
from ofa_explore.metrics import reconstruction_scores
from ofa_explore.pretrained import SHIPPED_CHECKPOINT

from .config import load_config
from .data import ChipSampler, build_sources

LICENCES = {
    "s2_l1c": "EuroSAT-MS (Helber et al. 2019), MIT; contains modified Copernicus Sentinel data",
    "s2_l2a": "BigEarthNet-S2 (Sumbul et al. 2019), CDLA-Permissive-1.0",
    "s1_grd": "BigEarthNet-S1 (BigEarthNet-MM, 2021), CDLA-Permissive-1.0",
    "rgbn": "NAIP (USDA-FSA-APFO), US public domain",
    "rgb": "NEON AOP RGB (DP3.30010.001, site OSBS), CC0-1.0",
}


def held_out_scores(model, cfg, base: Path, batches: int) -> dict[str, dict[str, float]]:
    sources = build_sources(cfg, base)
    sampler = ChipSampler(sources, cfg.model.img_size, cfg.seed + 1, "val")
    out = {}
    for source in sampler.sources:
        scores = [reconstruction_scores(model, sampler.chips(source, i), source.modality.name,
                                        seed=i) for i in range(batches)]
        out[source.modality.name] = {k: sum(s[k] for s in scores) / len(scores)
                                     for k in ("model_mse", "baseline_mse")}
        out[source.modality.name]["chips"] = batches * source.batch_size
        out[source.modality.name]["rasters"] = len(source.val)
    return out


def sample_scores(model, masks: int = 5) -> dict[str, dict[str, float]]:
    """Each shipped sample's centre window, averaged over several random masks."""
    size, out = model.config["img_size"], {}
    for filename, modality in SAMPLES.items():
        scores = [reconstruction_scores(model, sample_chip(filename, size), modality, seed=seed)
                  for seed in range(masks)]
        out[filename] = {k: sum(s[k] for s in scores) / masks for k in ("model_mse", "baseline_mse")}
    return out


def final_losses(run: Path) -> tuple[float, float | None, int]:
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    tail = rows[-200:]
    train = sum(float(r["loss"]) for r in tail) / len(tail)
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    return train, (vals[-1] if vals else None), len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("ofa_explore/data"))
    parser.add_argument("--batches", type=int, default=10, help="validation batches per modality")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    model = load_checkpoint(args.run / "model.safetensors")
    held_out = held_out_scores(model, cfg, Path.cwd(), args.batches)
    samples = sample_scores(model)
    train_loss, val_loss, steps = final_losses(args.run)
    ckpt = save_checkpoint(model, args.out / SHIPPED_CHECKPOINT, dtype=torch.float16,
                           name="ofa-explore demo (ViT-Tiny)", steps=steps,
                           config=model.provenance.get("config"), train_loss=round(train_loss, 4),
                           val_loss=val_loss, data_licences=LICENCES,
                           command=f"ofa pretrain --config {args.config}",
                           held_out_reconstruction=held_out)
    card = render(cfg, args.config, steps, train_loss, val_loss, held_out, samples, ckpt)
    (args.out / "MODEL_CARD.md").write_text(card)
    print(card)
    return 0


def render(cfg, config_path, steps, train_loss, val_loss, held_out, samples, ckpt) -> str:
    mc = cfg.model
    lines = [
        "# Model card: ofa-explore demo checkpoint (OFA-Net, ViT-Tiny)", "",
        f"File: `ofa_explore/data/{ckpt.name}` ({ckpt.stat().st_size / 2**20:.1f} MiB, float16 "
        "weights, float32 when loaded). Load it with `ofa_explore.load_pretrained()`.", "",
        "## What it is",
        f"An OFA-Net: one shared ViT-Tiny encoder (width 192, {mc.arch.get('depth', 12)} blocks) with a "
        f"patch embedding and a pixel head per modality ({', '.join(dict.fromkeys(s.modality for s in cfg.data))}), "
        f"patch {mc.patch_size} px, images of {mc.img_size} x {mc.img_size} px, pre-trained as a "
        f"masked autoencoder (mask ratio {cfg.mask_ratio}) for {steps} steps of "
        f"{cfg.batch_size} chips on a 2-core CPU. It is a small demonstration model for "
        "workshops and tests, not a replacement for published OFA-Net/DOFA weights.", "",
        "## Data (all real, from `../shared/data`)",
        *[f"- `{s.modality}`: {LICENCES.get(s.modality, '')}; `{', '.join(s.paths)}`, mixing "
          f"weight {s.weight}, {s.val_fraction:.0%} held out (split: {s.split}; auto = whole "
          "files when there are several, else bottom rows)" for s in cfg.data],
        "", "## Reproduce",
        f"```\nofa pretrain --config {config_path}\n"
        f"python -m pretraining.model_card --run {cfg.output_dir} --config {config_path}\n```",
        "", "## Training",
        f"Final train loss (masked-patch MSE in normalised units, mean of the last 200 steps): "
        f"{train_loss:.4f}; validation loss (held-out chips, fixed masks): "
        f"{'n/a' if val_loss is None else f'{val_loss:.4f}'}.",
        "", "## Masked reconstruction on held-out chips",
        "Hidden-pixel MSE (each band divided by its std), 75% of patches hidden, against the trivial "
        "baseline that fills every hidden pixel with the per-band mean of the visible ones:", "",
        "| modality | chips | model | baseline | model / baseline |", "|---|---|---|---|---|",
        *[f"| {m} | {r['chips']} | {r['model_mse']:.4f} | {r['baseline_mse']:.4f} | "
          f"{r['model_mse'] / r['baseline_mse']:.2f} |" for m, r in held_out.items()],
        "", "## Shipped sample scenes (centre window, mean over 5 masks; seen in training)", "",
        "| sample | model | baseline |", "|---|---|---|",
        *[f"| `{f}` | {r['model_mse']:.4f} | {r['baseline_mse']:.4f} |" for f, r in samples.items()],
        "", "## Limits",
        "Tiny model, tiny data (a few hundred chips per modality, a few locations), CPU budget: "
        "a demonstration model, not competitive with large pre-trained ones. The NAIP and NEON "
        "hold-outs are other rows of the same scenes, not new places. Its embeddings are not "
        "evaluated here; downstream evaluation comes with the downstream tasks.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
