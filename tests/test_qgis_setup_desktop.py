"""Set up engine… in the real QGIS desktop (`qgis` under Xvfb, xcb), the plugin installed from
its zip into a fresh profile with no engine set, on a computer whose pip cannot reach any index
(an address nobody answers on, no pip configuration files). tests/qgis_desktop/setup_drive.py
presses OK on the defaults (a new environment from the zip's wheel): the message says PyTorch
could not be downloaded and how to go on, and no folder is left; then it points the plugin at
an existing engine (this test environment's Python): Processing's Sensor list fills at once,
and Set up engine… opens on that engine next time.
Screenshots: test-artifacts/qgis_desktop/setup_*.png.
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
from test_qgis_desktop import ARTIFACTS, QGIS, ROOT, XVFB, desktop_command


def fresh_profile(tmp_path: Path) -> Path:
    """A QGIS profile with the plugin installed from its zip and enabled, no engine set."""
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        from build_qgis_plugin import build
    finally:
        sys.path.pop(0)
    root = tmp_path / "qgis"
    plugins = root / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(build(tmp_path / "ofa_explore_qgis.zip")) as zf:
        zf.extractall(plugins)
    ini = root / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        "[PythonPlugins]\nofa_explore_qgis=true\n\n"
        "[qgis]\ncheckVersion=false\nshowTips=false\nallowVersionCheck=false\n"
    )
    return root


@pytest.mark.slow
@pytest.mark.skipif(
    not (QGIS and XVFB),
    reason="needs the QGIS desktop and Xvfb: `apt-get install qgis xvfb` to run the desktop test",
)
def test_setup_offline_then_an_existing_engine_in_the_real_qgis_desktop(shared, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("QT_", "OFA_EXPLORE", "PIP_", "VIRTUAL_ENV"))
    }
    env.update(
        QT_QPA_PLATFORM="xcb",
        OFA_DESKTOP_OUT=str(out),
        OFA_DESKTOP_ENGINE=sys.executable,
        HOME=str(tmp_path),
        XDG_DATA_HOME=str(tmp_path / "data"),  # where the new engine's folder is proposed
        PATH="/usr/bin:/bin",  # no `ofa` of this venv: no engine until one is set up
        PIP_CONFIG_FILE=os.devnull,  # offline: pip reads no configuration (no local indexes)
        PIP_INDEX_URL="http://127.0.0.1:9/simple",  # and its index does not answer
        PIP_RETRIES="1",
    )
    command = desktop_command(fresh_profile(tmp_path), "setup_drive.py")
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for png in out.glob("setup_*.png"):
        shutil.copy(png, ARTIFACTS / png.name)
    log = f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    assert proc.returncode == 0, log
    report = json.loads((out / "report.json").read_text())
    (ARTIFACTS / "setup_report.json").write_text(json.dumps(report, indent=1))
    assert not report["errors"], report["errors"][0] + log
    assert report["platform"] == "xcb"
    assert report["sensors_before"] == ["auto"]  # no engine yet
    steps = report["steps"]

    offline = steps["offline"]  # the defaults: a new environment from the zip's wheel
    assert offline["create"] and not offline["existing"] and offline["problem"] is None
    assert Path(offline["package"]).name.startswith("ofa_explore-")
    assert offline["package"].endswith(".whl") and "ofa_explore_qgis/wheels" in offline["package"]
    assert offline["folder"] == str(tmp_path / "data" / "ofa-explore" / "engine")
    text = " | ".join(offline["messages"])
    assert "PyTorch could not be downloaded" in text, text
    assert "Use the Python of an existing environment" in (offline["details"] or ""), offline
    assert "ERROR" not in text and "Traceback" not in text, text
    assert not offline["folder_left"] and not Path(offline["folder"]).exists()
    shown = [description for _, description in offline["progress"]]
    assert any("downloading PyTorch" in d for d in shown), shown  # what it does, as it does it

    existing = steps["existing"]
    assert existing["problem"] is None
    assert any("The engine is ready" in m for m in existing["messages"]), existing
    assert {"s2_l1c", "landsat_etm", "rgbn"} <= set(existing["sensors_after"])  # no restart

    reopened = steps["reopened"]  # the engine that works is what the dialog opens on
    assert reopened["existing"] and not reopened["create"] and reopened["problem"] is None
    assert reopened["python"] == sys.executable
    for name in ("setup_offline", "setup_offline_message", "setup_reopened"):
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000, name
