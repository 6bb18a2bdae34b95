"""Checkpoints: bit-exact round trip, atomic writes, and refusal of damaged or unsafe files."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from conftest import PickleBomb

from ofa_explore import CheckpointError, OFANet, load_checkpoint, read_metadata, save_checkpoint
from ofa_explore.heads import classify
from ofa_explore.modalities import hyperspectral_modality


@pytest.fixture(scope="module")
def model() -> OFANet:
    torch.manual_seed(0)
    cube = hyperspectral_modality([0.4 + 0.02 * i for i in range(12)], name="my_cube")
    m = OFANet("tiny", modalities=["s2_l1c", "s1_grd", cube], img_size=32, patch_size=8, depth=2)
    m.heads.add(
        "landcover",
        ["Forest", "River", "Urban"],
        modality="s2_l1c",
        colors=["#228b22", "#1e90ff", "#dc143c"],
    )
    for p in m.parameters():  # make every tensor non-trivial
        p.data.add_(torch.randn_like(p) * 1e-3)
    return m.eval()


@pytest.fixture()
def saved(model, tmp_path):
    return save_checkpoint(model, tmp_path / "model.safetensors", trained_on="unit test", steps=3)


def test_round_trip_is_bit_exact(model, saved):
    loaded = load_checkpoint(saved)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    x = torch.rand(2, 13, 32, 32) * 3000
    assert torch.equal(model.forward_features(x, "s2_l1c"), loaded.forward_features(x, "s2_l1c"))
    assert torch.equal(classify(model, x, "s2_l1c"), classify(loaded, x, "s2_l1c"))


def test_loading_draws_nothing_at_random_and_gives_writable_weights(model, saved, tmp_path):
    """The model is built on the meta device (load_checkpoint): every tensor comes from the file,
    into memory of its own, and the heads' device marker is real."""
    model.heads.add("parcels", ["a", "b"], kind="segmentation", modality="s2_l1c")
    try:
        path = save_checkpoint(model, tmp_path / "seg.safetensors")
    finally:
        del model.heads["parcels"]
    rng = torch.random.get_rng_state()
    loaded = load_checkpoint(path)
    assert torch.equal(torch.random.get_rng_state(), rng)  # no random initialisation ran
    tensors = [*loaded.parameters(), *loaded.buffers()]
    assert not any(t.is_meta for t in tensors) and loaded.heads._device.device.type == "cpu"
    assert not loaded.pos_embed.requires_grad and loaded.cls_token.requires_grad
    with torch.no_grad():
        for p in loaded.parameters():
            p.add_(1.0)  # its own memory: the file's bytes and a second load are untouched
    again = load_checkpoint(path).state_dict()
    for key, value in model.state_dict().items():
        assert torch.equal(again[key], value), key


def test_metadata_describes_architecture_modalities_heads_provenance(model, saved):
    meta = read_metadata(saved)
    assert meta["config"]["size"] == "tiny" and meta["config"]["depth"] == 2
    assert meta["config"]["patch_size"] == 8 and meta["config"]["img_size"] == 32
    assert meta["modalities"]["s2_l1c"]["bands"][-1] == "B8A"
    assert meta["modalities"]["my_cube"]["wavelengths"][0] == pytest.approx(0.4)
    assert meta["heads"]["landcover"]["classes"] == ["Forest", "River", "Urban"]
    assert meta["provenance"]["trained_on"] == "unit test" and meta["provenance"]["steps"] == 3
    loaded = load_checkpoint(saved)
    assert (
        loaded.modalities["my_cube"] == model.modalities["my_cube"]
    )  # custom sensor travels along
    assert loaded.heads.info["landcover"]["colors"][0] == "#228b22"


def test_half_precision_storage(model, tmp_path):
    path = save_checkpoint(model, tmp_path / "half.safetensors", dtype=torch.float16)
    full = save_checkpoint(model, tmp_path / "full.safetensors")
    assert path.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_checkpoint(path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=2e-3, rtol=1e-3)


def test_save_is_atomic_and_keeps_the_old_file_on_failure(model, saved, monkeypatch):
    before = saved.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, saved, note="second save")
    assert saved.read_bytes() == before
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temp file left


def test_truncated_file_is_refused(saved):
    data = saved.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 10):
        saved.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated|corrupt"):
            load_checkpoint(saved)


def test_corrupt_weights_are_refused(saved):
    data = bytearray(saved.read_bytes())
    data[-1000] ^= 0xFF  # one flipped byte deep in the tensor data
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_checkpoint(saved)


def test_corrupt_header_is_refused(saved):
    data = bytearray(saved.read_bytes())
    data[20:30] = b"\x00" * 10
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(saved)


def test_pickle_payloads_are_refused_and_never_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    raw = tmp_path / "raw.safetensors"
    raw.write_bytes(pickle.dumps({"weights": PickleBomb()}))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(raw)
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"weights": torch.zeros(2), "x": PickleBomb()}, zipped)
    with pytest.raises(CheckpointError, match="PyTorch .pth"):
        load_checkpoint(zipped)
    assert not (tmp_path / "PWNED_BY_PICKLE").exists()


@pytest.mark.parametrize("first_bytes", [b"\x80", b"PK"])
def test_header_length_that_looks_like_pickle_or_zip_still_loads(model, tmp_path, first_bytes):
    # The 8-byte header length is little-endian: a header of 0x..80 bytes starts with the pickle
    # opcode, one of 0x4B50 bytes with "PK". Seen in CI: a real checkpoint refused as a pickle.
    path = tmp_path / "model.safetensors"
    save_checkpoint(model, path, note="")
    length = int.from_bytes(path.read_bytes()[:8], "little")
    target = int.from_bytes(first_bytes, "little")
    step = 256 ** len(first_bytes)
    wanted = length + (target - length) % step  # the next length with those low bytes
    for pad in range(wanted - length - 16, wanted - length + 16):
        save_checkpoint(model, path, note="x" * pad)
        if path.read_bytes()[: len(first_bytes)] == first_bytes:
            break
    else:
        pytest.fail(f"no padding gave a header length starting with {first_bytes!r}")
    assert load_checkpoint(path).config == model.config
    path.write_bytes(path.read_bytes()[:100])  # and cut short, it is called truncated, not foreign
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(path)


def test_foreign_safetensors_and_missing_file(tmp_path):
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="without ofa_explore metadata"):
        load_checkpoint(other)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="folder"):
        load_checkpoint(tmp_path)


def test_non_json_metadata_is_refused_before_writing(model, tmp_path):
    with pytest.raises(TypeError, match="JSON"):
        save_checkpoint(model, tmp_path / "m.safetensors", bad=object())
    assert not list(tmp_path.iterdir())
