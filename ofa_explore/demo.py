"""`ofa demo`: the shipped pre-trained OFA-Net on shipped real scenes, in seconds on a CPU.

One shared encoder reconstructs masked scenes of five modalities (Sentinel-2 L1C, Sentinel-1,
NAIP RGBN, NEON RGB through their own patch embeddings; Landsat-8 L1 through the
wavelength-conditioned one, from its band wavelengths alone) and embeds a NAIP scene into a
georeferenced map with the tiled engine. Each
reconstruction is compared with a trivial baseline (every hidden pixel = mean of the visible ones),
and a source where the model does not beat it is marked so in the table, its panel and the
summary (``beats_baseline``, ``worse_than_baseline``), with a warning line naming it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .errors import BadInput, NotFound
from .fileio import atomic_write
from .inputs import resolve_modality
from .metrics import reconstruction_scores
from .model import OFANet, count_parameters
from .visualize import png_bytes, reconstruction_panel

# every shipped sample and its modality (origin and licence: data/samples/README.md)
SAMPLES: dict[str, str] = {
    "eurosat_annualcrop.tif": "s2_l1c",
    "eurosat_forest.tif": "s2_l1c",
    "eurosat_industrial.tif": "s2_l1c",
    "eurosat_river.tif": "s2_l1c",
    "eurosat_residential.tif": "s2_l1c",
    "bigearthnet_s1_20170613.tif": "s1_grd",
    "bigearthnet_s1_20180204.tif": "s1_grd",
    "naip_rgbn_2020.tif": "rgbn",
    "neon_rgb_osbs.tif": "rgb",
    "landsat8_l1_gulf_coast.tif": "landsat_oli_l1",
}
DEMO_SCENES = (
    "eurosat_river.tif",
    "bigearthnet_s1_20180204.tif",
    "naip_rgbn_2020.tif",
    "neon_rgb_osbs.tif",
    "landsat8_l1_gulf_coast.tif",
)  # one per modality
EMBEDDING_SCENE = "naip_rgbn_2020.tif"  # embedded with the tiled engine, as a map


def sample_path(filename: str) -> Path:
    """Path of a shipped sample scene."""
    path = Path(str(resources.files(__package__).joinpath("data/samples", filename)))
    if not path.is_file():
        raise NotFound(
            f"sample scene {filename} is missing from the installation "
            f"({path}); reinstall ofa-explore"
        )
    return path


def sample_chip(filename: str, size: int) -> torch.Tensor:
    """The centre size x size window of a shipped sample: [1, C, size, size] in sensor units."""
    import rasterio

    with rasterio.open(sample_path(filename)) as src:
        y, x = (src.height - size) // 2, (src.width - size) // 2
        data = src.read(window=rasterio.windows.Window(x, y, size, size)).astype(np.float32)
    return torch.from_numpy(data)[None]


def embedding_map(model: OFANet, output: Path, filename: str) -> dict:
    """Embed a shipped scene with the tiled engine: GeoTIFFs (all D, PCA view) and a PNG."""
    import rasterio
    from PIL import Image

    from .engine import predict_raster

    stem = "embedding_" + Path(filename).stem
    result = predict_raster(
        model, sample_path(filename), "embed", output / f"{stem}.tif", overwrite=True
    )
    with rasterio.open(result.pca_path) as src:
        rgb = src.read().transpose(1, 2, 0)
    picture = Image.fromarray(rgb).resize((rgb.shape[1] * 8, rgb.shape[0] * 8), Image.NEAREST)
    png = atomic_write(output / f"{stem}_pca.png", png_bytes(picture))
    return dict(
        scene=filename, geotiff=str(result.path), pca_geotiff=str(result.pca_path), png=str(png)
    )


WORSE = "worse than the trivial baseline"  # the mark of a source where the model loses


def beats_baseline(scores: dict) -> bool:
    """Whether the model's hidden-pixel error is below the trivial baseline's (the mean of the
    visible pixels), compared as measured."""
    return bool(scores["model_mse"] < scores["baseline_mse"])


def score_table(results: dict[str, dict]) -> list[str]:
    """The demo's table, one line a source: hidden-pixel MSE of the model and of the trivial
    baseline, a mark where the model does not beat it, and the panel."""
    width = max(len("modality"), *map(len, results)) + 2
    mark = max(len("better"), len(f"! {WORSE}"))
    lines = [
        f"{'modality':<{width}}{'hidden-pixel MSE':>16}{'baseline':>10}  "
        f"{'model vs baseline':<{mark}}  panel (75% of patches hidden)"
    ]
    for name, r in results.items():
        verdict = "better" if r["beats_baseline"] else f"! {WORSE}"
        lines.append(
            f"{name:<{width}}{r['model_mse']:>16.3f}{r['baseline_mse']:>10.3f}  "
            f"{verdict:<{mark}}  {r['panel']}"
        )
    return lines


def baseline_warning(results: dict[str, dict]) -> str | None:
    """One warning line naming the sources where the model does not beat the baseline."""
    losers = [
        f"{n} ({r['model_mse']:.3f} vs {r['baseline_mse']:.3f})"
        for n, r in results.items()
        if not r["beats_baseline"]
    ]
    if not losers:
        return None
    return (
        f"warning: the model's reconstruction is {WORSE} (every hidden pixel = the mean of the "
        f"visible ones) on {', '.join(losers)}; do not read its panels as a success"
    )


def run_demo(
    output: str | Path = "ofa-demo",
    checkpoint: str | Path | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict:
    """Reconstruct one scene per modality and embed one; write PNG/GeoTIFF/summary to ``output``."""
    from .pretrained import load_model

    output = Path(output)
    if output.exists() and not output.is_dir():
        raise BadInput(f"output {output} exists and is not a folder", "choose another {output}")
    t0 = time.perf_counter()
    model = load_model(checkpoint)
    size = model.config.img_size
    by_wavelength = " and any band set by its wavelengths" if model.wavelength_embed else ""
    log(
        f"OFA-Net-{model.config.size}: one shared encoder for "
        f"{', '.join(model.modalities)}{by_wavelength} ({count_parameters(model) / 1e6:.1f} M "
        "parameters)"
    )
    output.mkdir(parents=True, exist_ok=True)
    results = {}
    for filename in DEMO_SCENES:
        name = SAMPLES[filename]
        x = sample_chip(filename, size)
        scores = reconstruction_scores(model, x, name, seed=seed)
        beats = beats_baseline(scores)
        title = f"{name} ({filename})"
        if not beats:
            title += f" - {WORSE} ({scores['model_mse']:.3f} vs {scores['baseline_mse']:.3f})"
        recon, mask = model.reconstruct(x, name, mask_ratio=0.75, seed=seed)
        panel = reconstruction_panel(
            x[0].numpy(),
            recon[0].numpy(),
            mask[0, 0].numpy(),
            resolve_modality(name, model.modalities),
            title=title,
        )
        png = atomic_write(output / f"reconstruction_{name}.png", png_bytes(panel))
        results[name] = dict(
            scene=filename,
            panel=str(png),
            **{k: round(v, 4) for k, v in scores.items()},
            beats_baseline=beats,
        )
    embedding = embedding_map(model, output, EMBEDDING_SCENE)
    summary = dict(
        seconds=round(time.perf_counter() - t0, 1),
        checkpoint=str(checkpoint or "shipped"),
        embedding=embedding,
        modalities=results,
        worse_than_baseline=[name for name, r in results.items() if not r["beats_baseline"]],
    )
    atomic_write(output / "summary.json", json.dumps(summary, indent=2).encode())
    log("")
    for line in score_table(results):
        log(line)
    warning = baseline_warning(results)
    if warning:
        log(warning)
    log(
        f"\nembedding  {embedding['geotiff']} (PCA colour view: {embedding['pca_geotiff']}, "
        f"{embedding['png']})"
    )
    log(f"summary    {output / 'summary.json'}\ndone in {summary['seconds']} s")
    return summary
