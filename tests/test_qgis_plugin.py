"""Runs the PyQGIS plugin tests (tests/qgis) in real, headless QGIS.

QGIS's Python bindings belong to the system Python (Debian: `apt-get install python3-qgis`), so
the tests run there, in a venv that sees the system packages (`.venv-qgis`, made on first use with
only pytest and pytest-qgis: the plugin needs nothing else in QGIS's Python). The engine they
drive is this test environment's Python, passed as OFA_EXPLORE_PYTHON, exactly as a user's
engine environment would be. Skipped, saying how to enable them, where QGIS is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = os.environ.get("OFA_QGIS_PYTHON", "/usr/bin/python3")
VENV = ROOT / ".venv-qgis"


def has_qgis() -> bool:
    if not Path(SYSTEM_PYTHON).exists():
        return False
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True)
    return probe.returncode == 0


def qgis_test_python() -> Path:
    python = VENV / "bin" / "python"
    ready = VENV / ".ofa-ready-2"  # version 2: no ofa_explore in QGIS's Python
    if not ready.exists():
        subprocess.run(
            [SYSTEM_PYTHON, "-m", "venv", "--clear", "--system-site-packages", str(VENV)],
            check=True,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "pytest>=7", "pytest-qgis>=2"], check=True
        )
        ready.write_text("ok\n")
    return python


@pytest.mark.skipif(
    not has_qgis(),
    reason="QGIS is not installed: `apt-get install python3-qgis` to run the QGIS plugin tests",
)
def test_qgis_plugin_in_real_qgis(shared):  # skipped, like the rest, without the shared data
    python = qgis_test_python()
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "PYTHONNOUSERSITE": "1",
        "OFA_EXPLORE_PYTHON": sys.executable,
        "OFA_SHARED_DATA": str(shared),
    }
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--confcutdir",
            str(ROOT / "tests" / "qgis"),  # not tests/conftest
            str(ROOT / "tests" / "qgis"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    print(result.stdout[-4000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
    imports = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util as u; print(u.find_spec('torch'), u.find_spec('ofa_explore'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=VENV,
    ).stdout
    assert imports.split() == ["None", "None"], imports  # QGIS's Python stays clean


def test_plugin_zip_holds_an_installable_plugin(tmp_path):
    import configparser
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location(
        "build", ROOT / "scripts" / "build_qgis_plugin.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    out = build.build(tmp_path / "plugin.zip")
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        meta = configparser.ConfigParser()
        meta.read_string(zf.read("ofa_explore_qgis/metadata.txt").decode())
    assert {
        "ofa_explore_qgis/__init__.py",
        "ofa_explore_qgis/icon.png",
        "ofa_explore_qgis/plugin.py",
        "ofa_explore_qgis/provider.py",
        "ofa_explore_qgis/engine.py",
        "ofa_explore_qgis/icons/classify.png",
        "ofa_explore_qgis/_shared/__init__.py",
        "ofa_explore_qgis/_shared/protocol.py",
        "ofa_explore_qgis/_shared/errors.py",
        "ofa_explore_qgis/_shared/enmap_product.py",
    } <= names
    with zipfile.ZipFile(out) as zf:  # the package's own files, copied at build time
        for name in ("protocol.py", "errors.py", "enmap_product.py"):
            assert (
                zf.read(f"ofa_explore_qgis/_shared/{name}")
                == (ROOT / "ofa_explore" / name).read_bytes()
            )
    assert not [n for n in names if "__pycache__" in n]
    # the package's own wheel, of the package's version: Set up engine… installs exactly it
    from ofa_explore import __version__

    wheel = f"ofa_explore_qgis/wheels/ofa_explore-{__version__}-py3-none-any.whl"
    assert wheel in names
    with zipfile.ZipFile(out) as zf, zf.open(wheel) as whl, zipfile.ZipFile(whl) as inner:
        packed = set(inner.namelist())
    assert {
        "ofa_explore/protocol.py",
        "ofa_explore/data/modalities.json",
        "ofa_explore/data/ofa_tiny_demo.safetensors",
        "ofa_explore/pretraining/configs/demo.yaml",
        f"ofa_explore-{__version__}.dist-info/entry_points.txt",
    } <= packed, sorted(packed)
    assert not [n for n in packed if "__pycache__" in n or not n.startswith("ofa_explore")]
    assert out.stat().st_size < 20e6  # the shipped model (17 MB) is most of it
    for key in (
        "name",
        "qgisMinimumVersion",
        "description",
        "version",
        "author",
        "email",
        "about",
        "repository",
    ):
        assert meta["general"][key], key
