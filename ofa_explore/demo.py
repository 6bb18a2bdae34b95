"""`ofa demo`: the whole model loop on shipped real scenes, in well under a minute on a CPU.

Trains a tiny OFA-Net briefly on the sample scenes of four modalities (one shared encoder, one
patch embedding each), then writes masked-reconstruction panels, a checkpoint and a summary, and
compares each reconstruction with a trivial baseline (every hidden pixel = mean of the visible
ones). It shows the mechanics; it is not a pre-trained model.
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import save_checkpoint
from .fileio import atomic_write
from .modalities import get_modality
from .model import OFANet
from .visualize import png_bytes, reconstruction_panel

# modality -> sample files (ofa_explore/data/samples; see README.md there for origin and licence)
DEMO_SCENES: dict[str, tuple[str, ...]] = {
    "s2_l1c": ("eurosat_forest.tif", "eurosat_river.tif", "eurosat_industrial.tif",
               "eurosat_annualcrop.tif", "eurosat_residential.tif"),
    "s1_grd": ("bigearthnet_s1_20170613.tif", "bigearthnet_s1_20180204.tif"),
    "rgbn": ("naip_rgbn_2020.tif",),
    "rgb": ("neon_rgb_osbs.tif",),
}


EMBEDDING_SCENE = "naip_rgbn_2020.tif"  # embedded with the tiled engine, as a map


def sample_path(filename: str) -> Path:
    """Path of a shipped sample scene."""
    path = Path(str(resources.files(__package__).joinpath("data/samples", filename)))
    if not path.is_file():
        raise FileNotFoundError(f"sample scene {filename} is missing from the installation "
                                f"({path}); reinstall ofa-explore")
    return path


def read_sample(filename: str) -> np.ndarray:
    import rasterio

    with rasterio.open(sample_path(filename)) as src:
        return src.read().astype(np.float32)


def random_crops(scenes: list[np.ndarray], size: int, count: int,
                 rng: np.random.Generator) -> torch.Tensor:
    """``count`` random size x size windows with random flips, cycling through the scenes."""
    crops = []
    for i in range(count):
        scene = scenes[i % len(scenes)]
        y = rng.integers(0, scene.shape[1] - size + 1)
        x = rng.integers(0, scene.shape[2] - size + 1)
        crop = scene[:, y:y + size, x:x + size]
        if rng.random() < 0.5:
            crop = crop[:, :, ::-1]
        if rng.random() < 0.5:
            crop = crop[:, ::-1, :]
        crops.append(np.ascontiguousarray(crop))
    return torch.from_numpy(np.stack(crops))


def hidden_mse(x: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor, modality) -> float:
    """Mean squared error on hidden pixels, in normalised units (so bands weigh alike)."""
    std = torch.tensor(modality.std).view(1, -1, 1, 1)
    err = ((prediction - x) / std) ** 2
    hidden = mask.expand_as(x).bool()
    return err[hidden].mean().item()


def visible_mean_baseline(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Trivial reconstruction: every pixel = the per-band mean of the visible pixels."""
    visible = (1 - mask).expand_as(x)
    mean = (x * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(dim=(2, 3), keepdim=True)
    return mean.expand_as(x)


def embedding_map(model: OFANet, output: Path, filename: str) -> dict:
    """Embed a shipped scene with the tiled engine: GeoTIFFs (all D, PCA view) and a PNG."""
    from .inference import predict_raster

    stem = "embedding_" + Path(filename).stem
    result = predict_raster(model, sample_path(filename), "embed", output / f"{stem}.tif",
                            overwrite=True)
    import rasterio
    from PIL import Image

    with rasterio.open(result.pca_path) as src:
        rgb = src.read().transpose(1, 2, 0)
    picture = Image.fromarray(rgb).resize((rgb.shape[1] * 8, rgb.shape[0] * 8), Image.NEAREST)
    png = atomic_write(output / f"{stem}_pca.png", png_bytes(picture))
    return dict(scene=filename, geotiff=str(result.path), pca_geotiff=str(result.pca_path),
                png=str(png))


def run_demo(output: str | Path = "ofa-demo", steps: int = 300, seed: int = 0,
             img_size: int = 64, patch_size: int = 8, batch_size: int = 8,
             log: Callable[[str], None] = print) -> dict:
    """Train briefly, reconstruct each modality, write panels/checkpoint/summary into ``output``."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} exists and is not a folder; choose another -o")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    scenes = {m: [read_sample(f) for f in files] for m, files in DEMO_SCENES.items()}
    model = OFANet("tiny", modalities=list(scenes), img_size=img_size, patch_size=patch_size,
                   depth=4, wavelength_embed=False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.5e-3, weight_decay=0.05)
    names = list(scenes)
    log(f"training a tiny OFA-Net ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
        f"parameters, one shared encoder) on {sum(len(s) for s in scenes.values())} real scenes "
        f"of {len(names)} modalities for {steps} steps")
    model.train()
    first_losses: dict[str, float] = {}
    last_losses: dict[str, float] = {}
    for step in range(steps):
        name = names[step % len(names)]  # one modality per batch
        loss, _, _ = model(random_crops(scenes[name], img_size, batch_size, rng), name)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first_losses.setdefault(name, loss.item())
        last_losses[name] = loss.item()
        if (step + 1) % max(1, steps // 5) == 0:
            log(f"  step {step + 1:4d}/{steps}  loss[{name}] {loss.item():.3f}")
    model.eval()

    output.mkdir(parents=True, exist_ok=True)
    results = {}
    for name, scene_list in scenes.items():
        m = get_modality(name)
        x = torch.from_numpy(scene_list[0][:, :img_size, :img_size].copy())[None]
        recon, mask = model.reconstruct(x, name, mask_ratio=0.75, seed=seed)
        model_err = hidden_mse(x, recon, mask, m)
        base_err = hidden_mse(x, visible_mean_baseline(x, mask), mask, m)
        panel = reconstruction_panel(x[0].numpy(), recon[0].numpy(), mask[0, 0].numpy(), m,
                                     title=f"{name} ({DEMO_SCENES[name][0]})")
        png = atomic_write(output / f"reconstruction_{name}.png", png_bytes(panel))
        results[name] = dict(scene=DEMO_SCENES[name][0], panel=str(png),
                             first_train_loss=round(first_losses[name], 4),
                             last_train_loss=round(last_losses[name], 4),
                             hidden_mse=round(model_err, 4), baseline_mse=round(base_err, 4))
    ckpt = save_checkpoint(model, output / "demo_model.safetensors",
                           trained_on="ofa-explore demo scenes", steps=steps, seed=seed)
    embedding = embedding_map(model, output, EMBEDDING_SCENE)
    summary = dict(seconds=round(time.perf_counter() - t0, 1), checkpoint=str(ckpt),
                   embedding=embedding, modalities=results)
    atomic_write(output / "summary.json", json.dumps(summary, indent=2).encode())
    log(f"\n{'modality':<10}{'train loss':>20}{'hidden MSE':>12}{'baseline':>10}  panel")
    for name, r in results.items():
        log(f"{name:<10}{r['first_train_loss']:>9.3f} -> {r['last_train_loss']:<8.3f}"
            f"{r['hidden_mse']:>12.3f}{r['baseline_mse']:>10.3f}  {r['panel']}")
    log(f"\nembedding  {embedding['geotiff']} (PCA colour view: {embedding['pca_geotiff']}, "
        f"{embedding['png']})")
    log(f"checkpoint {ckpt}\nsummary    {output / 'summary.json'}\n"
        f"done in {summary['seconds']} s")
    return summary
