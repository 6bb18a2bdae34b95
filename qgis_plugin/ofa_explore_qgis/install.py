"""Setting up an engine: a virtual environment with ofa-explore (from the wheel in the plugin's
zip or a source the user names) and the torch build they chose; pip's lines become stages of the
progress bar. Qt-free."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from .engine import EngineError, _no_window

TORCH_BUILDS = {
    "cpu": "CPU only (smallest download, any computer)",
    "cuda": "NVIDIA GPU (CUDA; a large download)",
}


def default_engine_folder() -> Path:
    base = (
        Path(os.environ.get("LOCALAPPDATA", Path.home()))
        if os.name == "nt"
        else Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    )
    return base / "ofa-explore" / "engine"


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def setup_commands(
    folder: Path, package: str, torch_build: str, base_python: str | None = None
) -> list[list[str]]:
    """The commands that make an engine environment in ``folder``: a venv of a Python 3.10+
    that is not QGIS's, torch (CPU or CUDA build), then ofa-explore from ``package`` (a folder,
    a wheel or a pip requirement)."""
    base = base_python or find_base_python()
    pip = [str(venv_python(folder)), "-m", "pip", "install", "--progress-bar", "off"]
    commands = [
        [base, "-m", "venv", str(folder)],
        [str(venv_python(folder)), "-m", "pip", "install", "-q", "--upgrade", "pip"],
    ]
    if torch_build == "cpu" and sys.platform != "darwin":
        commands.append(pip + ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"])
    elif torch_build == "cuda" and os.name == "nt":
        commands.append(pip + ["torch", "--index-url", "https://download.pytorch.org/whl/cu126"])
    commands.append(pip + [package])
    return commands


def find_base_python() -> str:
    """A working Python 3.10+ to make the engine's venv with (not QGIS's embedded one)."""
    names = ["py"] if os.name == "nt" else ["python3.12", "python3.11", "python3.10", "python3"]
    for name in names:
        found = shutil.which(name)
        if found and _runs_python_310(found):
            return found
    raise EngineError(
        "no Python 3.10 or newer found to create the engine with: install "
        "Python from python.org (or conda), then run Set up engine… again"
    )


def _runs_python_310(python: str) -> bool:
    try:
        out = subprocess.run(
            [python, "-c", "import sys, venv; print(sys.version_info >= (3, 10))"],
            capture_output=True,
            text=True,
            timeout=30,
            **_no_window(),
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


def pip_stage(line: str) -> tuple[str, float] | None:
    """A pip output line as (what it is doing, share done 0-1 within the install), if telling."""
    for prefix, share in (
        ("Collecting", 0.1),
        ("Downloading", 0.3),
        ("Installing collected", 0.7),
        ("Successfully installed", 1.0),
    ):
        if line.lstrip().startswith(prefix):
            return line.strip()[:120], share
    return None
