"""The `ofa` command line: real subprocesses for the installed script, in-process for the rest."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import process_group
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
    model.heads.add("landcover", ["Forest", "River"], modality="s2_l1c")
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
    with (
        rasterio.open(summary["embedding"]["pca_geotiff"]) as pca,
        rasterio.open(sample_path(EMBEDDING_SCENE)) as src,
    ):
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
    examples = [
        line.strip().split("  ")[0]
        for line in EPILOG.splitlines()
        if line.strip().startswith("ofa ")
    ]
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

    bare = OFANet(
        "tiny", modalities=["rgb"], img_size=32, patch_size=8, depth=1, wavelength_embed=False
    )
    ckpt = save_checkpoint(bare, tmp_path / "rgb_only.safetensors")
    assert (
        cli(
            [
                "embed",
                str(sample_path("naip_rgbn_2020.tif")),
                "-o",
                str(tmp_path / "n.tif"),
                "--checkpoint",
                str(ckpt),
                "--modality",
                "rgbn",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot embed 'rgbn' imagery" in err and "pass --modality" not in err
    assert "tile/s" not in err


# ---------------------------------------------------------------- worker protocol
def _events(text: str) -> list[dict]:
    """stdout of `--progress json`: every line one JSON object, nothing else."""
    return [json.loads(line) for line in text.splitlines()]


def test_progress_json_is_the_only_stdout_and_errors_match_human_mode(
    shared, tmp_path, capsys, monkeypatch
):
    from ofa_explore.precision import cpu_has_fast_bf16

    chip = shared / "eurosat" / "River" / "River_1.tif"
    out = tmp_path / "classes.tif"
    assert cli(["classify", str(chip), "-o", str(out), "--progress", "json"]) == 0
    captured = capsys.readouterr()
    events = _events(captured.out)
    assert captured.err == ""  # no bar, no warnings
    assert events[0] == {
        "event": "start",
        "task": "classify",
        "modality": "s2_l1c",
        "bands": 13,
        "input": "River_1.tif",
    }
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and progress[-1] == {
        "event": "progress",
        "done": 1,
        "total": 1,
        "percent": 100.0,
    }
    result = events[-1]
    assert [e["event"] for e in events] == ["start"] + ["progress"] * len(progress) + ["result"]
    assert result["path"] == str(out) and out.exists() and result["pca_path"] is None
    assert result["modality"] == "s2_l1c" and result["tiles"] == 1 and result["device"]
    assert isinstance(result["seconds"], float) and result["head"] == "eurosat_landcover"
    assert "River" in result["classes"] and len(result["colors"]) == len(result["classes"])

    # an input error: the human message without its prefix, the same exit code; the event
    # also carries its parts, the fix with the settings as placeholders for other shells
    for bad in (["-o", str(out)], ["-o", str(tmp_path / "x.tif"), "--bands", "1,14"]):
        assert cli(["classify", str(chip), *bad]) == 2
        human = capsys.readouterr()
        assert human.out == "" and human.err.startswith("ofa classify: error: ")
        assert cli(["classify", str(chip), *bad, "--progress", "json"]) == 2
        captured = capsys.readouterr()
        assert captured.err == ""
        error = _events(captured.out)[-1]
        assert error["event"] == "error" and error["problem"]
        assert error["message"] == human.err.strip().removeprefix("ofa classify: error: ")
    assert error["kind"] == "bad_input" and "band 14 does not exist" in error["problem"]
    assert "{bands}" in error["fix"] and "--bands" in error["message"]

    # human mode unchanged; -q is --progress none; precision auto by default: bf16 where the
    # CPU computes it natively, else exact fp32
    other = tmp_path / "emb.tif"
    assert cli(["embed", str(chip), "-o", str(other), "-q"]) == 0
    captured = capsys.readouterr()
    wrote, note = captured.out.splitlines()  # the files, then how the input was read
    assert wrote.startswith(
        f"wrote {other}, {tmp_path / 'emb_pca.tif'} and quicklook {tmp_path / 'emb.png'} "
        "(1 tile of s2_l1c in "
    )  # the modality it detected
    assert note.startswith("  note: read as 's2_l1c'")
    auto = "bf16" if cpu_has_fast_bf16() else "fp32"
    assert wrote.endswith(f"on cpu, {auto})")
    assert captured.err == ""
    assert cli(["embed", str(chip), "-o", str(other), "--overwrite", "--precision", "fp32"]) == 0
    captured = capsys.readouterr()
    assert "%|" not in captured.err  # no terminal: no bar, whose redraws would litter a log
    assert captured.out.splitlines()[0].endswith("on cpu, fp32)")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli(["embed", str(chip), "-o", str(other), "--overwrite", "--precision", "bf16"]) == 0
    captured = capsys.readouterr()
    assert "ofa embed: 100%" in captured.err  # the bar, on a terminal
    assert captured.out.splitlines()[0].endswith("on cpu, bf16)")


def _mosaic(shared, path, tiles: int):
    """A real Sentinel-2 L1C scene: EuroSAT chips laid side by side (64 * tiles px square)."""
    import numpy as np
    import rasterio

    chips = sorted((shared / "eurosat").glob("*/*.tif"))
    with rasterio.open(chips[0]) as src:
        profile = src.profile
    rows = []
    for r in range(tiles):
        row = []
        for c in range(tiles):
            with rasterio.open(chips[(r * tiles + c) * 7 % len(chips)]) as src:  # mixed classes
                row.append(src.read())
        rows.append(np.concatenate(row, axis=2))
    data = np.concatenate(rows, axis=1)
    profile.update(width=data.shape[2], height=data.shape[1])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_sigterm_cancels_like_ctrl_c_and_leaves_nothing(shared, tmp_path):
    """What a GUI's cancel or a scheduler sends: SIGTERM to the worker's process group. The
    engine's hidden temporary files go, and the worker says so on its protocol."""
    import os
    import signal

    from ofa_explore.cli import EXIT_CANCELLED

    if os.name != "posix":
        pytest.skip("SIGTERM handling is POSIX only")
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    scene = _mosaic(shared, tmp_path / "in" / "mosaic.tif", tiles=24)  # 1024 tiles, 128 batches
    command = [
        sys.executable,
        "-m",
        "ofa_explore",
        "classify",
        str(scene),
        "-o",
        str(tmp_path / "out" / "out.tif"),
        "--progress",
        "json",
    ]
    with process_group(command, env={**os.environ, "OMP_NUM_THREADS": "1"}) as proc:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if json.loads(line)["event"] == "progress":
                break
        assert any(p.name.startswith(".out.tif.") for p in (tmp_path / "out").iterdir())  # running
        os.killpg(proc.pid, signal.SIGTERM)
        lines += proc.stdout.readlines()
        assert proc.wait(timeout=60) == EXIT_CANCELLED, proc.stderr.read()
    events = _events("".join(lines))
    assert events[0]["event"] == "start" and events[1]["event"] == "progress"
    assert events[1]["done"] < events[1]["total"]
    assert events[-1] == {"event": "cancelled", "message": "cancelled; nothing was written"}
    assert list((tmp_path / "out").iterdir()) == []  # no output, no hidden temporary file


def test_bands_pick_file_bands_before_detection(shared, tmp_path, capsys):
    import numpy as np
    import rasterio

    chip = shared / "eurosat" / "River" / "River_1.tif"
    all_bands = ",".join(str(b) for b in range(1, 14))  # the file's order is s2_l1c's order
    assert cli(["embed", str(chip), "-o", str(tmp_path / "a.tif"), "-q"]) == 0
    assert cli(["embed", str(chip), "-o", str(tmp_path / "b.tif"), "-q", "--bands", all_bands]) == 0
    # a run of bands as GIS users write it ('1-12' said: give band numbers ... separated by
    # commas), also beside single numbers
    assert cli(["embed", str(chip), "-o", str(tmp_path / "c.tif"), "-q", "--bands", "1-13"]) == 0
    assert (
        cli(["embed", str(chip), "-o", str(tmp_path / "d.tif"), "-q", "--bands", "1-9,10-13"]) == 0
    )
    for other in ("b.tif", "c.tif", "d.tif"):
        with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / other) as b:
            assert a.count == b.count and np.array_equal(a.read(), b.read())
    capsys.readouterr()

    naip = shared / "naip" / "m_4709963_se_14_1_20200831.tif"  # R, G, B, NIR
    assert (
        cli(
            [
                "embed",
                str(naip),
                "-o",
                str(tmp_path / "rgb.tif"),
                "--bands",
                "1,2,3",
                "--progress",
                "json",
            ]
        )
        == 0
    )
    events = _events(capsys.readouterr().out)
    assert events[0]["modality"] == "rgb" and events[0]["bands"] == 3
    assert events[-1]["event"] == "result" and events[-1]["modality"] == "rgb"

    assert cli(["embed", str(naip), "-o", str(tmp_path / "x.tif"), "--bands", "4,3,5"]) == 2
    err = capsys.readouterr().err
    assert "band 5 does not exist" in err and "has 4 bands" in err and "numbered from 1" in err
    assert cli(["embed", str(naip), "-o", str(tmp_path / "x.tif"), "--bands", "3,3,2"]) == 2
    assert "picked twice" in capsys.readouterr().err
    assert not (tmp_path / "x.tif").exists()
    for bad in ("red,green", "4-2"):  # not numbers, or a run backwards: a usage error
        with pytest.raises(SystemExit):
            cli(["embed", str(naip), "-o", str(tmp_path / "x.tif"), "--bands", bad])
        assert "separated by commas (a run as first-last)" in capsys.readouterr().err


def test_a_scene_folder_or_a_quoted_pattern_of_band_files(shared, tmp_path, capsys):
    """Landsat-8's band files as downloaded: the folder, or a pattern quoted so that the shell
    leaves it (with -o FILE it named no file: 'raster not found: .../B*.tif')."""
    folder = shared / "landsat" / "l8_gulf_coast"
    for source in (str(folder), str(folder / "B*.tif")):
        out = tmp_path / f"{len(source)}.tif"
        assert cli(["embed", source, "-o", str(out), "--progress", "json"]) == 0
        events = _events(capsys.readouterr().out)
        assert events[0]["modality"] == "landsat_oli_l1" and events[0]["bands"] == 8
    assert cli(["embed", str(tmp_path / "none*.tif"), "-o", str(tmp_path / "x.tif")]) == 2
    assert "no file matches" in capsys.readouterr().err


def test_published_weights_by_name_wherever_a_checkpoint_is_taken(
    shared, tmp_path, monkeypatch, capsys
):
    """`--checkpoint dofa-base-v1`: the published file (here one the test builds, placed in the
    cache as a download would) is converted once and kept converted; `ofa convert` prints its
    report and stores licence, citation and the source file's name, not the user's path."""
    import published_layouts as layouts
    import torch

    from ofa_explore import load_model, read_metadata
    from ofa_explore.weights import WEIGHTS

    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("OFA_EXPLORE_CACHE", str(cache))
    torch.save(
        layouts.dofa_v1(D=768, depth=1, extras=("fc_norm",)),  # as TorchGeo files
        cache / WEIGHTS["dofa-base-v1"].filename,
    )
    naip = next((shared / "naip").glob("*.tif"))
    assert (
        cli(
            [
                "embed",
                str(naip),
                "-o",
                str(tmp_path / "emb.tif"),
                "-q",
                "--checkpoint",
                "dofa-base-v1",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    meta = read_metadata(cache / "dofa-base-v1.safetensors")  # converted once, kept
    assert meta["provenance"]["weights"] == "dofa-base-v1"
    assert meta["config"]["pool_norm"] is True
    assert load_model("dofa-base-v1").config.embed_dim == 768
    with pytest.raises(FileNotFoundError, match="nor the name of published weights"):
        load_model("dofa-bsae-v1")

    out = tmp_path / "dofa.safetensors"
    assert (
        cli(
            [
                "convert",
                str(cache / WEIGHTS["dofa-base-v1"].filename),
                "--from",
                "dofa-base-v1",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "tensors mapped" in printed and "licence: CC-BY-4.0" in printed
    provenance = read_metadata(out)["provenance"]
    assert provenance["source_file"] == WEIGHTS["dofa-base-v1"].filename
    assert str(tmp_path) not in json.dumps(provenance)  # no local path of the user's
    assert provenance["citation"].startswith("Xiong") and provenance["conversion"][0]
    assert cli(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("ofa_explore_version  0.1") for line in lines)  # aligned


def test_exit_codes_tell_bad_input_from_a_bug(tmp_path, capsys, monkeypatch):
    """Only an OFAError is bad input (2, one line in the command line's words); any other
    exception is a bug: exit 1 with its traceback, and a "failed" error event for workers."""
    from ofa_explore import cli as cli_module
    from ofa_explore import cli_raster
    from ofa_explore.errors import EXIT_BAD_INPUT, EXIT_FAILED, BadInput

    def bad_input(args):
        raise BadInput("no good", "change {modality} or {overwrite}")

    def bug(args):
        raise ValueError("an internal slip")

    monkeypatch.setattr(cli_module, "_cmd_modalities", bad_input)
    assert cli(["modalities"]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err == "ofa modalities: error: no good; change --modality or --overwrite\n"
    monkeypatch.setattr(cli_module, "_cmd_modalities", bug)
    assert cli(["modalities"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert "Traceback" in err and "ValueError: an internal slip" in err and "a bug" in err

    monkeypatch.setattr(cli_raster, "cmd_predict", bug)
    assert cli(["embed", "x.tif", "-o", str(tmp_path / "e.tif"), "--progress", "json"]) == 1
    captured = capsys.readouterr()
    event = _events(captured.out)[-1]
    assert event["event"] == "error" and event["kind"] == "failed"
    assert "an internal slip" in event["message"] and "Traceback" in captured.err


def test_missing_and_unreadable_rasters_are_bad_input(tmp_path, capsys):
    (tmp_path / "notes.tif").write_text("this is not a raster")
    for name, says in (("missing.tif", "raster not found"), ("notes.tif", "cannot read")):
        assert (
            cli(
                ["embed", str(tmp_path / name), "-o", str(tmp_path / "e.tif"), "--progress", "json"]
            )
            == 2
        )
        event = _events(capsys.readouterr().out)[-1]
        assert event["event"] == "error" and says in event["problem"], event
    assert (
        cli(["embed", str(tmp_path / "notes.tif"), "-o", str(tmp_path / "e.tif"), "--workers", "2"])
        == 2
    )
    err = capsys.readouterr().err
    assert "--workers" in err and "{" not in err and "Traceback" not in err
