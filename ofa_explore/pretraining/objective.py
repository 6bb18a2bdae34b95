"""What pre-training minimises: MAE's masked reconstruction, and optionally a contrastive term.

Masked reconstruction alone gave frozen features no better than random initialisation on this
project's data (docs/EVALUATION.md); an InfoNCE term between two augmented views of each chip
was the one lead. Both views are masked, so the encoder sees only their visible patches (cheap
views, as in iBOT/MSN) and each view's visible tokens also feed MAE's decoder.

The objective is one ``nn.Module`` (model + projector) so that DistributedDataParallel wraps it
whole: one forward per step, gradients of the projector synchronised like the model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..model import OFANet
from .config import ObjectiveConfig
from .data import View


class Projector(nn.Module):
    """Pooled encoder features -> the space the contrastive loss compares (SimCLR's MLP)."""

    def __init__(self, dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent (SimCLR) over 2B embeddings: each one's positive is its other view, the other
    2B - 2 are negatives. a, b: [B, E]."""
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = a.shape[0]
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


class PretrainObjective(nn.Module):
    """The model and what the objective adds to it; ``forward`` returns the losses of a step."""

    def __init__(self, model: OFANet, cfg: ObjectiveConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.projector = (
            Projector(model.config.embed_dim, cfg.hidden_dim, cfg.projection_dim)
            if cfg.contrastive > 0
            else None
        )

    def forward(
        self, views: list[View], mask_ratio: float, generators: list[torch.Generator]
    ) -> dict[str, torch.Tensor]:
        """{"loss": total, "mae": mean reconstruction loss of the views, "contrastive": ...}."""
        maes, pooled = [], []
        for view, generator in zip(views, generators):
            mae, _, _, latent = self.model(
                view.x, view.modality, mask_ratio, generator, return_latent=True
            )
            maes.append(mae)
            pooled.append(latent[:, 1:].mean(1))  # as pooled_features: mean of patch tokens
        losses = {"mae": torch.stack(maes).mean()}
        losses["loss"] = losses["mae"]
        if self.projector is not None:
            a, b = (self.projector(p) for p in pooled)
            losses["contrastive"] = info_nce(a, b, self.cfg.temperature)
            losses["loss"] = losses["loss"] + self.cfg.contrastive * losses["contrastive"]
        return losses
