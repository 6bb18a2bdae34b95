"""The model's ViT blocks (``ofa_explore/vit.py``) are timm's without importing timm: the same
state-dict keys, the same initial weights from a seed and bit-identical outputs and gradients;
the shipped model gives the numbers it gave before they replaced timm's (issue 28); and the
model imports without timm or torchvision."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

SAMPLES = resources.files("ofa_explore") / "data" / "samples"
REFERENCE = Path(__file__).with_name("vit_reference.json")


def test_model_and_engine_import_neither_timm_nor_torchvision():
    """Nor does loading the shipped model (built on the meta device, where some ops, normal_
    and sin among them, would import torch._dynamo: 1.5 s)."""
    code = (
        "import sys, ofa_explore.model, ofa_explore.pretrained, ofa_explore.engine.run; "
        "ofa_explore.pretrained.load_pretrained(); "
        "print(sorted(m for m in ('timm', 'torchvision', 'torch._dynamo') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------ against timm itself
def _pair(init_values=None):
    from ofa_explore import vit

    timm_vit = pytest.importorskip("timm.models.vision_transformer", reason="no timm here")
    norm = partial(nn.LayerNorm, eps=1e-6)
    torch.manual_seed(3)
    ours = vit.Block(96, 3, 4.0, qkv_bias=True, init_values=init_values, norm_layer=norm)
    torch.manual_seed(3)
    theirs = timm_vit.Block(96, 3, 4.0, qkv_bias=True, init_values=init_values, norm_layer=norm)
    return ours, theirs


@pytest.mark.parametrize("init_values", [None, 0.1])
@pytest.mark.parametrize("fused", [True, False])
def test_block_is_timms_bit_for_bit(init_values, fused):
    ours, theirs = _pair(init_values)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()):
        assert torch.equal(a, b)  # same seed, same parameters: same initial weights
    with torch.no_grad():  # weights nowhere near their initial values
        for p in theirs.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours.load_state_dict(theirs.state_dict())
    ours.attn.fused_attn = theirs.attn.fused_attn = fused
    x = torch.randn(2, 17, 96, generator=torch.Generator().manual_seed(0))
    results = []
    for block in (ours, theirs):
        xi = x.clone().requires_grad_()
        y = block(xi)
        y.square().sum().backward()
        results.append((y, xi.grad, block.attn.qkv.weight.grad, block.mlp.fc1.weight.grad))
        with torch.autocast("cpu", torch.bfloat16):
            results[-1] += (block(x),)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_patch_embed_and_position_helpers_are_timms():
    from ofa_explore import vit

    timm_layers = pytest.importorskip("timm.layers", reason="no timm here")
    from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed

    torch.manual_seed(5)
    ours = vit.PatchEmbed(64, 8, 13, 96)
    torch.manual_seed(5)
    theirs = timm_layers.PatchEmbed(64, 8, 13, 96, strict_img_size=False)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 13, 96, 80)
    assert torch.equal(ours(x), theirs(x))
    for grid in ((8, 8), (12, 10)):
        assert torch.equal(vit.sincos_2d(grid, 96), build_sincos2d_pos_embed(list(grid), dim=96))
    pos = torch.randn(1, 65, 96)
    for new in ([12, 10], [8, 8], [4, 16]):
        assert torch.equal(
            vit.resample_abs_pos_embed(pos, new, [8, 8]),
            timm_layers.resample_abs_pos_embed(pos, new, [8, 8], num_prefix_tokens=1),
        )


# ------------------------------------------------- the shipped model, before and after
# vit_reference.json: reference_outputs() of the tree before vit.py (16ed28a, with timm 1.0.31),
# written by `python tests/test_vit.py`: for each output the start of the SHA-256 of its float32
# bytes and its first values, and the platform (torch, CPU capability) they were computed on.


def _chip(name: str, size: int = 64) -> torch.Tensor:
    import rasterio

    with rasterio.open(str(SAMPLES / name)) as src:
        return torch.from_numpy(src.read()[:, :size, :size].astype(np.float32))[None]


def reference_outputs() -> dict[str, tuple[str, list[float]]]:
    """The shipped model's outputs on real chips through every path of the model: own and
    wavelength-conditioned patch embeddings, interpolated positions, the encoder (fused and
    plain attention, bf16 autocast), the decoder, the scene head, a segmentation head and a
    seeded new model's loss and gradients. Uses only what existed before vit.py."""
    from ofa_explore import OFANet, load_pretrained
    from ofa_explore.heads import classify, segment
    from ofa_explore.model import set_fused_attention

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = load_pretrained()
        s2, s1 = _chip("eurosat_forest.tif"), _chip("bigearthnet_s1_20170613.tif")
        naip, oli = _chip("naip_rgbn_2020.tif", 96), _chip("landsat8_l1_gulf_coast.tif")
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            out["features_s2"] = model.forward_features(s2, "s2_l1c")
            out["features_s1"] = model.forward_features(s1, "s1_grd")
            out["features_rgbn_96px"] = model.forward_features(naip, "rgbn")
            out["features_oli_wavelengths"] = model.forward_features(oli, "landsat_oli_l1")
            out["logits_s2"] = classify(model, s2, "s2_l1c")
            out["reconstruct_s2"] = model.reconstruct(s2, "s2_l1c", seed=0)[0]
            out["reconstruct_oli"] = model.reconstruct(oli, "landsat_oli_l1", seed=1)[0]
            with torch.autocast("cpu", torch.bfloat16):
                out["features_s2_bf16"] = model.forward_features(s2, "s2_l1c").float()
            set_fused_attention(model, False)
            out["features_s2_plain"] = model.forward_features(s2, "s2_l1c")
            with torch.autocast("cpu", torch.bfloat16):
                out["features_s2_plain_bf16"] = model.forward_features(s2, "s2_l1c").float()
            set_fused_attention(model, True)
            torch.manual_seed(0)
            model.heads.add("seg", ["a", "b", "c"], kind="segmentation", modality="s2_l1c")
            out["segment_s2"] = segment(model, s2, "s2_l1c", "seg")
        torch.manual_seed(0)
        new = OFANet("tiny", modalities=["s2_l1c"], img_size=32, patch_size=8, depth=2)
        out["new_model_state"] = torch.cat([v.flatten().float() for v in new.state_dict().values()])
        loss, _, _ = new(s2[..., :32, :32], "s2_l1c", generator=torch.Generator().manual_seed(0))
        loss.backward()
        out["new_model_loss"] = loss.detach()[None]
        out["new_model_grads"] = torch.cat(
            [p.grad.flatten() for p in new.parameters() if p.grad is not None]
        )
    finally:
        torch.set_num_threads(threads)
    return {
        name: (
            hashlib.sha256(t.float().contiguous().numpy().tobytes()).hexdigest()[:16],
            [round(v, 6) for v in t.float().flatten()[:4].tolist()],
        )
        for name, t in out.items()
    }


def platform() -> dict[str, str]:
    """What decides the bits: torch, its CPU kernels, and AMX (oneDNN picks other kernels where
    the CPU has it, and torch names both 'AVX512')."""
    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    return {
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "amx": str("amx_bf16" in flags),
    }


def test_shipped_model_gives_the_same_numbers_as_before():
    reference = json.loads(REFERENCE.read_text())
    got = reference_outputs()
    assert sorted(got) == sorted(reference["outputs"])
    for name, (digest, first) in reference["outputs"].items():
        if reference["platform"] == platform():  # bit for bit
            assert got[name][0] == digest, name
        else:  # other kernels round differently: the numbers agree
            assert np.allclose(got[name][1], first, rtol=1e-2, atol=1e-3), name


if __name__ == "__main__":  # python tests/test_vit.py: this tree's reference, as JSON
    print(json.dumps({"platform": platform(), "outputs": reference_outputs()}, indent=1))
