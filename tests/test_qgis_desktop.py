"""The plugin in the real QGIS desktop: `qgis` under Xvfb with the xcb platform (Mesa's LLVM in
the process, as on a user's desktop), the plugin installed from its zip into a fresh profile,
the engine in this test environment's Python (the default pip torch: CUDA build with triton).
tests/qgis_desktop/drive.py clicks Classify layer on a EuroSAT chip and Embed layer on a NAIP
scene; QGIS must not crash nor stall its main thread for more than 0.5 s; both run on one warm
engine worker, which ends with QGIS. In the same session, the first hour's dead ends (issue 24):
the output folder saved in the settings no longer works (the dialog opens anyway, says so and
offers the default), Classify on NAIP (no head fits: greyed with the reason, OK disabled), the
results say what was found, and a cancelled run says so. Then, in a session of its own, Change
between two layers… from the Raster menu on a 600 x 600 px crop of two OSCD dates.
Screenshots: test-artifacts/qgis_desktop/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts" / "qgis_desktop"
QGIS = shutil.which("qgis")
XVFB = shutil.which("xvfb-run")


def profile(tmp_path: Path, engine_python: str, results: Path | str) -> Path:
    """A fresh QGIS profile with the plugin installed from its zip, enabled, and the engine set
    (as Set up engine… leaves it)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_qgis_plugin import build
    finally:
        sys.path.pop(0)
    root = tmp_path / "qgis"  # --profiles-path: QGIS keeps profiles in <root>/profiles/
    profiles = root / "profiles"
    plugins = profiles / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(build(tmp_path / "ofa_explore_qgis.zip")) as zf:
        zf.extractall(plugins)
    ini = profiles / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        "[PythonPlugins]\nofa_explore_qgis=true\n\n"
        f"[ofa_explore]\npython={engine_python}\noutput_folder={results}\n\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\n"
        "allowVersionCheck=false\n"
    )
    return root


@pytest.mark.skipif(
    not (QGIS and XVFB),
    reason="needs the QGIS desktop and Xvfb: `apt-get install qgis xvfb` to run the desktop test",
)
def test_classify_and_embed_in_the_real_qgis_desktop(shared, tmp_path):
    import importlib.util

    import torch

    # the engine is this venv: the default pip torch, whose triton brings its own LLVM
    assert torch.version.cuda and importlib.util.find_spec("triton"), torch.__version__
    results = tmp_path / "results"
    results.mkdir()
    (tmp_path / "old_results.tif").write_bytes(b"a file where a folder was once saved")
    broken = tmp_path / "old_results.tif" / "maps"  # the saved Output folder: cannot be made
    out = tmp_path / "out"
    out.mkdir()
    inputs = tmp_path / "inputs"  # copies: QGIS writes its statistics (.aux.xml) beside them
    inputs.mkdir()
    chip = inputs / "River_1.tif"
    naip = inputs / "m_4709963_se_14_1_20180716.tif"
    shutil.copy(shared / "eurosat" / "River" / chip.name, chip)
    shutil.copy(shared / "naip" / naip.name, naip)
    big = mosaic(shared, inputs / "big_mosaic.tif")
    profiles = profile(tmp_path, sys.executable, broken)
    report = drive(
        tmp_path,
        profiles,
        out,
        OFA_DESKTOP_CHIP=str(chip),
        OFA_DESKTOP_NAIP=str(naip),
        OFA_DESKTOP_BIG=str(big),
        OFA_DESKTOP_RESULTS=str(results),
    )
    assert report["platform"] == "xcb" and report["mesa_llvm_loaded"], report
    assert not report["torch_in_qgis"] and not report["ofa_explore_in_qgis"]
    steps = report["steps"]
    assert [(s["task"], s["expect"]) for s in steps] == [
        ("classify", "result"),
        ("classify", "refused"),
        ("embed", "result"),
        ("classify", "cancel"),
    ]
    for step in (steps[0], steps[2]):
        assert step["dialog_problem"] is None, step
        assert step["max_stall_s"] < 0.5, step  # QGIS stays responsive throughout
    worker = steps[0]["worker_after"]  # the warm engine: one worker for every run
    assert worker and steps[2]["worker_before"] == worker, steps
    # 1. the saved folder that stopped working: reported, replaced, the dialog opened anyway
    assert f"The output folder {broken} cannot be created" in steps[0]["folder_notice"]
    assert "reset to the default" in steps[0]["folder_notice"]
    assert not [m for m in report["messages"] if "Python error" in m]
    # the progress bar says why it waits while the engine starts
    assert any("starting the engine" in d and p == 0 for d, p in steps[0]["task_bar"]), steps[0]
    # 2. no head fits NAIP: greyed with the reason, OK disabled, the way forward said
    (head, enabled), *_ = steps[1]["heads"]
    assert not enabled and "trained on Sentinel-2 L1C" in head and "NAIP" in head, head
    assert not steps[1]["ok_enabled"] and "`ofa train-head`" in steps[1]["dialog_problem"]
    # 3. results say what they found, the newest layer on top; a cancel says so
    found = next(m for m in steps[0]["messages"] if m.startswith("EuroSAT chip classes: "))
    assert "%; Sentinel-2 L1C, " in found and " 1 tile in " in found, found
    assert len(found) < 100, found  # one line of the bar; the file and areas under Details
    shown = steps[0]["details"]
    assert f"File: {results / 'EuroSAT_chip_classes.tif'}" in shown, shown
    assert "Classes found (eurosat_landcover), largest first:" in shown and " ha " in shown
    assert steps[2]["top_layer"] == "NAIP scene embedding (PCA colours)"
    said = steps[3]["messages_after_cancel"]
    assert "Classifying Big mosaic was cancelled; nothing was written." in said, said
    failed = [m for m in said if "Task failed" in m or "Classifying Big mosaic" in m]
    assert all("cancelled" in m for m in failed), failed  # QGIS's own notice says it too
    assert not [n for n in steps[3]["layers_after_cancel"] if n.startswith("Big mosaic ")]
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)  # ended when QGIS closed
    assert sorted(p.name for p in results.glob("*.tif")) == [
        "EuroSAT_chip_classes.tif",
        "NAIP_scene_embedding.tif",
        "NAIP_scene_embedding_pca.tif",
    ]
    beside = {p.name for p in inputs.iterdir()} - {chip.name, naip.name, big.name}
    assert beside <= {f"{p.name}.aux.xml" for p in (chip, naip, big)}, beside  # QGIS's own only
    for name in ("classify_dialog", "classify_refused_dialog", "classify_result", "embed_result"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000, name


def desktop_command(profiles: Path, script: str) -> list[str]:
    """QGIS's desktop under Xvfb with the profiles folder, running tests/qgis_desktop/<script>."""
    return [
        str(XVFB),
        "-a",
        "-s",
        "-screen 0 1600x1000x24",
        str(QGIS),
        "--nologo",
        "--noversioncheck",
        "--profiles-path",
        str(profiles),
        "--code",
        str(ROOT / "tests" / "qgis_desktop" / script),
    ]


def drive(tmp_path: Path, profiles: Path, out: Path, name: str = "report", **env: str) -> dict:
    """QGIS under Xvfb (xcb) in the profile, driven by drive.py with ``env`` (OFA_DESKTOP_...):
    asserts that QGIS ended well and drive.py saw no error; returns its report (the report and
    the screenshots copied into ARTIFACTS)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "OFA_EXPLORE"))}
    environ.update(
        QT_QPA_PLATFORM="xcb",
        OFA_DESKTOP_OUT=str(out),
        HOME=str(tmp_path),
        PATH="/usr/bin:/bin",  # no `ofa` of this venv: the engine comes from settings
        **env,
    )
    command = desktop_command(profiles, "drive.py")
    proc = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=600)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in out.glob("*.png"):
        shutil.copy(png, ARTIFACTS / png.name)
    log = f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, log  # a crash (SIGSEGV) ends here
    report = json.loads((out / "report.json").read_text())
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(report, indent=1))
    assert not report["errors"], report["errors"][0] + log
    return report


@pytest.mark.skipif(
    not (QGIS and XVFB),
    reason="needs the QGIS desktop and Xvfb: `apt-get install qgis xvfb` to run the desktop test",
)
def test_change_between_two_layers_in_the_real_qgis_desktop(shared, tmp_path):
    """Raster > OFA Explore > Change between two layers… on 600 x 600 px of two OSCD dates
    (Saclay, Sentinel-2 L1C): Before is the layer added first, the changed areas are ticked,
    OK; the score and the outlines come on top, the bar says the changed area, QGIS never
    stalls. Twice: the second run finds the engine warm. The time from the click to the layers
    is in the report (change_report.json)."""
    import rasterio
    from rasterio.windows import Window

    oscd = shared / "change" / "oscd" / "saclay_e"
    if not oscd.is_dir():
        pytest.skip(f"no OSCD pairs at {oscd}")
    inputs, results, out = tmp_path / "inputs", tmp_path / "results", tmp_path / "out"
    for folder in (inputs, results, out):
        folder.mkdir()
    dates = []
    for source in sorted(oscd.glob("saclay_e_2*.tif")):  # the images only, never the change map
        window = Window(44, 19, 600, 600)
        with rasterio.open(source) as src:
            data = src.read(window=window)
            kept = {**src.profile, "width": 600, "height": 600}
            kept["transform"] = src.window_transform(window)
            with rasterio.open(inputs / source.name, "w", **kept) as dst:
                dst.write(data)
                dst.descriptions = src.descriptions
        dates.append(str(inputs / source.name))
    title = "Saclay 2016 to Saclay 2017 change"
    steps = [["change", dates, ["Saclay 2016", "Saclay 2017"], t] for t in (title, f"{title} (2)")]
    report = drive(
        tmp_path,
        profile(tmp_path, sys.executable, results),
        out,
        name="change_report",
        OFA_DESKTOP_STEPS=json.dumps(steps),
    )
    cold, warm = report["steps"]
    for step in (cold, warm):
        assert step["pair"] == ["Saclay 2016", "Saclay 2017"] and step["polygons"], step
        assert step["dialog_problem"] is None and step["max_stall_s"] < 0.5, step
    assert cold["layers"][:2] == [f"{title[:-7]} changed areas", title], cold["layers"]
    found = next(m for m in cold["messages"] if m.startswith(title))
    assert " ha changed (" in found and "Sentinel-2 L1C" in found, found  # WGS 84: ground areas
    assert warm["worker_before"] == cold["worker_after"]  # one engine for both
    assert sorted(p.name for p in results.iterdir() if p.suffix != ".xml") == [  # QGIS's .aux.xml
        "Saclay_2016_to_Saclay_2017_change.gpkg",
        "Saclay_2016_to_Saclay_2017_change.tif",
        "Saclay_2016_to_Saclay_2017_change_2.gpkg",
        "Saclay_2016_to_Saclay_2017_change_2.tif",
    ]
    assert not report["torch_in_qgis"] and not report["ofa_explore_in_qgis"]
    for step in (cold, warm):  # the click, the dialog read for 0.3 s, OK, the layers
        print(f"click to layers {step['seconds']:.1f} s, dialog open {step['dialog_open_s']:.2f} s")


def mosaic(shared: Path, path: Path, tiles: int = 24) -> Path:
    """A real Sentinel-2 L1C scene big enough to cancel while it runs: EuroSAT chips side by
    side (64 * tiles px square)."""
    import numpy as np
    import rasterio

    chips = sorted((shared / "eurosat").glob("*/*.tif"))
    rows = []
    for r in range(tiles):
        row = []
        for c in range(tiles):
            with rasterio.open(chips[(r * tiles + c) * 7 % len(chips)]) as src:
                row.append(src.read())
        rows.append(np.concatenate(row, axis=2))
    data = np.concatenate(rows, axis=1)
    with rasterio.open(chips[0]) as ref:
        profile = {**ref.profile, "width": data.shape[2], "height": data.shape[1]}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


QGIS_PROCESS = shutil.which("qgis_process.bin") or shutil.which("qgis_process")


@pytest.mark.skipif(not QGIS_PROCESS, reason="needs qgis_process: `apt-get install qgis`")
def test_qgis_process_runs_the_algorithms(shared, tmp_path):
    """`qgis_process run ofa_explore:...` with the plugin in a profile, the engine in settings."""
    import rasterio

    out = tmp_path / "out"
    out.mkdir()
    root = profile(tmp_path, sys.executable, tmp_path / "results")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFA_EXPLORE")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(root), QT_QPA_PLATFORM="offscreen", PATH="/usr/bin:/bin")

    def qgis_process(algorithm: str, **params: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [
                QGIS_PROCESS,
                "--json",
                "run",
                f"ofa_explore:{algorithm}",
                "--",
                *[f"{k}={v}" for k, v in params.items()],
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    chip, naip = tmp_path / "River_1.tif", tmp_path / "naip.tif"  # QGIS's .aux.xml lands there
    shutil.copy(shared / "eurosat" / "River" / chip.name, chip)
    shutil.copy(shared / "naip" / "m_4709963_se_14_1_20180716.tif", naip)
    done = qgis_process("classify_raster", INPUT=str(chip), OUTPUT=str(out / "classes.tif"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(done.stdout)["results"]["OUTPUT"] == str(out / "classes.tif")
    with rasterio.open(out / "classes.tif") as src:
        assert src.tags()["class_names"].startswith("AnnualCrop,Forest")
    done = qgis_process("embed_raster", INPUT=str(naip), OUTPUT=str(out / "view.tif"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with rasterio.open(out / "view.tif") as src, rasterio.open(naip) as ref:
        assert src.count == 3 and src.crs == ref.crs  # the colour view
    refused = qgis_process("embed_raster", INPUT=str(chip), BANDS="14", OUTPUT=str(out / "x.tif"))
    assert refused.returncode != 0
    assert "Band 14 does not exist" in refused.stdout + refused.stderr
    later = shutil.copy(naip, tmp_path / "naip_later.tif")  # the same place, nothing changed
    done = qgis_process("change", BEFORE=str(naip), AFTER=later, OUTPUT=str(out / "change.tif"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    with rasterio.open(out / "change.tif") as src:
        assert src.count == 2 and src.read(2).max() == 0  # score and mask: no change
    assert sorted(p.name for p in out.iterdir()) == ["change.tif", "classes.tif", "view.tif"]
