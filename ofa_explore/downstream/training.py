"""Gradient training of a head on labelled chips, with the backbone frozen, partly or fully
fine-tuned (``trainable_blocks``: 0 = head only, k = the last k encoder blocks too, -1 = all).

One loop serves scene heads (cross-entropy on one label per chip) and segmentation heads
(per-pixel cross-entropy, 255 ignored); chips are flipped and rotated on the fly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import BadInput
from ..heads import classify, segment
from ..inputs import resolve_modality
from ..modalities import Modality
from ..model import OFANet
from .datasets import IGNORE_INDEX


def trainable_parameters(
    model: OFANet, head: str, trainable_blocks: int
) -> list[torch.nn.Parameter]:
    """Freeze everything but the head and the last ``trainable_blocks`` encoder blocks."""
    depth = len(model.blocks)
    if not -1 <= trainable_blocks <= depth:
        raise BadInput(
            f"trainable_blocks must be -1 (all), 0 (head only) or up to the "
            f"encoder depth {depth}, got {trainable_blocks}"
        )
    for p in model.parameters():
        p.requires_grad_(False)
    modules = [model.heads[head]]
    if trainable_blocks:
        k = depth if trainable_blocks == -1 else trainable_blocks
        modules += list(model.blocks[depth - k :]) + [model.norm]
        if trainable_blocks == -1:
            modules += list(model.patch_embeds.values()) + [model.cls_token]
            if model.wavelength_embed is not None:  # the way in for sensors without their own
                modules.append(model.wavelength_embed)
    params = []
    for module in modules:
        for p in [module] if isinstance(module, torch.nn.Parameter) else module.parameters():
            if p.is_floating_point():
                p.requires_grad_(True)
                params.append(p)
    return params


def train_head(
    model: OFANet,
    head: str,
    chips: np.ndarray,
    targets: np.ndarray,
    modality: str | Modality,
    trainable_blocks: int = 0,
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 0.05,
    augment: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """Train ``model.heads[head]`` (added with ``model.heads.add``) on chips [N, C, H, W] (sensor
    units) and targets [N] (scene) or [N, H, W] (segmentation); returns the loss per epoch.

    AdamW with a cosine schedule; blocks that are fine-tuned get a tenth of the head's rate.
    """
    info = model.heads.info[head]
    m = resolve_modality(modality, model.modalities)
    params = trainable_parameters(model, head, trainable_blocks)
    head_params = {id(p) for p in model.heads[head].parameters()}
    groups = [
        {"params": [p for p in params if id(p) in head_params], "lr": lr},
        {"params": [p for p in params if id(p) not in head_params], "lr": lr / 10},
    ]
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=weight_decay)
    x_all = torch.as_tensor(chips, dtype=torch.float32)
    y_all = torch.as_tensor(targets, dtype=torch.long)
    steps_per_epoch = math.ceil(len(x_all) / batch_size)
    total = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    if trainable_blocks == 0:
        model.eval()
        model.heads[head].train()  # a frozen backbone keeps its eval behaviour
    losses = []
    try:
        for epoch in range(epochs):
            order = torch.randperm(len(x_all), generator=generator)
            total_loss = 0.0
            for start in range(0, len(order), batch_size):
                index = order[start : start + batch_size]
                if len(index) < 2:  # BatchNorm needs two samples
                    continue
                x, y = x_all[index], y_all[index]
                if augment:
                    x, y = _flip_rotate(x, y, generator)
                x, y = x.to(device), y.to(device)
                if info["kind"] == "segmentation":
                    loss = F.cross_entropy(segment(model, x, m, head), y, ignore_index=IGNORE_INDEX)
                else:
                    loss = F.cross_entropy(classify(model, x, m, head), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total_loss += loss.item() * len(index)
            losses.append(total_loss / len(order))
            if progress:
                progress(epoch + 1, epochs, losses[-1])
    finally:
        for p in model.parameters():
            p.requires_grad_(False)
        model.eval()
    return losses


@torch.no_grad()
def predict(
    model: OFANet,
    head: str,
    chips: np.ndarray,
    modality: str | Modality,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Class indices: [N] for a scene head, [N, H, W] for a segmentation head."""
    model.to(device).eval()
    per_pixel = model.heads.info[head]["kind"] == "segmentation"
    out = []
    for start in range(0, len(chips), batch_size):
        x = torch.as_tensor(chips[start : start + batch_size], dtype=torch.float32).to(device)
        logits = (segment if per_pixel else classify)(model, x, modality, head)
        out.append(logits.argmax(1).cpu())
    return torch.cat(out).numpy()


def _flip_rotate(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator):
    """One random dihedral transform per batch, applied to masks alike."""
    k = int(torch.randint(4, (1,), generator=generator))
    flip = bool(torch.randint(2, (1,), generator=generator))
    x = torch.rot90(x, k, dims=(2, 3))
    if flip:
        x = x.flip(3)
    if y.dim() == 3:
        y = torch.rot90(y, k, dims=(1, 2))
        if flip:
            y = y.flip(2)
    return x, y
