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
