"""Shared machinery of the weight converters: read a published file safely, build the matching
OFANet from the tensor shapes, copy every tensor under its new name and account for the rest."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import BadInput, NotFound
from ..model import SIZES, OFANet


class ConversionError(BadInput):
    """The file does not hold the layout the converter was asked for."""


@dataclass
class ConversionReport:
    """What a conversion did with each key: mapped, deliberately ignored, or left initialised."""

    layout: str
    mapped: dict[str, str] = field(default_factory=dict)  # source key -> OFANet key
    ignored: dict[str, str] = field(default_factory=dict)  # source key -> reason
    initialised: list[str] = field(default_factory=list)  # OFANet keys the file lacks
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"{self.layout}: {len(self.mapped)} tensors mapped, {len(self.ignored)} ignored, "
            f"{len(self.initialised)} OFANet tensors left at their initial values"
        ]
        reasons: dict[str, int] = {}
        for reason in self.ignored.values():
            reasons[reason] = reasons.get(reason, 0) + 1
        lines += [f"  ignored ({n}): {reason}" for reason, n in reasons.items()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a published .pth, unpickled with ``weights_only=True`` (no code runs);
    a ``{"model": ...}`` / ``{"state_dict": ...}`` wrapper is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged or unsafe files
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ConversionError(
            f"cannot read {path} as PyTorch weights ({type(err).__name__}: {first}). Either the "
            "file is damaged or incomplete (download it again), or it holds Python objects "
            "beside the tensors (e.g. training arguments), which are never unpickled here; if "
            "you trust it, extract the tensors once with torch.save(torch.load(f, "
            "weights_only=False)['model'], 'weights.pth')"
        ) from None
    for key in ("model", "state_dict"):  # training checkpoints wrap the weights
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConversionError(f"{path} does not contain a state dict of tensors")
    return obj


def count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    """How many transformer blocks ``prefix.N.*`` the state dict has."""
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
    ids = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(ids) + 1 if ids else 0


def size_for(embed_dim: int) -> str:
    """The named size whose width matches; other dimensions are passed as overrides."""
    for name, dims in SIZES.items():
        if dims["embed_dim"] == embed_dim:
            return name
    return "base"


def heads_for(embed_dim: int) -> int:
    """Attention heads of the named size of this width (ViT-H: 16 of 80), else heads of 64."""
    return (
        SIZES[size_for(embed_dim)]["num_heads"]
        if any(d["embed_dim"] == embed_dim for d in SIZES.values())
        else embed_dim // 64
    )


def wavelength_patch_size(state: dict[str, torch.Tensor], prefix: str, embed_dim: int) -> int:
    """Kernel size of a DOFA wavelength-conditioned embedding, from its generator's output."""
    numel = state[f"{prefix}.weight_generator.fc_weight.weight"].shape[0] // embed_dim
    k = int(round(numel**0.5))
    if k * k * embed_dim != state[f"{prefix}.weight_generator.fc_weight.weight"].shape[0]:
        raise ConversionError(f"{prefix}.weight_generator.fc_weight has an unexpected shape")
    return k


def grid_size(pos_embed: torch.Tensor) -> int:
    """Side of the square patch grid of a [1, 1+L, D] position embedding."""
    side = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if side * side + 1 != pos_embed.shape[1]:
        raise ConversionError(
            f"pos_embed of shape {tuple(pos_embed.shape)} is not a square grid plus a class token"
        )
    return side


def transfer(
    model: OFANet,
    state: dict[str, torch.Tensor],
    layout: str,
    rename: Callable[[str], str | None],
    ignore: dict[str, str],
) -> ConversionReport:
    """Copy ``state`` into ``model``: each key is ignored (prefix in ``ignore``), renamed, or an
    error; shapes must match exactly. Keys the model has and the file lacks are reported."""
    report = ConversionReport(layout)
    target = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        reason = next((r for prefix, r in ignore.items() if key.startswith(prefix)), None)
        if reason:
            report.ignored[key] = reason
            continue
        new_key = rename(key)
        if new_key is None or new_key not in target:
            unknown.append(key)
            continue
        if tuple(target[new_key].shape) != tuple(value.shape):
            raise ConversionError(
                f"{layout}: {key} has shape {tuple(value.shape)} but OFANet's "
                f"{new_key} needs {tuple(target[new_key].shape)}"
            )
        new_state[new_key] = value.to(target[new_key].dtype)
        report.mapped[key] = new_key
    if unknown:
        raise ConversionError(
            f"these keys are not part of the {layout} layout: "
            f"{', '.join(sorted(unknown)[:8])}{' ...' if len(unknown) > 8 else ''}"
            "; is this the right --from choice?"
        )
    model.load_state_dict(new_state, strict=False)
    report.initialised = sorted(set(target) - set(new_state))
    return report


def finish(model: OFANet, report: ConversionReport, extra: dict[str, Any]) -> OFANet:
    model.provenance = {
        "converted_from": report.layout,
        "conversion": report.summary().splitlines(),
        **extra,
    }
    model.conversion_report = report
    return model.eval()
