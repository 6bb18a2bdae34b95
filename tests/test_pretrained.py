"""The shipped checkpoint: loads offline, small, documented, and better than a trivial baseline."""

from __future__ import annotations

import pytest

from ofa_explore import load_pretrained, read_metadata
from ofa_explore.demo import SAMPLES, sample_chip
from ofa_explore.metrics import reconstruction_scores
from ofa_explore.pretrained import shipped_checkpoint_path


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


def test_shipped_checkpoint_is_small_and_documented():
    path = shipped_checkpoint_path()
    assert path.stat().st_size < 20 * 2**20
    meta = read_metadata(path)
    assert meta["provenance"]["steps"] > 1000 and "command" in meta["provenance"]
    assert set(meta["provenance"]["data_licences"]) >= {"s2_l1c", "s1_grd", "rgbn", "rgb"}
    assert (path.parent / "MODEL_CARD.md").read_text().count("|") > 20


@pytest.mark.parametrize("filename", sorted(SAMPLES))
def test_reconstructs_every_shipped_sample_better_than_the_baseline(model, filename):
    x = sample_chip(filename, model.config["img_size"])
    scores = [reconstruction_scores(model, x, SAMPLES[filename], seed=seed) for seed in range(5)]
    model_mse = sum(s["model_mse"] for s in scores) / 5  # over five different masks
    baseline_mse = sum(s["baseline_mse"] for s in scores) / 5
    assert model_mse < baseline_mse, (model_mse, baseline_mse)


def test_every_demo_modality_has_its_own_embedding(model):
    assert set(SAMPLES.values()) <= set(model.patch_embeds)


def test_shipped_landcover_head_is_the_default_for_sentinel2(model, tmp_path, capsys):
    from ofa_explore.cli import main
    from ofa_explore.demo import sample_path

    info = model.head_info["eurosat_landcover"]
    assert info["modality"] == "s2_l1c" and len(info["classes"]) == 10
    assert 0.3 <= info["validation"]["accuracy"] <= 1  # honest, and recorded in the file
    card = (shipped_checkpoint_path().parent / "MODEL_CARD.md").read_text()
    assert f"accuracy {info['validation']['accuracy']:.1%}" in card

    out = tmp_path / "classes.tif"
    assert main(["classify", str(sample_path("eurosat_river.tif")), "-o", str(out), "-q"]) == 0
    assert "8=River" in capsys.readouterr().out and out.exists()
    naip = sample_path("naip_rgbn_2020.tif")
    assert main(["classify", str(naip), "-o", str(tmp_path / "naip.tif"), "-q"]) == 2
    assert "no classification head of this model takes 'rgbn'" in capsys.readouterr().err
