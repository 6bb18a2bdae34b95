"""DOFA-style wavelength-conditioned modules (Xiong et al. 2024, "Neural Plasticity-Inspired
Multimodal Foundation Model for Earth Observation").

A sensor without its own patch embedding runs from its band centre wavelengths alone: a small
Transformer turns the bands' wavelength codes into the patch embedding's conv kernel (and, in the
MAE decoder, into the pixel head's weights). Attribute names match DOFA's (TorchGeo's
``models/dofa.py``) so its published weights map one to one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Sine-cosine embedding of scalar positions: [N] -> [N, dim] (sines first, then cosines)."""
    omega = torch.arange(dim // 2, dtype=torch.float32, device=positions.device) / (dim / 2.0)
    omega = 1.0 / 10000**omega
    angles = positions.float()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class WeightGenerator(nn.Module):
    """A one-layer Transformer over [weight tokens, band wavelength embeddings, bias token].

    Each band's output token becomes that band's k*k*D kernel slice; the bias token becomes the
    conv bias. That is how the conv projection adapts to any band set.
    """

    def __init__(
        self,
        wv_planes: int,
        kernel_numel: int,
        embed_dim: int,
        num_weight_tokens: int = 128,
        num_heads: int = 4,
    ):
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=wv_planes,
            nhead=num_heads,
            activation="gelu",
            norm_first=False,
            batch_first=False,
            dropout=0.0,
        )
        self.transformer_encoder = nn.TransformerEncoder(
            layer, num_layers=1, enable_nested_tensor=False
        )
        self.fc_weight = nn.Linear(wv_planes, kernel_numel)
        self.fc_bias = nn.Linear(wv_planes, embed_dim)
        self.weight_tokens = nn.Parameter(torch.empty(num_weight_tokens, wv_planes))
        self.bias_token = nn.Parameter(torch.empty(1, wv_planes))
        if not self.weight_tokens.is_meta:  # (meta: shapes only, see checkpoint.load_checkpoint)
            nn.init.normal_(self.weight_tokens, std=0.02)
            nn.init.normal_(self.bias_token, std=0.02)

    def forward(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """waves: [C, wv_planes] -> (weights [C, k*k*D], bias [D])."""
        n = self.weight_tokens.shape[0]
        tokens = torch.cat([self.weight_tokens, waves, self.bias_token], dim=0)
        out = self.transformer_encoder(tokens)
        weights = self.fc_weight(out[n:-1] + waves)
        bias = self.fc_bias(out[-1])
        return weights, bias


class ResidualMLP(nn.Module):
    """x + relu(w2(relu(w1(x)))): refines the raw sine-cosine wavelength code."""

    def __init__(self, dim: int):
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class WavelengthPatchEmbed(nn.Module):
    """Patch embedding whose conv kernel is generated from the bands' centre wavelengths.

    Kernel layout: the generator's [C, k*k*D] output is viewed as [C, k, k, D] and permuted to
    [D, C, k, k] ("ckkd", DOFA's current layout since TorchGeo PR #2256). DOFA's first release
    viewed it as [D, C, k, k] directly ("dckk"); weights trained that way need that layout.
    """

    scaler = 0.01  # DOFA scales generated weights and bias down so early training is stable

    def __init__(
        self,
        wv_planes: int,
        patch_size: int,
        embed_dim: int,
        padding: int = 0,
        kernel_layout: str = "ckkd",
    ):
        super().__init__()
        if kernel_layout not in ("ckkd", "dckk"):
            raise ValueError(f"kernel_layout must be 'ckkd' or 'dckk', got {kernel_layout!r}")
        self.wv_planes = wv_planes
        self.patch_size = patch_size
        self.embed_dim = embed_dim
        self.padding = padding
        self.kernel_layout = kernel_layout
        self.weight_generator = WeightGenerator(
            wv_planes, patch_size * patch_size * embed_dim, embed_dim
        )
        self.fclayer = ResidualMLP(wv_planes)

    def encode_wavelengths(self, wavelengths_um: torch.Tensor) -> torch.Tensor:
        """Band wavelengths (µm) [C] -> wavelength codes [C, wv_planes], shared with the decoder."""
        return self.fclayer(sincos_1d(self.wv_planes, wavelengths_um * 1000.0))

    def forward(self, x: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        """x: [B, C, H, W], waves: [C, wv_planes] -> tokens [B, L, D]."""
        weight, bias = self.weight_generator(waves)
        k, c, d = self.patch_size, waves.shape[0], self.embed_dim
        if self.kernel_layout == "ckkd":
            weight = weight.view(c, k, k, d).permute(3, 0, 1, 2)
        else:
            weight = weight.view(d, c, k, k)
        out = F.conv2d(x, weight * self.scaler, bias * self.scaler, stride=k, padding=self.padding)
        return out.flatten(2).transpose(1, 2)


class WavelengthPixelHead(nn.Module):
    """Decoder output for a band set without its own head: a linear layer whose weights are
    generated from the bands' wavelength codes (DOFA's MAE decoder, no bias).

    ``channel_order`` "pixel" returns ``patchify`` order (pixel rows, columns, bands); "dofa"
    returns the generator's flat (band, row, column) order as DOFA's pre-training code does, for
    weights trained that way.
    """

    scaler = 0.01

    def __init__(
        self, wv_planes: int, decoder_dim: int, patch_size: int, channel_order: str = "pixel"
    ):
        super().__init__()
        if channel_order not in ("pixel", "dofa"):
            raise ValueError(f"channel_order must be 'pixel' or 'dofa', got {channel_order!r}")
        self.patch_size = patch_size
        self.channel_order = channel_order
        self.weight_generator = WeightGenerator(
            wv_planes, patch_size * patch_size * decoder_dim, decoder_dim
        )

    def forward(self, x: torch.Tensor, waves: torch.Tensor) -> torch.Tensor:
        """x: [B, L, Dd], waves: [C, wv_planes] -> [B, L, p*p*C]."""
        weight, _ = self.weight_generator(waves)
        c, pp = waves.shape[0], self.patch_size**2
        out = F.linear(x, weight.reshape(c * pp, x.shape[-1]) * self.scaler)  # (band, pixel)
        if self.channel_order == "pixel":
            out = out.unflatten(-1, (c, pp)).transpose(-1, -2).flatten(-2)
        return out


__all__ = [
    "WeightGenerator",
    "ResidualMLP",
    "WavelengthPatchEmbed",
    "WavelengthPixelHead",
    "sincos_1d",
]
