"""OFANet behaviour: shapes, masking, reconstruction, learning, position embeddings, bad input."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ofa_explore import OFANet, get_modality, hyperspectral_modality, list_modalities
from ofa_explore.errors import CLI_WORDS, ModelMismatch
from ofa_explore.heads import classify, segment
from ofa_explore.model import OFAConfig, set_fused_attention

IMG, PATCH = 32, 8
L = (IMG // PATCH) ** 2


def small_model(modalities=(), **kw) -> OFANet:
    torch.manual_seed(0)
    kw.setdefault("depth", 2)
    return OFANet("tiny", modalities=modalities, img_size=IMG, patch_size=PATCH, **kw).eval()


def sample(modality, batch=2, size=IMG) -> torch.Tensor:
    """Plausible values in the sensor's own units: mean + std * noise."""
    m = get_modality(modality) if isinstance(modality, str) else modality
    mean = torch.tensor(m.mean).view(1, -1, 1, 1)
    std = torch.tensor(m.std).view(1, -1, 1, 1)
    return mean + std * torch.randn(
        batch, m.num_bands, size, size, generator=torch.Generator().manual_seed(1)
    )


def check_shapes(model, x, modality):
    C = x.shape[1]
    loss, pred, mask = model(x, modality)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (2, L, PATCH * PATCH * C)
    assert mask.shape == (2, L)
    feats = model.forward_features(x, modality)
    assert feats.shape == (2, 1 + L, model.config.embed_dim)
    image, mask_img = model.reconstruct(x, modality, seed=0)
    assert image.shape == x.shape and mask_img.shape == (2, 1, IMG, IMG)


@pytest.mark.parametrize("name", list_modalities())
def test_shapes_with_own_patch_embedding(name):
    model = small_model([name])
    assert name in model.patch_embeds
    check_shapes(model, sample(name), name)


@pytest.mark.parametrize("name", list_modalities())
def test_shapes_through_wavelength_conditioned_embedding(name):
    model = small_model([])
    assert not model.patch_embeds
    check_shapes(model, sample(name), name)


def test_custom_hyperspectral_sensor_runs_from_wavelengths_alone():
    sensor = hyperspectral_modality([0.45 + 0.01 * i for i in range(40)], name="my_cube")
    model = small_model(["s2"])
    check_shapes(model, sample(sensor), sensor)


def test_mask_ratio_is_exact():
    model = small_model(["s2_l1c"])
    x = sample("s2_l1c")
    for ratio in (0.5, 0.75, 0.9):
        _, _, mask = model(x, "s2_l1c", mask_ratio=ratio)
        expected_hidden = L - int(L * (1 - ratio))
        assert mask.sum(dim=1).tolist() == [expected_hidden] * 2
        assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_reconstruct_keeps_visible_patches_and_returns_its_mask():
    model = small_model(["rgbn"])
    x = sample("rgbn")
    image, mask = model.reconstruct(x, "rgbn", mask_ratio=0.75, seed=7)
    visible = mask.expand_as(x) == 0
    assert torch.equal(image[visible], x[visible])  # visible pixels untouched, bit for bit
    assert not torch.allclose(image[~visible], x[~visible])  # hidden ones are predictions
    # the mask is whole patches, 75% of them
    patches = mask[:, 0, ::PATCH, ::PATCH]
    assert torch.equal(
        mask, patches.repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)[:, None]
    )
    assert patches.sum().item() == 2 * (L - int(L * 0.25))
    # the same seed repeats, another seed differs
    again, mask_again = model.reconstruct(x, "rgbn", mask_ratio=0.75, seed=7)
    assert torch.equal(again, image) and torch.equal(mask_again, mask)
    _, other = model.reconstruct(x, "rgbn", mask_ratio=0.75, seed=8)
    assert not torch.equal(other, mask)
    # and it is the mask forward() draws from the same seed
    _, _, fmask = model(x, "rgbn", generator=torch.Generator().manual_seed(7))
    assert torch.equal(fmask.reshape(2, 4, 4), patches)


def test_reconstruction_is_in_input_units():
    model = small_model(["s1_grd"])
    x = sample("s1_grd")  # dB, around -12 / -19
    image, mask = model.reconstruct(x, "s1_grd", seed=0)
    hidden = image[mask.expand_as(x) == 1]
    assert -60 < hidden.mean().item() < 20  # denormalised back to dB, not z-scores


def test_loss_falls_when_overfitting_real_eurosat_batch(eurosat_batch):
    torch.manual_seed(0)
    model = OFANet("tiny", modalities=["s2_l1c"], img_size=64, patch_size=8, depth=4)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss, _, _ = model(eurosat_batch, "s2_l1c", mask_ratio=0.75)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < 0.5 * first, (first, last)


def test_plain_attention_computes_what_the_fused_kernel_does():
    model = small_model(["s2"], decoder_depth=1).train()
    x = sample("s2")
    results = []
    for fused in (True, False):
        set_fused_attention(model, fused)
        assert all(b.attn.fused_attn is fused for b in [*model.blocks, *model.decoder_blocks])
        model.zero_grad()
        loss, _, _ = model(x, "s2", generator=torch.Generator().manual_seed(0))
        loss.backward()
        results.append((loss.detach(), model.blocks[0].attn.qkv.weight.grad.clone()))
    (loss_fused, grad_fused), (loss_plain, grad_plain) = results
    assert torch.allclose(loss_fused, loss_plain, atol=1e-5)
    assert torch.allclose(grad_fused, grad_plain, atol=1e-5, rtol=1e-4)


def test_position_embeddings_interpolate_for_other_sizes():
    model = small_model(["s2"])
    x = sample("s2", size=IMG)
    wide = torch.cat([x, x[..., :16]], dim=3)[:, :, :24]  # 24 x 48 pixels: a 3 x 6 grid
    feats = model.forward_features(wide, "s2")
    assert feats.shape == (2, 1 + 3 * 6, model.config.embed_dim)
    loss, pred, mask = model(wide, "s2")
    assert pred.shape[1] == 18 and torch.isfinite(loss)
    pos = model._pos(model.pos_embed, (3, 6))
    assert pos.shape == (1, 19, model.config.embed_dim)
    assert torch.equal(pos[:, 0], model.pos_embed[:, 0])  # class slot kept
    assert (
        model._pos(model.pos_embed, model.config.grid) is model.pos_embed
    )  # trained size untouched
    big = model.forward_features(sample("s2", size=64), "s2")
    assert big.shape[1] == 1 + 64


def test_dtype_uint16_input_is_accepted(eurosat_batch):
    model = small_model(["s2_l1c"])
    feats = model.forward_features(eurosat_batch[:1, :, :IMG, :IMG].to(torch.int32), "s2_l1c")
    assert feats.dtype == torch.float32


# ---------------------------------------------------------------- bad input
def test_wrong_band_count_names_modality_bands_and_count():
    model = small_model(["s2"])
    with pytest.raises(ValueError) as err:
        model(torch.zeros(1, 4, IMG, IMG), "s2")
    msg = str(err.value)
    assert "'s2'" in msg and "9 bands" in msg and "B4, B3, B2" in msg and "got 4" in msg


def test_size_not_multiple_of_patch():
    model = small_model(["rgb"])
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        model.forward_features(torch.zeros(1, 3, 30, 32), "rgb")
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model.forward_features(torch.zeros(1, 3, 4, 4), "rgb")


def test_nan_input_is_refused_with_nodata_hint():
    model = small_model(["rgb"])
    x = sample("rgb")
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(x, "rgb")


def test_missing_batch_dimension():
    model = small_model(["rgb"])
    with pytest.raises(ValueError, match=r"x\[None\]"):
        model.forward_features(torch.zeros(3, IMG, IMG), "rgb")


def test_unknown_modality_lists_known_and_how_to_register():
    model = small_model(["rgb"])
    with pytest.raises(ValueError) as err:
        model(sample("rgb"), "sentinel-99")
    assert "s2_l1c" in str(err.value) and "register_modality" in str(err.value)


def test_bad_mask_ratio_and_size():
    model = small_model(["rgb"])
    with pytest.raises(ValueError, match="mask_ratio"):
        model(sample("rgb"), "rgb", mask_ratio=1.0)
    with pytest.raises(ValueError, match="tiny, small, base, large, huge"):
        OFANet("giant")
    with pytest.raises(TypeError, match="unknown architecture"):
        OFANet("tiny", dept=3)


def test_model_without_wavelength_embedding_says_which_modalities_it_knows():
    model = small_model(["rgb"], wavelength_embed=False)
    with pytest.raises(ValueError, match="knows rgb"):
        model(sample("s2"), "s2")


def test_head_refuses_other_modality():
    model = small_model(["s2_l1c", "rgb"])
    model.heads.add("landcover", ["a", "b"], modality="s2_l1c")
    assert classify(model, sample("s2_l1c"), "s2_l1c").shape == (2, 2)
    with pytest.raises(
        ModelMismatch, match="no scene head of this model takes 'rgb'.*landcover for s2_l1c"
    ) as err:
        classify(model, sample("rgb"), "rgb")
    assert "train a head on 'rgb' imagery (`ofa train-head`)" in err.value.render(CLI_WORDS)
    assert "--" not in str(err.value)  # in the API's own words
    with pytest.raises(ValueError, match="'landcover' was trained on 's2_l1c' imagery, not 'rgb'"):
        classify(model, sample("rgb"), "rgb", head="landcover")


def test_segmentation_head_gives_per_pixel_logits_and_picks_its_blocks():
    model = small_model(["rgb"])
    model.heads.add("trees", ["background", "tree"], kind="segmentation", modality="rgb")
    info = model.heads.info["trees"]
    assert info["layers"][-1] == model.config.depth - 1 and info["colors"][1].startswith("#")
    x = sample("rgb")
    assert segment(model, x, "rgb").shape == (x.shape[0], 2, x.shape[2], x.shape[3])
    assert classify(model, x, "rgb", head="trees").shape == (x.shape[0], 2)
    with pytest.raises(ValueError, match="no scene head"):
        classify(model, x, "rgb")
    with pytest.raises(ValueError, match="unique"):
        model.heads.add("dup", ["a", "a"])
    with pytest.raises(ValueError, match="block indices"):
        model.heads.add("bad", ["a", "b"], kind="segmentation", modality="rgb", layers=[99])
    with pytest.raises(ValueError, match="needs the modality"):
        model.heads.add("bad", ["a", "b"], kind="segmentation")


def test_reconstruct_can_return_the_prediction_everywhere():
    model = small_model(["rgb"])
    x = sample("rgb")
    pasted, _ = model.reconstruct(x, "rgb", mask_ratio=0.0)
    assert torch.equal(pasted, x)  # nothing hidden: the input itself
    predicted, mask = model.reconstruct(x, "rgb", mask_ratio=0.0, keep_visible=False)
    assert mask.sum() == 0 and not torch.allclose(predicted, x)


def test_config_is_one_frozen_dataclass_that_round_trips():
    model = small_model(["rgb"])
    c = model.config
    assert isinstance(c, OFAConfig) and c.depth == 2 and c.embed_dim == 192 and c.grid == (4, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.depth = 3
    assert OFAConfig.from_dict(c.to_dict()) == c
    assert OFANet(c, ["rgb"]).config == c
    assert not hasattr(model, "patch_size")  # no second copy of a config value


def test_head_set_orders_selects_and_forgets_heads():
    model = small_model(["rgb"])
    rgb = get_modality("rgb")
    model.heads.add("a", ["x", "y"], modality="rgb")
    model.heads.add("b", ["x", "y"], modality="rgb")
    assert model.heads.select(None, "scene", rgb) == "a"
    model.heads.set_default("b")
    assert list(model.heads) == list(model.heads.info) == ["b", "a"]
    assert model.heads.select(None, "scene", rgb) == "b"
    assert "heads.a.1.weight" in model.state_dict()  # keys as before: heads.<name>.*
    del model.heads["b"]
    assert list(model.heads.info) == ["a"]
    with pytest.raises(ModelMismatch, match="no head named 'b'") as err:
        model.heads.select("b")
    assert "--head" in err.value.render(CLI_WORDS)


def test_embedding_refusal_names_the_setting_in_each_shell():
    model = small_model(["rgb"], wavelength_embed=False)
    with pytest.raises(ModelMismatch) as err:
        model.forward_features(sample("s2"), "s2")
    assert "checkpoint=" in str(err.value) and "--checkpoint" in err.value.render(CLI_WORDS)
