"""State dicts with exactly the key names and shapes of published DOFA / OFA-Net files.

Written from the public model code (TorchGeo ``torchgeo/models/dofa.py``; zhu-xlab/DOFA
``dofa_v2.py`` and ``pretraining/models_base_ofa_mae.py``), for tests: no hub is reachable here.
Sizes are parameters so tests can use small widths with the same layout.
"""

from __future__ import annotations

import torch

WV = 128  # DOFA's wavelength code width


def _t(*shape: int) -> torch.Tensor:
    return torch.randn(*shape) * 0.02


def weight_generator(prefix: str, out: int, embed: int) -> dict[str, torch.Tensor]:
    p = f"{prefix}.weight_generator."
    layer = p + "transformer_encoder.layers.0."
    return {
        p + "weight_tokens": _t(128, WV),
        p + "bias_token": _t(1, WV),
        layer + "self_attn.in_proj_weight": _t(3 * WV, WV),
        layer + "self_attn.in_proj_bias": _t(3 * WV),
        layer + "self_attn.out_proj.weight": _t(WV, WV),
        layer + "self_attn.out_proj.bias": _t(WV),
        layer + "linear1.weight": _t(2048, WV),
        layer + "linear1.bias": _t(2048),
        layer + "linear2.weight": _t(WV, 2048),
        layer + "linear2.bias": _t(WV),
        layer + "norm1.weight": 1 + _t(WV),
        layer + "norm1.bias": _t(WV),
        layer + "norm2.weight": 1 + _t(WV),
        layer + "norm2.bias": _t(WV),
        p + "fc_weight.weight": _t(out, WV),
        p + "fc_weight.bias": _t(out),
        p + "fc_bias.weight": _t(embed, WV),
        p + "fc_bias.bias": _t(embed),
    }


def dofa_patch_embed(prefix: str, k: int, D: int) -> dict[str, torch.Tensor]:
    sd = weight_generator(prefix, k * k * D, D)
    for w in ("w1", "w2"):
        sd[f"{prefix}.fclayer.{w}.weight"] = _t(WV, WV)
        sd[f"{prefix}.fclayer.{w}.bias"] = _t(WV)
    return sd


def vit_blocks(
    prefix: str, depth: int, D: int, layer_scale: bool = False
) -> dict[str, torch.Tensor]:
    sd = {}
    for i in range(depth):
        b = f"{prefix}.{i}."
        sd.update(
            {
                b + "norm1.weight": 1 + _t(D),
                b + "norm1.bias": _t(D),
                b + "attn.qkv.weight": _t(3 * D, D),
                b + "attn.qkv.bias": _t(3 * D),
                b + "attn.proj.weight": _t(D, D),
                b + "attn.proj.bias": _t(D),
                b + "norm2.weight": 1 + _t(D),
                b + "norm2.bias": _t(D),
                b + "mlp.fc1.weight": _t(4 * D, D),
                b + "mlp.fc1.bias": _t(4 * D),
                b + "mlp.fc2.weight": _t(D, 4 * D),
                b + "mlp.fc2.bias": _t(D),
            }
        )
        if layer_scale:
            sd[b + "ls1.gamma"] = _t(D)
            sd[b + "ls2.gamma"] = _t(D)
    return sd


def dofa_v1(D=768, depth=12, k=16, grid=14, extras=("norm", "mask_token", "projector")) -> dict:
    """TorchGeo DOFA (``dofa_base_patch16_224``): patch_embed, cls_token, pos_embed, blocks;
    zhu-xlab's ``DOFA_ViT_base_e100.pth`` also has norm, mask_token and projector."""
    sd = dofa_patch_embed("patch_embed", k, D)
    sd.update({"cls_token": _t(1, 1, D), "pos_embed": _t(1, 1 + grid * grid, D)})
    sd.update(vit_blocks("blocks", depth, D))
    if "norm" in extras:
        sd.update({"norm.weight": 1 + _t(D), "norm.bias": _t(D)})
    if "fc_norm" in extras:
        sd.update(
            {
                "fc_norm.weight": 1 + _t(D),
                "fc_norm.bias": _t(D),
                "head.weight": _t(45, D),
                "head.bias": _t(45),
            }
        )
    if "mask_token" in extras:
        sd["mask_token"] = _t(1, 1, 512)
    if "projector" in extras:
        sd.update({"projector.weight": _t(D, D), "projector.bias": _t(D)})
    return sd


def dofa_v2(D=768, depth=12, k=14, grid=16) -> dict:
    """zhu-xlab ``dofav2_vit_base_e150.pth``: patch_embed + timm ViT under ``model.`` + norm."""
    sd = dofa_patch_embed("patch_embed", k, D)
    sd.update({"model.cls_token": _t(1, 1, D), "model.pos_embed": _t(1, 1 + grid * grid, D)})
    sd.update(vit_blocks("model.blocks", depth, D, layer_scale=True))
    sd.update(
        {
            "model.norm.weight": 1 + _t(D),
            "model.norm.bias": _t(D),
            "norm.weight": 1 + _t(D),
            "norm.bias": _t(D),
        }
    )
    return sd


def ofa_mae(
    D=768, depth=12, Dd=512, dec_depth=8, k=16, grid=14, teacher=True, per_modality=()
) -> dict:
    """``MaskedAutoencoderViT`` of the OFA pre-training code, whole training state dict."""
    sd = dofa_v1(D, depth, k, grid, extras=("norm", "projector"))
    L = 1 + grid * grid
    sd.update(
        {
            "decoder_embed.weight": _t(Dd, D),
            "decoder_embed.bias": _t(Dd),
            "mask_token": _t(1, 1, Dd),
            "decoder_pos_embed": _t(1, L, Dd),
            "decoder_norm.weight": 1 + _t(Dd),
            "decoder_norm.bias": _t(Dd),
        }
    )
    sd.update(vit_blocks("decoder_blocks", dec_depth, Dd))
    sd.update(weight_generator("decoder_pred", k * k * Dd, Dd))
    for name, bands in per_modality:
        sd[f"patch_embed_{name}.proj.weight"] = _t(D, bands, k, k)
        sd[f"patch_embed_{name}.proj.bias"] = _t(D)
        sd[f"decoder_pred_{name}.weight"] = _t(k * k * bands, Dd)
        sd[f"decoder_pred_{name}.bias"] = _t(k * k * bands)
    if teacher:  # a timm ViT-B/16; a few of its keys are enough to be ignored by name
        sd.update(
            {
                "teacher.cls_token": _t(1, 1, D),
                "teacher.pos_embed": _t(1, L, D),
                "teacher.patch_embed.proj.weight": _t(D, 3, 16, 16),
                "teacher.head.weight": _t(1000, D),
            }
        )
        sd.update(vit_blocks("teacher.blocks", 1, D))
    return sd
