"""How good is a masked reconstruction? Scores against a trivial baseline, in normalised units."""

from __future__ import annotations

import torch

from .modalities import Modality


def hidden_mse(x: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor,
               modality: Modality) -> float:
    """Mean squared error on hidden pixels, each band divided by its std (so bands weigh alike).

    x, prediction: [B, C, H, W] in sensor units; mask: [B, 1, H, W], 1 = hidden.
    """
    std = torch.tensor(modality.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    err = ((prediction - x) / std) ** 2
    return err[mask.expand_as(x).bool()].mean().item()


def visible_mean_baseline(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The trivial reconstruction: every hidden pixel = the per-band mean of the visible pixels."""
    visible = (1 - mask).expand_as(x)
    mean = (x * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(dim=(2, 3), keepdim=True)
    return mean.expand_as(x)


@torch.no_grad()
def reconstruction_scores(model, x: torch.Tensor, modality: str | Modality,
                          mask_ratio: float = 0.75, seed: int = 0) -> dict[str, float]:
    """Hidden-pixel MSE of the model's reconstruction and of the trivial baseline, same mask."""
    m = model.resolve_modality(modality)
    image, mask = model.reconstruct(x, m, mask_ratio=mask_ratio, seed=seed)
    return {"model_mse": hidden_mse(x, image, mask, m),
            "baseline_mse": hidden_mse(x, visible_mean_baseline(x, mask), mask, m)}
