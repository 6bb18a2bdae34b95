"""Frozen-backbone features: one vector per chip, the input of probes and kNN."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import BadInput
from ..heads import DEFAULT_POOL, pooled_width
from ..modalities import Modality
from ..model import OFANet
from .datasets import LabelledChips, load_chips


@torch.no_grad()
def extract_features(
    model: OFANet,
    chips: np.ndarray | torch.Tensor | LabelledChips,
    modality: str | Modality | None = None,
    pool: str = DEFAULT_POOL,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """[N, D] features of ``chips`` ([N, C, H, W] in sensor units, or labelled chips on disk).

    ``pool``: see ``OFANet.pooled_features``.
    """
    if isinstance(chips, LabelledChips):
        chips, found = load_chips(chips.paths, modality)
        modality = modality or found
    if modality is None:
        raise BadInput("the chips' modality is not known", "name it with {modality}")
    x = torch.as_tensor(chips, dtype=torch.float32)
    was_training = model.training
    model.eval().to(device)
    out = []
    try:
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size].to(device)
            out.append(model.pooled_features(batch, modality, pool).float().cpu())
            if progress:
                progress(min(start + batch_size, len(x)), len(x))
    finally:
        model.train(was_training)
    if not out:
        return np.zeros((0, pooled_width(pool, model.config.embed_dim)), np.float32)
    return torch.cat(out).numpy()
