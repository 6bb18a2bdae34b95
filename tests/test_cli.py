"""The `ofa` command line: real subprocesses for the installed script, in-process for the rest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from ofa_explore import OFANet, save_checkpoint
from ofa_explore.cli import main as cli


def test_installed_console_script_runs():
    from pathlib import Path

    beside = Path(sys.executable).parent / "ofa"
    exe = str(beside) if beside.exists() else shutil.which("ofa")
    if exe is None:
        pytest.fail("the `ofa` console script is not installed")
    out = subprocess.run([exe, "modalities"], capture_output=True, text=True, check=True).stdout
    for name in ("s2_l1c", "s1_grd", "enmap", "landsat_oli"):
        assert name in out
    res = subprocess.run([sys.executable, "-m", "ofa_explore.cli"], capture_output=True, text=True)
    assert res.returncode == 2 and "modalities" in res.stdout


def test_modalities_one_and_json(capsys):
    assert cli(["modalities", "s2_l1c"]) == 0
    out = capsys.readouterr().out
    assert "B8A" in out and "0.865" in out and "1354.4055" in out
    assert cli(["modalities", "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in records} >= {"s1", "s2", "naip", "gaofen", "enmap"}


def test_unknown_modality_exits_2_with_the_list(capsys):
    assert cli(["modalities", "sentinel9"]) == 2
    err = capsys.readouterr().err
    assert "unknown modality 'sentinel9'" in err and "s2_l2a" in err


def test_info_describes_checkpoint(tmp_path, capsys):
    model = OFANet("tiny", modalities=["s2_l1c"], img_size=32, patch_size=8, depth=1)
    model.add_head("landcover", ["Forest", "River"], modality="s2_l1c")
    path = save_checkpoint(model, tmp_path / "m.safetensors", trained_on="nothing")
    assert cli(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OFANet-tiny" in out and "s2_l1c (13 bands)" in out and "Forest, River" in out
    assert "trained_on" in out
    path.write_bytes(path.read_bytes()[:50])
    assert cli(["info", str(path)]) == 2
    assert "truncated" in capsys.readouterr().err
    assert cli(["info", str(tmp_path / "missing.safetensors")]) == 2


def test_demo_writes_panels_embedding_map_and_summary(tmp_path, capsys):
    import rasterio

    from ofa_explore.demo import EMBEDDING_SCENE, sample_path

    out = tmp_path / "demo"
    assert cli(["demo", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["modalities"]) == {"s2_l1c", "s1_grd", "rgbn", "rgb", "landsat_oli_l1"}
    for name, result in summary["modalities"].items():
        with Image.open(result["panel"]) as im:
            assert im.width > 3 * 64 and im.mode == "RGB"
        if name != "landsat_oli_l1":  # own embeddings; Landsat's path is tested beside the model
            assert result["model_mse"] < result["baseline_mse"], (name, result)
    with rasterio.open(summary["embedding"]["pca_geotiff"]) as pca, \
            rasterio.open(sample_path(EMBEDDING_SCENE)) as src:
        assert pca.crs == src.crs and pca.count == 3
    assert Image.open(summary["embedding"]["png"]).size[0] > 100
    printed = capsys.readouterr().out
    assert "reconstruction_s1_grd.png" in printed and "done in" in printed
    # an output path that is a file is refused, nothing overwritten
    blocker = tmp_path / "file"
    blocker.write_text("keep me")
    assert cli(["demo", "-o", str(blocker)]) == 2
    assert blocker.read_text() == "keep me"


def test_help_examples_parse():
    from ofa_explore.cli import EPILOG, build_parser

    parser = build_parser()
    examples = [line.strip().split("  ")[0] for line in EPILOG.splitlines()
                if line.strip().startswith("ofa ")]
    assert len(examples) >= 4
    for example in examples:
        assert parser.parse_args(example.split()[1:]).command == example.split()[1]


def test_input_errors_print_no_progress_bar_and_name_what_was_given(tmp_path, capsys):
    """An input error is one clear line: no progress bar before it, and a modality the model
    cannot embed is named as the one the raster was opened as."""
    from ofa_explore.demo import sample_path

    out = tmp_path / "emb.tif"
    out.write_text("keep me")
    assert cli(["embed", str(sample_path("eurosat_river.tif")), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err
    assert "tile/s" not in err and "0tile" not in err and "%|" not in err
    assert out.read_text() == "keep me"

    bare = OFANet("tiny", modalities=["rgb"], img_size=32, patch_size=8, depth=1,
                  wavelength_embed=False)
    ckpt = save_checkpoint(bare, tmp_path / "rgb_only.safetensors")
    assert cli(["embed", str(sample_path("naip_rgbn_2020.tif")), "-o", str(tmp_path / "n.tif"),
                "--checkpoint", str(ckpt), "--modality", "rgbn"]) == 2
    err = capsys.readouterr().err
    assert "cannot embed 'rgbn' imagery" in err and "pass --modality" not in err
    assert "tile/s" not in err
