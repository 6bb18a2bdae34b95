"""Tiled inference on real rasters: georeferencing, tiling, nodata, bad input, cancel, CLI."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from pyproj import Geod
from test_areas import _geodesic_m2
from test_io import write_tif

from ofa_explore import OFANet, load_checkpoint, save_checkpoint
from ofa_explore.cli import main as cli
from ofa_explore.demo import sample_path
from ofa_explore.engine import TASKS, Cancelled, Task, pick_device, predict_raster, register
from ofa_explore.errors import CLI_WORDS, BadInput, OutputError
from ofa_explore.io import RasterError, open_raster

P = 8


@pytest.fixture(scope="module")
def model() -> OFANet:
    torch.manual_seed(0)
    m = OFANet(
        "tiny", modalities=["s2_l1c", "s1_grd", "rgbn", "rgb"], img_size=32, patch_size=P, depth=2
    )
    m.heads.add(
        "landcover",
        ["Forest", "River", "Urban"],
        modality="s2_l1c",
        colors=["#228b22", "#1e90ff", "#dc143c"],
    )
    return m.eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "model.safetensors")


def test_embed_is_georeferenced_at_patch_resolution(model, shared, tmp_path, caplog):
    src_path = shared / "naip" / "m_4709963_se_14_1_20200831.tif"
    out = tmp_path / "emb.tif"
    with caplog.at_level("WARNING"):
        result = predict_raster(model, src_path, "embed", out)
    assert "BLOCKSIZE" not in caplog.text  # GDAL lists >= 128 but writes the cube's 64 px
    with (
        rasterio.open(src_path) as src,
        rasterio.open(out) as emb,
        rasterio.open(result.pca_path) as pca,
    ):
        assert emb.crs == src.crs and pca.crs == src.crs
        assert emb.transform == src.transform @ Affine.scale(P)
        assert (emb.height, emb.width) == (math.ceil(src.height / P), math.ceil(src.width / P))
        assert emb.count == model.config.embed_dim and pca.count == 3 and pca.dtypes[0] == "uint8"
        assert pca.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert emb.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and emb.compression is not None
        assert emb.block_shapes[0] == (64, 64)  # a pixel's embedding: one small block to read
        data = emb.read(1)
        assert np.isfinite(data).mean() > 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.tif", "emb_pca.tif"]  # no temp files
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())  # like any new file


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_reconstruct_keeps_grid_and_bands(model, tmp_path):
    out = tmp_path / "rec.tif"
    src_path = sample_path("bigearthnet_s1_20170613.tif")
    predict_raster(model, src_path, "reconstruct", out, tile=64, overlap=16)
    with rasterio.open(src_path) as src, rasterio.open(out) as rec:
        assert rec.crs == src.crs and rec.transform == src.transform
        assert rec.shape == src.shape and rec.descriptions == ("VV", "VH")
        x, y = src.read(), rec.read()
    assert np.isfinite(y).all() and abs(y.mean() - x.mean()) < 3 * x.std()  # in dB, like the input


def test_classify_writes_classes_and_colours(model, checkpoint, tmp_path):
    out = tmp_path / "cls.tif"
    result = predict_raster(model, sample_path("eurosat_river.tif"), "classify", out)
    assert result.class_names == ["Forest", "River", "Urban"]
    with rasterio.open(out) as cls:
        assert cls.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        values = np.unique(cls.read(1))
        assert set(values) <= {0, 1, 2} and cls.dtypes[0] == "uint8" and cls.nodata == 255
        assert cls.colormap(1)[0][:3] == (0x22, 0x8B, 0x22)
        assert cls.tags()["class_names"] == "Forest,River,Urban"
        assert cls.shape == (64 // P, 64 // P)


def test_tiled_matches_untiled(model):
    raster = open_raster(sample_path("eurosat_industrial.tif"))
    whole = predict_raster(model, raster, "embed", tile=64).data.values
    tiled = predict_raster(model, raster, "embed", tile=32, overlap=16).data.values
    assert whole.shape == tiled.shape == (192, 8, 8)
    a, b = whole.reshape(192, -1), tiled.reshape(192, -1)
    cosine = (a * b).sum(0) / np.linalg.norm(a, axis=0) / np.linalg.norm(b, axis=0)
    assert cosine.mean() > 0.9, cosine.mean()
    # reconstruction without masking: identical tiles give identical pixels
    rec_whole = predict_raster(model, raster, "reconstruct", tile=64, mask_ratio=0).data.values
    rec_tiled = predict_raster(
        model, raster, "reconstruct", tile=32, overlap=16, mask_ratio=0
    ).data.values
    assert np.corrcoef(rec_whole.ravel(), rec_tiled.ravel())[0, 1] > 0.9


def test_nodata_stays_nodata(model, tmp_path):
    with rasterio.open(sample_path("naip_rgbn_2020.tif")) as src:
        data, profile = src.read(), src.profile
    data[:, :64, :96] = 0  # nodata = 0 in NAIP
    holey = tmp_path / "holey.tif"
    with rasterio.open(holey, "w", **profile) as dst:
        dst.write(data)
    emb = predict_raster(model, holey, "embed").data.values
    assert np.isnan(emb[:, :8, :12]).all() and np.isfinite(emb[:, 9:, 13:]).all()
    rec = predict_raster(model, holey, "reconstruct", mask_ratio=0.5).data.values
    assert np.isnan(rec[:, :64, :96]).all() and np.isfinite(rec[:, 64:, 96:]).all()
    floats = data.astype(np.float32)
    floats[:, 100:140, 100:140] = np.nan
    nan_path = write_tif(tmp_path / "nan.tif", floats, descriptions=["R", "G", "B", "NIR"])
    emb = predict_raster(
        model, open_raster(nan_path, modality="rgbn", nodata=None), "embed"
    ).data.values
    assert np.isnan(emb[:, 13:17, 13:17]).all() and np.isfinite(emb[:, 20:, 20:]).all()


def test_small_rasters_are_padded_and_tiny_ones_refused(model, tmp_path):
    chip = open_raster(sample_path("eurosat_forest.tif")).values
    small = write_tif(tmp_path / "small.tif", chip[:, :20, :27].astype(np.uint16))
    result = predict_raster(model, small, "embed", modality="s2_l1c", tile=32)
    assert result.data.shape == (192, 3, 4)
    # 20 = 2 x 8 + 4 rows and 27 = 3 x 8 + 3 columns: the patches cut by the edge are embedded
    assert np.isfinite(result.data.values).all()
    edge = chip[:, :20, :27].astype(np.uint16)
    edge[:, 16:, :] = 0  # nodata inside the raster still counts against the cut patches
    nodata_edge = write_tif(tmp_path / "edge.tif", edge, nodata=0)
    cells = predict_raster(model, nodata_edge, "embed", modality="s2_l1c", tile=32).data.values
    assert np.isnan(cells[:, 2]).all() and np.isfinite(cells[:, :2]).all()
    rec = predict_raster(model, small, "reconstruct", modality="s2_l1c").data
    assert rec.shape == (13, 20, 27)
    tiny = write_tif(tmp_path / "tiny.tif", chip[:, :5, :5].astype(np.uint16))
    with pytest.raises(RasterError, match="smaller than one 8x8 patch"):
        predict_raster(model, tiny, "embed", modality="s2_l1c")


def test_bad_outputs_and_options(model, tmp_path, monkeypatch):
    src = tmp_path / "in.tif"
    src.write_bytes(sample_path("eurosat_forest.tif").read_bytes())
    with pytest.raises(ValueError, match="is the input raster"):
        predict_raster(model, src, "embed", src)
    (tmp_path / "taken.tif").write_text("precious")
    with pytest.raises(FileExistsError, match="overwrite=True") as exists:
        predict_raster(model, src, "embed", tmp_path / "taken.tif")
    assert isinstance(exists.value, OutputError) and "{overwrite}" in exists.value.fix
    assert "--overwrite" in exists.value.render(CLI_WORDS)  # each shell in its own words
    assert (tmp_path / "taken.tif").read_text() == "precious"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        predict_raster(model, src, "embed", tmp_path / "nope" / "out.tif")
    monkeypatch.setattr("os.access", lambda *a: False)
    with pytest.raises(PermissionError, match="not writable"):
        predict_raster(model, src, "embed", tmp_path / "out.tif")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="multiple of the patch size"):
        predict_raster(model, src, "embed", tile=30)
    with pytest.raises(ValueError, match="task must be"):
        predict_raster(model, src, "segment")
    with pytest.raises(ValueError, match="no classification head of this model takes 'rgbn'"):
        predict_raster(model, sample_path("naip_rgbn_2020.tif"), "classify")
    with pytest.raises(ValueError, match="'landcover' was trained on 's2_l1c' imagery"):
        predict_raster(model, sample_path("naip_rgbn_2020.tif"), "classify", head="landcover")
    bare = OFANet(
        "tiny", modalities=["rgb"], img_size=32, patch_size=P, depth=1, wavelength_embed=False
    )
    with pytest.raises(ValueError, match="cannot embed 's2_l1c' imagery"):
        predict_raster(bare, src, "embed")
    with pytest.raises(ValueError, match="no classification head"):
        predict_raster(bare, sample_path("neon_rgb_osbs.tif"), "classify")


def test_no_crs_runs_in_pixel_space(model, tmp_path):
    chip = open_raster(sample_path("eurosat_forest.tif")).values
    path = write_tif(tmp_path / "nocrs.tif", chip, crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        result = predict_raster(model, path, "embed", tmp_path / "out.tif")
    with rasterio.open(result.path) as out:
        assert out.crs is None and out.count == 192


def test_cancel_leaves_nothing(model, shared, tmp_path):
    stop = threading.Event()
    calls = []

    def progress(done, total):
        calls.append((done, total))
        stop.set()

    with pytest.raises(Cancelled):
        predict_raster(
            model,
            shared / "naip" / "m_4709963_se_14_1_20200831.tif",
            "embed",
            tmp_path / "emb.tif",
            batch_size=4,
            progress=progress,
            cancel=stop,
        )
    assert calls == [(4, calls[0][1])] and calls[0][1] > 100
    assert list(tmp_path.iterdir()) == []


def test_out_of_memory_retries_with_smaller_batches(model, monkeypatch):
    original = model.forward_features
    sizes = []

    def flaky(x, modality):
        sizes.append(x.shape[0])
        if x.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(x, modality)

    monkeypatch.setattr(model, "forward_features", flaky)
    result = predict_raster(model, sample_path("naip_rgbn_2020.tif"), "embed", batch_size=8)
    assert np.isfinite(result.data.values).mean() > 0.9
    assert max(sizes) == 8 and sizes[-1] <= 2


def test_a_new_task_is_one_class_and_one_registration(model, tmp_path):
    class Brightness(Task):
        name = "brightness"

        @property
        def per_pixel(self) -> bool:
            return True

        def bands(self) -> list[str]:
            return ["mean"]

        def forward(self, x, seed):
            return x.mean(1, keepdim=True).float().cpu().numpy()

    src = sample_path("naip_rgbn_2020.tif")
    register(Brightness)
    try:
        memory = predict_raster(model, src, "brightness", tile=64)
        written = predict_raster(model, src, "brightness", tmp_path / "b.tif", tile=64)
    finally:
        del TASKS["brightness"]
    raster = open_raster(src)
    assert memory.task == "brightness" and memory.data.shape == (1, *raster.shape[1:])
    assert np.isfinite(memory.data.values).all()
    with rasterio.open(written.path) as f:
        assert f.descriptions == ("mean",) and np.array_equal(f.read(), memory.data.values)
    with pytest.raises(BadInput, match="task must be one of embed, reconstruct, classify"):
        predict_raster(model, src, "brightness")


def test_the_engine_leaves_torch_threads_alone(model, monkeypatch):
    import ofa_explore.threads

    monkeypatch.setattr(ofa_explore.threads, "_applied", False)  # as in a fresh process
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        predict_raster(model, sample_path("eurosat_forest.tif"), "embed")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_device_auto_is_cpu_here():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_cli_round_trip(checkpoint, tmp_path, capsys):
    out = tmp_path / "emb.tif"
    src = sample_path("naip_rgbn_2020.tif")
    assert cli(["embed", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "-q"]) == 0
    assert out.exists() and (tmp_path / "emb_pca.tif").exists()
    assert "wrote" in capsys.readouterr().out
    assert cli(["embed", str(src), "-o", str(out), "--checkpoint", str(checkpoint), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (
        cli(
            [
                "classify",
                str(sample_path("eurosat_forest.tif")),
                "-o",
                str(tmp_path / "c.tif"),
                "--checkpoint",
                str(checkpoint),
                "-q",
            ]
        )
        == 0
    )
    assert "0=Forest, 1=River, 2=Urban" in capsys.readouterr().out
    assert (
        cli(
            [
                "reconstruct",
                str(src),
                "-o",
                str(tmp_path / "r.tif"),
                "--checkpoint",
                str(checkpoint),
                "--modality",
                "s2_l1c",
                "-q",
            ]
        )
        == 2
    )
    assert "expects 13 bands" in capsys.readouterr().err
    assert (
        cli(
            [
                "embed",
                str(tmp_path / "missing.tif"),
                "-o",
                str(tmp_path / "x.tif"),
                "--checkpoint",
                str(checkpoint),
                "-q",
            ]
        )
        == 2
    )
    # without --checkpoint: the shipped pre-trained model
    assert cli(["embed", str(src), "-o", str(tmp_path / "shipped.tif"), "-q"]) == 0
    with rasterio.open(tmp_path / "shipped.tif") as f:
        assert f.count == 192 and f.res == (5.0 * 8, 5.0 * 8)


def test_file_output_equals_in_memory_result(model, shared, tmp_path):
    # 91 x 117 cells: several rows of tiles and of 64-cell blocks, written in gathered strips
    src = shared / "naip" / "m_4709963_se_14_1_20200831.tif"
    memory = predict_raster(model, src, "embed", tile=64, overlap=16)
    written = predict_raster(model, src, "embed", tmp_path / "emb.tif", tile=64, overlap=16)
    with rasterio.open(written.path) as f:
        cube = f.read()
    np.testing.assert_array_equal(cube, memory.data.values)
    with rasterio.open(written.pca_path) as f:
        np.testing.assert_array_equal(f.read(), memory.pca.values)


def test_patch_grid_records_the_input_extent_and_class_areas(checkpoint, tmp_path, capsys):
    """A 61 x 59 px scene: the 8-px cell grid reaches past its right and bottom edges, which the
    file and the result say (input_bounds); class areas count only the pixels inside; the CLI
    lists the classes found with hectares, on the ellipsoid where the CRS is in degrees."""
    with rasterio.open(sample_path("eurosat_river.tif")) as src:
        chip = src.read()[:, :59, :61]
    scene = write_tif(tmp_path / "cut.tif", chip)
    out = tmp_path / "cls.tif"
    assert cli(["classify", str(scene), "-o", str(out), "--checkpoint", str(checkpoint)]) == 0
    printed = capsys.readouterr().out
    with rasterio.open(scene) as src, rasterio.open(out) as cls:
        bounds, crs = src.bounds, src.crs
        assert [float(v) for v in cls.tags()["input_bounds"].split(",")] == pytest.approx(
            list(bounds)
        )
        assert (
            cls.bounds.right - bounds.right == 3 * 10
            and bounds.bottom - cls.bounds.bottom == 5 * 10
        )
    result = predict_raster(load_checkpoint(checkpoint), scene, "classify")
    assert result.input_bounds == pytest.approx(tuple(bounds))
    assert result.data.attrs["input_bounds"] == result.input_bounds
    rows = result.class_areas
    assert sum(r["pixels"] for r in rows) == 61 * 59
    left, bottom, right, top = bounds  # the scene's ground area, as pyproj measures it
    footprint = _geodesic_m2(crs, [left, right, right, left], [top, top, bottom, bottom])
    assert footprint == pytest.approx(61 * 59 * 100, rel=2e-3)  # UTM: not quite 10 m x 10 m
    assert sum(r["hectares"] for r in rows) == pytest.approx(footprint / 1e4, rel=1e-6)
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert [r["pixels"] for r in rows] == sorted((r["pixels"] for r in rows), reverse=True)
    assert "classes: 0=Forest, 1=River, 2=Urban\nfound (landcover):\n" in printed
    for r in rows:
        if r["pixels"]:
            assert f"{r['hectares']:,.1f} ha" in printed and r["class"] in printed

    degrees = write_tif(
        tmp_path / "wgs84.tif",
        chip,
        crs="EPSG:4326",
        transform=rasterio.transform.from_origin(13.0, 52.0, 1e-4, 1e-4),
    )
    geographic = predict_raster(load_checkpoint(checkpoint), degrees, "classify")
    # in degrees, hectares on the WGS 84 ellipsoid: the scene's footprint, measured by pyproj
    footprint = Geod(ellps="WGS84").polygon_area_perimeter(
        [13.0, 13.0061, 13.0061, 13.0], [52.0, 52.0, 51.9941, 51.9941]
    )[0]
    assert sum(r["hectares"] for r in geographic.class_areas) == pytest.approx(
        abs(footprint) / 1e4, rel=1e-4
    )
    assert (
        cli(
            [
                "classify",
                str(degrees),
                "-o",
                str(tmp_path / "deg.tif"),
                "-q",
                "--checkpoint",
                str(checkpoint),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for r in geographic.class_areas:
        if r["pixels"]:
            assert f"{r['hectares']:,.1f} ha" in printed
