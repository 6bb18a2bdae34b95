"""Quicklooks beside the engine's outputs (``OUT.png`` for ``OUT.tif``) on real scenes, and the
demo's mark of a source where the model does not beat the trivial baseline."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import rasterio
from PIL import Image

from ofa_explore.demo import WORSE, baseline_warning, run_demo, sample_path, score_table
from ofa_explore.engine import Cancelled, predict_raster
from ofa_explore.errors import OutputExists
from ofa_explore.modalities import Modality, get_modality
from ofa_explore.pretrained import load_model
from ofa_explore.protocol import quicklook_path
from ofa_explore.quicklook import PAD, PANEL, SIDE, display_bands, sampled
from ofa_explore.visualize import stretch_limits, to_uint8

NORCIA = "change/oscd/norcia/norcia_20171018.tif"  # Sentinel-2 L1C, 13 bands, 241 x 385 px


@pytest.fixture(scope="module")
def model():
    return load_model()


def picture(path) -> np.ndarray:
    """A quicklook decoded: [h, w, 4] uint8 (RGBA)."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGBA"))


def colours(pixels: np.ndarray) -> int:
    return len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0))


def test_embed_quicklook_shows_the_pca_colours(model, tmp_path):
    out = tmp_path / "emb.tif"
    result = predict_raster(model, sample_path("eurosat_forest.tif"), "embed", out, quicklook=True)
    assert result.quicklook == quicklook_path(out) == tmp_path / "emb.png"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.png", "emb.tif", "emb_pca.tif"]
    assert result.warnings == []
    image = picture(result.quicklook)
    with rasterio.open(result.pca_path) as pca:
        rgb = pca.read().transpose(1, 2, 0)  # 8 x 8 cells: blown up by a whole factor
    factor = SIDE // max(rgb.shape[:2])
    assert image.shape == (rgb.shape[0] * factor, rgb.shape[1] * factor, 4) == (384, 384, 4)
    assert (image[::factor, ::factor, :3] == rgb).all() and (image[..., 3] == 255).all()
    assert colours(image) > 16


def test_reconstruct_quicklook_puts_input_and_reconstruction_side_by_side(model, tmp_path):
    scene = sample_path("naip_rgbn_2020.tif")  # 192 x 192, R G B NIR
    out = tmp_path / "rec.tif"
    result = predict_raster(model, scene, "reconstruct", out, quicklook=True)
    image = picture(result.quicklook)
    side = 192 * (PANEL // 192)  # each panel: the raster blown up by a whole factor
    assert image.shape[1] == 2 * side + 3 * PAD and side < image.shape[0] < side + 40
    panels = [image[-side - PAD : -PAD, x : x + side] for x in (PAD, 2 * PAD + side)]
    # both in the input's red, green, blue with the input's 2-98 % stretch
    with rasterio.open(scene) as src, rasterio.open(out) as rec:
        inp, recon = src.read([1, 2, 3]).astype(np.float32), rec.read([1, 2, 3])
    limits = stretch_limits(inp)
    for panel, values in zip(panels, (inp, recon)):
        expected = to_uint8(values, limits).repeat(side // 192, 0).repeat(side // 192, 1)
        assert (panel[..., :3] == expected).all() and (panel[..., 3] == 255).all()
        assert colours(panel) > 1000
    assert (panels[0] != panels[1]).any(axis=-1).mean() > 0.3  # three quarters were hidden
    assert image[: -side - PAD].min() < 100  # the labels' ink above the panels


def test_nodata_is_transparent(model, tmp_path):
    with rasterio.open(sample_path("naip_rgbn_2020.tif")) as src:
        data, profile = src.read(), src.profile
    data[:, :64, :96] = 0  # nodata = 0 in NAIP: the top left is empty
    holey = tmp_path / "holey.tif"
    with rasterio.open(holey, "w", **profile) as dst:
        dst.write(data)
    emb = picture(
        predict_raster(model, holey, "embed", tmp_path / "e.tif", quicklook=True).quicklook
    )
    assert (emb[: SIDE // 3 - 2, : SIDE // 2 - 2, 3] == 0).all() and emb[-1, -1, 3] == 255
    rec = picture(
        predict_raster(model, holey, "reconstruct", tmp_path / "r.tif", quicklook=True).quicklook
    )
    side = 192 * (PANEL // 192)
    for x in (PAD, 2 * PAD + side):  # input and reconstruction: the same hole
        panel = rec[-side - PAD : -PAD, x : x + side, 3]
        assert (panel[: side // 3, : side // 2] == 0).all() and (panel[side // 3 :] == 255).all()


def test_classify_quicklook_has_a_legend_of_the_classes_present(model, shared, tmp_path):
    out = tmp_path / "classes.tif"
    result = predict_raster(model, shared / NORCIA, "classify", out, quicklook=True)
    image = picture(result.quicklook)
    with rasterio.open(out) as cls:
        classes, table = cls.read(1), cls.colormap(1)
    factor = SIDE // max(classes.shape)
    h, w = classes.shape[0] * factor, classes.shape[1] * factor
    assert image.shape[0] == h and image.shape[1] > w + 100  # the legend on the right
    assert abs(w / h - 385 / 241) < 0.1  # the scene's aspect
    themap, legend = image[:, :w], image[:, w:]
    lookup = np.array([table[c][:3] for c in range(256)], dtype=np.uint8)
    assert (themap[::factor, ::factor, :3] == lookup[classes]).all()  # the file's colour table
    present = {r["class"] for r in result.class_areas if r["pixels"]}
    assert len(present) >= 3
    for i, name in enumerate(result.class_names):
        swatch = (legend[..., :3] == table[i][:3]).all(axis=-1).sum()
        assert (swatch > 50) == (name in present), name  # only classes present are listed


def test_quicklook_only_when_asked_and_never_a_stale_one(model, tmp_path):
    out = tmp_path / "classes.tif"
    scene = sample_path("eurosat_forest.tif")
    result = predict_raster(model, scene, "classify", out)
    assert result.quicklook is None and [p.name for p in tmp_path.iterdir()] == ["classes.tif"]
    result = predict_raster(model, scene, "classify", out, quicklook=True, overwrite=True)
    image = picture(result.quicklook)
    assert image.shape[1] > SIDE and colours(image) > 3  # map, legend, text
    out.unlink()  # a quicklook alone is a file of the run too: not replaced unasked
    with pytest.raises(OutputExists, match="classes.png exists"):
        predict_raster(model, scene, "classify", out, quicklook=True)
    predict_raster(model, scene, "classify", out, overwrite=True)  # no quicklook: the old goes
    assert [p.name for p in tmp_path.iterdir()] == ["classes.tif"]


def test_a_failing_draw_keeps_the_geotiff_and_warns(model, tmp_path):
    out = tmp_path / "rec.tif"
    (tmp_path / "rec.png").mkdir()  # where the quicklook should go: it cannot be written
    result = predict_raster(
        model, sample_path("eurosat_forest.tif"), "reconstruct", out, quicklook=True, overwrite=True
    )
    assert result.quicklook is None and len(result.warnings) == 1
    assert "quicklook" in result.warnings[0] and "rec.png" in result.warnings[0]
    with rasterio.open(out) as rec:
        assert rec.count == 13 and np.isfinite(rec.read()).all()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.png", "rec.tif"]  # no temp file


def test_a_cancelled_run_leaves_no_quicklook(model, tmp_path):
    scene = sample_path("eurosat_forest.tif")  # one tile, one batch
    stop = threading.Event()
    with pytest.raises(Cancelled):
        predict_raster(
            model,
            scene,
            "embed",
            tmp_path / "a.tif",
            quicklook=True,
            cancel=stop,
            progress=lambda done, total: stop.set(),
        )
    calls = []

    def after_the_last_batch() -> bool:  # the run is written, the picture not yet drawn
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        predict_raster(
            model, scene, "embed", tmp_path / "b.tif", quicklook=True, cancel=after_the_last_batch
        )
    assert len(calls) == 2 and list(tmp_path.iterdir()) == []


def test_sampled_reads_a_huge_raster_a_few_rows_at_a_time():
    raster = np.arange(3 * 500 * 40).reshape(3, 500, 40)
    rows, cols = np.array([0, 7, 8, 250, 499]), np.array([1, 20, 39])
    reads = []

    def read(y0, y1):
        reads.append(y1 - y0)
        return raster[:, y0:y1]

    assert (sampled(read, rows, cols, 40) == raster[:, rows][:, :, cols]).all()
    assert reads == [500]  # small: one read
    reads.clear()
    wide = 2**22  # as wide as the read budget: one row at a time
    assert (sampled(read, rows, cols, wide) == raster[:, rows][:, :, cols]).all()
    assert reads == [1, 1, 1, 1, 1]


def test_display_bands_are_natural_colour_sar_or_grey():
    def shown(modality: Modality) -> tuple[list[int], list[float]]:
        needed, compose = display_bands(modality)
        values = np.array(needed, dtype=float)[:, None, None] + 10  # band i holds i + 10
        return needed, compose(values).ravel().tolist()

    assert shown(get_modality("s2_l1c")) == ([1, 2, 3], [13, 12, 11])  # B04, B03, B02
    assert shown(get_modality("s1_grd")) == ([0, 1], [10, 11, -1])  # VV, VH, VV - VH

    def sensor(*waves: float) -> Modality:
        n = len(waves)
        return Modality("x", [f"b{i}" for i in range(n)], waves, None, [0] * n, [1] * n, "DN")

    assert shown(sensor(0.6)) == ([0], [10, 10, 10])  # one band: grey
    assert shown(sensor(1.6, 2.2, 0.86, 1.0)) == ([0, 1, 2], [10, 11, 12])  # no visible band


def test_demo_table_marks_a_source_where_the_model_loses():
    results = {
        "s2_l1c": dict(model_mse=0.2154, baseline_mse=0.6194, beats_baseline=True, panel="a.png"),
        "landsat_oli_l1": dict(
            model_mse=0.8193, baseline_mse=0.8022, beats_baseline=False, panel="b.png"
        ),
    }
    header, better, worse = score_table(results)
    assert "0.215" in better and "0.619" in better and WORSE not in better
    assert "0.819" in worse and "0.802" in worse and WORSE in worse and "!" in worse
    warning = baseline_warning(results)
    assert warning.startswith("warning:") and "landsat_oli_l1" in warning
    assert "s2_l1c" not in warning and "\n" not in warning
    assert baseline_warning({"s2_l1c": results["s2_l1c"]}) is None


def test_demo_says_where_the_model_does_not_beat_the_baseline(tmp_path):
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", log=lines.append)
    results = summary["modalities"]
    losers = [n for n, r in results.items() if not r["model_mse"] < r["baseline_mse"]]
    assert summary["worse_than_baseline"] == losers
    assert all(r["beats_baseline"] == (n not in losers) for n, r in results.items())
    printed = "\n".join(lines)
    for name in results:
        row = next(line for line in lines if line.startswith(name + " "))
        assert (WORSE in row) == (name in losers)
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == (1 if losers else 0)
    assert all(name in printed for name in losers)
