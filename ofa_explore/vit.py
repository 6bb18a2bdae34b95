"""The Vision Transformer building blocks OFA-Net is made of, as timm writes them.

``PatchEmbed``, ``Attention``, ``Mlp``, ``LayerScale`` and ``Block`` are timm's (1.0.x,
``timm.layers`` and ``timm.models.vision_transformer``) cut to the options OFA-Net uses: the same
submodule names (so state dicts, and the published MAE/DOFA weights, keep their keys), the same
parameters created in the same order (a seeded model gets the same initial weights) and the same
arithmetic, so outputs are bit-identical (tests/test_vit.py compares them with timm's own).
They live here because ``import timm`` (any of its modules) first runs timm's package
``__init__``, which imports torchvision, ``torch._dynamo`` and timm's whole model zoo: about three
seconds before a one-chip job can start, against well under a tenth of that for this file.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PatchEmbed(nn.Module):
    """[B, C, H, W] -> [B, L, D]: a ``patch_size``-strided convolution, flattened to tokens.
    Any H, W that are multiples of the patch size (timm's ``strict_img_size=False``)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = (patch_size, patch_size)
        self.img_size = (img_size, img_size)
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        _, _, H, W = x.shape
        p = self.patch_size[0]
        torch._assert(H % p == 0, f"Input height ({H}) should be divisible by patch size ({p}).")
        torch._assert(W % p == 0, f"Input width ({W}) should be divisible by patch size ({p}).")
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class Attention(nn.Module):
    """Multi-head self-attention; ``fused_attn`` picks PyTorch's fused kernel (the default, as
    timm's) or plain matmul + softmax (``model.set_fused_attention``)."""

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False):
        super().__init__()
        assert dim % num_heads == 0, "dim should be divisible by num_heads"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attn_dim = dim
        self.scale = self.head_dim**-0.5
        self.fused_attn = True
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        B, N, _ = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0
            )
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        x = self.norm(x.transpose(1, 2).reshape(B, N, self.attn_dim))
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    """Linear, GELU, linear."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(0.0)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop2 = nn.Dropout(0.0)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x))))))


class LayerScale(nn.Module):
    """x * gamma, per channel (CaiT's LayerScale, as DINOv2-style ViTs use it)."""

    def __init__(self, dim: int, init_values: float = 1e-5):
        super().__init__()
        self.init_values = init_values
        self.gamma = nn.Parameter(torch.empty(dim))
        nn.init.constant_(self.gamma, init_values)

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), each branch
    scaled by a ``LayerScale`` when ``init_values`` is given."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = False,
        init_values: float | None = None,
        norm_layer: Callable[[int], nn.Module] = nn.LayerNorm,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def sincos_2d(grid: tuple[int, int], dim: int, temperature: float = 10000.0) -> Tensor:
    """Fixed 2-D sine-cosine position embedding [h*w, dim], rows then columns: per axis
    sines then cosines of dim/4 frequencies (timm's ``build_sincos2d_pos_embed``)."""
    assert dim % 4 == 0, "Embed dimension must be divisible by 4 for sin-cos 2D position embedding"
    pos_dim = dim // 4
    exp = torch.arange(0, pos_dim, 1, dtype=torch.int64).to(torch.float32) / pos_dim
    bands = 1.0 / (temperature**exp)
    axes = [torch.arange(s, dtype=torch.int64).to(torch.float32) for s in grid]
    coords = torch.stack(torch.meshgrid(*axes, indexing="ij")).flatten(1).transpose(0, 1)
    pos = coords.unsqueeze(-1) * bands.unsqueeze(0)
    return torch.stack([torch.sin(pos), torch.cos(pos)], dim=1).flatten(1)


def resample_abs_pos_embed(
    posemb: Tensor, new_size: list[int], old_size: list[int], num_prefix_tokens: int = 1
) -> Tensor:
    """[1, prefix + h*w, D] position embedding -> [1, prefix + H*W, D]: the grid part resized
    bicubically (antialiased), prefix tokens kept (timm's ``resample_abs_pos_embed``)."""
    if math.prod(new_size) + num_prefix_tokens == posemb.shape[1] and new_size == old_size:
        return posemb
    prefix, posemb = posemb[:, :num_prefix_tokens], posemb[:, num_prefix_tokens:]
    dim, dtype = posemb.shape[-1], posemb.dtype
    posemb = posemb.float().reshape(1, old_size[0], old_size[1], -1).permute(0, 3, 1, 2)
    posemb = F.interpolate(posemb, size=new_size, mode="bicubic", antialias=True)
    posemb = posemb.permute(0, 2, 3, 1).reshape(1, -1, dim).to(dtype)
    return torch.cat([prefix, posemb], dim=1) if num_prefix_tokens else posemb


__all__ = [
    "Attention",
    "Block",
    "LayerScale",
    "Mlp",
    "PatchEmbed",
    "resample_abs_pos_embed",
    "sincos_2d",
]
