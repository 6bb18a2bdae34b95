"""The checkpoint shipped inside the package: a small OFA-Net pre-trained on real imagery.

See ``data/MODEL_CARD.md`` for the data, the command that made it and how well it reconstructs.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .checkpoint import load_checkpoint
from .model import OFANet

SHIPPED_CHECKPOINT = "ofa_tiny_demo.safetensors"


def shipped_checkpoint_path() -> Path:
    path = Path(str(resources.files(__package__).joinpath("data", SHIPPED_CHECKPOINT)))
    if not path.is_file():
        raise FileNotFoundError(f"the shipped checkpoint is missing from this installation "
                                f"({path}); reinstall ofa-explore")
    return path


def load_pretrained(map_location: str = "cpu") -> OFANet:
    """The shipped model, with any heads it carries; no network needed."""
    return load_checkpoint(shipped_checkpoint_path(), map_location=map_location)
