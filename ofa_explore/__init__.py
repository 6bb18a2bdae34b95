"""ofa-explore: OFA-Net for Earth observation, one shared backbone for every modality.

The names below load with their first use (PEP 562), so that ``import ofa_explore`` (and with
it ``ofa --help``, the QGIS plugin's checks) does not import torch; ``from ofa_explore import
OFANet`` works as always.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

# name -> the module that defines it
_WHERE = {
    "Modality": "modalities",
    "get_modality": "modalities",
    "hyperspectral_modality": "modalities",
    "list_modalities": "modalities",
    "register_modality": "modalities",
    "OFANet": "model",
    "CheckpointError": "checkpoint",
    "load_checkpoint": "checkpoint",
    "read_metadata": "checkpoint",
    "save_checkpoint": "checkpoint",
    "load_pretrained": "pretrained",
    "load_model": "pretrained",
    "set_threads": "threads",
    "change": "change_detection",
    "save_raster": "arrays",
}

__all__ = [
    "__version__",
    "Modality",
    "get_modality",
    "hyperspectral_modality",
    "list_modalities",
    "register_modality",
    "OFANet",
    "CheckpointError",
    "load_checkpoint",
    "read_metadata",
    "save_checkpoint",
    "load_pretrained",
    "load_model",
    "set_threads",
    "change",
    "save_raster",
]

if TYPE_CHECKING:  # what type checkers and editors see
    from .arrays import save_raster
    from .change_detection import change
    from .checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
    from .modalities import (
        Modality,
        get_modality,
        hyperspectral_modality,
        list_modalities,
        register_modality,
    )
    from .model import OFANet
    from .pretrained import load_model, load_pretrained
    from .threads import set_threads


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value  # once: later look-ups do not come here
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
