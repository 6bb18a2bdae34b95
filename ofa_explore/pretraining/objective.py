"""What pre-training minimises: MAE's masked reconstruction, and optionally a contrastive term.

Masked reconstruction alone gave frozen features no better than random initialisation on this
project's data (docs/EVALUATION.md); an InfoNCE term between two augmented views of each chip
was the one lead. Both views are masked, so the encoder sees only their visible patches (cheap
views, as in iBOT/MSN) and each view's visible tokens also feed MAE's decoder.

With ``hog`` > 0 the hidden patches' reconstruction is also compared with the image through HOG
descriptors (MaskFeat's target: orientations of local gradients, normalised per patch), so that
what the decoder must get right is the shape of the scene, not only its colour.

The objective is one ``nn.Module`` (model + projector) so that DistributedDataParallel wraps it
whole: one forward per step, gradients of the projector synchronised like the model's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inputs import prepare
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


HOG_BINS = 9  # unsigned orientations, as Dalal & Triggs and MaskFeat
HOG_CELL = 4  # px: a patch of 8 px holds 2 x 2 cells


def hog(gray: torch.Tensor, patch: int) -> torch.Tensor:
    """Histograms of oriented gradients: [B, H, W] -> [B, L, cells * HOG_BINS], one vector per
    patch (row-major, as the patch tokens), L2-normalised. Differentiable: a pixel's gradient
    votes for each orientation bin by max(0, m cos 2(theta - bin)), computed from gx and gy
    without an angle, so a reconstruction can be trained through it."""
    x = gray[:, None].float()
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device) / 8
    gx = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx.view(1, 1, 3, 3))[:, 0]
    gy = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kx.T.reshape(1, 1, 3, 3))[:, 0]
    m = torch.sqrt(gx**2 + gy**2 + 1e-8)
    c2, s2 = (gx**2 - gy**2) / m, 2 * gx * gy / m  # m cos 2theta, m sin 2theta
    angles = torch.arange(HOG_BINS, device=x.device) * (torch.pi / HOG_BINS)
    votes = F.relu(
        c2[:, None] * torch.cos(2 * angles).view(1, -1, 1, 1)
        + s2[:, None] * torch.sin(2 * angles).view(1, -1, 1, 1)
    )  # [B, bins, H, W]
    cells = F.avg_pool2d(votes, HOG_CELL)  # [B, bins, H/c, W/c]
    B, k = cells.shape[:2]
    n = patch // HOG_CELL
    h, w = cells.shape[2] // n, cells.shape[3] // n
    per_patch = cells.reshape(B, k, h, n, w, n).permute(0, 2, 4, 3, 5, 1).reshape(B, h * w, -1)
    return F.normalize(per_patch, dim=-1, eps=1e-6)


def hog_loss(
    model: OFANet, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Squared distance between the HOG of the reconstruction and of the image (both the mean
    of the normalised bands), per hidden patch, averaged. x: normalised [B, C, H, W]."""
    p = model.config.patch_size
    grid = (x.shape[2] // p, x.shape[3] // p)
    image = model.unpatchify(pred.float(), x.shape[1], grid).mean(1)
    distance = ((hog(image, p) - hog(x.mean(1), p)) ** 2).sum(-1)  # [B, L]
    if mask.sum() == 0:
        return distance.mean()
    return (distance * mask).sum() / mask.sum()


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
        """{"loss": total, "mae": mean reconstruction loss of the views, "contrastive": ...,
        "hog": ...} (the terms the config asks for)."""
        maes, pooled, hogs = [], [], []
        for view, generator in zip(views, generators):
            mae, pred, mask, latent = self.model(
                view.x, view.modality, mask_ratio, generator, return_latent=True
            )
            maes.append(mae)
            pooled.append(latent[:, 1:].mean(1))  # as pooled_features: mean of patch tokens
            if self.cfg.hog > 0:
                x, _ = prepare(
                    view.x, view.modality, self.model.modalities, self.model.config.patch_size
                )
                hogs.append(hog_loss(self.model, x, pred, mask))
        losses = {"mae": torch.stack(maes).mean()}
        losses["loss"] = losses["mae"]
        if hogs:
            losses["hog"] = torch.stack(hogs).mean()
            losses["loss"] = losses["loss"] + self.cfg.hog * losses["hog"]
        if self.projector is not None:
            a, b = (self.projector(p) for p in pooled)
            losses["contrastive"] = info_nce(a, b, self.cfg.temperature)
            losses["loss"] = losses["loss"] + self.cfg.contrastive * losses["contrastive"]
        return losses
