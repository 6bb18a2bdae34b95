"""OFAConfig: every architecture choice of an OFANet, frozen, and the named sizes.

Checkpoints store it as a dict of these keys (``to_dict``) and rebuild it with ``from_dict``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import BadInput

# ViT-Ti/S/B/L encoders (Dosovitskiy et al.; Touvron et al.); MAE's light decoder for B/L,
# a lighter one for the small sizes so that CPU pre-training stays cheap.
SIZE_FIELDS = (
    "embed_dim",
    "depth",
    "num_heads",
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
)
SIZES: dict[str, dict[str, int]] = {
    name: dict(zip(SIZE_FIELDS, dims))
    for name, dims in {
        "tiny": (192, 12, 3, 128, 2, 4),
        "small": (384, 12, 6, 256, 4, 8),
        "base": (768, 12, 12, 512, 8, 16),
        "large": (1024, 24, 16, 512, 8, 16),
        "huge": (1280, 32, 16, 512, 8, 16),  # 16 heads of 80, as DOFA's ViT-H/14
    }.items()
}

# OFA-Net's five pre-training modalities get their own patch embedding by default.
DEFAULT_MODALITIES = ("s1", "s2", "naip", "gaofen", "enmap")


@dataclass(frozen=True)
class OFAConfig:
    """Every architecture choice of an OFANet; stored in checkpoints as a dict of these keys.

    Build one with ``OFAConfig.of_size("tiny", depth=4)``: the size fills the widths and depths.
    """

    size: str = "base"
    patch_size: int = 16
    img_size: int = 224
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mlp_ratio: float = 4.0
    wavelength_embed: bool = True  # the DOFA-style embedding for sensors without their own
    wv_planes: int = 128
    wavelength_embed_padding: int = 0
    wavelength_kernel_layout: str = "ckkd"  # "dckk": DOFA's first release
    wavelength_head_order: str = "pixel"  # "dofa": DOFA's pre-training channel order
    init_values: float | None = None  # LayerScale (DOFA v2)
    final_norm: bool = True  # tokens end in a LayerNorm (MAE); DOFA's pooled models have none
    pool_norm: bool = False  # a LayerNorm on the pooled vector (DOFA's fc_norm)
    norm_layers: bool = True  # intermediate token maps go through the final norm
    norm_pix_loss: bool = False
    sar_wavelength: float | None = None  # pseudo-wavelength (µm) the weights use for SAR bands

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise BadInput(
                f"img_size {self.img_size} must be a multiple of patch_size {self.patch_size}"
            )

    @classmethod
    def of_size(cls, size: str = "base", **overrides: Any) -> OFAConfig:
        """The config of a named size (``SIZES``), with any field overridden."""
        if size not in SIZES:
            raise BadInput(f"unknown model size {size!r}; choose one of {', '.join(SIZES)}")
        known = [f.name for f in dataclasses.fields(cls) if f.name != "size"]
        unknown = set(overrides) - set(known)
        if unknown:
            raise TypeError(
                f"unknown architecture option(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return cls(size=size, **{**SIZES[size], **overrides})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> OFAConfig:
        """The config a checkpoint stored (``to_dict``); keys it lacks take their defaults."""
        d = dict(d)
        return cls.of_size(d.pop("size", "base"), **d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def grid(self) -> tuple[int, int]:
        """The patch grid of the trained image size."""
        return (self.img_size // self.patch_size, self.img_size // self.patch_size)
