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


OWN = ("s2_l1c", "s1_grd", "rgbn", "rgb")  # sensors with a patch embedding of their own


def random_init_like(model):
    import torch

    from ofa_explore.checkpoint import model_from_metadata

    torch.manual_seed(0)
    return model_from_metadata(read_metadata(shipped_checkpoint_path())).eval()


@pytest.mark.parametrize("filename", sorted(f for f, m in SAMPLES.items() if m in OWN))
def test_reconstructs_every_shipped_sample_better_than_the_baseline(model, filename):
    x = sample_chip(filename, model.config.img_size)
    scores = [reconstruction_scores(model, x, SAMPLES[filename], seed=seed) for seed in range(5)]
    model_mse = sum(s["model_mse"] for s in scores) / 5  # over five different masks
    baseline_mse = sum(s["baseline_mse"] for s in scores) / 5
    assert model_mse < baseline_mse, (model_mse, baseline_mse)


def wavelength_path_errors(model, x, modality) -> tuple[float, float, float]:
    """Hidden-pixel MSE of the shipped model, of the same network randomly initialised, and of
    the trivial baseline, over five masks."""
    runs = [
        (
            reconstruction_scores(model, x, modality, seed=s),
            reconstruction_scores(random_init_like(model), x, modality, seed=s),
        )
        for s in range(5)
    ]
    return (
        sum(a["model_mse"] for a, _ in runs) / 5,
        sum(b["model_mse"] for _, b in runs) / 5,
        sum(a["baseline_mse"] for a, _ in runs) / 5,
    )


def test_wavelength_path_sample_is_reconstructed_by_a_trained_path(model):
    """Landsat-8 reaches the model only through the wavelength-conditioned embedding: the
    trained path halves a random network's error. (It is about as good as the trivial
    baseline on this cloudy window, see the model card; the test guards the training.)"""
    x = sample_chip("landsat8_l1_gulf_coast.tif", model.config.img_size)
    trained, untrained, baseline = wavelength_path_errors(model, x, "landsat_oli_l1")
    assert trained < 0.7 * untrained and trained < 1.15 * baseline, (trained, untrained, baseline)


def test_every_demo_modality_is_embedded(model):
    """Each sample's sensor has a patch embedding of its own, or (Landsat) goes through the
    wavelength-conditioned one."""
    own = {m for m in SAMPLES.values() if m in model.patch_embeds}
    assert own == {"s2_l1c", "s1_grd", "rgbn", "rgb"}
    assert model.wavelength_embed is not None and "landsat_oli_l1" not in model.patch_embeds


def etm_layout_scene(shared, path):
    """A real Landsat scene laid out as Landsat-7 ETM+'s six reflective bands (blue, green,
    red, NIR, SWIR1, SWIR2: Landsat-8 bands 2-7 of the shared L1 scene), 200 x 180 px."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    bands = []
    for band in ("B2", "B3", "B4", "B5", "B6", "B7"):
        with rasterio.open(shared / "landsat" / "l8_gulf_coast" / f"{band}.tif") as src:
            window = Window(200, 150, 200, 180)
            bands.append(src.read(1, window=window))
            profile = src.profile | dict(
                count=6, width=200, height=180, nodata=0, transform=src.window_transform(window)
            )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.stack(bands))
    return path


@pytest.mark.parametrize("scene", ["landsat_etm", "enmap"])
def test_shipped_model_embeds_and_reconstructs_landsat_and_enmap(shared, tmp_path, capsys, scene):
    """No --modality: the ETM+ layout is detected by its band count, EnMAP by the wavelengths in
    its file; both go through the wavelength-conditioned path, outputs georeferenced like the
    input, reconstruction better than the trivial baseline."""
    import numpy as np
    import rasterio

    from ofa_explore.cli import main
    from ofa_explore.io import open_raster, raster_modality

    path = (
        etm_layout_scene(shared, tmp_path / "etm.tif")
        if scene == "landsat_etm"
        else shared / "enmap_potsdam" / "images" / "enmap_potsdam_tile_96_0.tif"
    )
    m = raster_modality(open_raster(path))
    assert m.name == ("landsat_etm" if scene == "landsat_etm" else "hyperspectral")
    for task in ("embed", "reconstruct"):
        out = tmp_path / f"{task}.tif"
        assert main([task, str(path), "-o", str(out), "-q"]) == 0, capsys.readouterr().err
        with rasterio.open(path) as src, rasterio.open(out) as res:
            assert res.crs == src.crs
            assert (res.transform.c, res.transform.f) == (src.transform.c, src.transform.f)
            assert res.bounds == pytest.approx(src.bounds) or task == "embed"
            data = res.read()
            whole = (src.height // 8, src.width // 8) if task == "embed" else src.shape
        assert np.isfinite(data[:, : whole[0], : whole[1]]).all()  # every whole patch / pixel
        if task == "reconstruct":
            assert data.shape == (m.num_bands, *res.shape)
    import torch

    x = torch.from_numpy(open_raster(path).values[None, :, :32, :32].astype("float32"))
    trained, untrained, baseline = wavelength_path_errors(load_pretrained(), x, m)
    assert trained < 0.7 * untrained, (trained, untrained, baseline)


def test_shipped_landcover_head_is_the_default_for_sentinel2(model, tmp_path, capsys):
    from ofa_explore.cli import main
    from ofa_explore.demo import sample_path

    info = model.heads.info["eurosat_landcover"]
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


def test_shipped_model_classifies_enmap_after_a_head_is_trained(shared, tmp_path):
    """A land-cover head on EnMAP tiles (wavelength path, labels 1-6, 0 = background) trains,
    is saved with the model, and classifies a tile into a georeferenced class map."""
    import numpy as np
    import rasterio

    from ofa_explore import load_checkpoint, save_checkpoint
    from ofa_explore.downstream import fit_segmentation_head
    from ofa_explore.engine import predict_raster

    source = shared / "enmap_potsdam"
    for sub in ("images", "masks"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for label in sorted((source / "labels").glob("*.tif"))[:8]:
        (tmp_path / "data" / "images" / label.name).symlink_to(source / "images" / label.name)
        with rasterio.open(label) as src:
            values, profile = src.read(1).astype(int), src.profile
        profile.update(dtype="uint8", nodata=None)
        with rasterio.open(tmp_path / "data" / "masks" / label.name, "w", **profile) as dst:
            dst.write(np.where(values == 0, 255, values - 1).astype("uint8")[None])
    model = load_pretrained()
    report = fit_segmentation_head(model, tmp_path / "data", "enmap_landcover", epochs=3)
    assert report["val"] > 0 and 0 <= report["miou"] <= 1
    saved = load_checkpoint(save_checkpoint(model, tmp_path / "enmap.safetensors"))
    tile = source / "images" / "enmap_potsdam_tile_96_96.tif"
    result = predict_raster(
        saved, tile, "classify", tmp_path / "classes.tif", head="enmap_landcover"
    )
    with rasterio.open(tile) as src, rasterio.open(result.path) as out:
        assert out.crs == src.crs and out.bounds == pytest.approx(src.bounds)
        classes = out.read(1)
    assert classes.max() < 6 and len(result.class_names) == 6
