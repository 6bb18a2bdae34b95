"""The QGIS plugin's Qt-free engine module (qgis_plugin/ofa_explore_qgis/engine.py) against the
real engine: header reading agrees with ofa_explore's, the worker runs the real CLI and streams
its JSON progress, a cancel stops the job and leaves nothing (the warm worker itself:
tests/test_worker.py). Runs without QGIS, on the plugin as its build stages it (with its _shared
copy of protocol.py and errors.py)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "build_qgis_plugin", ROOT / "scripts" / "build_qgis_plugin.py"
)
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)
_STAGED = tempfile.TemporaryDirectory(prefix="ofa-plugin-")  # removed when the session ends
_build.stage(_STAGED.name)
sys.path.insert(0, _STAGED.name)
try:
    engine = importlib.import_module("ofa_explore_qgis.engine")
    install = importlib.import_module("ofa_explore_qgis.install")
    layers = importlib.import_module("ofa_explore_qgis.layers")
    shared = importlib.import_module("ofa_explore_qgis._shared.protocol")
    shared_errors = importlib.import_module("ofa_explore_qgis._shared.errors")
finally:
    sys.path.remove(_STAGED.name)


@pytest.fixture(scope="module")
def runner():
    return engine.probe(sys.executable, "test")


def test_probe_finds_the_package_and_its_files(runner, tmp_path):
    from ofa_explore.pretrained import shipped_checkpoint_path

    assert runner.shipped_checkpoint == shipped_checkpoint_path()
    assert {"s2_l1c", "landsat_etm", "rgbn"} <= {m["name"] for m in runner.sensors()}
    with pytest.raises(engine.EngineError, match="does not exist"):
        engine.probe(str(tmp_path / "python"))
    with pytest.raises(engine.EngineError, match="ofa-explore is not installed"):
        engine.probe("/usr/bin/python3")


def test_model_info_is_the_checkpoint_metadata(runner, tmp_path):
    from ofa_explore.checkpoint import read_metadata

    info = engine.read_model_info(runner.shipped_checkpoint)
    meta = read_metadata(runner.shipped_checkpoint)
    assert info.modalities == meta["modalities"] and info.heads == meta["heads"]
    assert info.by_wavelength is True
    bad = tmp_path / "weights.pth"
    bad.write_bytes(b"\x80\x02not a safetensors file")
    with pytest.raises(engine.EngineError, match="is not an OFA Explore model"):
        engine.read_model_info(bad)


def test_sensor_choices_and_checks(runner):
    model = engine.read_model_info(runner.shipped_checkpoint)
    registry = runner.sensors()
    s2 = [
        layers.Band(i + 1, name)
        for i, name in enumerate(next(m for m in registry if m["name"] == "s2_l1c")["bands"])
    ]
    choices = layers.sensor_choices(model, registry, s2)
    assert choices[0].label == "auto (looks like Sentinel-2 L1C)" and choices[0].modality is None
    own = [c.modality for c in choices if "by wavelength" not in c.label][1:]
    assert own == list(model.modalities)
    assert "landsat_etm" in [c.modality for c in choices if "by wavelength" in c.label]
    assert layers.check_selection(choices[0], s2, registry) is None
    five = s2[:5]  # named as five of Sentinel-2 L1C's bands: the engine reads them alone
    auto = layers.sensor_choices(model, registry, five)[0]
    assert auto.label == "auto (looks like Sentinel-2 L1C bands B01, B02, B03, B04, B05)"
    assert layers.check_selection(auto, five, registry) is None
    assert layers.read_as(auto, five, registry) == "s2_l1c_b01_b02_b03_b04_b05"
    assert "this layer looks like Sentinel-2 L1C bands B01" in layers.head_problem(
        {"modality": "s2_l1c"}, layers.read_as(auto, five, registry), registry
    )  # a head trained on all 13 bands is refused by the engine: greyed out in the dialog
    unnamed = [layers.Band(i + 1, f"Band {i + 1}") for i in range(5)]
    assert "No sensor the model knows has 5 bands" in layers.check_selection(
        choices[0], unnamed, registry
    )
    s2_choice = next(c for c in choices if c.modality == "s2_l1c")
    assert layers.check_selection(s2_choice, five, registry) is None  # some of its bands
    assert layers.read_as(s2_choice, five, registry) == "s2_l1c_b01_b02_b03_b04_b05"
    assert layers.read_as(s2_choice, s2, registry) == "s2_l1c"
    assert "has 13 bands but 5 bands are selected" in layers.check_selection(
        s2_choice, unnamed, registry
    )
    # unnamed bands ticked of a 13-band layer (a EuroSAT chip): those bands of Sentinel-2 L1C
    chip = [layers.Band(i + 1, f"Band {i + 1}", data_type="UInt16") for i in range(13)]
    ticked = [chip[i] for i in (1, 2, 3, 7)]
    auto = layers.sensor_choices(model, registry, ticked, 13)[0]
    assert auto.label == "auto (looks like Sentinel-2 L1C bands B02, B03, B04, B08)"
    assert layers.check_selection(auto, ticked, registry, 13) is None
    assert layers.check_selection(s2_choice, ticked, registry, 13) is None
    assert layers.read_as(s2_choice, ticked, registry, 13) == "s2_l1c_b02_b03_b04_b08"
    tagged = [layers.Band(i + 1, f"b{i}", 0.4 + 0.01 * i) for i in range(5)]
    assert layers.check_selection(choices[0], tagged, registry) is None  # by their wavelengths
    assert layers.sensor_choices(model, registry, tagged)[0].label.endswith("wavelengths)")
    # a layer of GDAL's Sentinel-2 driver (or saved from one): bands named and tagged with
    # their wavelengths, red first; the names say what they are (by their tags, they were
    # read as an unknown sensor of those wavelengths, without Sentinel-2's statistics)
    gdal_s2 = [
        layers.Band(i + 1, f"{name}, central wavelength {nm} nm", nm / 1000, False, "UInt16")
        for i, (name, nm) in enumerate([("B4", 665), ("B3", 560), ("B2", 490), ("B8", 842)])
    ]
    auto = layers.sensor_choices(model, registry, gdal_s2)[0]
    assert auto.label == "auto (looks like Sentinel-2 L1C bands B04, B03, B02, B08)"
    assert layers.read_as(auto, gdal_s2, registry) == "s2_l1c_b04_b03_b02_b08"


def test_unnamed_bands_of_a_common_export_can_be_named_in_the_sensor_list(runner, shared, tmp_path):
    """Four unnamed 16-bit bands (Sentinel-2's 10 m bands as many exports hold them) fit no
    sensor of four bands, and Sentinel-2 said 'has 13 bands but 4 are selected': a dead end.
    The Sensor list offers them by name, and the engine reads them so."""
    import numpy as np
    import rasterio

    model = engine.read_model_info(runner.shipped_checkpoint)
    registry = runner.sensors()
    four = [layers.Band(i + 1, f"Band {i + 1}", data_type="UInt16") for i in range(4)]
    offered = {c.modality: c for c in layers.sensor_choices(model, registry, four)}
    choice = offered["s2_l2a_b02_b03_b04_b08"]
    assert choice.label == "Sentinel-2 L2A: 10 m bands B02, B03, B04, B08 [s2_l2a_b02_b03_b04_b08]"
    assert "s2_l1c_b02_b03_b04_b08" in offered and "s2_l2a_b04_b03_b02" not in offered
    assert layers.check_selection(choice, four, registry) is None
    assert layers.read_as(choice, four, registry) == "s2_l2a_b02_b03_b04_b08"
    assert layers.sensor_name(registry, choice.modality) == (
        "Sentinel-2 L2A bands B02, B03, B04, B08"
    )
    three = {c.modality for c in layers.sensor_choices(model, registry, four[:3])}
    assert "s2_l2a_b04_b03_b02" in three and "s2_l2a_b02_b03_b04_b08" not in three
    rgb = [layers.Band(i + 1, f"Band {i + 1}", data_type="Byte") for i in range(3)]
    assert "s2_l2a_b04_b03_b02" not in {  # an 8-bit RGB layer is no Sentinel-2 export
        c.modality for c in layers.sensor_choices(model, registry, rgb)
    }

    folder = shared / "s2_scenes" / "chesapeake"
    bands = []
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(folder / f"{band}.tif") as src:
            profile = src.profile
            bands.append(src.read(1, window=rasterio.windows.Window(0, 0, 128, 128)))
    path = tmp_path / "export.tif"
    profile.update(count=4, width=128, height=128, driver="GTiff")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack(bands))  # no band names
    auto = engine.Job("embed", str(path), str(tmp_path / "auto.tif"))
    with pytest.raises(engine.EngineError, match="such as s2_l1c_b02_b03_b04_b08 or"):
        engine.run(runner, auto)
    job = engine.Job("embed", str(path), str(tmp_path / "e.tif"), modality=choice.modality)
    info = engine.run(runner, job)
    assert info["modality"] == "s2_l2a_b02_b03_b04_b08" and (tmp_path / "e.tif").is_file()


def test_outputs_never_replace_and_names_stay_unique(tmp_path):
    first = shared.layer_output(tmp_path, "My scene: 2024", "embed")
    assert first.name == "My_scene_2024_embedding.tif"
    first.with_name(first.stem + "_pca.tif").write_bytes(b"x")
    assert (
        shared.layer_output(tmp_path, "My scene: 2024", "embed").name
        == "My_scene_2024_embedding_2.tif"
    )
    assert engine.unique_name("a classes", {"a classes", "a classes (2)"}) == "a classes (3)"
    folder = engine.output_folder(None, str(tmp_path))
    assert folder == tmp_path / "ofa_explore_outputs" and folder.is_dir()


def test_run_streams_progress_and_returns_the_result(runner, shared, tmp_path):
    chip = shared / "eurosat" / "River" / "River_1.tif"
    seen: list[float] = []
    job = engine.Job("classify", str(chip), str(tmp_path / "classes.tif"), bands=[])
    info = engine.run(runner, job, progress=seen.append)
    assert info["path"] == str(tmp_path / "classes.tif") and info["modality"] == "s2_l1c"
    assert info["classes"][0] == "AnnualCrop" and seen[-1] == 100.0
    bad = engine.Job("classify", str(chip), str(tmp_path / "x.tif"), bands=[1, 14])
    with pytest.raises(engine.EngineError, match="Band 14 does not exist") as err:
        engine.run(runner, bad)
    assert "check Bands" in str(err.value) and "--" not in str(err.value)  # the dialog's words
    naip = engine.Job(
        "classify",
        str(next((shared / "naip").glob("*.tif"))),
        str(tmp_path / "y.tif"),
        modality="rgbn",
    )
    with pytest.raises(engine.EngineError) as err:
        engine.run(runner, naip)
    assert "s2_l1c" in str(err.value) and "Traceback" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif"]


def test_cancel_stops_the_process_group_and_leaves_nothing(runner, shared, tmp_path):
    import numpy as np
    import rasterio

    chips = sorted((shared / "eurosat").glob("*/*.tif"))[:36]
    with rasterio.open(chips[0]) as src:
        profile = src.profile
    rows = [
        np.concatenate([rasterio.open(chips[(r * 6 + c) % 36]).read() for c in range(6)], 2)
        for r in range(6)
    ]
    data = np.tile(np.concatenate(rows, axis=1), (1, 4, 4))  # 1536 px square
    profile.update(width=data.shape[2], height=data.shape[1])
    scene = tmp_path / "in" / "scene.tif"
    scene.parent.mkdir()
    with rasterio.open(scene, "w", **profile) as dst:
        dst.write(data)
    out = tmp_path / "out"
    out.mkdir()
    started: list[float] = []
    t0 = time.monotonic()
    with pytest.raises(engine.Cancelled):
        engine.run(
            runner,
            engine.Job("embed", str(scene), str(out / "emb.tif")),
            progress=started.append,
            cancelled=lambda: bool(started),
        )
    assert started and time.monotonic() - t0 < 60
    assert list(out.iterdir()) == []  # no output, no hidden temporary file


def test_errors_in_the_plugins_words():
    """The engine's error event carries the fix with placeholders; the plugin renders them as
    its fields, and an unexpected failure points to the log."""
    event = shared_errors.BadInput(
        "13 bands could be any of a, b", "say which with {modality}"
    ).to_event()
    assert event["message"].endswith("say which with --modality")
    text = engine.error_text(event)
    assert text == "13 bands could be any of a, b; say which with Sensor"  # its field
    failed = shared.error_event(shared.FAILED, "unexpected TypeError: x")
    assert "in the log" in engine.error_text(failed)


def test_the_plugin_ships_the_packages_own_protocol():
    """The staged copy is the package's file, not a second one kept by hand."""
    from ofa_explore import errors, protocol

    assert Path(shared.__file__).read_text() == Path(protocol.__file__).read_text()
    assert Path(shared_errors.__file__).read_text() == Path(errors.__file__).read_text()
    plugin = ROOT / "qgis_plugin"
    for name in (
        "SHIPPED_CHECKPOINT = ",
        "METADATA_KEY = ",
        "gis_words",
        '"nano"',
        "int.from_bytes",
        '"autodetect"',
        '"_classes"',
        "re.sub(",
    ):
        assert not [p for p in plugin.rglob("*.py") if name in p.read_text()], name


@pytest.mark.slow  # about 20 s: a venv, pip, an engine process
def test_the_zips_wheel_installs_a_working_engine_of_the_same_version(
    shared, tmp_path, monkeypatch
):
    """The wheel the plugin's zip carries, installed by Set up engine…'s own pip step into a
    new venv, is a working engine of the package's version (registry, shipped model, a
    classified chip). PyTorch and the libraries come from this test environment (a .pth line:
    the ones pip would fetch), and pip runs without any index: nothing is downloaded."""
    import subprocess
    import sysconfig

    import ofa_explore

    wheel = _build.build_wheel(tmp_path / "wheels")
    assert wheel.name == f"ofa_explore-{ofa_explore.__version__}-py3-none-any.whl"
    assert wheel.stat().st_size < 20e6  # the shipped model is most of it
    folder = tmp_path / "engine"
    python = str(install.venv_python(folder))
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([python, "-m", "pip", "uninstall", "-q", "-y", "setuptools"], check=True)
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "reuse.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for name in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("OFA_EXPLORE_WARM", "0")  # one process for the job, ended with it
    steps = install.install_steps(install.pip_install(python), str(wheel), "cuda")
    assert len(steps) == 1 and steps[0].end == 100  # Linux: PyTorch comes with the package
    seen: list[tuple[float, str]] = []
    lines: list[str] = []
    install.run_step(steps[0], lambda p, what: seen.append((p, what)), lambda: False, lines.append)
    assert seen[0] == (8, "installing ofa-explore and its libraries") and seen[-1][0] == 100
    assert [p for p, _ in seen] == sorted(p for p, _ in seen)
    assert any(ln.startswith("Successfully installed ofa-explore") for ln in lines), lines[-5:]

    found = engine.probe(python, "settings")
    assert found.version == ofa_explore.__version__
    assert found.package.is_relative_to(folder) and found.shipped_checkpoint.is_file()
    assert {"s2_l1c", "landsat_etm", "rgbn"} <= {m["name"] for m in found.sensors()}
    chip = shared / "eurosat" / "River" / "River_1.tif"
    info = engine.run(found, engine.Job("classify", str(chip), str(tmp_path / "classes.tif")))
    assert info["classes"][0] == "AnnualCrop" and Path(info["path"]).is_file()


def test_pip_lines_move_the_setup_progress_forward():
    """pip 24.1+ with ``--progress-bar raw`` prints a download's bytes; the bar follows them,
    never back (pip repeats its stages per package), and says what it downloads."""
    reader = install.PipProgress("downloading PyTorch")
    shares = []
    for line in (
        "Looking in indexes: https://download.pytorch.org/whl/cpu",
        "Collecting torch",
        "  Downloading https://download.pytorch.org/whl/cpu/torch-2.14.1%2Bcpu-cp311.whl (190 MB)",
        "Progress 0 of 190000000",
        "Progress 95000000 of 190000000",
        "Progress 190000000 of 190000000",
        "Collecting filelock (from torch)",
        "  Downloading filelock-3.20.0-py3-none-any.whl (16 kB)",
        "Installing collected packages: filelock, torch",
        "Successfully installed filelock-3.20.0 torch-2.14.1+cpu",
    ):
        if reader.feed(line):
            shares.append(round(reader.share, 2))
        if line == "Progress 95000000 of 190000000":
            assert reader.detail == "downloading torch-2.14.1%2Bcpu-cp311.whl (95 of 190 MB)"
    assert shares == [0.05, 0.1, 0.1, 0.45, 0.8, 0.8, 0.8, 0.85, 1.0]
    assert not reader.feed("Requirement already satisfied: numpy in ./lib (2.1.3)")


def error_texts() -> list[tuple[str, str]]:
    """(where, text) of every problem and fix the package raises as an OFAError, its f-string
    parts joined ("?" for a value)."""
    import ast

    names = {"BadInput", "NotFound", "OutputError", "OutputExists", "OutputNotWritable"}
    names |= {"MissingPart", "ModelMismatch", "RasterError", "OFAError"}
    found = []
    for path in sorted((ROOT / "ofa_explore").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            func = getattr(node, "func", None)
            if not isinstance(node, ast.Call) or getattr(func, "id", None) not in names:
                continue
            for arg in node.args[:2]:
                parts = arg.values if isinstance(arg, ast.JoinedStr) else [arg]
                text = "".join(
                    p.value if isinstance(p, ast.Constant) and isinstance(p.value, str) else "?"
                    for p in parts
                )
                found.append((f"{path.relative_to(ROOT)}:{node.lineno}", text))
    return found


def test_engine_messages_read_in_qgis_words():
    """The engine's problems and fixes, as QGIS shows them: no command-line flags ("-o",
    "--modality"), no Python arguments ("modality="), no doubled articles ("another the");
    commands in backticks and Python calls (API-only paths) are shown as they are."""
    import re

    texts = error_texts()
    assert len(texts) > 100  # the scan sees the package's errors
    bad = []
    for where, text in texts:
        shown = shared_errors._words(text, engine.QGIS_WORDS)
        shown = re.sub(r"`[^`]*`|\w+\([^)]*\)", "", shown)
        if re.search(r"(^|[\s(])--?[a-z]|\b[a-z_]+=[^=]|\b(the|a|another) the\b", shown):
            bad.append(f"{where}: {shown}")
    assert not bad, "\n".join(bad)
