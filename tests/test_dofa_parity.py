"""Parity with TorchGeo's own DOFA (torchgeo.models.DOFA, in the [dev] extra): a DOFA state
dict converted by ``convert_dofa_v1`` gives the same tokens and the same pooled features as
TorchGeo's ``forward_features`` (global pool through ``fc_norm``), for ViT-B and ViT-L, on 13-band
Sentinel-2, RGB and SAR inputs at 224 px; the legacy kernel layout equals TorchGeo's embedding as
it was before the fix the legacy files were trained with; a wrong kernel layout is detected as
different."""

from __future__ import annotations

import pytest
import torch

from ofa_explore.modalities import Modality
from ofa_explore.weights import convert_dofa_v1

dofa = pytest.importorskip("torchgeo.models.dofa", reason="torchgeo is in the [dev] extra")

S2 = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
INPUTS = {
    "s2": (S2, "optical"),
    "rgb": ([0.665, 0.56, 0.49], "optical"),
    "sar": ([3.75, 3.75], "sar"),
}  # DOFA v1's SAR pseudo-wavelength (sar_wavelength)
SIZES = {"base": dofa.dofa_base_patch16_224, "large": dofa.dofa_large_patch16_224}


def torchgeo_dofa(size: str) -> torch.nn.Module:
    """TorchGeo's model with random weights, every tensor perturbed (norms included), so that
    no parameter sits at an initial value that would hide a mix-up."""
    torch.manual_seed({"base": 0, "large": 1}[size])
    model = SIZES[size]().eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.02)
    return model


def identity_modality(name: str, waves: list[float], kind: str) -> Modality:
    """Inputs given to both models as they are (mean 0, std 1), with these wavelengths."""
    n = len(waves)
    return Modality(
        name=f"parity_{name}",
        bands=tuple(f"b{i}" for i in range(n)),
        wavelengths=tuple(waves),
        gsd=10.0,
        mean=(0.0,) * n,
        std=(1.0,) * n,
        units="normalised",
        kind=kind,
    )


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def torchgeo_outputs(model, x, waves) -> tuple[torch.Tensor, torch.Tensor]:
    seen = {}
    hook = model.blocks[-1].register_forward_hook(lambda m, i, o: seen.setdefault("tokens", o))
    pooled = model.forward_features(x, waves)
    hook.remove()
    return seen["tokens"], pooled


def assert_same_outputs(ours, theirs, batch: int) -> None:
    """Tokens and pooled features of both models within 1e-5 relative, on every input kind."""
    for name, (waves, kind) in INPUTS.items():
        x = torch.randn(batch, len(waves), 224, 224)
        tokens, pooled = torchgeo_outputs(theirs, x, waves)
        with torch.no_grad():
            m = identity_modality(name, waves, kind)
            assert relative(ours.forward_features(x, m), tokens) < 1e-5, name
            assert relative(ours.pooled_features(x, m), pooled) < 1e-5, name


@pytest.mark.parametrize("size", ["base", "large"])
def test_converted_dofa_equals_torchgeo_tokens_and_pooled_features(size):
    theirs = torchgeo_dofa(size)
    state = {k: v.clone() for k, v in theirs.state_dict().items()}
    ours = convert_dofa_v1(state).eval()
    assert ours.config.num_heads == theirs.num_heads
    torch.manual_seed(2)
    assert_same_outputs(ours, theirs, batch=2)


def legacy_embedding(self, x: torch.Tensor, wavelengths: torch.Tensor):
    """TorchGeo's DOFAEmbedding as it was before PR #2256, the code the legacy files were
    trained with: the generated kernel read as view(D, C, k, k) instead of view(C, k, k, D)."""
    waves = self.fclayer(dofa.position_embedding(self.dynamic_embed_dim, wavelengths * 1000))
    weight, bias = self.weight_generator(waves)
    k = self.kernel_size
    kernel = weight.reshape(self.embed_dim, wavelengths.size(0), k, k) * self.scaler
    out = torch.nn.functional.conv2d(
        x, kernel, bias.reshape(self.embed_dim) * self.scaler, stride=k, padding=1
    )
    return out.flatten(2).transpose(1, 2), waves


def test_legacy_kernel_layout_equals_torchgeo_before_the_fix(monkeypatch):
    theirs = torchgeo_dofa("base")
    monkeypatch.setattr(dofa.DOFAEmbedding, "forward", legacy_embedding)
    state = {k: v.clone() for k, v in theirs.state_dict().items()}
    ours = convert_dofa_v1(state, kernel_layout="dckk").eval()  # dofa-base-v1-legacy
    torch.manual_seed(3)
    assert_same_outputs(ours, theirs, batch=1)


def test_wrong_kernel_layout_is_detected_as_different():
    theirs = torchgeo_dofa("base")
    state = {k: v.clone() for k, v in theirs.state_dict().items()}
    wrong = convert_dofa_v1(state, kernel_layout="dckk").eval()
    x = torch.randn(1, 13, 224, 224)
    tokens, pooled = torchgeo_outputs(theirs, x, S2)
    with torch.no_grad():
        m = identity_modality("s2", S2, "optical")
        assert relative(wrong.forward_features(x, m), tokens) > 1e-2
        assert relative(wrong.pooled_features(x, m), pooled) > 1e-2


def test_huge_has_dofas_16_heads():
    import inspect

    from ofa_explore.weights.convert import heads_for

    assert "'num_heads': 16" in inspect.getsource(dofa.dofa_huge_patch14_224)  # 1280 wide
    assert heads_for(1280) == 16
    assert heads_for(768) == 12 and heads_for(1024) == 16 and heads_for(384) == 6
