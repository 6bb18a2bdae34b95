"""The engine as a worker process: QGIS's Python never imports torch or ofa_explore.

Everything here is plain Python (no Qt), shared by the toolbar tasks and the Processing
algorithms: finding the engine's Python, reading what a checkpoint and the sensor registry offer
(from files, without torch), building the ``ofa`` command line and running it while its JSON-line
progress streams back (the processes themselves, the warm worker among them: workers.py).
Task names, output names, the events, the checkpoint header, wavelength tags and the sensor hint
come from ``_shared`` (the package's protocol.py, errors.py and enmap_product.py, copied into the
plugin when it is built); errors are shown in the dialog's words (QGIS_WORDS).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ._shared import errors, protocol

ENV_VAR = "OFA_EXPLORE_PYTHON"
SETUP_HINT = (
    "Set up the engine with Raster > OFA Explore > Set up engine… (or point "
    f"{ENV_VAR} at the Python of an environment where ofa-explore is installed)."
)

NEUTRAL_FOLDER = tempfile.gettempdir()  # the worker's cwd: `python -m` puts it on sys.path
_PROBE = (
    "import importlib.util, importlib.metadata, json, os, sys\n"
    "spec = importlib.util.find_spec('ofa_explore')\n"
    "folder = os.path.dirname(spec.origin) if spec else None\n"
    "version = importlib.metadata.version('ofa-explore') if spec else None\n"
    "print(json.dumps({'python': sys.executable, 'package': folder, 'version': version}))\n"
)


QGIS_WORDS = errors.QGIS_WORDS  # how the plugin names the settings an error's fix names


class EngineError(RuntimeError):
    """The engine cannot run, or it refused the input; the message is meant for the user."""

    @classmethod
    def of(cls, err: errors.OFAError) -> EngineError:
        """A shared module's error, in the plugin's words."""
        return cls(err.render(QGIS_WORDS))


class Cancelled(RuntimeError):
    """The user cancelled; the worker was stopped and nothing was written."""


# ---------------------------------------------------------------- finding the engine
@dataclass(frozen=True)
class Engine:
    """A Python environment where ofa-explore is installed."""

    python: str
    package: Path  # the installed ofa_explore folder (its data/ holds registry and model)
    version: str
    origin: str  # where the path came from: "settings", ENV_VAR or "PATH"

    @property
    def shipped_checkpoint(self) -> Path:
        return self.package / "data" / protocol.SHIPPED_CHECKPOINT

    def command(self, *args: str) -> list[str]:
        return [self.python, "-m", "ofa_explore", *args]

    def sensors(self) -> list[dict]:
        """The registry's sensor records (name, bands, wavelengths, description, ...)."""
        return protocol.load_sensor_facts(self.package / "data")

    def published(self) -> list[dict]:
        """Published weights the engine downloads by name (records of data/weights.json)."""
        data = json.loads((self.package / "data" / protocol.WEIGHTS_FILE).read_text())
        return [w for w in data["weights"] if w.get("url")]


def candidate_pythons(configured: str | None) -> list[tuple[str, str]]:
    """(path, origin) in the order they are tried: the plugin setting, the environment
    variable, the Python behind an ``ofa`` found on PATH."""
    found = []
    if configured:
        found.append((configured, "settings"))
    if os.environ.get(ENV_VAR):
        found.append((os.environ[ENV_VAR], ENV_VAR))
    ofa = shutil.which("ofa")
    if ofa:
        python = _script_python(Path(ofa))
        if python:
            found.append((python, "PATH"))
    return found


def find_engine(configured: str | None = None) -> Engine:
    """The first working engine, or an EngineError saying what was tried and how to set it up."""
    tried = []
    for python, origin in candidate_pythons(configured):
        try:
            return probe(python, origin)
        except EngineError as err:
            tried.append(f"{origin}: {err}")
    if not tried:
        raise EngineError("The OFA Explore engine is not set up yet. " + SETUP_HINT)
    raise EngineError(
        "The OFA Explore engine could not be started (" + "; ".join(tried) + "). " + SETUP_HINT
    )


def probe(python: str, origin: str = "settings") -> Engine:
    """Checks that ``python`` runs and has ofa-explore, without importing it (fast)."""
    if not Path(python).is_file():
        raise EngineError(f"{python} does not exist")
    try:
        out = subprocess.run(
            [python, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=30,
            env=worker_env(),
            cwd=NEUTRAL_FOLDER,
            **_no_window(),
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise EngineError(f"{python} does not run ({err})") from None
    if out.returncode != 0:
        raise EngineError(f"{python} does not run: {stderr_tail(out.stderr)}")
    info = json.loads(out.stdout.strip().splitlines()[-1])
    if not info["package"]:
        raise EngineError(f"ofa-explore is not installed in {python}")
    return Engine(
        python=info["python"],
        package=Path(info["package"]),
        version=info["version"] or "?",
        origin=origin,
    )


def worker_env() -> dict[str, str]:
    """QGIS's environment without what would make the worker load QGIS's Python packages."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _script_python(script: Path) -> str | None:
    """The interpreter of a console script (its ``#!`` line); None for binary launchers."""
    try:
        first = script.read_bytes()[:512].split(b"\n", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        return None
    if not first.startswith("#!"):
        sibling = script.with_name("python.exe")  # Windows: Scripts\ofa.exe beside python.exe
        return str(sibling) if sibling.is_file() else None
    python = first[2:].strip().split()[0]
    return python if Path(python).is_file() else None


# ---------------------------------------------------------------- what a checkpoint offers
@dataclass
class ModelInfo:
    """What the dialog needs from a checkpoint, read from its safetensors header."""

    source: str  # a file, or the name of published weights
    modalities: dict[str, dict]  # sensors with their own patch embedding
    heads: dict[str, dict]
    by_wavelength: bool  # the wavelength-conditioned embedding: any sensor with known wavelengths
    name: str = ""


def read_model_info(path: str | os.PathLike) -> ModelInfo:
    """Reads a checkpoint's metadata from its header only (no torch, milliseconds)."""
    try:
        meta = protocol.read_checkpoint_metadata(path)
    except errors.OFAError as err:
        raise EngineError.of(err) from None
    return ModelInfo(
        source=str(path),
        modalities=meta.get("modalities", {}),
        heads=meta.get("heads", {}),
        by_wavelength=bool(meta.get("config", {}).get("wavelength_embed")),
        name=meta.get("provenance", {}).get("name", ""),
    )


def published_model_info(record: dict) -> ModelInfo:
    """Published DOFA weights: no sensor of their own, every sensor by wavelength, no heads."""
    return ModelInfo(
        source=record["name"],
        modalities={},
        heads={},
        by_wavelength=True,
        name=record["description"],
    )


# ---------------------------------------------------------------- outputs
def output_folder(configured: str | None, project_home: str | None) -> Path:
    """Where results go: the folder set in the settings, else ``ofa_explore_outputs`` in the
    project's folder, else a folder in the system's temp space; never beside the inputs."""
    if configured:
        folder = Path(configured)
    elif project_home and Path(project_home).is_dir():
        folder = Path(project_home) / "ofa_explore_outputs"
    else:
        folder = Path(tempfile.gettempdir()) / "ofa_explore_outputs"
    problem = folder_problem(folder, create=True)
    if problem:
        raise EngineError(problem)
    return folder


def folder_problem(folder: Path, create: bool = False) -> str | None:
    """Why results cannot be written in ``folder`` (a sentence naming the dialog's field), or
    None; ``create`` makes it first, as the default folders are made on first use."""
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"The output folder {folder} cannot be created ({err.strerror or err})."
    if not folder.is_dir():
        return f"The output folder {folder} does not exist: choose another Output folder."
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"The output folder {folder} is read-only: choose another Output folder."
    return None


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name (2)``, ``name (3)``... when a layer of that name exists."""
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} ({n})"
    return candidate


# ---------------------------------------------------------------- running a job
@dataclass
class Job:
    """One engine run: ``ofa <task> <source> -o <output>`` with the dialog's choices; change
    compares ``source`` (BEFORE) with ``after``."""

    task: str
    source: str
    output: str
    bands: list[int] = field(default_factory=list)  # 1-based; empty: all, in file order
    modality: str | None = None
    checkpoint: str | None = None
    head: str | None = None
    device: str = "auto"
    tile: int | None = None
    overwrite: bool = False
    after: str | None = None  # change: the later date
    threshold: str | None = None  # change: a score ("3"), "auto" or "otsu"; the mask and area
    polygons: str | None = None  # change: a .gpkg for the changed areas (needs a threshold)
    align: bool = True  # change: AFTER moved onto BEFORE's features when they lie apart

    def sources(self) -> list[str]:
        """The files the job reads."""
        return [self.source] + ([self.after] if self.after else [])

    def arguments(self) -> list[str]:
        task = protocol.task(self.task)  # an unknown task is refused here, not by the worker
        args = [self.task, *self.sources(), "-o", self.output, "--progress", "json"]
        args += ["--device", self.device]
        if protocol.QUICKLOOK in task.companions:  # a task that draws one unless told not to
            args.append("--no-quicklook")  # QGIS shows the result itself
        for flag, value in (
            ("--bands", ",".join(map(str, self.bands))),
            ("--modality", self.modality),
            ("--checkpoint", self.checkpoint),
            ("--head", self.head),
            ("--tile", str(self.tile) if self.tile else None),
            ("--threshold", self.threshold),
            ("--polygons", self.polygons),
        ):
            if value:
                args += [flag, value]
        args += [] if self.align else ["--no-align"]
        return args + (["--overwrite"] if self.overwrite else [])


def run(
    engine: Engine,
    job: Job,
    progress: Callable[[float], None] | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> dict:
    """Runs ``job`` in the engine (its warm worker, or a process of its own: workers.py) and
    returns its result event (path, pca_path, classes, colors, device, seconds, ...; warnings
    also holds those the engine said on the way). Raises
    EngineError with the engine's own message, or Cancelled once the engine stopped the job
    (nothing written). ``status(text)``: what the job waits for ("starting the engine"), then
    "" once it runs."""
    from . import workers  # it imports this module

    if not all(protocol.local_file(source) for source in job.sources()):
        raise EngineError(
            "the layer is not a raster file on this computer (the engine reads files "
            "through GDAL): save it as a GeoTIFF first (Export > Save As…)"
        )
    result, warnings = None, []
    for event in workers.events(engine, job, cancelled, log, status):
        kind = event.get("event")
        if kind == "warning":  # said before the result (values that do not fit the sensor)
            warnings.append(str(event.get("message")))
        elif kind == "progress" and progress:
            progress(float(event.get("percent", 0.0)))
        elif kind == "start" and log:
            log(f"{event.get('input')}: sensor {event.get('modality')}, {event.get('bands')} bands")
        elif kind == "result":
            result = event  # kept until the job's events end
        elif kind == "error":
            raise EngineError(error_text(event))
        elif kind == "cancelled":
            raise Cancelled("cancelled; nothing was written")
    if result is None:
        raise EngineError("the engine stopped without a result")
    return {**result, "warnings": warnings + list(result.get("warnings") or [])}


def error_text(event: dict) -> str:
    """An ``error`` event in the plugin's words; an unexpected failure points to the log."""
    text = errors.render_event(event, QGIS_WORDS)
    text = text[:1].upper() + text[1:]  # a sentence in the message bar
    if event.get("kind") == protocol.FAILED:
        text += " (the details are in the log, tab OFA Explore)"
    return text


def _no_window() -> dict:
    return {"creationflags": subprocess.CREATE_NO_WINDOW} if os.name == "nt" else {}


def stderr_tail(text: str, lines: int = 6) -> str:
    """The last lines of a worker's stderr, without warnings' noise."""
    kept = [
        ln
        for ln in text.strip().splitlines()
        if ln.strip() and "Warning" not in ln and not ln.startswith(("  ", "Traceback"))
    ]
    return " | ".join(kept[-lines:])
