"""Write the workshop notebooks in notebooks/ (stored without outputs).

    python scripts/make_notebooks.py

Each notebook uses only the shipped checkpoint, the sample scenes and notebooks/data/, so it runs
offline on a laptop.
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


SETUP = """from ofa_explore import load_pretrained, set_threads
from ofa_explore.demo import sample_path
from ofa_explore.notebook import brief_errors

brief_errors()              # a mistake in what you type shows as one line, not a traceback
set_threads()               # torch's CPU threads: the cores free for this kernel (or set_threads(N))
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
        '    gsd = f"{m.gsd:g} m" if m.gsd else "varies"\n'
        '    print(f"{name:<12} {m.kind:<14} {m.num_bands:>3} bands  GSD {gsd:<7} '
        '{m.description}")',
        "## One modality in full\nSentinel-2 L1C as EuroSAT stores it: 13 bands, B8A last.",
        'print(get_modality("s2_l1c").describe())',
        "## The shipped sample scenes\nEach explorer detects the modality from the file "
        "(override it with the drop-down), shows a natural-colour composite (for SAR: VV, VH "
        "and VV-VH in dB) and lets you pick any three bands and the stretch.",
        "from ofa_explore.demo import SAMPLES, sample_path\nfrom ofa_explore.widgets import "
        "RasterExplorer\n\nfor filename, modality in SAMPLES.items():\n"
        '    print(filename, "->", modality)',
        'RasterExplorer(sample_path("eurosat_river.tif"))   # Sentinel-2 L1C, 10 m',
        'RasterExplorer(sample_path("bigearthnet_s1_20170613.tif"))   # Sentinel-1 SAR, dB',
        'RasterExplorer(sample_path("neon_rgb_osbs.tif"))   # NEON RGB, 0.1 m',
        'RasterExplorer(sample_path("naip_rgbn_2020.tif"))   # NAIP RGB + NIR: 1 m imagery, '
        "shipped resampled to 5 m",
        "**Try it** in the NAIP explorer just above:\n\n"
        "1. Untick *natural colour* and pick NIR as R (red): a false-colour composite, in which "
        "vegetation turns red.\n"
        "2. Type `data/s2_chesapeake/B08.tif` in the *Raster* box and click *Load*: one band "
        "(near infrared) of a Sentinel-2 scene. One band does not say which sensor took it, "
        "and the explorer tells you so.\n"
        "3. Type `data/my_chips/Forest/Forest_1.tif` and click *Load*: all 13 bands of a "
        "Sentinel-2 chip, and the explorer recognises the sensor.\n"
        "4. Your own GeoTIFF: type its path, or *Upload* it.",
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
        'ReconstructionExplorer(model, sample_path("eurosat_river.tif"))',
        "Move the **mask ratio**: at 0 the model just copies; at 0.75 (the pre-training "
        "setting) it must guess three quarters of the image. The *error* panel shows where it "
        "guessed wrong (bright: large error; grey: a patch it saw); the loss compares it with a "
        "trivial guess (the mean of what it saw).",
        'ReconstructionExplorer(model, sample_path("bigearthnet_s1_20180204.tif"))   # SAR',
        "**Why SAR looks worst.** Radar images are covered in *speckle*: a grainy interference "
        "pattern that changes at random from pixel to pixel. Nobody can predict the speckle of a "
        "hidden patch, so the best guess is a smooth local average: the reconstruction looks "
        "blurred and its error stays close to the trivial baseline, while on the optical scenes "
        "above the model's error is about half the baseline's. What it does get right is the "
        "layout: fields, water (dark, smooth backscatter) and built-up areas (bright).",
        'ReconstructionExplorer(model, sample_path("naip_rgbn_2020.tif"))   # aerial RGBN',
        "**A sensor without an embedding of its own.** Landsat-8 has none in this model: its "
        "patches go through the *wavelength-conditioned* embedding, which builds the first layer "
        "from the bands' wavelengths. Pre-training fed it Landsat, EnMAP and random band subsets "
        "of the other sensors, so the model *accepts* any raster whose band wavelengths are "
        "known.",
        'ReconstructionExplorer(model, sample_path("landsat8_l1_gulf_coast.tif"))   # Landsat-8',
        "Accepting is not the same as reconstructing well. Here the model does **little better "
        "than the trivial guess**: its error is about nine tenths of the baseline's at seed 0 "
        "(compare the two numbers under the panels), where on the Sentinel-2 and NAIP scenes "
        "above it is about half. Change the *Seed* (another random mask): on some masks the "
        "model does no better than the guess. The wavelength-conditioned path is the weakest part of this "
        "small model, and this cloudy scene of raw Landsat digital numbers a hard case for it. "
        "In the *error* panel, grey marks the patches the model saw (nothing to score); black "
        "means no error.",
        "**Same encoder, different sensors.** Only the first layer (the patch embedding) and the "
        "last (the pixel head) differ per modality; everything in between is shared:",
        "shared = sum(p.numel() for p in model.blocks.parameters())\n"
        "per_modality = {n: sum(p.numel() for p in e.parameters()) for n, e in "
        'model.patch_embeds.items()}\nprint(f"shared encoder blocks: {shared:,} parameters")\n'
        'print("patch embeddings:", per_modality)',
    ],
    "03_embeddings_map.ipynb": [
        "# 3. Embeddings on a map, and similarity search\n\nThe encoder turns every 8 × 8-pixel "
        "patch into a vector of 192 numbers, an *embedding*. Patches that look alike to the "
        "model get similar vectors. Below, the first three principal components of the "
        "embeddings are shown as colours (red, green, blue) over a NAIP scene at 5 m, so one "
        "patch covers 40 m × 40 m: patches of the same colour have similar embeddings.",
        SETUP,
        "from ofa_explore.widgets import EmbeddingMap\n\n"
        'emb = EmbeddingMap(model, sample_path("naip_rgbn_2020.tif"))\nemb',
        "**Click the map.** Every patch is coloured by how similar its embedding is to the "
        "patch you clicked (cosine similarity, from -1 to 1; the colour bar under the map); the "
        "threshold hides the patches below it, and the status line counts those above it. "
        "The first click hides the PCA colours so that the scene shows through; tick "
        "*embedding PCA* to bring them back. The same search from code, e.g. for a report "
        "(the map is left as it is):",
        "import numpy as np\n\n"
        "(south, west), (north, east) = emb.bounds\n"
        "similarity = emb.similarity_at((south + north) / 2, (west + east) / 2)   # centre patch\n"
        "alike = similarity >= 0.5\n"
        'print(f"{alike.sum()} of {np.isfinite(similarity).sum()} patches have a cosine "\n'
        '      "similarity of 0.5 or more to the patch at the centre of the scene")',
        "Export the embeddings as a GeoTIFF (192 bands, one pixel per patch) to open in QGIS; "
        "it goes to the folder `ofa-export` beside this notebook. The map's *Export GeoTIFFs* "
        "button does the same, and once you have clicked the map it also writes the similarity "
        "map:",
        'written = emb.export("ofa-export")\nprint(*written, sep="\\n")',
    ],
    "04_classify_scene.ipynb": [
        "# 4. Classifying a real scene\n\nA *head* is a small layer on top of the shared encoder, "
        "trained for one task. The shipped model carries `eurosat_landcover`, a linear probe "
        "for EuroSAT's 10 land-cover classes on Sentinel-2 L1C imagery, trained on 64 × 64-pixel "
        "chips from Europe. It is a demonstration head (about "
        f"{_head_accuracy()} on held-out chips; chance is 10%), so expect mistakes.",
        SETUP,
        'info = model.heads.info["eurosat_landcover"]\n'
        'print("classes:", ", ".join(info["classes"]))\n'
        "print(f\"held-out accuracy {info['validation']['accuracy']:.0%} on "
        "{info['validation']['count']} chips; trained on {info['trained_on']}\")",
        "## A full Sentinel-2 scene, stacked from its band files\nSentinel-2 products come "
        "as one file per band, at 10 m, 20 m or 60 m. The folder `data/s2_chesapeake` beside "
        "this notebook holds the 13 band files of a cloud-free Level-1C scene on the Eastern "
        "Shore of Virginia, at the mouth of Chesapeake Bay. `open_raster` stacks them on the "
        "finest (10 m) grid, in the band order the model expects, resampling the coarser bands; "
        "nothing is read yet.",
        "from pathlib import Path\n\nfrom ofa_explore.io import open_raster\n\n"
        'band_files = sorted(Path("data/s2_chesapeake").glob("B*.tif"))\n'
        "scene = open_raster(band_files)\n"
        'height, width = scene.sizes["y"], scene.sizes["x"]\n'
        "pixel = abs(scene.rio.resolution()[0])\n"
        "print(f\"{len(band_files)} band files -> bands {', '.join(scene.band.values)}\")\n"
        'print(f"{width} x {height} pixels of {pixel:g} m = {width * pixel / 1000:.1f} km x '
        '{height * pixel / 1000:.1f} km, {scene.rio.crs}")',
        "The tiled engine cuts the scene into overlapping 64-pixel tiles, classifies each tile "
        "and keeps its centre: the class map has one cell per 8 × 8-pixel patch (80 m). The "
        "table gives each class's area, counting only what lies inside the scene.",
        "from ofa_explore.widgets import ClassificationMap\n\n"
        "classes = ClassificationMap(model, scene)\nclasses",
        "**Look closely** (zoom in; *Opacity* fades the class map). Open water comes out as "
        "*SeaLake*, about half of the scene: the Atlantic, and also the lagoons and salt marshes "
        "behind the barrier islands. *River* follows the mainland's shore, where tidal creeks "
        "and marsh mix land and water. The sandy barrier islands come out as *Industrial*. On "
        "land the head mixes herbaceous vegetation, highway and residential, and *Forest* is "
        "not among the five largest classes, though dark forests cover much of the mainland. "
        "EuroSAT has no beach, salt-marsh or barrier-island class: a head trained on 119 chips "
        "from Europe carries only so far; your own labelled chips from your region (below) "
        "carry further. The five largest classes:",
        "for row in classes.areas[:5]:\n"
        "    print(f\"{row['class']:<22}{row['hectares']:>9,.0f} ha  {row['share']:>6.1%}\")",
        "## Your own classes\nWith labelled chips, a folder per class (or a CSV of "
        "`path,label`), a new head takes seconds. `data/my_chips` beside this notebook holds "
        "20 EuroSAT chips (Sentinel-2 L1C, 64 × 64 pixels), five of each of four classes, one "
        "folder per class: `AnnualCrop`, `Forest`, `River`, `SeaLake`. The head is fitted on "
        "16 of them and scored on the other 4:",
        "from ofa_explore.downstream import fit_scene_head\n\n"
        'report = fit_scene_head(model, "data/my_chips/", "my_classes")\n'
        "print(f\"{report['val']} held-out chips: accuracy {report['accuracy']:.0%}, "
        "macro-F1 {report['macro_f1']:.2f}\")",
        "**Try it:** put your own chips in a folder laid out the same way (a sub-folder per "
        "class, named after the class) and give its path instead of `data/my_chips/`. A path "
        "that does not exist says so in one line. Then `ofa train-head --data my_chips/ -o "
        "my_model.safetensors` and `ofa classify data/s2_chesapeake/B*.tif -o classes.tif "
        "--checkpoint my_model.safetensors` make a GeoTIFF for QGIS (or use the QGIS plugin's "
        "*Classify layer*).",
    ],
    "05_pretrain_tiny.ipynb": [
        "# 5. Pre-training a tiny OFA-Net yourself\n\nThe same pipeline that made the shipped "
        "model (and that runs on many GPUs with `torchrun`) trains a very small model here in "
        "about half a minute, on the ten sample scenes of five sensors. Batches hold one "
        "modality each; the encoder is shared. Everything goes to a fixed *run folder*, "
        "`runs/tiny-ofa` beside this notebook: the log, and a checkpoint every 100 steps.",
        "from pathlib import Path\n\nfrom ofa_explore import set_threads\n"
        "from ofa_explore.demo import SAMPLES, sample_path\n"
        "from ofa_explore.pretraining.config import load_config\n"
        "from ofa_explore.pretraining.train import latest_checkpoint, train\n\n"
        "set_threads()   # torch's CPU threads: the cores free for this kernel (or set_threads(N))\n"
        "sources = {}\nfor filename, modality in SAMPLES.items():\n"
        "    sources.setdefault(modality, []).append(str(sample_path(filename)))\n"
        'run = Path("runs") / "tiny-ofa"\n'
        "config = load_config({\n"
        '    "model": {"size": "tiny", "patch_size": 8, "img_size": 32, '
        '"arch": {"depth": 4}},\n'
        '    "data": [{"modality": m, "paths": paths, "val_fraction": 0.2}\n'
        "             for m, paths in sources.items()],\n"
        '    "optim": {"lr": 1e-3, "warmup_steps": 20},\n'
        '    "steps": 600, "batch_size": 16, "mask_ratio": 0.75, "checkpoint_every": 100,'
        '\n    "log_every": 25, "output_dir": str(run), "seed": 0,\n})',
        "Train. With `resume=True` the pipeline continues from the newest checkpoint in the run "
        "folder instead of starting over; this cell asks for that whenever there is one (the "
        "exercise at the end of this notebook uses it).",
        "final = train(config, resume=latest_checkpoint(run) is not None)",
        "The loss per step, one colour per modality (the log is written as training goes):",
        "import csv\nimport matplotlib.pyplot as plt\n\n"
        'with open(run / "log.csv") as f:\n    rows = list(csv.DictReader(f))\n'
        "fig, ax = plt.subplots(figsize=(7, 3))\n"
        'for m in sorted({r["modality"] for r in rows}):\n'
        '    pts = [(int(r["step"]), float(r["loss"])) for r in rows if r["modality"] == m]'
        '\n    ax.plot(*zip(*pts), ".", label=m, alpha=0.6)\n'
        'ax.set_xlabel("step"); ax.set_ylabel("masked-patch loss"); ax.legend(); plt.show()',
        "## What did half a minute of training learn?\nThe error on the hidden pixels (in "
        "standard deviations of each band, squared), for the tiny model and for the trivial "
        "guess that fills every hidden pixel with the mean of the visible ones; averaged over "
        "five random masks of 75% of a 32 × 32-pixel window:",
        "from ofa_explore import load_checkpoint\nfrom ofa_explore.demo import sample_chip\n"
        "from ofa_explore.metrics import reconstruction_scores\n\n"
        "tiny = load_checkpoint(final)\n"
        "print(f\"{'scene':<30}{'tiny model':>11}{'trivial guess':>15}\")\n"
        'for filename in ["naip_rgbn_2020.tif", "eurosat_river.tif", '
        '"bigearthnet_s1_20180204.tif",\n                 "neon_rgb_osbs.tif"]:\n'
        "    x = sample_chip(filename, 32)\n"
        "    scores = [reconstruction_scores(tiny, x, SAMPLES[filename], seed=s) "
        "for s in range(5)]\n"
        '    model_error = sum(s["model_mse"] for s in scores) / 5\n'
        '    baseline = sum(s["baseline_mse"] for s in scores) / 5\n'
        '    print(f"{filename:<30}{model_error:>11.3f}{baseline:>15.3f}")',
        "Six hundred steps on ten small images teach the model each sensor's colours and the "
        "coarse layout of a scene, so it beats the trivial guess by about a tenth on the aerial, "
        "Sentinel-2 and radar scenes. It does not beat it on the NEON scene at 0.1 m, where a "
        "hidden 0.8 m patch holds the detail of a single tree crown that the visible patches "
        "do not give away. The shipped model (notebook 2) trained far longer on thousands of "
        "scenes; its error on optical scenes is about half the trivial guess's. Longer runs are "
        "the lever: `steps` in the config, or the same pipeline on GPUs.",
        "from ofa_explore.widgets import ReconstructionExplorer\n\n"
        'ReconstructionExplorer(tiny, sample_path("naip_rgbn_2020.tif"))',
        "## Try it: stop and resume\n"
        "1. Run the cell below: it deletes the run folder `runs/tiny-ofa`, so the next "
        "training starts over.\n"
        "2. Scroll up and run the training cell. Once its bar has passed 100 steps, restart the "
        "kernel (*Kernel > Restart Kernel*): Python forgets everything, the checkpoints stay "
        "on disk.\n"
        "3. Run the first code cell again, and the training cell: it says *resumed from ... at "
        "step 100* (or 200, ...) and carries on from there, with the same batches and masks as "
        "an uninterrupted run.\n\n"
        "*Run All* also ends here, so that running the notebook again trains from the start.",
        "import shutil\nfrom pathlib import Path\n\n"
        'run = Path("runs") / "tiny-ofa"\n'
        "shutil.rmtree(run, ignore_errors=True)\n"
        "if run.exists():   # on Windows, a file still open in this kernel cannot be deleted\n"
        '    print(f"{run} is still in use: restart the kernel, then run this cell again")\n'
        "else:\n"
        '    print(f"deleted {run}: the next training starts over")',
    ],
    "06_change_between_dates.ipynb": [
        "# 6. What changed between two dates\n\nTwo images of the same place, years apart: where "
        "did the land change? `change(before, after)` gives every pixel of the first image a "
        "**change score**: how different the two dates look there, measured in three ways "
        "and added up:\n\n"
        "- *pixels*: each date's colours (red, green and blue; the near infrared mostly tells "
        "how far the crops have grown) are first standardised by that date's own averages "
        "(so that a brighter or hazier year does not count as change), then compared, averaged "
        "over 5 × 5 pixels (so that images shifted by a pixel do not count either);\n"
        "- *unusual change*: the same colours, asking whether the pixel changed the way the "
        "rest of the scene did (a whole scene that turned greener is expected) or unlike it: "
        "what only a few pixels did scores high;\n"
        "- *embeddings*: how different the model's embeddings of the two dates are, patch by "
        "patch: the model's view of *what* is there.\n\n"
        "The score is in **standard deviations of the scene's own scores**: a typical pixel of "
        "the scene scores about 0, and 3 or more is rare. It needs no labels, so it says where "
        "the place *looks* different, not why: new water, another crop and a new building all "
        "score.",
        SETUP,
        "## Three dates of one place\n`data/naip_change/` beside this notebook holds the same "
        "2 km × 2 km of North Dakota in three NAIP aerial images (red, green, blue and near "
        "infrared, resampled to 5 m) from August 2009, July 2014 and August 2020. This is "
        "prairie pothole country: shallow lakes left by the glaciers, between fields, that grow "
        "in wet years and shrink in dry ones. The change map compares 2009 with 2020:",
        "from ofa_explore.widgets import ChangeMap\n\n"
        'changes = ChangeMap(model, "data/naip_change/naip_2009.tif", '
        '"data/naip_change/naip_2020.tif")\nchanges',
        "**Drag the divider** in the middle of the map: 2009 on its left, 2020 on its right. "
        "The coloured pixels score at or above the *Threshold* (3 to start with): light yellow "
        "just above it, dark red for the largest changes; the rest is transparent. The status "
        "line under the map gives their area in hectares and their share of the scene. **Click "
        "the map** for the score of one pixel; *Opacity* fades the change layer.\n\n"
        "What scores high here: the field in the lower right, a tan field in 2009 that the "
        "lake beside it had flooded by 2020 (green water and pale shore); the field in the "
        "bottom left, bare in 2020; shores that moved. The lake in the top right, dark open water in 2009 "
        "and an even green in 2020, scores about 2.4 (lower the *Threshold* to 2 to see it): a "
        "large change, but the scene's other lakes turned green too, and the *unusual change* "
        "part of the score expects what much of the scene did. The score tells where "
        "to look; which changes matter is for you to judge (or for "
        "a head trained on labelled changes: `ofa train-head --task change`).\n\n"
        "The same figures from code, e.g. for a report (the map is left as it is):",
        "for threshold in (2, 3, 4):\n"
        "    area = changes.area_above(threshold)\n"
        "    print(f\"score {threshold} or more: {area['hectares']:6.2f} ha, \"\n"
        "          f\"{area['share']:5.1%} of the scene\")",
        "## In a script, and polygons for a GIS\n`change()` is the function behind the map "
        "(and behind `ofa change` on the command line). With an output file it writes a "
        "GeoTIFF on the grid of the first date: band 1 the score, band 2 a 0/1 mask at "
        "`threshold`. `polygons` outlines the changed areas in a GeoPackage, each with its "
        "area in hectares, ready to open in QGIS. The map's *Export* button does the same at "
        "the slider's threshold. The years' images lie on grids a few metres apart, so "
        "`change` first warps the second date onto the first one's grid (it says so). It "
        "also checks that the two dates' features line up: images a pixel or more apart would "
        "show every field edge as change, so it moves the second date onto the first one's "
        "features (2014's image lies almost 2 pixels off 2009's; the map in *Try it* says so):",
        "from pathlib import Path\n\nfrom ofa_explore import change\n\n"
        'Path("ofa-export").mkdir(exist_ok=True)\n'
        "result = change(\n"
        '    "data/naip_change/naip_2009.tif",\n'
        '    "data/naip_change/naip_2020.tif",\n'
        '    "ofa-export/change_2009_2020.tif",\n'
        "    model=model,\n"
        "    threshold=2.5,   # the bare ground and shores; the lake needs 2\n"
        '    polygons="ofa-export/changes_2009_2020.gpkg",\n'
        "    overwrite=True,   # running the notebook again replaces the files\n"
        ")\n"
        'print(*result.notes[-4:], sep="\\n")',
        "The polygons' areas and the mean and highest score of their pixels, read back from the "
        "GeoPackage with pyogrio:",
        "import pyogrio\n\n"
        "_, _, _, (hectares, score_mean, score_max) = pyogrio.raw.read(\n"
        '    "ofa-export/changes_2009_2020.gpkg"\n'
        ")\n"
        "largest = sorted(zip(hectares, score_max), reverse=True)\n"
        'print(f"{len(largest)} changed areas, {sum(hectares):.2f} ha in all; the largest:")\n'
        "for area, top in largest[:5]:\n"
        '    print(f"{area:6.2f} ha, score up to {top:.1f}")',
        "Most areas are small (half of them twenty pixels or fewer): the edge of a shore, a "
        "field's corner; the largest is the flooded field in the lower right. In QGIS, keep the "
        "large ones with a filter on their `hectares` field, the strong ones on `score_max`, "
        "or raise the threshold.\n\n"
        "## Try it\n"
        "1. In the map above, move the *Threshold* to 2, then to 4.5: how do the area and the "
        "share change, and what is left at 4.5?\n"
        "2. Set the years in the cell below (2009, 2014 or 2020) and run it: compare the share "
        "at 3 of 2009 to 2014, and of 2014 to 2020, with 2009 to 2020 above. Does a larger "
        "share mean more change? (What is the score measured against?) Where did the lakes "
        "grow?\n"
        "3. Set a year that is not there, e.g. 2010: one line says what is wrong.",
        "from ofa_explore.widgets import ChangeMap\n\n"
        "before, after = 2009, 2014   # the years to compare: 2009, 2014 or 2020\n"
        'ChangeMap(model, f"data/naip_change/naip_{before}.tif", '
        'f"data/naip_change/naip_{after}.tif")',
    ],
}


def main() -> None:
    folder = ROOT / "notebooks"
    folder.mkdir(exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(
            cells=[new_code_cell(c) if _is_code(c) else new_markdown_cell(c) for c in cells]
        )
        for number, cell in enumerate(nb.cells):
            cell.id = f"cell-{number:02d}"  # stable: regenerating changes only what changed
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
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
