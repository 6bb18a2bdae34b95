"""Setting up an engine: a new virtual environment with the ofa-explore wheel that comes in the
plugin's zip (so the engine is exactly the plugin's version; only PyTorch and the package's
libraries come from the index) and the PyTorch build the user chose. pip's download bytes move
the progress bar. A setup that fails or is cancelled removes the folder it made, and says in the
user's words what could not be fetched and what to do instead. Qt-free."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import engine, workers
from .engine import EngineError, _no_window

WHEELS = Path(__file__).resolve().parent / "wheels"  # filled by scripts/build_qgis_plugin.py
TORCH_BUILDS = {
    "cpu": "CPU only (smallest download, any computer)",
    "cuda": "NVIDIA GPU (CUDA; a large download)",
}
EXISTING = "Use the Python of an existing environment"  # the setup dialog's other choice
WAY_OUT = (
    "or point the plugin at an environment where ofa-explore is installed: Set up engine… > "
    f'"{EXISTING}", with its Python (bin/python in a conda or venv folder; on Windows '
    "python.exe)."
)
_FRIENDLY = {"torch": "PyTorch"}  # what the user knows a requirement as
_OFFLINE = (
    "Failed to establish a new connection",
    "Name or service not known",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeoutError",
    "Read timed out",
    "ProxyError",
)
_MISSING = re.compile(
    r"(?:No matching distribution found for|Could not find a version that satisfies "
    r"the requirement) ([A-Za-z0-9_.\-]+)"
)
_PROGRESS = re.compile(r"Progress (\d+) of (\d+)")


def bundled_wheel() -> Path | None:
    """The ofa-explore wheel built into the plugin's zip (None for a plugin without one)."""
    found = sorted(WHEELS.glob("ofa_explore-*.whl"))
    return found[-1] if found else None


def default_engine_folder() -> Path:
    """A new folder for the engine in the user's data folder: ``ofa-explore/engine``, or
    ``engine-2``, ``engine-3``... when it is taken (a setup never writes into a folder that
    holds files, so that it can remove what it made when it fails)."""
    base = (
        Path(os.environ.get("LOCALAPPDATA", Path.home()))
        if os.name == "nt"
        else Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    )
    folder, n = base / "ofa-explore" / "engine", 1
    while folder_problem(folder):
        n += 1
        folder = folder.with_name(f"engine-{n}")
    return folder


def venv_python(folder: Path) -> Path:
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def folder_problem(folder: Path | None) -> str | None:
    """Why the engine cannot be made in ``folder`` (None: it can)."""
    if folder is None or not str(folder).strip():
        return "Choose a folder for the engine."
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        return (
            f"{folder} already holds files: choose a new or empty folder for the engine "
            f'(or "{EXISTING}" if an engine is there).'
        )
    return None


def package_problem(package: str) -> str | None:
    """Why ofa-explore cannot be installed from ``package`` (None: it can be tried)."""
    if not package.strip():
        return "Choose the ofa-explore wheel (.whl) or a folder with ofa-explore's sources."
    looks_like_path = package.endswith(".whl") or os.sep in package or "/" in package
    if looks_like_path and "@" not in package and not Path(package).exists():
        return f"{package} does not exist: choose the ofa-explore wheel (.whl) or source folder."
    return None


@dataclass
class Step:
    """One command of the setup and the span of the progress bar (percent) it fills."""

    what: str  # shown in the task's description: "downloading PyTorch"
    command: list[str]
    start: float
    end: float
    fetches: str = ""  # what it downloads, in the user's words


def run_setup(
    folder: Path,
    package: str,
    torch_build: str,
    progress: Callable[[float, str], None],
    cancelled: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] = print,
    base_python: str | None = None,
) -> engine.Engine:
    """Makes the engine in ``folder`` and returns it, probed. ``progress(percent, what)``.
    Raises EngineError (a message for the user) or engine.Cancelled; either way the folder
    is gone again."""
    problem = folder_problem(folder) or package_problem(package)
    if problem:
        raise EngineError(problem)
    base = base_python or find_base_python()
    python = str(venv_python(folder))
    existed = folder.exists()  # and is empty: it is left as it was
    try:
        run_step(
            Step("creating the Python environment", [base, "-m", "venv", str(folder)], 0, 5),
            progress,
            cancelled,
            log,
        )
        update = [python, "-m", "pip", "install", "--disable-pip-version-check", "-U", "pip"]
        try:  # a newer pip reports its downloads' bytes; the venv's own pip works too
            run_step(Step("updating pip", update, 5, 8), progress, cancelled, log)
        except EngineError as err:
            log(f"pip was not updated ({err}); going on with the environment's own pip")
        for step in install_steps(pip_install(python), package, torch_build):
            run_step(step, progress, cancelled, log)
        found = engine.probe(python, "settings")
    except EngineError as err:
        _remove(folder, existed)
        raise EngineError(f"{err} Nothing was left in {folder}.") from None
    except BaseException:
        _remove(folder, existed)
        raise
    progress(100.0, "")
    return found


def _remove(folder: Path, keep_folder: bool) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    if keep_folder:
        folder.mkdir(exist_ok=True)


def install_steps(pip: list[str], package: str, torch_build: str) -> list[Step]:
    """PyTorch from the index of the chosen build (where it has one of its own), then
    ofa-explore from ``package`` with its libraries (and PyTorch, if not yet there)."""
    index = None
    if torch_build == "cpu" and sys.platform != "darwin":
        index = "https://download.pytorch.org/whl/cpu"
    elif torch_build == "cuda" and os.name == "nt":
        index = "https://download.pytorch.org/whl/cu126"
    engine_step = Step(
        "installing ofa-explore and its libraries",
        pip + [package],
        8,
        100,
        "PyTorch and ofa-explore's libraries",
    )
    if index is None:
        return [engine_step]
    engine_step.start = 70
    return [
        Step("downloading PyTorch", pip + ["torch", "--index-url", index], 8, 70, "PyTorch"),
        engine_step,
    ]


def run_step(
    step: Step,
    progress: Callable[[float, str], None],
    cancelled: Callable[[], bool],
    log: Callable[[str], None],
) -> None:
    """Runs one command, its output to ``log`` and its stages to ``progress``; raises
    EngineError with what went wrong in the user's words, or engine.Cancelled."""
    log("$ " + " ".join(step.command))
    progress(step.start, step.what)
    proc = subprocess.Popen(
        step.command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=engine.worker_env(),
        cwd=engine.NEUTRAL_FOLDER,
        **workers.new_group(),
    )
    lines: queue.Queue[str | None] = queue.Queue()  # read in a thread: a cancel is seen at once
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    reader = PipProgress(step.what)
    output: list[str] = []
    while True:
        if cancelled():
            workers.stop(proc)
            raise engine.Cancelled("the engine setup was cancelled")
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            continue
        if line is None:
            break
        if reader.feed(line):
            progress(step.start + (step.end - step.start) * reader.share, reader.detail)
        if not _PROGRESS.match(line.strip()):
            output = (output + [line.rstrip()])[-200:]
            log(line.rstrip())
    if proc.wait() != 0:
        if cancelled():
            raise engine.Cancelled("the engine setup was cancelled")
        raise EngineError(failure_text(step, output))
    progress(step.end, step.what)


def _pump(stream, lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class PipProgress:
    """How far a pip install is (``share``, 0-1, only ever forward) and what it does, from its
    output lines: looking packages up, a download's bytes (``--progress-bar raw``), installing."""

    def __init__(self, what: str):
        self.share, self.detail, self._file = 0.0, what, ""

    def feed(self, line: str) -> bool:
        """True when the line moved the bar or changed what is shown."""
        words = line.split()
        if not words:
            return False
        counted = _PROGRESS.match(line.strip())
        if counted and int(counted[2]):
            done, total = int(counted[1]), int(counted[2])
            share = 0.1 + 0.7 * done / total
            self.detail = f"downloading {self._file} ({done / 1e6:.0f} of {total / 1e6:.0f} MB)"
        elif words[0] == "Collecting" and len(words) > 1:
            share, self.detail = 0.05, f"looking up {words[1]}"
        elif words[0] == "Downloading" and len(words) > 1:
            self._file = words[1].rsplit("/", 1)[-1]
            share, self.detail = 0.1, f"downloading {self._file}"
        elif line.startswith("Installing collected packages"):
            share, self.detail = 0.85, "installing the downloaded packages"
        elif line.startswith("Successfully installed"):
            share = 1.0
        else:
            return False
        self.share = max(self.share, share)
        return True


def failure_text(step: Step, output: list[str]) -> str:
    """A failed pip (or venv) command in the user's words: what could not be fetched and how to
    go on, never pip's own dump (that is in the log)."""
    text = "\n".join(output)
    missing = _MISSING.findall(text)
    if any(marker in text for marker in _OFFLINE):  # pip's retries name the connection error
        return (
            f"{step.fetches or 'The engine'} could not be downloaded: the Python package index "
            "cannot be reached (no internet connection, or a proxy in the way). Connect to the "
            f"internet and run Set up engine… again, {WAY_OUT}"
        )
    if missing:
        name = _FRIENDLY.get(missing[-1].lower(), missing[-1])
        return (
            f"{name} could not be fetched from the Python package index (no internet "
            f"connection, or no {name} for this computer's Python). Connect to the internet "
            f"and run Set up engine… again, or choose the other PyTorch build, {WAY_OUT}"
        )
    errors = [ln.removeprefix("ERROR: ") for ln in output if ln.startswith("ERROR:")]
    detail = errors[-1] if errors else (output[-1] if output else "no output")
    return (
        f"The engine could not be set up while {step.what} ({detail}; the details are in the "
        f"log, tab OFA Explore). Run Set up engine… again, {WAY_OUT}"
    )


def pip_install(python: str) -> list[str]:
    """``pip install`` in ``python``'s environment, its download bytes on stdout where that pip
    can (24.1 and newer)."""
    bar = "raw" if pip_version(python) >= (24, 1) else "off"
    return [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", bar]


def pip_version(python: str) -> tuple[int, ...]:
    """The version of the pip in ``python``'s environment ((0,) when it cannot be read)."""
    try:
        out = subprocess.run(
            [python, "-m", "pip", "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            env=engine.worker_env(),
            **_no_window(),
        )
        return tuple(int(part) for part in out.stdout.split()[1].split(".")[:2])
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        return (0,)


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
