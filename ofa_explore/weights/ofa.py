"""OFA-Net weights in the layout of the OFA pre-training code into OFANet.

The original OFA-Net checkpoints are no longer published; this reads a file a user still has.
Layout of ``pretraining/models_base_ofa_mae.py`` in zhu-xlab/DOFA (ViT-B/16; D = 768, Dd = 512):
``patch_embed.weight_generator.*`` / ``patch_embed.fclayer.*`` (wavelength-conditioned
embedding, conv padding 1), ``cls_token``, ``pos_embed [1, 197, D]``, ``blocks.N.*``, ``norm``,
``decoder_embed``, ``mask_token [1, 1, Dd]``, ``decoder_pos_embed``, ``decoder_blocks.N.*``,
``decoder_norm``, ``decoder_pred.weight_generator.*`` (fc_weight [16*16*Dd, 128]; generated
weights, no bias, flat band-major output), plus ``projector.*`` and ``teacher.*`` (ImageNet ViT)
used only for distillation. Per-modality modules are read as ``patch_embed_<modality>.proj.*``
and ``decoder_pred_<modality>.*`` (the naming the code's own comments use for OFA-Net's
per-modality embeddings) for the five pre-training modalities s1, s2, naip, gaofen, enmap.
"""

from __future__ import annotations

import re

import torch

from ..modalities import get_modality, sar_wavelength
from ..model import OFANet
from .convert import (
    ConversionError,
    count_blocks,
    finish,
    grid_size,
    size_for,
    transfer,
    wavelength_patch_size,
)

OFA_MODALITIES = ("s1", "s2", "naip", "gaofen", "enmap")
_PER_MODALITY = re.compile(r"^(patch_embed|decoder_pred)_([a-z0-9]+)\.(.+)$")
_IGNORE = {
    "teacher.": "ImageNet ViT teacher, used only for distillation during pre-training",
    "projector.": "distillation projector, used only during pre-training",
}


def convert_ofa(
    state: dict[str, torch.Tensor],
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
) -> OFANet:
    """OFA pre-training state dict (encoder and MAE decoder) -> OFANet."""
    if "cls_token" not in state or "pos_embed" not in state:
        raise ConversionError("not an OFA-Net state dict: missing cls_token / pos_embed")
    D = state["cls_token"].shape[-1]
    dynamic = "patch_embed.weight_generator.fc_weight.weight" in state
    modalities = _per_modality(state)
    if dynamic:
        k = wavelength_patch_size(state, "patch_embed", D)
    elif modalities:
        k = state[f"patch_embed_{modalities[0]}.proj.weight"].shape[-1]
    else:
        raise ConversionError("not an OFA-Net state dict: it has no patch embedding")
    arch = dict(embed_dim=D, depth=count_blocks(state, "blocks"), num_heads=num_heads or D // 64)
    if "decoder_embed.weight" in state:
        Dd = state["decoder_embed.weight"].shape[0]
        arch.update(
            decoder_embed_dim=Dd,
            decoder_depth=count_blocks(state, "decoder_blocks"),
            decoder_num_heads=decoder_num_heads or Dd // 32,
        )
    model = OFANet(
        size_for(D),
        modalities=modalities,
        patch_size=k,
        img_size=grid_size(state["pos_embed"]) * k,
        wavelength_embed=dynamic,
        norm_pix_loss=True,
        sar_wavelength=sar_wavelength("ofa"),
        wavelength_embed_padding=1,
        wavelength_head_order="dofa",
        **arch,
    )

    def rename(key: str) -> str | None:
        if key.startswith("patch_embed."):
            return "wavelength_embed." + key[len("patch_embed.") :]
        if key.startswith("decoder_pred.weight_generator."):
            return "wavelength_head." + key[len("decoder_pred.") :]
        if m := _PER_MODALITY.match(key):
            kind, name, rest = m.groups()
            return (
                f"patch_embeds.{name}.{rest}"
                if kind == "patch_embed"
                else f"decoder_heads.{name}.{rest}"
            )
        return key

    report = transfer(model, state, "OFA-Net (OFA pre-training code)", rename, _IGNORE)
    report.notes.append(
        "trained with norm_pix_loss (train_mae_all.sh): reconstruct() rescales "
        "each hidden patch with its true mean and spread, for display"
    )
    if "decoder_embed.weight" not in state:
        report.notes.append("no MAE decoder in the file: reconstruct() would be untrained")
    return finish(
        model, report, {"weights_family": "OFA-Net", "sar_wavelength": model.config.sar_wavelength}
    )


def _per_modality(state: dict[str, torch.Tensor]) -> list[str]:
    names = []
    for key in state:
        m = _PER_MODALITY.match(key)
        if m and m.group(2) not in names:
            names.append(m.group(2))
    for name in names:
        if name not in OFA_MODALITIES:
            raise ConversionError(
                f"per-modality keys for unknown modality {name!r}; OFA-Net "
                f"has {', '.join(OFA_MODALITIES)}"
            )
        weight = state.get(f"patch_embed_{name}.proj.weight")
        if weight is not None and weight.shape[1] != get_modality(name).num_bands:
            raise ConversionError(
                f"patch_embed_{name} takes {weight.shape[1]} bands but "
                f"modality {name!r} has {get_modality(name).num_bands}"
            )
    return names
