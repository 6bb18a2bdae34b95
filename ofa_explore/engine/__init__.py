"""The inference engine: a task over rasters of any size, tile by tile, into GeoTIFFs or memory.

settings.py  EngineSettings (how to run) and PredictionResult (what came out)
tasks.py     one Task subclass per task (embed, reconstruct, classify) and the TASKS registry
tiles.py     the tile layout on the patch grid and the threaded TileReader
sinks.py     the memory sink and the COG file sink, each configured by its task
run.py       predict_raster

The settings load with the package; the tasks (torch) and the reading and writing parts
(rasterio, xarray) load with the first name that needs them, so the command line's parser, built
from ``protocol.TASKS``, needs none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .settings import Cancelled, EngineSettings, PredictionResult

_LATER = {
    "predict_raster": "run",
    "pick_device": "run",
    "BATCH_TOKENS": "run",
    **dict.fromkeys(
        ("TASKS", "Task", "Embed", "Reconstruct", "Classify", "register", "get_task"), "tasks"
    ),
}
if TYPE_CHECKING:
    from .run import BATCH_TOKENS, pick_device, predict_raster
    from .tasks import TASKS, Classify, Embed, Reconstruct, Task, get_task, register

__all__ = [
    "predict_raster",
    "pick_device",
    "EngineSettings",
    "PredictionResult",
    "Cancelled",
    "TASKS",
    "Task",
    "Embed",
    "Reconstruct",
    "Classify",
    "register",
    "get_task",
    "BATCH_TOKENS",
]


def __getattr__(name: str) -> Any:
    if name in _LATER:
        return getattr(importlib.import_module(f".{_LATER[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
