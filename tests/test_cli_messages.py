"""Issue 23: no silent garbage, every message one line in the command line's words. Each test
runs the real `ofa` (in-process, or a subprocess where GDAL's stderr or import time matters) and
checks the exit code, the one line on stderr, that it names what the user gave, and that nothing
is left on disk."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ofa_explore.cli import main as cli
from ofa_explore.demo import sample_path
from ofa_explore.errors import EXIT_BAD_INPUT, EXIT_SCENES_FAILED

ROOT = Path(__file__).resolve().parents[1]
RIVER, FOREST = str(sample_path("eurosat_river.tif")), str(sample_path("eurosat_forest.tif"))


def run(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    """Exit code, stdout lines and stderr lines of `ofa ARGS`."""
    code = cli(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def one_error(capsys, *args: str) -> str:
    """`ofa ARGS` must exit 2 with exactly one `ofa COMMAND: error:` line; that line."""
    code, out, err = run(capsys, *args)
    assert code == EXIT_BAD_INPUT and out == [] and len(err) == 1, (code, out, err)
    assert err[0].startswith(f"ofa {args[0]}: error: ") and "{" not in err[0], err
    return err[0]


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: the argument checks come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr("ofa_explore.pretrained.load_model", refuse)
    monkeypatch.setattr("ofa_explore.scenes._model", refuse)


# 1 ------------------------------------------------------------ devices
def test_a_device_this_machine_lacks_is_one_line_before_anything_loads(
    tmp_path, capsys, monkeypatch, no_model
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = str(tmp_path / "out.tif")
    line = one_error(capsys, "embed", RIVER, "-o", out, "--device", "cuda")
    assert line.endswith("--device cuda: no CUDA GPU is available here; use --device auto or cpu")
    line = one_error(capsys, "embed", RIVER, "-o", out, "--device", "mps")
    assert "--device mps: no Apple MPS GPU is available here; use --device auto or cpu" in line
    line = one_error(capsys, "classify", RIVER, "-o", out, "--device", "gpu")
    assert "--device gpu is not a device; use --device auto, cpu, cuda, cuda:1 or mps" in line
    # several scenes: refused before the folder is made
    line = one_error(
        capsys, "embed", RIVER, FOREST, "-o", str(tmp_path / "maps"), "--device", "cuda"
    )
    assert "--device cuda" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    line = one_error(capsys, "embed", RIVER, "-o", out, "--device", "cuda:1")
    assert "--device cuda:1: this machine has 1 CUDA GPU (cuda:0); use --device cuda:0" in line
    assert list(tmp_path.iterdir()) == []


def test_the_engine_names_a_bad_device_too():
    from ofa_explore.engine import pick_device
    from ofa_explore.errors import BadInput

    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(BadInput, match="is not a device") as err:
        pick_device("gpu")
    assert str(err.value).startswith("device= gpu")  # the API's words


# 2 ------------------------------------------------------------ unwritable outputs
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc")
def test_an_output_that_cannot_be_written_names_the_users_path(tmp_path, capsys, no_model):
    line = one_error(capsys, "embed", RIVER, "-o", "/proc/x.tif")
    assert "cannot write /proc/x.tif: the folder /proc is not writable; choose another -o" in line
    assert ".tmp" not in line and "Errno" not in line
    line = one_error(capsys, "embed", RIVER, FOREST, "-o", "/proc")
    assert line.endswith("the output folder /proc is not writable; choose another -o")
    line = one_error(capsys, "embed", RIVER, FOREST, "-o", "/proc/maps")
    assert "cannot make the output folder /proc/maps" in line
    missing = tmp_path / "nope" / "x.tif"
    line = one_error(capsys, "embed", RIVER, "-o", str(missing))
    assert f"cannot write {missing}: the folder {missing.parent} does not exist" in line
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_names_the_final_file(tmp_path):
    from ofa_explore.errors import OutputNotWritable
    from ofa_explore.fileio import atomic_output

    if not Path("/proc/self").is_dir():
        pytest.skip("needs Linux's /proc")
    with pytest.raises(OutputNotWritable, match=r"cannot write /proc/y\.bin: the folder /proc"):
        with atomic_output("/proc/y.bin"):
            pass


# 3 ------------------------------------------------------------ -o b6.txt
def test_an_output_folder_named_like_a_file_is_refused(tmp_path, capsys, no_model):
    from ofa_explore.scenes import check_folder

    for inputs in ([RIVER, FOREST], [RIVER]):
        line = one_error(capsys, "embed", *inputs, "-o", str(tmp_path / "b6.txt"))
        assert f"-o {tmp_path / 'b6.txt'} is neither a .tif (one scene) nor a folder name" in line
        assert f"give a folder such as {tmp_path / 'b6'}/" in line
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "run.txt").mkdir()  # a folder that exists is taken as it is
    assert check_folder(tmp_path / "run.txt") == tmp_path / "run.txt"
    assert check_folder(tmp_path / "conf.d") == tmp_path / "conf.d"  # no file's ending
    assert check_folder(tmp_path / "v1.5") == tmp_path / "v1.5"


# 4 ------------------------------------------------------------ GDAL's own messages
def _truncated_geotiff(tmp_path: Path) -> Path:
    """A GeoTIFF whose overviews' directories lie past the cut: GDAL prints `ERROR 1:
    TIFFFetchDirectory...` lines of its own while reading it."""
    import rasterio
    import rasterio.shutil
    from rasterio.enums import Resampling

    whole = tmp_path / "whole.tif"
    rasterio.shutil.copy(sample_path("naip_rgbn_2020.tif"), whole, driver="GTiff")
    with rasterio.open(whole, "r+") as dst:
        dst.build_overviews([2, 4], Resampling.average)
    cut = tmp_path / "cut.tif"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    whole.unlink()
    return cut


def test_a_truncated_geotiff_is_our_one_line_without_gdals(tmp_path):
    cut = _truncated_geotiff(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("CPL_LOG", None)
    gdal = subprocess.run(  # the file makes GDAL print on its own, where nothing stops it
        [sys.executable, "-c", f"import rasterio; rasterio.open({str(cut)!r}).read(1)"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert "ERROR 1: TIFF" in gdal.stderr
    out = tmp_path / "out.tif"
    res = subprocess.run(
        [sys.executable, "-m", "ofa_explore", "embed", str(cut), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert res.returncode == EXIT_BAD_INPUT and res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ofa embed: error: "), res.stderr
    assert str(cut) in lines[0] and "corrupt or truncated" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tif"]


# 5 ------------------------------------------------------------ unknown modality
def test_an_unknown_modality_is_one_short_line_with_did_you_mean(tmp_path, capsys, no_model):
    line = one_error(
        capsys, "embed", RIVER, "-o", str(tmp_path / "e.tif"), "--modality", "sentinel2"
    )
    assert line == (
        "ofa embed: error: unknown modality 'sentinel2'; did you mean s2_l1c or s2_l2a? "
        "(`ofa modalities` lists them)"
    )
    line = one_error(capsys, "modalities", "sentinel-1")
    assert line.endswith("did you mean s1_grd? (`ofa modalities` lists them)")
    line = one_error(capsys, "modalities", "landsat8")
    assert "did you mean landsat_oli or landsat_oli_l1?" in line
    line = one_error(
        capsys, "embed", RIVER, FOREST, "-o", str(tmp_path / "m"), "--modality", "s2-l1"
    )
    assert "unknown modality 's2-l1'; did you mean s2_l1c?" in line
    line = one_error(capsys, "modalities", "sentinel9")  # nothing close: the names, still short
    assert "choose one of s1, s2," in line and "register_modality" not in line
    assert len(line) < 250 and list(tmp_path.iterdir()) == []


def test_python_still_hears_how_to_register_a_sensor():
    from ofa_explore import get_modality

    with pytest.raises(KeyError) as err:
        get_modality("sentinel2")
    assert "did you mean s2_l1c or s2_l2a? (list_modalities() lists them)" in str(err.value)
    assert "register_modality" in str(err.value)


# 6 ------------------------------------------------------------ --overwrite, in the CLI's words
def test_an_existing_output_says_overwrite_in_the_clis_words(tmp_path, capsys):
    taken = tmp_path / "taken.tif"
    taken.write_text("keep me")
    line = one_error(capsys, "embed", RIVER, "-o", str(taken), "-q")
    assert line.endswith(f"{taken} exists; pass --overwrite to replace it")
    maps = tmp_path / "maps"
    maps.mkdir()
    for name in ("eurosat_river_embed.tif", "eurosat_forest_embed.tif"):
        (maps / name).write_text("keep me")
    code, out, err = run(capsys, "embed", RIVER, FOREST, "-o", str(maps), "-q")
    assert code == EXIT_SCENES_FAILED and out == []
    failed = [line for line in err if ": failed: " in line]
    assert len(failed) == 2 and all(
        line.endswith("pass --overwrite to replace it") for line in failed
    )
    assert "overwrite=True" not in "\n".join(err)
    assert err[-1].endswith("2 of 2 scenes failed (listed above); nothing was written")
    assert taken.read_text() == "keep me"
    assert sorted(p.name for p in maps.iterdir()) == [
        "eurosat_forest_embed.tif",
        "eurosat_river_embed.tif",
    ]


# 7 ------------------------------------------------------------ the cluster extra
def test_dask_without_the_cluster_extra_makes_nothing(tmp_path, capsys, monkeypatch, no_model):
    from ofa_explore.errors import MissingPart
    from ofa_explore.scenes import predict_scenes

    monkeypatch.setitem(sys.modules, "distributed", None)  # dask.distributed not installed
    out = tmp_path / "maps"
    line = one_error(capsys, "embed", RIVER, FOREST, "-o", str(out), "--dask")
    assert line.endswith(
        "--dask needs dask.distributed, which is not installed; pip install 'ofa-explore[cluster]'"
    )
    line = one_error(capsys, "embed", RIVER, "-o", str(out), "--scheduler", "tcp://10.0.0.5:8786")
    assert "--scheduler needs dask.distributed" in line
    with pytest.raises(MissingPart, match=r"cluster='local' needs dask\.distributed"):
        predict_scenes([Path(RIVER)], "embed", out, cluster="local")
    assert list(tmp_path.iterdir()) == []


# 8 ------------------------------------------------------------ several scenes
def test_several_scenes_end_with_a_summary_line(tmp_path, capsys):
    out = tmp_path / "maps"
    code, printed, err = run(capsys, "embed", RIVER, FOREST, "-o", str(out), "-q")
    assert code == 0 and err == ["2 scenes, one after another"]
    assert printed[0].startswith(f"{RIVER} -> {out / 'eurosat_river_embed.tif'} (1 tile of")
    assert re.fullmatch(rf"2 scenes written to {re.escape(str(out))}/ in \d+\.\d s", printed[-1])
    assert len(printed) == 3

    broken = tmp_path / "broken.tif"
    broken.write_text("not a raster")
    code, printed, err = run(capsys, "embed", RIVER, str(broken), "-o", str(tmp_path / "b"), "-q")
    assert code == EXIT_SCENES_FAILED and len(printed) == 1
    assert err[1].startswith(f"{broken}: failed: cannot read")
    assert re.fullmatch(
        "ofa embed: error: 1 of 2 scenes failed \\(listed above\\); the other one was written "
        rf"to {re.escape(str(tmp_path / 'b'))}/ in \d+\.\d s",
        err[-1],
    )
    # every scene failed: no empty folder is left
    code, printed, err = run(capsys, "embed", str(broken), "-o", str(tmp_path / "none"), "-q")
    assert code == EXIT_SCENES_FAILED and not (tmp_path / "none").exists()
    assert err[-1].endswith("1 of 1 scene failed (listed above); nothing was written")


def _fake_result(path, **extra):
    from ofa_explore.engine import PredictionResult

    return PredictionResult(
        task="embed", data=None, path=path, tiles=1, seconds=0.1, device="cpu", **extra
    )


def test_scene_lines_never_run_into_the_bar_and_show_warnings(tmp_path, capsys, monkeypatch):
    """On a terminal the bar is redrawn below each scene's line, never inside it; a scene's
    warnings follow its line; the settings (quicklook) travel to every scene."""
    seen = []

    def fake(model, scene, task, output, *, settings, **kwargs):
        seen.append(settings)
        if "forest" in str(scene):
            raise ValueError("unreadable")
        return _fake_result(output, modality="s2_l1c", warnings=["looks cloudy"])

    monkeypatch.setattr("ofa_explore.scenes.predict_raster", fake)
    monkeypatch.setattr("ofa_explore.scenes._model", lambda checkpoint: None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code = cli(["embed", RIVER, FOREST, "-o", str(tmp_path / "maps"), "--no-quicklook"])
    out, err = capsys.readouterr()
    assert code == EXIT_SCENES_FAILED and [s.quicklook for s in seen] == [False, False]
    assert "%|" in err  # the bar was drawn
    assert out.splitlines()[0] == f"{RIVER} -> {tmp_path / 'maps' / 'eurosat_river_embed.tif'} " + (
        "(1 tile of s2_l1c in 0.1 s)"
    )
    pieces = re.split(r"[\r\n]", err)  # what a terminal shows: the bar is cleared before a line
    assert f"ofa embed: warning: {RIVER}: looks cloudy" in pieces
    assert f"{FOREST}: failed: unreadable" in pieces
    assert err.endswith(
        "1 of 2 scenes failed (listed above); the other one was written to "
        f"{tmp_path / 'maps'}/ in " + err.rsplit(" in ", 1)[1]
    )


# the result's notes, warnings and quicklook -----------------------------------
def test_result_lines_show_quicklook_notes_and_warnings(tmp_path, capsys, monkeypatch):
    import json

    seen = []

    def fake(model, raster, task, output, *, settings, **kwargs):
        seen.append(settings)
        return _fake_result(
            output,
            modality="s2_l1c",
            precision=settings.precision,
            quicklook=output.with_suffix(".png"),
            notes=["read as reflectance x 10000"],
            warnings=["no better than the mean"],
            checks={"hidden_mae": 0.25},
        )

    monkeypatch.setattr("ofa_explore.engine.predict_raster", fake)
    out = tmp_path / "r.tif"
    code, printed, err = run(capsys, "reconstruct", RIVER, "-o", str(out), "-q")
    assert code == 0 and seen[-1].quicklook is True and seen[-1].precision == "auto"
    assert printed[0].startswith(f"wrote {out} and quicklook {out.with_suffix('.png')} (1 tile of")
    assert printed[1] == "  note: read as reflectance x 10000"
    assert err == ["ofa reconstruct: warning: no better than the mean"]
    code, printed, err = run(capsys, "reconstruct", RIVER, "-o", str(out), "--progress", "json")
    result = json.loads(printed[-1])
    assert result["quicklook"] == str(out.with_suffix(".png")) and result["checks"] == {
        "hidden_mae": 0.25
    }
    assert result["notes"] == ["read as reflectance x 10000"] and result["warnings"] == [
        "no better than the mean"
    ]
    assert cli(["reconstruct", RIVER, "-o", str(out), "-q", "--no-quicklook"]) == 0
    assert seen[-1].quicklook is False


# 9 ------------------------------------------------------------ fast help
def test_help_answers_without_torch():
    check = (
        "import ofa_explore.cli, sys; "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'heavy imports'"
    )
    subprocess.run([sys.executable, "-c", check], check=True)
    for args in (["--help"], ["embed", "--help"], ["reconstruct", "--help"]):
        start = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-m", "ofa_explore", *args], capture_output=True, text=True
        )
        assert res.returncode == 0 and "usage: ofa" in res.stdout
        assert time.perf_counter() - start < 2.0, args  # about 0.1 s; torch alone takes 2-4 s
    assert (
        "--mask-ratio"
        in subprocess.run(
            [sys.executable, "-m", "ofa_explore", "reconstruct", "-h"],
            capture_output=True,
            text=True,
        ).stdout
    )


def test_the_parser_from_protocol_agrees_with_the_engine():
    import ofa_explore
    import ofa_explore.change_detection  # noqa: F401 - registers the change task
    from ofa_explore import protocol
    from ofa_explore.cli import published_weights
    from ofa_explore.cli_raster import TASK_OPTIONS
    from ofa_explore.engine import TASKS
    from ofa_explore.weights import WEIGHTS

    assert set(protocol.TASKS) == set(TASKS)  # change registers when change_detection loads
    for name, task in protocol.TASKS.items():
        assert task.options == TASKS[name].options, name
        assert set(task.options) <= set(TASK_OPTIONS)
    assert published_weights() == sorted(WEIGHTS)
    from ofa_explore import OFANet, load_model, set_threads  # the lazy names, as always

    assert OFANet.__module__ == "ofa_explore.model" and callable(load_model)
    assert callable(set_threads) and set(dir(ofa_explore)) >= set(ofa_explore.__all__)
    with pytest.raises(AttributeError):
        ofa_explore.no_such_name  # noqa: B018


# 10 ----------------------------------------------------------- ofa modalities
def test_modalities_columns_fit_the_longest_name(capsys):
    code, printed, err = run(capsys, "modalities")
    assert code == 0 and err == []
    header = printed[0]
    kind, bands = header.index("kind"), header.index("bands")
    for line in printed[1:]:
        name = line.split()[0]
        assert line[kind - 2 : kind] == "  " and line[:kind].rstrip() == name, line
        assert line[kind:bands].split()[0] in ("optical", "sar", "hyperspectral"), line
    assert "landsat_oli_l1optical" not in "\n".join(printed)


# 11 ----------------------------------------------------------- precision
def test_precision_auto_is_the_cli_default_and_exact_where_bf16_is_not_native(
    tmp_path, capsys, monkeypatch
):
    from ofa_explore.cli import build_parser
    from ofa_explore.precision import resolve_precision

    parser = build_parser()
    assert parser.parse_args(["embed", "x.tif", "-o", "y.tif"]).precision == "auto"
    monkeypatch.setattr("ofa_explore.precision.cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    code, printed, _ = run(capsys, "embed", RIVER, "-o", str(tmp_path / "e.tif"), "-q")
    assert code == 0 and printed[0].endswith("on cpu, fp32)")  # auto, and no native bf16
    monkeypatch.setattr("ofa_explore.precision.cpu_has_fast_bf16", lambda: True)
    code, printed, _ = run(capsys, "embed", RIVER, "-o", str(tmp_path / "b.tif"), "-q")
    assert code == 0 and printed[0].endswith("on cpu, bf16)")
    with pytest.raises(SystemExit):
        cli(["embed", "--help"])
    embed_help = " ".join(capsys.readouterr().out.split())  # argparse wraps the lines
    assert "auto (default)" in embed_help and "fp32 for exact results" in embed_help


# 12 ----------------------------------------------------------- README
def test_readme_documents_exit_codes_and_the_precision_default():
    readme = (ROOT / "README.md").read_text()
    for code in ("0", "1", "2", "3", "130"):
        assert re.search(rf"^\| {code} \| ", readme, re.MULTILINE), code
    assert "default **auto**" in readme and "`--precision fp32` for exact" in readme
    assert "--no-quicklook" in readme
