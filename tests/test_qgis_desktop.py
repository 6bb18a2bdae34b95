"""The plugin in the real QGIS desktop: `qgis` under Xvfb with the xcb platform (Mesa's LLVM in
the process, as on a user's desktop), the plugin installed from its zip into a fresh profile,
the engine in this test environment's Python (the default pip torch: CUDA build with triton).
tests/qgis_desktop/drive.py clicks Classify layer on a EuroSAT chip and Embed layer on a NAIP
scene; QGIS must not crash nor stall its main thread for more than 0.5 s; both run on one warm
engine worker, which ends with QGIS.
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


def profile(tmp_path: Path, engine_python: str, results: Path) -> Path:
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
    out = tmp_path / "out"
    out.mkdir()
    inputs = tmp_path / "inputs"  # copies: QGIS writes its statistics (.aux.xml) beside them
    inputs.mkdir()
    chip = inputs / "River_1.tif"
    naip = inputs / "m_4709963_se_14_1_20180716.tif"
    shutil.copy(shared / "eurosat" / "River" / chip.name, chip)
    shutil.copy(shared / "naip" / naip.name, naip)
    profiles = profile(tmp_path, sys.executable, results)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "OFA_EXPLORE"))}
    env.update(
        QT_QPA_PLATFORM="xcb",
        OFA_DESKTOP_OUT=str(out),
        HOME=str(tmp_path),
        OFA_DESKTOP_CHIP=str(chip),
        OFA_DESKTOP_NAIP=str(naip),
        PATH="/usr/bin:/bin",
    )  # no `ofa` of this venv: the engine comes from settings
    command = [
        XVFB,
        "-a",
        "-s",
        "-screen 0 1600x1000x24",
        QGIS,
        "--nologo",
        "--noversioncheck",
        "--profiles-path",
        str(profiles),
        "--code",
        str(ROOT / "tests" / "qgis_desktop" / "drive.py"),
    ]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in out.glob("*.png"):
        shutil.copy(png, ARTIFACTS / png.name)
    log = f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, log  # a crash (SIGSEGV) ends here
    report = json.loads((out / "report.json").read_text())
    (ARTIFACTS / "report.json").write_text(json.dumps(report, indent=1))
    assert not report["errors"], report["errors"][0] + log
    assert report["platform"] == "xcb" and report["mesa_llvm_loaded"], report
    assert not report["torch_in_qgis"] and not report["ofa_explore_in_qgis"]
    assert [s["task"] for s in report["steps"]] == ["classify", "embed"]
    for step in report["steps"]:
        assert step["dialog_problem"] is None, step
        assert step["max_stall_s"] < 0.5, step  # QGIS stays responsive throughout
    worker = report["steps"][0]["worker_after"]  # the warm engine: one worker for both runs
    assert worker and report["steps"][1]["worker_before"] == worker, report["steps"]
    with pytest.raises(ProcessLookupError):
        os.kill(worker, 0)  # ended when QGIS closed
    assert sorted(p.name for p in results.glob("*.tif")) == [
        "EuroSAT_chip_classes.tif",
        "NAIP_scene_embedding.tif",
        "NAIP_scene_embedding_pca.tif",
    ]
    beside = {p.name for p in inputs.iterdir()} - {chip.name, naip.name}
    assert beside <= {chip.name + ".aux.xml", naip.name + ".aux.xml"}, beside  # QGIS's own only
    for name in ("classify_dialog", "classify_result", "embed_dialog", "embed_result"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000, name


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
    assert sorted(p.name for p in out.iterdir()) == ["classes.tif", "view.tif"]
