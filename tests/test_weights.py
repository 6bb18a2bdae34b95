"""Converters for published DOFA / OFA-Net weights, on state dicts of the published layouts."""

from __future__ import annotations

import pickle

import published_layouts as layouts  # tests/published_layouts.py
import pytest
import torch
from conftest import PickleBomb

from ofa_explore import load_checkpoint
from ofa_explore.cli import main as cli
from ofa_explore.inputs import normalize, resolve_modality
from ofa_explore.weights import (
    WEIGHTS,
    ConversionError,
    PublishedWeights,
    WeightsUnavailableError,
    convert_dofa_v1,
    convert_dofa_v2,
    convert_ofa,
    fetch_weights,
    load_published,
    read_state_dict,
)


def assert_every_key_accounted(model, state, report, ignored_prefixes=()):
    assert set(report.mapped) | set(report.ignored) == set(state)
    for key in report.ignored:
        assert key.startswith(tuple(ignored_prefixes)), key
    target = model.state_dict()
    for src, dst in report.mapped.items():
        assert torch.equal(target[dst], state[src]), (src, dst)


def test_dofa_base_v1_full_size_maps_every_key():
    state = layouts.dofa_v1()  # ViT-B/16 at 224, exactly as published
    model = convert_dofa_v1(state)
    report = model.conversion_report
    assert_every_key_accounted(model, state, report, ("mask_token", "projector."))
    assert model.config.embed_dim == 768 and model.config.depth == 12
    assert model.config.patch_size == 16 and model.config.img_size == 224
    encoder = [
        k
        for k in model.state_dict()
        if not k.startswith(("decoder", "mask_token", "wavelength_head"))
    ]
    assert set(encoder) <= set(report.mapped.values())  # the whole encoder comes from the file
    assert model.config.sar_wavelength == 3.75
    feats = model.forward_features(torch.rand(1, 2, 224, 224) * 10 - 15, "s1_grd")
    assert feats.shape == (1, 197, 768)


def test_dofa_v1_keeps_fc_norm_ignores_the_head_and_norm_may_be_missing():
    state = layouts.dofa_v1(D=64, depth=2, extras=("fc_norm",))
    model = convert_dofa_v1(state)
    assert "head.weight" in model.conversion_report.ignored
    assert "fc_norm.weight" in model.conversion_report.mapped  # TorchGeo pools through it
    assert torch.equal(model.fc_norm.weight, state["fc_norm.weight"])
    assert model.config.final_norm is False and model.config.pool_norm is True
    assert any("fc_norm(mean" in n for n in model.conversion_report.notes)
    without = convert_dofa_v1(layouts.dofa_v1(D=64, depth=2, extras=()))
    assert any("no fc_norm" in n for n in without.conversion_report.notes)


def test_dofa_kernel_layouts_differ_and_padding_matches_dofa():
    state = layouts.dofa_v1(D=64, depth=1)
    current, legacy = convert_dofa_v1(state), convert_dofa_v1(state, kernel_layout="dckk")
    x = torch.rand(1, 3, 224, 224) * 255
    a, b = current.forward_features(x, "rgb"), legacy.forward_features(x, "rgb")
    assert a.shape == b.shape == (1, 197, 64)
    assert not torch.allclose(a, b)
    assert current.wavelength_embed.padding == 1  # DOFA convolves with padding 1
    # the generated kernel, by DOFA's formula: view(C, k, k, D) then permute to [D, C, k, k]
    embed = current.wavelength_embed
    waves = current.wavelength_codes(resolve_modality("rgb", current.modalities), x.device)
    weight, bias = embed.weight_generator(waves)
    kernel = weight.view(3, 16, 16, 64).permute(3, 0, 1, 2) * 0.01
    expected = torch.nn.functional.conv2d(
        normalize(x, resolve_modality("rgb", current.modalities)),
        kernel,
        bias * 0.01,
        stride=16,
        padding=1,
    )
    got = embed(normalize(x, resolve_modality("rgb", current.modalities)), waves)
    torch.testing.assert_close(got, expected.flatten(2).transpose(1, 2))


def test_dofa_v2_maps_every_key():
    state = layouts.dofa_v2(D=64, depth=2)
    model = convert_dofa_v2(state)
    assert_every_key_accounted(model, state, model.conversion_report, ("norm.",))
    assert model.config.patch_size == 14 and model.config.img_size == 224
    assert model.config.init_values == 1e-5 and model.config.sar_wavelength == 5.405
    assert torch.equal(model.blocks[1].ls2.gamma, state["model.blocks.1.ls2.gamma"])
    assert model.forward_features(torch.randn(1, 2, 224, 224) - 12, "s1_grd").shape == (1, 257, 64)


def test_ofa_pretraining_layout_maps_encoder_and_decoder():
    state = layouts.ofa_mae(D=64, depth=2, Dd=32, dec_depth=1, per_modality=[("s2", 9), ("s1", 2)])
    model = convert_ofa(state)
    report = model.conversion_report
    assert_every_key_accounted(model, state, report, ("teacher.", "projector."))
    assert report.initialised == []  # nothing of OFANet left untrained
    assert list(model.patch_embeds) == ["s2", "s1"]
    assert model.config.decoder_embed_dim == 32 and model.config.decoder_depth == 1
    x = torch.rand(1, 9, 224, 224) * 255
    image, mask = model.reconstruct(x, "s2", seed=0)  # own embedding and pixel head
    assert image.shape == x.shape
    image, _ = model.reconstruct(
        torch.rand(1, 4, 224, 224) * 255, "gaofen", seed=0
    )  # generated ones
    assert image.shape == (1, 4, 224, 224)


def test_wrong_layout_and_shape_are_named():
    with pytest.raises(ConversionError, match="not a DOFA v2 state dict"):
        convert_dofa_v2(layouts.dofa_v1(D=64, depth=1))
    state = layouts.dofa_v1(D=64, depth=1)
    state["mystery.weight"] = torch.zeros(3)
    with pytest.raises(ConversionError, match="mystery.weight"):
        convert_dofa_v1(state)
    state = layouts.ofa_mae(
        D=64, depth=1, Dd=32, dec_depth=1, teacher=False, per_modality=[("s2", 4)]
    )
    with pytest.raises(ConversionError, match="takes 4 bands"):
        convert_ofa(state)


def test_load_published_from_local_file_reads_weights_only(tmp_path):
    path = tmp_path / "dofa_base_patch16_224-a0275954.pth"
    state = layouts.dofa_v1(D=768, depth=1)  # ViT-B wide, one block: small enough to test
    torch.save(state, path)
    model = load_published("dofa-base-v1", path=path)
    assert model.provenance["weights"] == "dofa-base-v1"
    assert model.provenance["licence"] == "CC-BY-4.0"
    # training checkpoints wrap the weights under "model"
    torch.save({"model": state}, path)
    assert load_published("dofa-base-v1", path=path).config.embed_dim == 768


def test_pickle_payload_in_pth_is_never_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"cls_token": PickleBomb()}, f)
    with pytest.raises(ConversionError, match="never unpickled"):
        read_state_dict(path)
    torch.save(
        {"model": layouts.dofa_v1(D=64, depth=1), "args": PickleBomb()}, tmp_path / "wrapped.pth"
    )
    with pytest.raises(ConversionError):
        read_state_dict(tmp_path / "wrapped.pth")
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


def test_truncated_pth_is_refused(tmp_path):
    path = tmp_path / "half.pth"
    torch.save(layouts.dofa_v1(D=64, depth=1), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="damaged or incomplete"):
        read_state_dict(path)


def test_offline_download_fails_with_how_to_pass_a_local_file(tmp_path, monkeypatch):
    monkeypatch.setenv("OFA_EXPLORE_CACHE", str(tmp_path / "cache"))
    entry = PublishedWeights(
        "dofa-test",
        "dofa_v1",
        "w.pth",
        "http://127.0.0.1:9/w.pth",
        "CC-BY-4.0",
        "-",
        "test entry",
        768,
    )
    with pytest.raises(WeightsUnavailableError) as err:
        fetch_weights(entry)
    assert "path=" in str(err.value) and "ofa convert" in str(err.value)
    assert not list((tmp_path / "cache").glob("*"))  # no partial download left behind
    with pytest.raises(WeightsUnavailableError, match="no longer published"):
        load_published("ofa-net-base")
    with pytest.raises(WeightsUnavailableError, match="download is off"):
        load_published("dofa-base-v1", download=False)
    with pytest.raises(ValueError, match="known: dofa-base-v1"):
        load_published("dofa-huge")


def test_registry_entries_carry_metadata():
    for entry in WEIGHTS.values():
        assert entry.licence and entry.citation and entry.filename.endswith(".pth")
    assert WEIGHTS["dofa-base-v1-legacy"].kernel_layout == "dckk"
    assert WEIGHTS["dofa-base-v1"].kernel_layout == "ckkd"


def test_cli_convert_round_trip(tmp_path, capsys):
    src = tmp_path / "dofa.pth"
    torch.save(layouts.dofa_v2(D=768, depth=1), src)
    out = tmp_path / "dofa.safetensors"
    assert cli(["convert", str(src), "--from", "dofa-base-v2", "-o", str(out)]) == 0
    model = load_checkpoint(out)
    direct = load_published("dofa-base-v2", path=src)
    x = torch.randn(1, 2, 56, 56) - 12
    torch.testing.assert_close(
        model.forward_features(x, "s1_grd"), direct.forward_features(x, "s1_grd")
    )
    assert model.config.sar_wavelength == 5.405
    assert cli(["convert", str(src), "--from", "dofa-base-v1", "-o", str(out)]) == 2
    assert "not a DOFA v1" in capsys.readouterr().err


def test_a_file_of_another_size_is_refused_naming_it(tmp_path):
    state = layouts.dofa_v1(D=384, depth=1)  # a ViT-S file
    path = tmp_path / "dofa_small.pth"
    torch.save(state, path)
    with pytest.raises(
        ConversionError,
        match=r"holds ViT-S \(384 wide\), not the ViT-B \(768 "
        r"wide\) of dofa-base-v1",
    ):
        load_published("dofa-base-v1", path=path)


def test_dofa_v2_uses_its_published_kernel_layout_and_unnormed_maps():
    """zhu-xlab's dofa_v2.py: Dynamic_MLP_OFA reshapes the generated kernel view(D, C, k, k)
    and the out_features are block outputs without the final norm."""
    model = convert_dofa_v2(layouts.dofa_v2(D=64, depth=2)).eval()
    assert WEIGHTS["dofa-base-v2"].kernel_layout == model.config.wavelength_kernel_layout == "dckk"
    m = resolve_modality("rgb", model.modalities)
    x = normalize(torch.randn(1, 3, 56, 56), m)
    embed = model.wavelength_embed
    weight, bias = embed.weight_generator(model.wavelength_codes(m, x.device))
    expected = torch.nn.functional.conv2d(
        x,
        weight.reshape(64, 3, 14, 14) * embed.scaler,
        bias.reshape(64) * embed.scaler,
        stride=14,
        padding=1,
    )
    with torch.no_grad():
        got = embed(x, model.wavelength_codes(m, x.device))
        torch.testing.assert_close(got, expected.flatten(2).transpose(1, 2))
        h = model._with_cls(*model._embed(x, m))
        for block in model.blocks:
            h = block(h)
        last = model.forward_intermediates(x, m, [1])[0]
        torch.testing.assert_close(last, h[:, 1:].transpose(1, 2).reshape(1, 64, 4, 4))
