"""Inference in bf16: the precision choice, and results close to fp32 on real scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ofa_explore import load_pretrained
from ofa_explore import precision as prec
from ofa_explore.demo import sample_path
from ofa_explore.engine import predict_raster
from ofa_explore.io import open_raster

SCENE = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "s2_chesapeake"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


def test_auto_picks_bf16_only_where_the_cpu_computes_it(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f avx512_bf16\n")
    assert prec.cpu_has_fast_bf16(info)
    info.write_text("processor : 0\nflags : fpu sse avx2 avx512f\n")
    assert not prec.cpu_has_fast_bf16(info)
    assert not prec.cpu_has_fast_bf16(tmp_path / "missing")
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: True)
    assert prec.resolve_precision("auto", CPU) == "bf16"
    monkeypatch.setattr(prec, "cpu_has_fast_bf16", lambda: False)
    assert prec.resolve_precision("auto", CPU) == "fp32"
    assert prec.resolve_precision("bf16", CPU) == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        prec.resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16, fp16, auto"):
        prec.resolve_precision("half", CPU)
    assert not prec.fused_attention_for("bf16", CPU) and prec.fused_attention_for("fp32", CPU)


def test_bf16_embeddings_stay_close_to_fp32(model):
    fp32 = predict_raster(model, sample_path("naip_rgbn_2020.tif"), "embed")
    bf16 = predict_raster(model, sample_path("naip_rgbn_2020.tif"), "embed", precision="bf16")
    assert bf16.precision == "bf16" and fp32.precision == "fp32"
    a, b = fp32.data.values, bf16.data.values
    assert not np.array_equal(a, b)  # it did run in another precision
    cosine = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
    assert cosine.min() >= 0.99, cosine.min()
    assert all(block.attn.fused_attn for block in model.blocks)  # restored after the run


@pytest.mark.skipif(not SCENE.is_dir(), reason="notebooks/data/s2_chesapeake is missing")
def test_bf16_class_map_equals_fp32(model):
    scene = open_raster(sorted(SCENE.glob("B*.tif"))).isel(y=slice(0, 640), x=slice(0, 640))
    fp32 = predict_raster(model, scene, "classify").data.values
    bf16 = predict_raster(model, scene, "classify", precision="bf16").data.values
    assert (fp32 == bf16).mean() >= 0.99, (fp32 == bf16).mean()
    assert len(np.unique(fp32)) >= 3  # a real multi-class map, not one colour


def test_bf16_patch_embedding_is_right_on_every_cpu(model, shared):
    """On CPUs with AMX (Intel Sapphire Rapids and later) oneDNN's bf16 convolution with stride
    = kernel, the patch embedding, gave wrong values and NaN: 12-band Sentinel-2 L2A on 64 px
    tiles, a 13-band strip 8 px wide (tiles of 64 x 8). It now runs in float32 on the CPU;
    on other CPUs this passed before as well."""
    folder = sorted((shared / "bigearthnet" / "S2").glob("S2*"))[0]
    l2a = open_raster(sorted(folder.glob("*_B*.tif")))  # 12 bands, 120 x 120 px
    chip = sorted((shared / "eurosat" / "Forest").glob("*.tif"))[0]
    strip = open_raster(chip).isel(x=slice(0, 8))  # 13 bands, 64 x 8 px
    for scene in (l2a, strip):
        a = predict_raster(model, scene, "embed").data.values
        b = predict_raster(model, scene, "embed", precision="bf16").data.values
        assert np.isfinite(b).all()
        cosine = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
        assert cosine.min() >= 0.99, cosine.min()
