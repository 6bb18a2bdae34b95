"""Downstream heads that sit on the shared encoder and travel inside checkpoints.

Two kinds, both small:
- ``SceneHead``: one label per image from pooled tokens. Standardisation (a BatchNorm without
  affine terms, as in MAE's linear probe) then a linear layer, so that a logistic-regression probe
  fitted on standardised features *is* the head, and fine-tuning trains the same module.
- ``SegmentationHead``: one label per pixel from the patch tokens of a few encoder blocks,
  UPerNet-style but light: a 1x1 projection per block, summed, then x2 upsampling steps
  (bilinear + 3x3 conv) back to pixel resolution, where a small convolution of the image itself
  joins in (as U-Net's top skip: tokens are one per patch, edges are finer than that).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

HEAD_KINDS = ("scene", "segmentation")
POOLS = ("mean", "cls")
STANDARDIZE_EPS = 1e-5
# used when a head is saved without colours: distinct, readable on a map (Tableau 10, then grey)
DEFAULT_PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
                   "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]


def default_colors(n: int) -> list[str]:
    return [DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)] for i in range(n)]


def default_layers(depth: int, count: int = 4) -> list[int]:
    """Evenly spaced encoder blocks ending with the last one (depth 12 -> 2, 5, 8, 11)."""
    count = min(count, depth)
    return [round((i + 1) * depth / count) - 1 for i in range(count)]


class SceneHead(nn.Sequential):
    """pooled [B, D] -> logits [B, K]."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__(nn.BatchNorm1d(dim, affine=False, eps=STANDARDIZE_EPS),
                         nn.Linear(dim, num_classes))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """Always in fp32, also under bf16/fp16 autocast: standardising features and a linear
        probe are cheap, and their rounding in bf16 flipped about 1% of close class decisions."""
        with torch.autocast(pooled.device.type, enabled=False):
            return super().forward(pooled.float())

    def set_linear_probe(self, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor,
                         bias: torch.Tensor) -> None:
        """Load a probe fitted on (features - mean) / sqrt(var + eps)."""
        norm, linear = self[0], self[1]
        norm.running_mean.copy_(mean)
        norm.running_var.copy_(var)
        linear.weight.data.copy_(weight)
        linear.bias.data.copy_(bias)


class SegmentationHead(nn.Module):
    """Token maps of ``len(layers)`` blocks, each [B, D, h, w], and the normalised image
    [B, C, h*p, w*p] -> logits [B, K, h*p, w*p]."""

    def __init__(self, dim: int, num_classes: int, patch_size: int, num_levels: int,
                 in_chans: int, width: int = 64):
        super().__init__()
        self.patch_size = patch_size
        self.lateral = nn.ModuleList([nn.Conv2d(dim, width, 1) for _ in range(num_levels)])
        steps = max(0, math.ceil(math.log2(patch_size)))
        self.up = nn.ModuleList([
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                          nn.BatchNorm2d(width), nn.ReLU(inplace=True))
            for _ in range(steps)])
        self.pixels = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False),
                                    nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(width, num_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor], image: torch.Tensor) -> torch.Tensor:
        h, w = levels[0].shape[-2:]
        x = sum(lateral(level) for lateral, level in zip(self.lateral, levels))
        for block in self.up:
            x = block(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        size = (h * self.patch_size, w * self.patch_size)
        if x.shape[-2:] != size:  # patch sizes that are not powers of two
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return self.classifier(self.fuse(x + self.pixels(image)))


__all__ = ["SceneHead", "SegmentationHead", "HEAD_KINDS", "POOLS", "default_colors",
           "default_layers"]
