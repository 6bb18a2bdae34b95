"""What a batch in a sensor's own units must look like before the network sees it, and the
normalisation with that sensor's statistics (both ways).

The model's public verbs call ``prepare`` in one line, so callers pass pixels as read from the
file; the network itself only ever sees normalised tensors.

Shapes: B batch, C bands, H x W pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from .errors import BadInput, ModelMismatch
from .modalities import Modality, get_modality
from .protocol import band_names, count

if TYPE_CHECKING:
    from .model import OFANet


def resolve_modality(
    modality: str | Modality, known: Mapping[str, Modality] | None = None
) -> Modality:
    """A modality by name: ``known`` records first (a model's own, which travel in its
    checkpoint), then the registry. A ``Modality`` is returned as it is."""
    if isinstance(modality, Modality):
        return modality
    if known and modality in known:
        return known[modality]
    return get_modality(modality)


def require_embedding(model: OFANet, modality: Modality) -> None:
    """Fail early, naming what the model knows, when it cannot embed ``modality``: neither its
    own patch embedding (with the same band count) nor a wavelength-conditioned one."""
    if modality.name in model.patch_embeds:
        trained = model.modalities[modality.name]
        if trained.num_bands != modality.num_bands:
            raise ModelMismatch(
                f"modality '{modality.name}' has {count(modality.num_bands, 'band')} but this "
                "model's "
                f"'{modality.name}' embedding takes {trained.num_bands}",
                "register the custom modality under another name",
                modality=modality.name,
            )
        return
    if model.wavelength_embed is None:
        raise ModelMismatch(
            f"this model cannot embed '{modality.name}' imagery: it has no patch embedding for "
            "it and no wavelength-conditioned embedding (it knows "
            f"{', '.join(model.modalities)})",
            "use a {checkpoint} with a wavelength-conditioned embedding (the shipped one has it) "
            f"or one trained on '{modality.name}'",
            modality=modality.name,
        )


def check_input(x: torch.Tensor, modality: Modality, patch_size: int) -> torch.Tensor:
    """Validate a [B, C, H, W] batch against the modality and the patch size; returns it as
    float. Each refusal says what to change."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [B, C, H, W], got {type(x).__name__}")
    if x.ndim != 4:
        raise BadInput(
            f"x must have shape [B, C, H, W], got {tuple(x.shape)}",
            "add a batch dimension with x[None] for a single image",
        )
    c, h, w = x.shape[1:]
    if c != modality.num_bands:
        raise BadInput(
            f"modality '{modality.name}' expects {count(modality.num_bands, 'band')} "
            f"({band_names(modality.bands)}), got {c}",
            "pass the bands in this order or choose the matching {modality} "
            "({modalities} lists them)",
            modality=modality.name,
        )
    p = patch_size
    if h < p or w < p or h % p or w % p:
        raise BadInput(
            f"image size {h}x{w} is not a positive multiple of the patch size {p}",
            f"crop or pad it to a multiple of {p} (the inference engine tiles and pads rasters "
            "of any size)",
        )
    if not x.is_floating_point():
        x = x.float()
    if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():  # the cheap sum first
        # (NaN/inf propagate into it; huge finite values may overflow it: then look closer)
        raise BadInput(
            "x contains NaN or infinite values (nodata?)",
            "fill or mask them before calling the model (the inference engine keeps nodata out "
            "of the model for you)",
        )
    return x


def stats(x: torch.Tensor, modality: Modality) -> tuple[torch.Tensor, torch.Tensor]:
    """The modality's per-band mean and std as [1, C, 1, 1], in ``x``'s dtype and device."""
    mean = torch.tensor(modality.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(modality.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return mean, std


def normalize(x: torch.Tensor, modality: Modality) -> torch.Tensor:
    """Sensor units -> z-scores: [B, C, H, W] -> [B, C, H, W]."""
    mean, std = stats(x, modality)
    return (x - mean) / std


def denormalize(x: torch.Tensor, modality: Modality) -> torch.Tensor:
    """z-scores -> sensor units: [B, C, H, W] -> [B, C, H, W]."""
    mean, std = stats(x, modality)
    return x * std + mean


def prepare(
    x: torch.Tensor, modality: str | Modality, known: Mapping[str, Modality], patch_size: int
) -> tuple[torch.Tensor, Modality]:
    """Resolve, check and normalise: sensor units [B, C, H, W] -> (normalised [B, C, H, W],
    the Modality)."""
    m = resolve_modality(modality, known)
    return normalize(check_input(x, m, patch_size), m), m


__all__ = [
    "resolve_modality",
    "require_embedding",
    "check_input",
    "normalize",
    "denormalize",
    "prepare",
    "stats",
]
