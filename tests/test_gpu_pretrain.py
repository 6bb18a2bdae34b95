"""Pre-training made ready for a lent GPU: sources packed within a byte budget and read without
GDAL, a run stopped by its clock, and scripts/gpu_pretrain.py's three verbs end to end on the CPU
with rasterio unimportable (the lease has none)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ofa_explore import load_checkpoint
from ofa_explore.pretraining.config import load_config
from ofa_explore.pretraining.data import build_sources
from ofa_explore.pretraining.packed import pack, read_packed
from ofa_explore.pretraining.train import train

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_pretrain.py"
# runs a script with GDAL's Python packages unimportable, as on the lease
WITHOUT_GDAL = """
import importlib.abc, runpy, sys
class NoGdal(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"rasterio", "rioxarray", "pyproj", "osgeo"}:
            raise ImportError("no " + name + " on this machine")
sys.meta_path.insert(0, NoGdal())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def small_config(shared: Path, tmp_path: Path, **overrides) -> dict:
    for city in ("rennes", "nantes"):  # the images only: change maps never leave shared data
        (tmp_path / "oscd" / city).mkdir(parents=True, exist_ok=True)
        for date in sorted((shared / "change/oscd" / city).glob(f"{city}_20*.tif")):
            link = tmp_path / "oscd" / city / date.name
            if not link.exists():
                link.symlink_to(date)
    cfg = {
        "model": {"size": "tiny", "patch_size": 8, "img_size": 32, "arch": {"depth": 2}},
        "data": [
            {"modality": "s2_l1c", "paths": [str(shared / "eurosat/*/*.tif")], "weight": 2.0},
            {
                "modality": "s2_l1c",
                "paths": [str(tmp_path / "oscd/*/*.tif")],
                "time_pairs": True,
                "val_fraction": 0.2,
            },
        ],
        "objective": {"contrastive": 1.0, "projection_dim": 16, "hidden_dim": 32},
        "steps": 4,
        "batch_size": 4,
        "val_batches": 1,
        "output_dir": str(tmp_path / "run"),
    }
    cfg.update(overrides)
    return cfg


def test_packed_sources_keep_real_regions_within_the_budget(shared, tmp_path):
    """Each packed EuroSAT region is one of the source's own chips, in the same split; a
    time-pairs region keeps both dates on one window; the npz files stay within the budget."""
    cfg = load_config(small_config(shared, tmp_path))
    budget = 3 * 2**20
    packed_cfg, report = pack(cfg, Path.cwd(), tmp_path / "packed", budget)
    assert sum(r.nbytes for r in report) <= budget * 1.05
    assert all(0 < kept < available for kept, available in (r.regions for r in report))

    originals = build_sources(cfg, Path.cwd())
    _, train_regions, val_regions = read_packed(tmp_path / "packed" / report[0].path.name)
    chips = {s: {r.raster.tobytes() for r in originals[0].regions(s)} for s in ("train", "val")}
    assert train_regions and val_regions
    assert all(r.raster.tobytes() in chips["train"] for r in train_regions)
    assert all(r.raster.tobytes() in chips["val"] for r in val_regions)

    modality, pairs, _ = read_packed(Path(packed_cfg.data[1].packed))
    assert modality.wavelengths == originals[1].modality.wavelengths
    for region in pairs:
        a, b = (d.raster for d in region.dates)
        assert a.shape == b.shape and a.shape[1] >= 64  # tiles of 128 px or whole regions
        assert not np.array_equal(a, b)  # two acquisitions
    assert packed_cfg.data[0].packed and not packed_cfg.data[0].paths


def test_a_run_stopped_by_its_clock_still_writes_its_model(shared, tmp_path):
    cfg = load_config(small_config(shared, tmp_path, steps=50))
    final = train(cfg, Path.cwd(), quiet=True, stop_after_s=0.0)
    with open(tmp_path / "run" / "log.csv") as f:
        assert len(f.read().splitlines()) == 2  # the header and the one step it had time for
    model = load_checkpoint(final)
    assert model is not None


def test_gpu_script_prepares_trains_without_gdal_and_brings_the_model_back(shared, tmp_path):
    config = tmp_path / "small.yaml"
    config.write_text(yaml.safe_dump(small_config(shared, tmp_path)))
    folder = tmp_path / "gpu"

    def run(*args, without_gdal=False, **env):
        prefix = ["-c", WITHOUT_GDAL] if without_gdal else []
        return subprocess.run(
            [sys.executable, *prefix, str(SCRIPT), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, **env},
            timeout=600,
        )

    done = run("prepare", "--no-wheels", "--config", str(config), "--dir", str(folder))
    assert done.returncode == 0, done.stderr
    assert "will travel" in done.stdout and "carry=" in done.stdout
    packed = yaml.safe_load((folder / "config.yaml").read_text())
    assert all(s["packed"] and not s["paths"] for s in packed["data"])

    out = tmp_path / "out"
    scratch = tmp_path / "tmp"  # the run's temporary folder: its checkpoints go with it
    scratch.mkdir()
    args = ("device", "--cpu", "--dir", str(folder), "--calibration-steps", "4", "--steps", "2")
    done = run(*args, without_gdal=True, OUT=str(out), TMPDIR=str(scratch))
    assert done.returncode == 0, done.stderr
    assert not list(scratch.glob("ofa_gpu_*"))
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["device"] == "cpu"

    done = run("fetch", str(out), "--output", str(tmp_path / "back"))
    assert done.returncode == 0, done.stderr
    model = load_checkpoint(tmp_path / "back" / "model.safetensors")
    assert model.config.depth == 2

    part = out / "model.safetensors.part0"
    data = part.read_bytes()
    part.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # one bit off
    done = run("fetch", str(out), "--output", str(tmp_path / "again"))
    assert done.returncode == 2 and "do not join" in done.stderr
    assert not (tmp_path / "again" / "model.safetensors").exists()
    (out / "summary.json").unlink()  # a device run that failed sends no summary
    done = run("fetch", str(out), "--output", str(tmp_path / "again"))
    assert done.returncode == 2 and "holds no summary.json" in done.stderr, done.stderr

    mine = tmp_path / "mine"  # a folder of the user's is never emptied by prepare
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    done = run("prepare", "--no-wheels", "--config", str(config), "--dir", str(mine))
    assert done.returncode == 2 and "give an empty --dir" in done.stderr
    assert (mine / "notes.txt").read_text() == "keep"


def test_packed_config_errors_are_named(shared, tmp_path):
    cfg = small_config(shared, tmp_path)
    cfg["data"][0]["packed"] = "somewhere.npz"
    with pytest.raises(Exception, match="packed replaces paths"):
        load_config(cfg)
    cfg["data"][0]["paths"] = []
    with pytest.raises(Exception, match="no packed file"):
        build_sources(load_config(cfg), tmp_path)


def test_a_packed_run_checkpoints_validates_and_resumes_on_the_device_torch_picks(tmp_path):
    """Needs no GDAL and no shared data, so it runs on a lent GPU too, where training takes
    CUDA: there the optimiser state and the validation masks once stayed on the GPU and the
    first checkpoint failed (numpy of a CUDA tensor; a CPU generator for CUDA masks)."""
    import torch

    from ofa_explore.modalities import get_modality
    from ofa_explore.pretraining.packed import FORMAT

    rng = np.random.default_rng(0)
    arrays, regions = {}, []
    for k, split in enumerate(["train"] * 3 + ["val"]):
        arrays[f"r{k}_d0"] = rng.uniform(0.02, 0.3, (13, 48, 48)).astype(np.float32)
        regions.append(dict(split=split, rows=48, dates=1, nodata=0.0, conversion={"kind": "none"}))
    meta = dict(format=FORMAT, modality=get_modality("s2_l1c").to_dict(), regions=regions)
    np.savez(tmp_path / "s2.npz", meta=np.array(json.dumps(meta)), **arrays)
    cfg = {
        "model": {"size": "tiny", "patch_size": 8, "img_size": 32, "arch": {"depth": 2}},
        "data": [{"modality": "s2_l1c", "packed": str(tmp_path / "s2.npz")}],
        "objective": {"contrastive": 1.0, "projection_dim": 16, "hidden_dim": 32},
        "precision": "bf16",
        "steps": 4,
        "batch_size": 4,
        "checkpoint_every": 2,
        "val_batches": 2,
        "output_dir": str(tmp_path / "run"),
    }
    final = train(load_config(cfg), tmp_path, quiet=True)
    first = load_checkpoint(final)
    assert np.isfinite(first.provenance["val_loss"])
    cfg["steps"] = 6
    again = load_checkpoint(train(load_config(cfg), tmp_path, resume=True, quiet=True))
    assert again.provenance["steps"] == 6 and np.isfinite(again.provenance["val_loss"])
    with open(tmp_path / "run" / "log.csv") as f:
        assert len(f.read().splitlines()) == 1 + 6
    print("trained on", "cuda" if torch.cuda.is_available() else "cpu")
