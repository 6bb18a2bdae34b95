"""Everything the plugin asks of ofa_explore, without Qt: shared by the toolbar task and the
Processing algorithms, so both run exactly the same engine path."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

INSTALL_HELP = (
    "The OFA Explore plugin needs the ofa-explore Python package in QGIS's Python. "
    "Install it into the Python that QGIS runs (Linux: a venv made with "
    "`python3 -m venv --system-site-packages ~/ofa-qgis` and "
    "`~/ofa-qgis/bin/pip install -c qgis_plugin/constraints.txt ofa-explore` with numpy pinned "
    "to QGIS's own version, then start QGIS with that venv's site-packages on PYTHONPATH; "
    "Windows/macOS: the OSGeo4W shell or QGIS's bundled python -m pip install ofa-explore). "
    "Keep numpy below 2 there (see the README, section QGIS plugin).")
TASKS = ("classify", "embed")
_models: dict[str, object] = {}
_lock = threading.Lock()


class PluginSetupError(RuntimeError):
    """ofa_explore is missing from QGIS's Python; the message says how to install it."""


def check_package():
    """The ofa_explore package, or a PluginSetupError with installation steps."""
    try:
        import ofa_explore
    except ImportError as err:
        raise PluginSetupError(f"{INSTALL_HELP} (import failed: {err})") from None
    return ofa_explore


def load_model(checkpoint: str | None = None):
    """The model of ``checkpoint`` (default: the shipped one, with its land-cover head), loaded
    once per QGIS session and path."""
    check_package()
    from ofa_explore import load_checkpoint, load_pretrained

    key = str(Path(checkpoint).resolve()) if checkpoint else ""
    with _lock:
        if key not in _models:
            _models[key] = load_checkpoint(checkpoint) if checkpoint else load_pretrained()
        return _models[key]


def default_output(source: str, task: str, folder: str | None = None) -> str:
    """``<input name>_ofa_<task>.tif`` in ``folder`` (the project's) or beside the input; a
    number is appended rather than overwriting anything."""
    src = Path(source)
    base = Path(folder) if folder else src.parent
    stem = f"{src.stem}_ofa_{'classes' if task == 'classify' else 'embedding'}"
    candidate, n = base / f"{stem}.tif", 1
    while candidate.exists() or (task == "embed" and _pca(candidate).exists()):
        n += 1
        candidate = base / f"{stem}_{n}.tif"
    return str(candidate)


def run(source: str, task: str, output: str, modality: str | None = None,
        checkpoint: str | None = None, head: str | None = None, tile: int | None = None,
        device: str = "auto", overwrite: bool = False,
        progress: Callable[[float], None] | None = None,
        cancel: Callable[[], bool] | None = None) -> dict:
    """Run the engine on a raster file; returns what the UI needs to show the result.
    Raises the engine's own errors (bad band count, no CRS, ...) and ``Cancelled``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}")
    if not source or not os.path.isfile(source.split("|")[0]):
        raise ValueError("the layer is not a raster file on disk (the engine reads files "
                         "through GDAL); save it as a GeoTIFF first")
    model = load_model(checkpoint)
    from ofa_explore.inference import predict_raster

    def report(done: int, total: int) -> None:
        if progress:
            progress(100.0 * done / max(total, 1))

    result = predict_raster(model, source.split("|")[0], task, output, modality=modality or None,
                            tile=tile or None, head=head or None, device=device,
                            overwrite=overwrite, progress=report, cancel=cancel)
    return {"path": str(result.path),
            "pca_path": str(result.pca_path) if result.pca_path else None,
            "device": result.device, "seconds": result.seconds, "tiles": result.tiles,
            "classes": result.class_names, "colors": result.class_colors, "head": result.head}


def model_choices(checkpoint: str | None = None) -> tuple[list[str], list[str]]:
    """(modality names the model embeds, head names) for the dialog's lists."""
    model = load_model(checkpoint)
    return list(model.modalities), list(model.heads)


def detect(source: str) -> str | None:
    """The modality the engine detects for a raster file, or None when it cannot tell."""
    try:
        from ofa_explore.io import open_raster, raster_modality

        return raster_modality(open_raster(source.split("|")[0])).name
    except Exception:  # noqa: BLE001 - the dialog shows "auto" then
        return None


def _pca(path: Path) -> Path:
    return path.with_name(path.stem + "_pca.tif")
