"""ofa-explore: OFA-Net for Earth observation, one shared backbone for every modality."""

from ._version import __version__
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
]
