"""Write the workshop notebooks in notebooks/ (stored without outputs).

    python scripts/make_notebooks.py

Each notebook uses only the shipped checkpoint and sample scenes, so it runs offline on a laptop.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parents[1]


def _head_accuracy() -> str:
    """The shipped head's held-out accuracy as its checkpoint records it (e.g. "61%")."""
    from ofa_explore.checkpoint import read_metadata
    from ofa_explore.pretrained import shipped_checkpoint_path

    info = read_metadata(shipped_checkpoint_path())["heads"]["eurosat_landcover"]
    return f"{info['validation']['accuracy']:.0%}"


SETUP = """from ofa_explore import load_pretrained
from ofa_explore.demo import sample_path

model = load_pretrained()   # the shipped ViT-Tiny OFA-Net, no network needed
print(model.extra_repr(), "| heads:", list(model.heads))"""

NOTEBOOKS = {
    "01_modalities_tour.ipynb": [
        "# 1. A tour of the modalities\n\nOFA-Net uses **one** Transformer for every kind of "
        "Earth-observation image. What differs between sensors is small and written down as "
        "data: the bands, their wavelengths, the pixel size (GSD) and the statistics used to "
        "normalise them. This notebook shows those facts and the real sample scenes shipped "
        "with the package.",
        "from ofa_explore import get_modality, list_modalities\n\n"
        "for name in list_modalities():\n"
        "    m = get_modality(name)\n"
        "    gsd = f\"{m.gsd:g} m\" if m.gsd else \"varies\"\n"
        "    print(f\"{name:<12} {m.kind:<14} {m.num_bands:>3} bands  GSD {gsd:<7} "
        "{m.description}\")",
        "## One modality in full\nSentinel-2 L1C as EuroSAT stores it: 13 bands, B8A last.",
        "print(get_modality(\"s2_l1c\").describe())",
        "## The shipped sample scenes\nEach explorer detects the modality from the file "
        "(override it with the drop-down), shows a natural-colour composite (for SAR: VV, VH "
        "and VV-VH in dB) and lets you pick any three bands and the stretch.",
        "from ofa_explore.demo import SAMPLES, sample_path\nfrom ofa_explore.widgets import "
        "RasterExplorer\n\nfor filename, modality in SAMPLES.items():\n"
        "    print(filename, \"->\", modality)",
        "RasterExplorer(sample_path(\"eurosat_river.tif\"))   # Sentinel-2 L1C, 10 m",
        "RasterExplorer(sample_path(\"bigearthnet_s1_20170613.tif\"))   # Sentinel-1 SAR, dB",
        "RasterExplorer(sample_path(\"naip_rgbn_2020.tif\"))   # NAIP aerial RGB + NIR, 5 m",
        "RasterExplorer(sample_path(\"neon_rgb_osbs.tif\"))   # NEON RGB, 0.1 m",
        "**Try it:** untick *natural colour* and show NIR as red (a false-colour composite: "
        "vegetation turns red). Paste the path of one of your own GeoTIFFs, or upload one.",
    ],
    "02_masked_reconstruction.ipynb": [
        "# 2. Masked reconstruction: how the model learned\n\nOFA-Net is pre-trained as a "
        "**masked autoencoder** (MAE): most patches of an image are hidden, the encoder sees "
        "only the rest, and a small decoder has to paint the hidden patches back. Doing that "
        "well, for every sensor, teaches the shared encoder about Earth imagery. The shipped model "
        "also learned to recognise two differently cropped and coloured views of the same place "
        "as one (a contrastive term), which makes its embeddings more useful for maps and "
        "classification.",
        SETUP,
        "from ofa_explore.widgets import ReconstructionExplorer\n\n"
        "ReconstructionExplorer(model, sample_path(\"eurosat_river.tif\"))",
        "Move the **mask ratio**: at 0 the model just copies; at 0.75 (the pre-training "
        "setting) it must guess three quarters of the image. The *error* panel shows where it "
        "guessed wrong; the loss compares it with a trivial guess (the mean of what it saw).",
        "ReconstructionExplorer(model, sample_path(\"bigearthnet_s1_20180204.tif\"))   # SAR",
        "ReconstructionExplorer(model, sample_path(\"naip_rgbn_2020.tif\"))   # aerial RGBN",
        "**A sensor without an embedding of its own.** Landsat-8 has none in this model: its "
        "patches go through the *wavelength-conditioned* embedding, which builds the first layer "
        "from the bands' wavelengths. Pre-training fed it Landsat, EnMAP and random band subsets "
        "of the other sensors, so any raster whose band wavelengths are known works.",
        "ReconstructionExplorer(model, sample_path(\"landsat8_l1_gulf_coast.tif\"))   # Landsat-8",
        "**Same encoder, different sensors.** Only the first layer (the patch embedding) and the "
        "last (the pixel head) differ per modality; everything in between is shared:",
        "shared = sum(p.numel() for p in model.blocks.parameters())\n"
        "per_modality = {n: sum(p.numel() for p in e.parameters()) for n, e in "
        "model.patch_embeds.items()}\nprint(f\"shared encoder blocks: {shared:,} parameters\")\n"
        "print(\"patch embeddings:\", per_modality)",
    ],
    "03_embeddings_map.ipynb": [
        "# 3. Embeddings on a map, and similarity search\n\nThe encoder turns every 8x8-pixel "
        "patch into a vector of 192 numbers, an *embedding*. Patches that look alike to the "
        "model get similar vectors. Below, the first three principal components of the "
        "embeddings are shown as colours over a NAIP scene.",
        SETUP,
        "from ofa_explore.widgets import EmbeddingMap\n\n"
        "emb = EmbeddingMap(model, sample_path(\"naip_rgbn_2020.tif\"))\nemb",
        "**Click the map.** Every patch is coloured by how similar its embedding is to the "
        "patch you clicked (cosine similarity); the threshold hides the dissimilar ones. The "
        "same from code, e.g. for a report:",
        "(south, west), (north, east) = emb.bounds\n"
        "emb.select((south + north) / 2, (west + east) / 2)   # the centre of the scene\n"
        "print(emb.status.value)",
        "Export the embeddings (192 bands) and the similarity map as GeoTIFFs for QGIS:",
        "emb.export(\"ofa-export\")",
    ],
    "04_classify_scene.ipynb": [
        "# 4. Classifying a scene\n\nA *head* is a small layer on top of the shared encoder, "
        "trained for one task. The shipped model carries `eurosat_landcover`, a linear probe "
        "for EuroSAT's 10 land-cover classes on Sentinel-2 L1C imagery. It is a demonstration "
        f"head (about {_head_accuracy()} on held-out chips; chance is 10%), so expect mistakes.",
        SETUP,
        "info = model.head_info[\"eurosat_landcover\"]\n"
        "print(info[\"classes\"])\nprint(info[\"validation\"], \"-\", info[\"trained_on\"])",
        "from ofa_explore.widgets import ClassificationMap\n\n"
        "ClassificationMap(model, sample_path(\"eurosat_river.tif\"))",
        "ClassificationMap(model, sample_path(\"eurosat_industrial.tif\"))",
        "## Your own classes\nWith labelled chips (a folder per class, or a CSV of `path,label`)"
        " a new head takes a minute:\n\n```python\nfrom ofa_explore.downstream import "
        "fit_scene_head\nreport = fit_scene_head(model, \"my_chips/\", \"my_classes\")\n"
        "print(report[\"accuracy\"], report[\"macro_f1\"])\n```\n\nor `ofa train-head --data "
        "my_chips/ -o my_model.safetensors`, then `ofa classify scene.tif -o classes.tif "
        "--checkpoint my_model.safetensors`, or the QGIS plugin's *Classify layer*.",
    ],
    "05_pretrain_tiny.ipynb": [
        "# 5. Pre-training a tiny OFA-Net yourself\n\nThe same pipeline that made the shipped "
        "model (and that runs on many GPUs with `torchrun`) trains a very small model here in "
        "about a minute, on the sample scenes of five sensors. Batches hold one modality each; "
        "the encoder is shared.",
        "import tempfile\nfrom pathlib import Path\n\nfrom ofa_explore.demo import SAMPLES, "
        "sample_path\nfrom pretraining.config import load_config\nfrom pretraining.train import "
        "train\n\nsources = {}\nfor filename, modality in SAMPLES.items():\n"
        "    sources.setdefault(modality, []).append(str(sample_path(filename)))\n"
        "run = Path(tempfile.mkdtemp(prefix=\"ofa-tiny-\"))\n"
        "config = load_config({\n"
        "    \"model\": {\"size\": \"tiny\", \"patch_size\": 8, \"img_size\": 32, "
        "\"arch\": {\"depth\": 4}},\n"
        "    \"data\": [{\"modality\": m, \"paths\": paths, \"val_fraction\": 0.2}\n"
        "             for m, paths in sources.items()],\n"
        "    \"optim\": {\"lr\": 1e-3, \"warmup_steps\": 20},\n"
        "    \"steps\": 600, \"batch_size\": 16, \"mask_ratio\": 0.75, \"checkpoint_every\": 100,"
        "\n    \"log_every\": 25, \"output_dir\": str(run), \"seed\": 0,\n})\n"
        "final = train(config, Path.cwd())\nfinal",
        "The loss per step, one colour per modality (log.csv is written as training goes):",
        "import csv\nimport matplotlib.pyplot as plt\n\nrows = list(csv.DictReader(open(run / "
        "\"log.csv\")))\nfig, ax = plt.subplots(figsize=(7, 3))\n"
        "for m in sorted({r[\"modality\"] for r in rows}):\n"
        "    pts = [(int(r[\"step\"]), float(r[\"loss\"])) for r in rows if r[\"modality\"] == m]"
        "\n    ax.plot(*zip(*pts), \".\", label=m, alpha=0.6)\n"
        "ax.set_xlabel(\"step\"); ax.set_ylabel(\"masked-patch loss\"); ax.legend(); plt.show()",
        "Kill the kernel in the middle of the training cell and run it again with "
        "`train(config, Path.cwd(), resume=True)`: it continues from the last checkpoint. "
        "What did a minute of training learn?",
        "from ofa_explore import load_checkpoint\nfrom ofa_explore.widgets import "
        "ReconstructionExplorer\n\ntiny = load_checkpoint(final)\n"
        "ReconstructionExplorer(tiny, sample_path(\"naip_rgbn_2020.tif\"))",
    ],
}


def main() -> None:
    folder = ROOT / "notebooks"
    folder.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=[new_code_cell(c) if _is_code(c) else new_markdown_cell(c)
                                 for c in cells])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nbformat.write(nb, folder / name)
        print("wrote", folder / name)


def _is_code(text: str) -> bool:
    """Code cells are Python; markdown cells are prose (or start with a '#' heading)."""
    if text.startswith("#"):
        return False
    try:
        compile(text, "<cell>", "exec")
        return True
    except SyntaxError:
        return False


if __name__ == "__main__":
    main()
