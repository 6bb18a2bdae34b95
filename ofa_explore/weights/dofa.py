"""DOFA weights (Xiong et al., "Neural Plasticity-Inspired Multimodal Foundation Model for Earth
Observation", 2024) into OFANet's wavelength-conditioned path.

Layouts, with key names and shapes as in the public code (ViT-B shown; D = 768):
- v1, TorchGeo ``torchgeo/models/dofa.py`` (also zhu-xlab/DOFA ``models_dwv.py``):
  ``patch_embed.weight_generator.{weight_tokens [128, 128], bias_token [1, 128],
  transformer_encoder.layers.0.*, fc_weight [16*16*D, 128], fc_bias [D, 128]}``,
  ``patch_embed.fclayer.{w1, w2}``, ``cls_token [1, 1, D]``, ``pos_embed [1, 197, D]``,
  ``blocks.N.*`` (timm), and depending on the file ``norm``, ``fc_norm``, ``head``,
  ``mask_token``, ``projector``. The generated kernel is used with conv padding 1.
- v2, zhu-xlab/DOFA ``dofa_v2.py``: the same embedding with a 14-pixel kernel, then a timm
  VisionTransformer under ``model.`` with LayerScale (``ls1.gamma``, ``ls2.gamma``), a learnt
  ``model.pos_embed [1, 257, D]``, ``model.norm`` and an extra top-level ``norm``.
"""

from __future__ import annotations

import torch

from ..modalities import sar_wavelength
from ..model import OFANet
from .convert import (
    ConversionError,
    count_blocks,
    finish,
    grid_size,
    heads_for,
    size_for,
    transfer,
    wavelength_patch_size,
)

_V1_IGNORE = {
    "head.": "task head of a fine-tuned DOFA classifier",
    "projector.": "distillation projector, used only during pre-training",
    "mask_token": "MAE mask token; the file has no decoder to use it with",
}


def convert_dofa_v1(
    state: dict[str, torch.Tensor], kernel_layout: str = "ckkd", num_heads: int | None = None
) -> OFANet:
    """DOFA v1 (TorchGeo layout) -> OFANet. ``kernel_layout='dckk'`` for files published before
    TorchGeo PR #2256 (e.g. ``dofa_base_patch16_224-7cc0f413.pth``); the default is the current
    one."""
    _require(
        state,
        ["cls_token", "pos_embed", "patch_embed.weight_generator.fc_weight.weight"],
        "DOFA v1",
    )
    D = state["cls_token"].shape[-1]
    k = wavelength_patch_size(state, "patch_embed", D)
    # TorchGeo's DOFA (global_pool=True) has no final norm: forward_features is
    # fc_norm(mean of the patch tokens); a file with `norm` (and no fc_norm) normalises tokens
    global_pool = "norm.weight" not in state or "fc_norm.weight" in state
    model = OFANet(
        size_for(D),
        modalities=(),
        patch_size=k,
        img_size=grid_size(state["pos_embed"]) * k,
        sar_wavelength=sar_wavelength("dofa_v1"),
        wavelength_embed_padding=1,
        wavelength_kernel_layout=kernel_layout,
        embed_dim=D,
        depth=count_blocks(state, "blocks"),
        num_heads=num_heads or heads_for(D),
        final_norm="norm.weight" in state,
        pool_norm=global_pool,
    )

    def rename(key: str) -> str:
        return (
            "wavelength_embed." + key[len("patch_embed.") :]
            if key.startswith("patch_embed.")
            else key
        )

    report = transfer(model, state, "DOFA v1", rename, _V1_IGNORE)
    report.notes.append(
        f"kernel layout {kernel_layout!r} "
        + (
            "(current DOFA/TorchGeo weights)"
            if kernel_layout == "ckkd"
            else "(DOFA weights from before TorchGeo PR #2256)"
        )
    )
    if global_pool:
        report.notes.append(
            "pooled features are fc_norm(mean of the patch tokens), as TorchGeo's "
            "DOFA.forward_features"
            + (
                ""
                if "fc_norm.weight" in state
                else "; the file has no fc_norm: unit scale, zero shift, as TorchGeo initialises it"
            )
        )
    _note_common(report)
    return finish(
        model, report, {"weights_family": "DOFA v1", "sar_wavelength": model.config.sar_wavelength}
    )


def convert_dofa_v2(
    state: dict[str, torch.Tensor], kernel_layout: str = "dckk", num_heads: int | None = None
) -> OFANet:
    """DOFA v2 (patch 14, timm ViT under ``model.``) -> OFANet. zhu-xlab's ``dofa_v2.py`` embeds
    with ``wave_dynamic_layer.Dynamic_MLP_OFA``, whose kernel is ``view(D, C, k, k)`` ("dckk"),
    and returns the block outputs of its ``out_indices`` without the final norm."""
    _require(
        state,
        ["model.cls_token", "model.pos_embed", "patch_embed.weight_generator.fc_weight.weight"],
        "DOFA v2",
    )
    D = state["model.cls_token"].shape[-1]
    k = wavelength_patch_size(state, "patch_embed", D)
    layer_scale = "model.blocks.0.ls1.gamma" in state
    model = OFANet(
        size_for(D),
        modalities=(),
        patch_size=k,
        img_size=grid_size(state["model.pos_embed"]) * k,
        sar_wavelength=sar_wavelength("dofa_v2"),
        wavelength_embed_padding=1,
        init_values=1e-5 if layer_scale else None,
        embed_dim=D,
        wavelength_kernel_layout=kernel_layout,
        norm_layers=False,
        depth=count_blocks(state, "model.blocks"),
        num_heads=num_heads or heads_for(D),
    )

    def rename(key: str) -> str | None:
        if key.startswith("patch_embed."):
            return "wavelength_embed." + key[len("patch_embed.") :]
        if key.startswith("model."):
            return key[len("model.") :]
        return None

    ignore = {"norm.": "DOFA v2's extra top-level norm; its forward normalises with model.norm"}
    report = transfer(model, state, "DOFA v2", rename, ignore)
    report.notes.append(
        f"kernel layout {kernel_layout!r} (zhu-xlab wave_dynamic_layer: "
        "view(D, C, k, k)); intermediate token maps without the final norm, as "
        "dofa_v2.py's out_features"
    )
    _note_common(report)
    if "model.norm.weight" not in state:
        report.notes.append(
            "no final norm in the file: the encoder ends in a LayerNorm with unit "
            "scale and zero shift"
        )
    return finish(
        model, report, {"weights_family": "DOFA v2", "sar_wavelength": model.config.sar_wavelength}
    )


def _require(state: dict[str, torch.Tensor], keys: list[str], layout: str) -> None:
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConversionError(f"not a {layout} state dict: missing {', '.join(missing)}")


def _note_common(report) -> None:
    report.notes.append(
        "no MAE decoder in these weights: embeddings (forward_features) are "
        "pre-trained, reconstruct() would use an untrained decoder"
    )
