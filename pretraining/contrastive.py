"""An optional contrastive term beside the MAE loss (as in CAN, Mishra et al. 2022: "A simple,
efficient and scalable contrastive masked autoencoder").

Why: at demo scale (a few hundred chips, minutes of CPU) a plain MAE learns to reconstruct but its
pooled features separate scenes no better than a random network's (measured, docs/EVALUATION.md).
Asking the pooled visible tokens of two views of the same chip to match, and to differ from the
other chips of the batch, gives the encoder a reason to summarise the scene. Both views are masked
as in MAE, so the encoder still sees only visible tokens. With ``weight: 0`` (the default) training
is plain MAE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ofa_explore.model import OFANet


class MaskedObjective(nn.Module):
    """MAE loss on two views + ``weight`` x InfoNCE between their pooled encodings; one module so
    that DDP sees every trainable parameter (the projector is training-only, never shipped)."""

    def __init__(self, model: OFANet, weight: float = 0.0, temperature: float = 0.2,
                 crop_scale: tuple[float, float] = (0.3, 1.0), proj_dim: int = 128):
        super().__init__()
        self.model, self.weight, self.temperature = model, weight, temperature
        self.crop_scale = crop_scale
        dim = model.config["embed_dim"]
        self.projector = (nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, proj_dim))
                          if weight > 0 else None)

    def forward(self, x: torch.Tensor, modality: str, mask_ratio: float,
                generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        if self.projector is None:
            loss, _, _ = self.model(x, modality, mask_ratio=mask_ratio, generator=generator)
            return loss, {}
        model = self.model
        m = model.resolve_modality(modality)
        views = [x, second_view(x, generator, self.crop_scale)]
        mae, pooled = [], []
        for view in views:
            xn = model.normalize(model.check_input(view, m), m)
            latent, mask, ids_restore = model.forward_encoder(xn, m, mask_ratio, generator)
            pred = model.forward_decoder(latent, ids_restore, m, model._grid_of(xn))
            mae.append(model.forward_loss(xn, pred, mask))
            pooled.append(latent[:, 1:].mean(1))
        nce = info_nce(self.projector(pooled[0]), self.projector(pooled[1]), self.temperature)
        loss = (mae[0] + mae[1]) / 2 + self.weight * nce
        return loss, {"mae": float((mae[0] + mae[1]) / 2), "nce": float(nce)}


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE: row i of ``a`` should match row i of ``b`` among all rows."""
    a, b = F.normalize(a.float(), dim=1), F.normalize(b.float(), dim=1)
    logits = a @ b.T / temperature
    target = torch.arange(len(a), device=a.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def second_view(x: torch.Tensor, generator: torch.Generator,
                crop_scale: tuple[float, float]) -> torch.Tensor:
    """Another look at each chip: a random crop (area share in ``crop_scale``) resized back, a
    random flip/rotation, and a small per-band gain (sensor and illumination differences)."""
    B, C, H, W = x.shape
    g = generator
    out = torch.empty_like(x)
    for i in range(B):
        lo, hi = crop_scale
        area = lo + (hi - lo) * float(torch.rand(1, generator=g, device=g.device))
        side_h, side_w = max(2, round(H * area**0.5)), max(2, round(W * area**0.5))
        top = int(torch.randint(H - side_h + 1, (1,), generator=g, device=g.device))
        left = int(torch.randint(W - side_w + 1, (1,), generator=g, device=g.device))
        crop = x[i:i + 1, :, top:top + side_h, left:left + side_w]
        crop = F.interpolate(crop, size=(H, W), mode="bilinear", align_corners=False)
        k = int(torch.randint(4, (1,), generator=g, device=g.device))
        crop = torch.rot90(crop, k, dims=(2, 3))
        if int(torch.randint(2, (1,), generator=g, device=g.device)):
            crop = crop.flip(3)
        gain = 1 + 0.05 * torch.randn(1, C, 1, 1, generator=g, device=g.device)
        out[i] = (crop * gain.to(crop.dtype))[0]
    return out
