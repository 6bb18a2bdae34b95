"""ofa-explore: OFA-Net for Earth observation, one shared backbone for every modality."""

from ._version import __version__

from .modalities import (  # noqa: E402
    Modality,
    get_modality,
    hyperspectral_modality,
    list_modalities,
    register_modality,
)
from .model import OFANet  # noqa: E402
from .checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint  # noqa: E402
from .pretrained import load_model, load_pretrained  # noqa: E402
from .threads import set_threads  # noqa: E402

__all__ = [
    "Modality", "get_modality", "hyperspectral_modality", "list_modalities", "register_modality",
    "OFANet", "CheckpointError", "load_checkpoint", "read_metadata", "save_checkpoint",
    "load_pretrained",
    "load_model", "set_threads",
]
