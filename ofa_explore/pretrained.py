"""The checkpoint shipped inside the package: a small OFA-Net pre-trained on real imagery.

See ``data/MODEL_CARD.md`` for the data, the command that made it and how well it reconstructs.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from .checkpoint import load_checkpoint
from .errors import NotFound
from .model import OFANet
from .protocol import SHIPPED_CHECKPOINT


def shipped_checkpoint_path() -> Path:
    path = Path(str(resources.files(__package__) / "data" / SHIPPED_CHECKPOINT))
    if not path.is_file():
        raise NotFound(
            f"the shipped checkpoint is missing from this installation ({path})",
            "reinstall ofa-explore",
        )
    return path


def load_pretrained(map_location: str = "cpu") -> OFANet:
    """The shipped model, with any heads it carries; no network needed."""
    return load_checkpoint(shipped_checkpoint_path(), map_location=map_location)


def load_model(
    checkpoint: str | os.PathLike | None = None, download: bool = True, map_location: str = "cpu"
) -> OFANet:
    """The model a user names wherever one is asked for: nothing -> the shipped one; a
    checkpoint file; or published weights by name (``dofa-base-v1``, see ``ofa_explore.weights.
    WEIGHTS``), downloaded and converted once, then kept converted in the cache."""
    from .weights import WEIGHTS, cache_dir, load_published

    if checkpoint is None or str(checkpoint) == "":
        return load_pretrained(map_location)
    if Path(checkpoint).is_file() or str(checkpoint) not in WEIGHTS:
        if not Path(checkpoint).exists():
            raise NotFound(
                f"{checkpoint}: no such checkpoint file, nor the name of published "
                f"weights ({', '.join(WEIGHTS)})",
                "check the {checkpoint} value",
            )
        return load_checkpoint(checkpoint, map_location=map_location)
    converted = cache_dir() / f"{checkpoint}.safetensors"
    if converted.is_file():
        return load_checkpoint(converted, map_location=map_location)
    from .checkpoint import save_checkpoint

    model = load_published(str(checkpoint), download=download)
    save_checkpoint(model, converted, **model.provenance)  # atomic: a crash leaves no half file
    return model.to(map_location)
