"""`ofa train-head --task change` and `ofa change --checkpoint` with the trained head, on real
OSCD crops (Sentinel-2 L1C and their change maps, read from the shared data into tmp_path,
never into the repository): the head travels in the checkpoint, scores change on the zero-shot
score's scale (standard deviations of the scene), and each bad CSV is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from map_steps import step_ratio  # tests/map_steps.py
from rasterio.windows import Window
from rasters import crop  # tests/rasters.py

from ofa_explore.cli import main
from ofa_explore.metrics import ranking_scores

CITIES = {  # a corner of each city with labelled change in it (row, col)
    "rennes": (96, 288),
    "nantes": (256, 64),
}
SIZE = 128


def _crop(src: Path, dst: Path, row: int, col: int) -> Path:
    return crop(src, dst, Window(col, row, SIZE, SIZE))


@pytest.fixture(scope="module")
def pairs_csv(shared, tmp_path_factory) -> Path:
    """Two labelled OSCD crops and their CSV (relative paths)."""
    root = shared / "change" / "oscd"
    if not root.is_dir():
        pytest.skip(f"no OSCD pairs at {root}")
    folder = tmp_path_factory.mktemp("pairs")
    rows = ["before,after,mask"]
    for city, (row, col) in CITIES.items():
        files = sorted((root / city).glob(f"{city}_*.tif"))
        dates = [f for f in files if not f.name.endswith("_change.tif")]
        (folder / city).mkdir()
        names = []
        for src in [*dates, root / city / f"{city}_change.tif"]:
            names.append(f"{city}/{src.name}")
            _crop(src, folder / city / src.name, row, col)
        rows.append(",".join(names))
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


@pytest.fixture(scope="module")
def trained(pairs_csv, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("head") / "change.safetensors"
    code = main(
        ["train-head", "--task", "change", "--data", str(pairs_csv), "-o", str(out)]
        + ["--epochs", "3", "-q"]
    )
    assert code == 0
    return out


def test_trained_head_travels_in_the_checkpoint_and_scores_in_standard_deviations(
    trained, pairs_csv, tmp_path, capsys
):
    from ofa_explore.checkpoint import read_metadata

    info = read_metadata(trained)["heads"]["change"]
    assert info["kind"] == "change" and info["modality"] == "s2_l1c"
    assert "2 pairs" in info["trained_on"]
    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    out = tmp_path / "c.tif"
    argv = ["change", str(before), str(after), "-o", str(out), "--checkpoint", str(trained)]
    assert main([*argv, "-q", "--device", "cpu", "--threshold", "auto"]) == 0
    assert "changed:" in capsys.readouterr().out
    with rasterio.open(out) as o, rasterio.open(folder / "rennes_change.tif") as lab:
        assert o.descriptions == ("change_score", "change_mask")
        assert o.tags()["ofa_change_score"] == "z(change logit of head 'change', Gaussian 1 px)"
        assert o.tags()["ofa_change_threshold"] == "2.5"  # auto: a head's measured threshold
        assert o.tags()["ofa_change_head"] == "change"  # QGIS draws a head's ramp from it
        score, mask = o.read()
        label = lab.read(1)
    # standardised over the scene (from a sample of tiles: here the crop's 4 tiles)
    assert abs(score.mean()) < 0.2 and 0.8 < score.std() < 1.2, (score.mean(), score.std())
    assert ((score >= 2.5) == (mask == 1)).all()
    auroc, ap, _ = ranking_scores((label == 1).ravel(), score.ravel())
    assert auroc > 0.7, (auroc, ap)  # seen in training: it must have learnt that crop

    zero = tmp_path / "z.tif"
    zero_argv = ["change", str(before), str(after), "-o", str(zero), "--checkpoint", str(trained)]
    zero_argv += ["--head", "zero-shot", "--threshold", "auto"]
    assert main([*zero_argv, "-q", "--device", "cpu"]) == 0
    with rasterio.open(zero) as z:
        assert "z(pixels)" in z.tags()["ofa_change_score"]
        assert z.tags()["ofa_change_threshold"] == "3"  # auto: the zero-shot score's
        assert "ofa_change_head" not in z.tags()
        assert not np.allclose(z.read(1), score, atol=0.1)  # not the head's


def test_a_change_head_is_three_heads_from_three_seeds_averaged(
    trained, pairs_csv, tmp_path, capsys
):
    """One head's AP depends on its seed: `ofa train-head --task change` trains MEMBERS heads
    alike from seeds --seed, --seed + 1, ... and scores with the mean of their logits; with
    `--members 1`, one head. Members of another task, or none, are one line."""
    import torch

    from ofa_explore import load_checkpoint
    from ofa_explore.downstream.change import MEMBERS
    from ofa_explore.heads import ChangeEnsemble, ChangeHead

    model = load_checkpoint(trained)
    head, info = model.heads["change"], model.heads.info["change"]
    assert isinstance(head, ChangeEnsemble) and len(head) == MEMBERS == info["members"] == 3
    p, dim = model.config.patch_size, model.config.embed_dim
    generator = torch.Generator().manual_seed(0)
    levels = [torch.randn(2, dim, 4, 4, generator=generator) for _ in info["layers"] * 2]
    image = torch.randn(2, info["image_channels"], 4 * p, 4 * p, generator=generator)
    with torch.no_grad():
        each = [member(levels, image) for member in head]
        assert torch.allclose(head(levels, image), torch.stack(each).mean(0), atol=1e-6)
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # trained from other seeds

    one = tmp_path / "one.safetensors"
    argv = ["train-head", "--task", "change", "--data", str(pairs_csv), "-o", str(one)]
    assert main([*argv, "--epochs", "1", "--members", "1"]) == 0
    assert "head 'change' (1 member): trained on 2 pairs" in capsys.readouterr().out
    single = load_checkpoint(one)
    assert isinstance(single.heads["change"], ChangeHead)
    assert "members" not in single.heads.info["change"]
    for extra in (["--members", "0"], ["--members", "2", "--task", "scene"]):
        out = tmp_path / "bad.safetensors"
        bad = ["train-head", "--data", str(pairs_csv), "-o", str(out), "-q", *extra]
        if "--task" not in extra:
            bad += ["--task", "change"]
        assert main(bad) == 2
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "only a change head has members" in err[0], err
        assert not out.exists()


def test_the_change_map_starts_at_the_threshold_of_the_score_it_shows(trained, pairs_csv):
    """The widget's slider starts at `--threshold auto`'s value: 2.5 for the head's score,
    3 for the zero-shot score of the same model."""
    pytest.importorskip("ipyleaflet")
    from ofa_explore.checkpoint import load_checkpoint
    from ofa_explore.widgets import ChangeMap

    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    model = load_checkpoint(trained)
    for head, threshold in ((None, 2.5), ("zero-shot", 3.0)):
        w = ChangeMap(model, before, after, head=head, basemap=False, precision="fp32")
        assert w.threshold.max > threshold  # the slider reaches it: not clipped to the top
        assert w.threshold.value == threshold, head
        assert w.area_above()["pixels"] == int((w.score >= threshold).sum())
        assert (w.result.head is None) == (head == "zero-shot")  # the head that scored
        top = threshold + (6 if head == "zero-shot" else 1.5)  # the ramp QGIS draws too
        assert f"<span>{top:g}</span>" in w.colorbar.value
        w.threshold.value = 0.0  # the wide-mask warning names the score's own default
        assert f"a threshold of {threshold:g} (the measured default" in w.status.value


def test_held_out_pairs_are_scored(pairs_csv, tmp_path, capsys):
    out = tmp_path / "h.safetensors"
    argv = ["train-head", "--task", "change", "--data", str(pairs_csv), "-o", str(out)]
    assert main([*argv, "--epochs", "1", "--val-fraction", "0.5", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "trained on 1 pairs" in printed and "average precision" in printed


def _bad_csv(capsys, tmp_path: Path, text: str) -> str:
    csv = tmp_path / "bad.csv"
    csv.write_text(text)
    out = tmp_path / "x.safetensors"
    argv = ["train-head", "--task", "change", "--data", str(csv), "-o", str(out), "-q"]
    assert main([*argv, "--epochs", "1"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("ofa train-head: error:"), err
    assert not out.exists()
    return err[0]


def test_bad_pair_csvs_are_one_line(pairs_csv, tmp_path, capsys):
    root = pairs_csv.parent
    b, a, m = (f"{root}/rennes/{n}" for n in sorted(p.name for p in (root / "rennes").iterdir()))
    # sorted: rennes_20150821, rennes_20170621, rennes_change
    assert "missing.tif does not exist" in _bad_csv(
        capsys, tmp_path, f"before,after,mask\n{b},{a},{root}/missing.tif\n"
    )
    assert "no mask column" in _bad_csv(capsys, tmp_path, f"before,after\n{b},{a}\n")
    small = tmp_path / "small_mask.tif"
    with rasterio.open(m) as src:
        profile = src.profile | {"width": 64, "height": 64}
        data = src.read(window=Window(0, 0, 64, 64))
    with rasterio.open(small, "w", **profile) as dst:
        dst.write(data)
    assert "64x64 px but BEFORE" in _bad_csv(
        capsys, tmp_path, f"before,after,mask\n{b},{a},{small}\n"
    )
    none = tmp_path / "none.tif"
    with rasterio.open(m) as src:
        profile = src.profile
    with rasterio.open(none, "w", **profile) as dst:
        dst.write(np.zeros((1, SIZE, SIZE), dtype=np.uint8))
    assert "no change pixel" in _bad_csv(capsys, tmp_path, f"before,after,mask\n{b},{a},{none}\n")


def test_only_the_tiles_with_labels_are_read_and_a_pair_too_large_is_one_line(
    pairs_csv, tmp_path, capsys, monkeypatch
):
    """A mask labelled in one corner and 255 elsewhere (a large scene labelled in a few places):
    only the tiles with labels are embedded and kept, and the pair is read a tile at a time,
    never whole; an unlabelled pair gives at most UNLABELLED_TILES tiles, spread over it.
    Inputs that would not fit in memory are refused in one line that says how to need less,
    before any pair is embedded."""
    from ofa_explore.change_detection.dates import _PairArray
    from ofa_explore.downstream import change as change_training
    from ofa_explore.downstream.change import ChangePair, check_inputs_fit, pair_tiles
    from ofa_explore.heads import default_layers
    from ofa_explore.pretrained import load_model

    reads = []
    read = _PairArray._read

    def recorded(self, key):
        values = read(self, key)
        reads.append(values.shape[1:])
        return values

    monkeypatch.setattr(_PairArray, "_read", recorded)

    root = pairs_csv.parent
    b, a, m = (root / "rennes" / n for n in sorted(p.name for p in (root / "rennes").iterdir()))
    with rasterio.open(m) as src:
        profile, mask = src.profile, src.read(1)
    corner = np.full_like(mask, 255)
    corner[:40, :40] = mask[:40, :40]
    corner[5, 5] = 1  # a change pixel, so the mask is taken
    sparse = tmp_path / "corner.tif"
    with rasterio.open(sparse, "w", **profile) as dst:
        dst.write(corner, 1)
    model = load_model(None).eval()
    layers = default_layers(model.config.depth)
    size = model.config.img_size
    whole, labelled = (ChangePair(b, a, mask_path) for mask_path in (m, sparse))
    assert len(pair_tiles(model, whole, layers).labels) == (SIZE // size) ** 2
    reads.clear()
    tiles = pair_tiles(model, labelled, layers)
    assert len(tiles.labels) == 1  # the corner's tile alone
    assert (tiles.labels[0, :40, :40] != 255).all() and (tiles.labels[0, 40:] == 255).all()
    assert reads and max(max(shape) for shape in reads) <= size < SIZE  # no whole read
    assert check_inputs_fit(model, [labelled], layers) * 4 == check_inputs_fit(
        model, [whole], layers
    )
    unlabelled = ChangePair(b, a, None)
    monkeypatch.setattr(change_training, "UNLABELLED_TILES", 2)
    spread = pair_tiles(model, unlabelled, layers)
    assert len(spread.labels) == 2 and (spread.labels == change_training.UNLABELLED).all()
    assert torch.equal(spread.image[1], pair_tiles(model, whole, layers).image[-1])  # far corner
    assert check_inputs_fit(model, [unlabelled], layers) * 2 == check_inputs_fit(
        model, [whole], layers
    )

    embedded = []
    monkeypatch.setattr(change_training, "pair_tiles", lambda *args: embedded.append(args))
    monkeypatch.setattr("ofa_explore.check_setup.free_memory_gb", lambda: 0.001)
    line = _bad_csv(capsys, tmp_path, f"before,after,mask\n{b},{a},{m}\n")
    assert "would take" in line and "GB free" in line and "255" in line, line
    assert not embedded


def test_a_pair_labelled_only_where_a_date_has_no_data_is_one_line(pairs_csv, tmp_path, capsys):
    """Labels only under BEFORE's nodata leave nothing to train on: one line, not a crash."""
    root = pairs_csv.parent / "rennes"
    b, a, m = (root / n for n in sorted(p.name for p in root.iterdir()))
    with rasterio.open(b) as src:
        profile, data = src.profile, src.read()
    data[:, :64, :64] = 0
    before = tmp_path / "before.tif"
    with rasterio.open(before, "w", **(profile | {"nodata": 0})) as dst:
        dst.write(data)
    with rasterio.open(m) as src:
        profile, mask = src.profile, src.read(1)
    mask[:] = 255
    mask[10:20, 10:20] = 1
    sparse = tmp_path / "mask.tif"
    with rasterio.open(sparse, "w", **profile) as dst:
        dst.write(mask, 1)
    line = _bad_csv(capsys, tmp_path, f"before,after,mask\n{before},{a},{sparse}\n")
    assert "no pixel to train on" in line and "where both dates have data" in line, line


def test_a_head_that_is_not_a_change_head_is_refused(pairs_csv, tmp_path, capsys):
    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    out = tmp_path / "c.tif"
    argv = ["change", str(before), str(after), "-o", str(out), "-q", "--device", "cpu"]
    assert main([*argv, "--head", "eurosat_landcover"]) == 2  # the shipped scene head
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "not a change head" in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("earlier", ["no anomaly term", "no residuals", "bands alike"])
def test_a_change_head_of_an_earlier_version_is_one_line(
    trained, pairs_csv, tmp_path, capsys, earlier
):
    """A head trained before the anomaly term joined its image (3C + 2 channels, no
    ``image_channels`` in its record), or before AFTER's residuals replaced the dates' plain
    difference (as many channels, no ``image`` in its record: only the record tells them
    apart), or before the pixel term weighed the visible bands more (its ``image`` says so):
    ofa change says to train it again, in one line."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from ofa_explore.checkpoint import METADATA_KEY, _digest

    with safe_open(trained, "pt") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    record = meta["heads"]["change"]
    bands = record["bands"]
    del record["image"]
    if earlier == "bands alike":  # as a head of 2026-12-06 recorded its image
        record["image"] = "before, after, after_residuals, pixel_term, embedding_term, anomaly_term"
    if earlier == "no anomaly term":
        del record["image_channels"]
        for key in [k for k in tensors if k.startswith("heads.change.pixels.")]:
            value = tensors[key]  # the image's first layer: a BatchNorm and a 1 x 1 convolution
            if value.dim() == 1 and len(value) == 3 * bands + 3:
                tensors[key] = value[: 3 * bands + 2].clone()
            elif value.dim() == 4:
                tensors[key] = value[:, : 3 * bands + 2].clone()
    meta["sha256"] = _digest(tensors)  # as it was saved then
    old = tmp_path / "old.safetensors"
    save_file(tensors, old, metadata={METADATA_KEY: json.dumps(meta)})
    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    out = tmp_path / "c.tif"
    argv = ["change", str(before), str(after), "-o", str(out), "--checkpoint", str(old)]
    assert main([*argv, "-q", "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "earlier ofa-explore" in err[0], err
    assert "ofa train-head --task change" in err[0], err
    assert not out.exists()


def test_options_a_change_head_does_not_take_are_one_line(pairs_csv, tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    argv = ["train-head", "--task", "change", "--data", str(pairs_csv), "-o", str(out), "-q"]
    assert main([*argv, "--trainable-blocks", "2"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "frozen backbone" in err[0] and "--trainable-blocks" in err[0], err
    assert not out.exists()


def test_unlabelled_pairs_self_train_the_head(pairs_csv, trained, tmp_path, capsys):
    """A row with an empty mask is an unlabelled pair: the head trained on the labelled pairs
    marks its top 2% of scores as change and its bottom 70% as no change, and a new head trains
    on both. A CSV of unlabelled pairs alone is refused in one line."""
    import torch

    from ofa_explore import load_checkpoint
    from ofa_explore.downstream.change import (
        IGNORE,
        PSEUDO_CHANGE,
        PSEUDO_NO_CHANGE,
        ChangePair,
        pair_tiles,
        pseudo_labelled,
    )

    root = pairs_csv.parent
    header, rennes, nantes = pairs_csv.read_text().splitlines()
    before, after, _ = nantes.split(",")
    data = root / "with_unlabelled.csv"
    data.write_text(f"{header}\n{rennes}\n{before},{after},\n")
    out = tmp_path / "self_trained.safetensors"
    argv = ["train-head", "--task", "change", "--data", str(data), "-o", str(out), "-q"]
    assert main([*argv, "--epochs", "2"]) == 0
    assert "self-trained on 1 unlabelled" in capsys.readouterr().out
    model = load_checkpoint(out)
    assert model.heads.info["change"]["trained_on"].endswith(
        "self-trained on 1 unlabelled (nantes)"
    )

    head_model = load_checkpoint(trained)
    pair = ChangePair(root / before, root / after, None)
    tiles = pair_tiles(head_model, pair, head_model.heads.info["change"]["layers"])
    labels = pseudo_labelled(head_model.heads["change"], tiles).labels
    assert set(torch.unique(labels).tolist()) == {0, 1, IGNORE}
    share = {v: float((labels == v).float().mean()) for v in (0, 1)}
    assert share[1] == pytest.approx(PSEUDO_CHANGE, abs=0.005)
    assert share[0] == pytest.approx(PSEUDO_NO_CHANGE, abs=0.01)

    said = _bad_csv(capsys, tmp_path, f"{header}\n{root}/{before},{root}/{after},\n")
    assert "no pair has a mask" in said


def test_the_head_trains_on_the_inputs_that_ofa_change_gives_it(pairs_csv, trained):
    """Training and prediction calibrate a pair alike (the same HEAD_SAMPLE_TILES sample tiles,
    the same statistics): the trained head's logits on the tiles it trained on, standardised
    as ``change()`` standardises them, are ``change()``'s band 1 on those tiles."""
    import torch

    from ofa_explore import change, load_checkpoint
    from ofa_explore.change_detection.calibration import calibrate
    from ofa_explore.change_detection.dates import open_pair
    from ofa_explore.change_detection.terms import HEAD_SMOOTH_PX, _gaussian
    from ofa_explore.downstream.change import ChangePair, pair_tiles
    from ofa_explore.engine import EngineSettings

    model = load_checkpoint(trained)
    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    size = model.config.img_size
    tiles = pair_tiles(model, ChangePair(before, after, None), model.heads.info["change"]["layers"])
    with torch.no_grad():
        logits = model.heads["change"](list(tiles.levels.float().unbind(1)), tiles.image.float())
        logits = _gaussian(logits, HEAD_SMOOTH_PX)  # as change() smooths them
    stats = calibrate(model, open_pair(before, after), size, None, head="change")
    trained_on = ((logits[:, 0] - stats["head_mean"]) / stats["head_std"]).numpy()
    # no overlap: the engine's tiles are the training tiles (the crop is 2 x 2 of them)
    result = change(before, after, model=model, settings=EngineSettings(overlap=0))
    assert result.data is not None
    scored = result.data.values[0]
    corners = [(y, x) for y in (0, SIZE - size) for x in (0, SIZE - size)]
    assert len(trained_on) == len(corners)
    for tile, (y, x) in zip(trained_on, corners):
        # float16 inputs in training against float32 in change(): measured 0.0007 at most;
        # with training calibrated on 16 tiles instead, 0.10
        np.testing.assert_allclose(tile, scored[y : y + size, x : x + size], atol=0.01)


def test_a_heads_map_shows_no_tiles(trained, shared, monkeypatch):
    """A head reads its tile's token maps, so cropped tile centres stepped at their edges (a
    grid of squares); its tiles are blended, and the map is as smooth there as elsewhere. On
    a whole OSCD city the head has not seen."""
    from ofa_explore import change, load_checkpoint
    from ofa_explore.change_detection.task import Change

    model = load_checkpoint(trained)
    folder = shared / "change" / "oscd" / "bercy"
    before, after = folder / "bercy_20161130.tif", folder / "bercy_20170829.tif"
    blended = change(before, after, model=model).data
    assert blended is not None and np.isfinite(blended.values).all()
    monkeypatch.setattr(Change, "blend", property(lambda self: False))
    cropped = change(before, after, model=model).data
    assert cropped is not None
    # the cropped centres: tiles of 64 px, a quarter overlapping, so a centre every 48 px
    # measured 1.59 cropped (this test's head: 3 epochs on 2 crops), 1.10 blended; at the
    # blended tiles' edges 1.11 (before the logits were smoothed within each tile, which
    # makes every other step smaller: 1.25, 1.02 and 1.05)
    assert step_ratio(cropped.values[0], 48) > 1.3  # the seams this test must see
    assert step_ratio(blended.values[0], 48) < 1.15
    assert step_ratio(blended.values[0], 32) < 1.15


def test_blended_tiles_are_the_tent_weighted_mean_of_the_heads_tiles(trained, pairs_csv, tmp_path):
    """The engine's blend, computed by hand: each pixel the mean of every tile (every 32 px)
    that covers it, weighted by the tiles' tents; and a hole in one date stays nodata."""
    import torch

    from ofa_explore import change, load_checkpoint
    from ofa_explore.change_detection.calibration import calibrate, date_modality
    from ofa_explore.change_detection.dates import open_pair
    from ofa_explore.change_detection.terms import score
    from ofa_explore.engine.blend import tent
    from ofa_explore.io import raster_modality

    model = load_checkpoint(trained)
    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    size = model.config.img_size
    pair = open_pair(before, after)
    stats = calibrate(model, pair, size, None, head="change")
    m = date_modality(raster_modality(pair))
    values = torch.from_numpy(pair.values.astype(np.float32))
    total, weight = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
    tent2d = tent(size)[:, None] * tent(size)[None, :]
    for y in range(0, SIZE - size + 1, size // 2):
        for x in range(0, SIZE - size + 1, size // 2):
            chip = values[None, :, y : y + size, x : x + size]
            with torch.no_grad():
                s = score(model, chip[:, : m.num_bands], chip[:, m.num_bands :], m, stats)
            total[y : y + size, x : x + size] += s[0].numpy() * tent2d
            weight[y : y + size, x : x + size] += tent2d
    result = change(before, after, model=model).data
    assert result is not None
    np.testing.assert_allclose(result.values[0], total / weight, atol=1e-4)

    holed = tmp_path / after.name
    with rasterio.open(after) as src:
        profile, data = src.profile | {"nodata": 0}, src.read()
    hole = np.zeros((SIZE, SIZE), bool)
    hole[80:100, 70:90] = True  # inside tiles with data elsewhere
    hole[:size, :size] = True  # a whole tile without data: it adds nothing to its neighbours
    data[:, hole] = 0
    with rasterio.open(holed, "w", **profile) as dst:
        dst.write(data)
    result = change(before, holed, model=model).data
    assert result is not None
    assert np.isnan(result.values[0][hole]).all() and np.isfinite(result.values[0][~hole]).all()


def test_an_overlap_of_a_whole_tile_is_one_line(trained, pairs_csv, tmp_path, capsys):
    """Blended tiles lie a tile less the overlap apart: an overlap of a whole tile leaves no
    step, and is refused in one line, with nothing written."""
    folder = pairs_csv.parent / "rennes"
    before, after = sorted(p for p in folder.iterdir() if not p.name.endswith("_change.tif"))
    out = tmp_path / "c.tif"
    argv = ["change", str(before), str(after), "-o", str(out), "--checkpoint", str(trained)]
    assert main([*argv, "-q", "--device", "cpu", "--overlap", "64"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "overlap 64" in err[0] and "--overlap" in err[0], err
    assert not out.exists()


def test_the_focal_loss_weighs_down_the_pixels_the_head_already_gets_right():
    import torch
    import torch.nn.functional as F

    from ofa_explore.downstream.change import focal_loss

    logits = torch.tensor([-4.0, -0.2, 0.3, 3.0])
    target = torch.tensor([0.0, 0.0, 1.0, 1.0])
    plain = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(5.0))
    assert torch.allclose(focal_loss(logits, target, 5.0, 0.0), plain)  # gamma 0: plain BCE
    ratios = torch.stack(
        [focal_loss(logits[i : i + 1], target[i : i + 1], 5.0, 2.0) for i in range(4)]
    ) / torch.stack([focal_loss(logits[i : i + 1], target[i : i + 1], 5.0, 0.0) for i in range(4)])
    right = torch.sigmoid(torch.where(target > 0, logits, -logits))  # p of the true label
    assert torch.allclose(ratios, (1 - right) ** 2)
    assert ratios[0] < 1e-3 and ratios[1] > 0.15  # a sure "no change": ~3000x less


def test_the_heads_logits_are_smoothed_by_a_gaussian_of_one_pixel():
    """A lone pixel of change spreads to its neighbours as a normalised Gaussian of 1 px; a
    constant map stays as it is up to the tile's edges (mirrored, not padded with zeros)."""
    import torch

    from ofa_explore.change_detection.terms import HEAD_SMOOTH_PX, _gaussian

    assert HEAD_SMOOTH_PX == 1.0
    impulse = torch.zeros(2, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1.0
    out = _gaussian(impulse, 1.0)
    taps = torch.exp(-0.5 * torch.arange(-3.0, 4.0) ** 2)
    taps /= taps.sum()
    assert torch.allclose(out[0, 0, 4:11, 4:11], torch.outer(taps, taps), atol=1e-7)
    assert float(out[1].abs().max()) == 0.0  # each tile alone
    flat = torch.full((1, 1, 16, 8), 2.5)
    assert torch.allclose(_gaussian(flat, 1.0), flat)
