"""Widget logic without a browser: the callbacks and state behind the JupyterLab widgets, on the
shipped model and sample scenes (the browser tests are in tests/browser/)."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from pyproj import Geod
from test_areas import _geodesic_m2
from test_io import write_tif

from ofa_explore import OFANet, hyperspectral_modality, load_pretrained
from ofa_explore.demo import sample_path
from ofa_explore.io import open_raster, raster_modality
from ofa_explore.widgets import (
    ChangeMap,
    ClassificationMap,
    EmbeddingMap,
    RasterExplorer,
    ReconstructionExplorer,
)
from ofa_explore.widgets.display import (
    colormap_picture,
    cosine_similarity,
    latlon_bounds,
    latlon_to_cell,
    on_display_grid,
)


@pytest.fixture(scope="module")
def model():
    return load_pretrained()


@pytest.fixture(scope="module")
def naip_map(model):
    return EmbeddingMap(model, sample_path("naip_rgbn_2020.tif"), basemap=False)


NAIP_CHANGE = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "naip_change"


@pytest.fixture(scope="module")
def change_map(model):
    """Notebook 06's map: NAIP 2009 and 2020 (AFTER on a grid 1-4 m off BEFORE's)."""
    return ChangeMap(
        model, NAIP_CHANGE / "naip_2009.tif", NAIP_CHANGE / "naip_2020.tif", basemap=False
    )


def test_change_map_says_when_after_was_moved_onto_befores_features(model):
    """NAIP 2014's features lie ~1.8 px off 2009's: the map says AFTER was moved onto them."""
    w = ChangeMap(
        model, NAIP_CHANGE / "naip_2009.tif", NAIP_CHANGE / "naip_2014.tif", basemap=False
    )
    assert w.result.checks["aligned_rows"] ** 2 + w.result.checks["aligned_cols"] ** 2 > 1
    assert "AFTER was moved 1." in w.said.value and "onto BEFORE&#x27;s features" in w.said.value
    assert w.said in w.children and not w.result.warnings


def centre(bounds):
    (south, west), (north, east) = bounds
    return (south + north) / 2, (west + east) / 2


# ---------------------------------------------------------------- pure logic
def test_similarity_is_one_at_the_clicked_patch_and_nan_on_nodata():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(8, 4, 5)) + 5.0  # a shared offset, as real embeddings have
    e[:, 3, 4] = np.nan
    s = cosine_similarity(e, 1, 2)
    assert s[1, 2] == pytest.approx(1.0) and np.isnan(s[3, 4])
    assert np.nanmin(s) < 0  # the shared mean is removed: not everything looks alike


def test_colour_pictures():
    rgba = colormap_picture(np.array([[0.1, 0.9], [np.nan, 0.5]]), "magma", 0, 1, threshold=0.4)
    assert rgba.shape == (2, 2, 4) and rgba[0, 0, 3] == 0 and rgba[1, 0, 3] == 0
    assert rgba[0, 1, 3] == 255


def test_map_clicks_map_to_patches_and_outside_is_none():
    da = open_raster(sample_path("naip_rgbn_2020.tif"))
    lat, lon = centre(latlon_bounds(da))
    row, col = latlon_to_cell(da, lat, lon, 8)
    assert abs(row - 12) <= 1 and abs(col - 12) <= 1  # 192 px / 8 = 24 patches a side
    assert latlon_to_cell(da, lat + 1.0, lon, 8) is None


# ---------------------------------------------------------------- widgets
def test_raster_explorer_detects_overrides_and_reports_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where uploads are copied
    explorer = RasterExplorer(sample_path("bigearthnet_s1_20170613.tif"))
    assert "s1_grd" in explorer.info.value and explorer.image.value
    first = explorer.image.value
    explorer.stretch.value = (10, 90)
    assert explorer.image.value != first
    explorer = RasterExplorer(sample_path("naip_rgbn_2020.tif"))
    natural = explorer.image.value
    explorer.natural.value = False
    explorer.red.value = 3  # NIR as red: false colour
    assert explorer.image.value != natural
    explorer.modality.value = "s2_l1c"  # 4 bands cannot be Sentinel-2 L1C
    assert "13" in explorer.info.value and "color:#b00" in explorer.info.value
    with open(sample_path("eurosat_river.tif"), "rb") as f:  # an upload
        explorer.modality.value = ""
        content = memoryview(f.read())
    for _ in range(2):  # the same file twice: each copy kept while its raster may be read
        explorer._uploaded({"new": [{"name": "river.tif", "content": content}]})
        assert "s2_l1c" in explorer.info.value
    assert len(list(tmp_path.glob("ofa_upload_*/*/river.tif"))) == 2
    explorer.close()
    assert not list(tmp_path.glob("ofa_upload_*"))  # the copies go with the explorer


def test_raster_explorer_says_why_a_file_cannot_be_shown_in_its_own_words():
    """Notebook 01's exercise: a single-band file pasted into an explorer that shows a scene:
    the message names the widget's Modality drop-down (not `--modality` or `modality=`), the old
    picture goes; a 13-band file pasted next is shown again."""
    shipped = Path(__file__).resolve().parents[1] / "notebooks" / "data"
    explorer = RasterExplorer(sample_path("naip_rgbn_2020.tif"))
    assert explorer.image.value
    explorer.path.value = str(shipped / "s2_chesapeake" / "B08.tif")
    explorer.load_button.click()
    message = explorer.info.value
    assert "no known sensor has 1 band" in message and "Modality" in message, message
    assert "--modality" not in message and "modality=" not in message, message
    assert explorer.image.value == b"" and explorer.image.layout.display == "none"
    assert explorer.red.options == ()  # no band names of the NAIP scene either
    explorer.path.value = str(shipped / "my_chips" / "Forest" / "Forest_1.tif")
    explorer.load_button.click()
    assert "s2_l1c" in explorer.info.value and explorer.image.value
    assert explorer.image.layout.display != "none"


def test_raster_explorer_offers_the_bands_a_refusal_names(tmp_path):
    """Sentinel-2's 10 m bands, unnamed, as exports hold them: the refusal names them as
    s2_l2a_b02_b03_b04_b08 (a name to type in code and the CLI), and the Modality drop-down
    offers that name, so choosing it shows the scene; no name the drop-down lacks is named."""

    scene = Path(__file__).resolve().parents[1] / "notebooks" / "data" / "s2_chesapeake"
    bands = []
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(scene / f"{band}.tif") as src:
            profile, pixels = src.profile, src.read(1)
            bands.append(pixels)
    path = tmp_path / "ten_m.tif"
    with rasterio.open(path, "w", **{**profile, "count": 4}) as dst:
        dst.write(np.stack(bands))
    explorer = RasterExplorer(str(path))
    assert "such as s2_l1c_b02_b03_b04_b08 or s2_l2a_b02_b03_b04_b08" in explorer.info.value
    explorer.modality.value = "s2_l2a_b02_b03_b04_b08"  # observed: it loads again
    assert "s2_l2a_b02_b03_b04_b08" in explorer.info.value and explorer.image.value
    single = RasterExplorer(str(scene / "B08.tif"))  # one band: Sentinel-1's VV alone is named
    named = set(re.findall(r"such as ([a-z0-9_]+)", single.info.value))
    assert named and named <= {value for _, value in single.modality.options}


def test_mask_ratio_changes_the_reconstruction_and_the_loss(model):
    explorer = ReconstructionExplorer(model, sample_path("eurosat_river.tif"))
    before, loss = explorer.panels["reconstruction"].value, explorer.loss.value
    scores = explorer.update()
    assert scores["model"] < scores["baseline"]  # the shipped model beats the trivial guess
    explorer.mask_ratio.value = 0.5
    assert explorer.panels["reconstruction"].value != before and explorer.loss.value != loss
    explorer.band.value = 3
    explorer.grid.value = False
    assert "50% hidden" in explorer.loss.value


def test_error_panel_greys_the_patches_the_model_saw(model):
    """Patches that were not hidden are not scored: grey, unlike black (no error)."""
    from io import BytesIO

    from matplotlib.image import imread

    explorer = ReconstructionExplorer(model, sample_path("eurosat_river.tif"))
    explorer.grid.value = False
    _, mask = model.reconstruct(explorer.x, explorer.modality, mask_ratio=0.75, seed=0)
    hidden = mask[0, 0].numpy().astype(bool)
    error = imread(BytesIO(explorer.panels["error"].value))[..., :3]  # float 0-1, upscaled
    error = error[:: error.shape[0] // hidden.shape[0], :: error.shape[1] // hidden.shape[1]]
    assert (error[~hidden] == 128 / 255).all()
    assert not (error[hidden] == 128 / 255).all(axis=-1).any()


def test_landsat_reconstruction_is_little_better_than_the_trivial_guess(model):
    """What notebook 02 says of its Landsat-8 scene: at seed 0 the model's error is about nine
    tenths of the trivial baseline's, and on the Sentinel-2 scene about half of it."""
    landsat = ReconstructionExplorer(model, sample_path("landsat8_l1_gulf_coast.tif")).update()
    assert 0.8 * landsat["baseline"] < landsat["model"] < 0.95 * landsat["baseline"], landsat
    river = ReconstructionExplorer(model, sample_path("eurosat_river.tif")).update()
    assert river["model"] < 0.6 * river["baseline"], river


def test_reconstruction_explorer_runs_the_wavelength_conditioned_path(tmp_path):
    path = tmp_path / "cube.tif"
    with rasterio.open(sample_path("eurosat_river.tif")) as src:
        profile, data = src.profile, src.read()[[1, 2, 3, 7]]
    profile.update(count=4)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    cube = hyperspectral_modality([0.49, 0.56, 0.665, 0.842], name="my_cube", scale=1e-4)
    model = OFANet("tiny", modalities=["rgb"], img_size=32, patch_size=8, depth=1).eval()
    explorer = ReconstructionExplorer(model, open_raster(path, cube))
    assert explorer.modality.name == "my_cube" and explorer.panels["error"].value


def test_embedding_map_click_similarity_threshold_and_export(naip_map, tmp_path):
    empty = naip_map.similarity_layer.url
    assert naip_map.select(*centre(naip_map.bounds))  # from code: the PCA view stays on
    assert naip_map.show_pca.value and naip_map.pca.opacity > 0
    naip_map._on_map(type="click", coordinates=list(centre(naip_map.bounds)))
    assert not naip_map.show_pca.value  # a click on the map: the scene under the similarity
    assert naip_map.similarity is not None and naip_map.similarity_layer.url != empty
    assert "at or above 0.50" in naip_map.status.value and " ha)" in naip_map.status.value
    assert "cosine similarity" in naip_map.colorbar.value
    url, bar = naip_map.similarity_layer.url, naip_map.colorbar.value
    naip_map.threshold.value = 0.9
    assert naip_map.similarity_layer.url != url and naip_map.colorbar.value != bar
    assert "at or above 0.90" in naip_map.status.value  # the status follows the threshold
    naip_map.opacity.value = 0.3
    assert naip_map.similarity_layer.opacity == 0.3
    assert not naip_map.select(0.0, 0.0)  # far outside the scene
    written = naip_map.export(tmp_path / "export")
    with rasterio.open(written[1]) as sim, rasterio.open(sample_path("naip_rgbn_2020.tif")) as ref:
        assert sim.crs == ref.crs and sim.bounds == pytest.approx(ref.bounds, abs=1e-3)
        assert sim.read(1).shape == naip_map.similarity.shape
    with rasterio.open(written[0]) as emb:
        assert emb.count == 192
    assert [
        lyr.name
        for lyr in naip_map.map.layers
        if hasattr(lyr, "url") and lyr.url.startswith("data:")
    ] == ["scene", "embedding PCA", "similarity"]


def test_the_map_offers_only_tools_that_work_offline(naip_map):
    """No leafmap toolbar (basemap gallery, search, downloads: all need the internet), no
    drawing tools: zoom, full screen, the scale bar and the attribution."""
    controls = {type(c).__name__ for c in naip_map.map.controls}
    assert controls == {"ZoomControl", "FullScreenControl", "ScaleControl", "AttributionControl"}


def test_embedding_map_in_degrees_gives_hectares_on_the_ellipsoid(model, tmp_path):
    """A scene in EPSG:4326: the status line's hectares are its patches' ground areas (every
    patch at or above -1: the whole scene, as pyproj measures its footprint)."""
    with rasterio.open(sample_path("eurosat_river.tif")) as src:
        data = src.read()
    transform = rasterio.transform.from_origin(13.0, 52.0, 1e-4, 1e-4)
    path = write_tif(tmp_path / "wgs84.tif", data, crs="EPSG:4326", transform=transform)
    widget = EmbeddingMap(model, path, basemap=False)
    assert widget.select(*centre(widget.bounds))
    widget.threshold.value = -1.0
    footprint = Geod(ellps="WGS84").polygon_area_perimeter(
        [13.0, 13.0064, 13.0064, 13.0], [52.0, 52.0, 51.9936, 51.9936]
    )[0]
    assert f"64 of 64 patches ({abs(footprint) / 1e4:,.1f} ha)" in widget.status.value


def test_classification_map_legend_and_area_table(model):
    widget = ClassificationMap(model, sample_path("eurosat_river.tif"), basemap=False)
    assert "River" in widget.legend.value and "eurosat_landcover" in widget.legend.value
    total = sum(r["hectares"] for r in widget.areas)
    assert total == pytest.approx(64 * 64 * 100 / 1e4, rel=0.05)  # 64 x 64 px at 10 m
    assert "image-rendering: pixelated" in widget.children[0].value
    assert "<table>" in widget.table.value
    with pytest.raises(ValueError, match="no classification head of this model takes 'rgbn'"):
        ClassificationMap(model, sample_path("naip_rgbn_2020.tif"), basemap=False)


def test_class_map_covers_the_scene_to_its_edges(model, tmp_path):
    """A scene whose size is not a multiple of the patch: the cells cut by the right and bottom
    edges are classified, drawn up to the scene's edge, and counted by their area inside it."""
    path = tmp_path / "cut.tif"
    with rasterio.open(sample_path("eurosat_river.tif")) as src:
        profile = {**src.profile, "width": 61, "height": 59}
        data = src.read(window=rasterio.windows.Window(0, 0, 61, 59))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    widget = ClassificationMap(model, path, basemap=False)
    assert widget.classes.shape == (8, 8) and (widget.classes != 255).all()
    total = sum(r["hectares"] for r in widget.areas)
    assert total == pytest.approx(
        61 * 59 * 100 / 1e4, rel=2e-3
    )  # exactly the scene, not 64 x 64 px
    picture = on_display_grid(widget.classes, 8, widget.raster)
    assert (
        picture.shape == (59, 61) and (picture[-1] == widget.classes[-1, np.arange(61) // 8]).all()
    )


def test_widgets_take_the_engine_settings(model):
    from ofa_explore.engine import EngineSettings

    settings = EngineSettings(precision="bf16", batch_size=2, head="eurosat_landcover")
    widget = ClassificationMap(
        model, sample_path("eurosat_river.tif"), basemap=False, settings=settings
    )
    assert widget.result.precision == "bf16" and widget.result.head == "eurosat_landcover"
    with pytest.raises(ValueError, match="no head named 'nope'"):
        ClassificationMap(
            model, sample_path("eurosat_river.tif"), basemap=False, settings=settings, head="nope"
        )  # the argument wins over the settings


def test_change_map_threshold_click_and_area(change_map):
    """The score on BEFORE's grid; the slider redraws the layer, the colour bar and the area
    (hectares of 5 m pixels on the ellipsoid, share of the scene); a click reports the pixel's
    score."""
    w = change_map
    with rasterio.open(NAIP_CHANGE / "naip_2009.tif") as src:
        assert w.score.shape == src.shape and w.data.rio.transform() == src.transform
        x, y = src.xy(200, 200)  # the middle pixel's ground area, as pyproj measures it
        corners = [x - 2.5, x + 2.5, x + 2.5, x - 2.5], [y - 2.5, y - 2.5, y + 2.5, y + 2.5]
        pixel_m2 = _geodesic_m2(src.crs, *corners)
    assert 24.9 < pixel_m2 < 25.1  # UTM: not quite 5 m x 5 m
    # AFTER lies 4 m north of BEFORE: BEFORE's last row has no 2020 pixels under it
    assert w.valid[:-1].all() and not w.valid[-1].any() and w.threshold.value == 3.0
    above = int((w.score >= 3.0).sum())
    area = w.area_above()
    assert area["pixels"] == above > 0
    assert area["hectares"] == pytest.approx(above * pixel_m2 / 1e4, rel=1e-5)
    assert area["share"] == pytest.approx(above / (399 * 400))
    assert f"Score 3.0 or more: {area['hectares']:,.2f} ha ({above:,} px)" in w.status.value
    assert "Click the map" in w.status.value and "change score" in w.colorbar.value
    assert "<span>3</span>" in w.colorbar.value and "<span>9</span>" in w.colorbar.value  # 6 sd
    url, bar = w.change_layer.url, w.colorbar.value
    w.threshold.value = 4.5
    assert w.change_layer.url != url and w.colorbar.value != bar
    assert "Score 4.5 or more" in w.status.value
    assert w.area_above()["pixels"] == int((w.score >= 4.5).sum()) < above
    assert "⚠" not in w.status.value
    w.threshold.value = 0.0  # a quarter of the scene or more: the warning `ofa change` gives
    assert w.area_above()["share"] >= 0.25
    assert "⚠ the mask marks" in w.status.value and "a threshold of 3 (the" in w.status.value
    w.threshold.value = 4.5
    lat, lon = centre(w.bounds)
    w._on_map(type="click", coordinates=[lat, lon])  # a click on the map
    row, col = w.selected
    assert abs(row - 200) <= 1 and abs(col - 200) <= 1  # 400 x 400 px
    assert w.score_at(lat, lon) == pytest.approx(float(w.score[row, col]))
    assert f"Pixel row {row}, column {col}: score {w.score[row, col]:.2f}" in w.status.value
    assert not w.select(0.0, 0.0) and w.score_at(0.0, 0.0) is None
    w.threshold.value = 3.0


def test_change_map_swipes_between_the_dates_under_the_change_layer(change_map):
    w = change_map
    assert (w.swipe.left_layer, w.swipe.right_layer) == (w.before_layer, w.after_layer)
    assert (w.before_layer.pane, w.after_layer.pane) == ("before", "after")
    assert all(w.map.panes[p]["zIndex"] < 400 for p in ("before", "after"))  # under overlays
    assert [lyr.name for lyr in w.map.layers if hasattr(lyr, "url")] == ["change"]
    assert w.swipe in w.map.controls
    assert "naip_2009.tif" in w.dates.value and "naip_2020.tif" in w.dates.value


def test_change_map_exports_score_mask_and_polygons(change_map, tmp_path):
    pyogrio = pytest.importorskip("pyogrio")
    w = change_map
    tif, gpkg = w.export(tmp_path / "export")
    with rasterio.open(tif) as out, rasterio.open(NAIP_CHANGE / "naip_2009.tif") as ref:
        assert (out.crs, out.transform, out.shape) == (ref.crs, ref.transform, ref.shape)
        score, mask = out.read()
    assert np.array_equal(mask == 1, w.score >= w.threshold.value)
    _, _, _, (hectares, mean, top) = pyogrio.raw.read(gpkg)
    assert hectares.sum() == pytest.approx(w.area_above()["hectares"])  # the mask, exactly
    assert (mean >= w.threshold.value).all() and top.max() == pytest.approx(score[mask == 1].max())


def test_change_map_in_degrees_counts_pixels_and_skips_nodata(model, shared, tmp_path):
    """Two real Sentinel-2 dates in EPSG:4326 (OSCD, images only): areas in hectares on the
    ellipsoid; a hole in AFTER is nodata, left out of the share and reported on a click."""
    from rasterio.windows import Window

    folder = shared / "change" / "oscd" / "bercy"
    if not folder.is_dir():
        pytest.skip(f"no OSCD pair at {folder}")
    paths = []
    for name in ("bercy_20161130.tif", "bercy_20170829.tif"):
        with rasterio.open(folder / name) as src:
            window = Window(0, 0, 96, 96)
            profile = src.profile | {"width": 96, "height": 96, "nodata": 0}
            profile["transform"] = src.window_transform(window)
            data, descriptions = src.read(window=window), src.descriptions
        data[:, 60:80, 60:80] = 0 if name.endswith("0829.tif") else data[:, 60:80, 60:80]
        paths.append(tmp_path / name)
        with rasterio.open(paths[-1], "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = descriptions
    w = ChangeMap(model, *paths, threshold=2.0, basemap=False, precision="fp32", batch_size=2)
    assert w.result.precision == "fp32"
    assert np.isnan(w.score[60:80, 60:80]).all() and w.valid.sum() == 96 * 96 - 400
    area = w.area_above()
    assert area["share"] == pytest.approx(area["pixels"] / w.valid.sum())
    # Paris, 48.87 deg N: a pixel of 0.0001163 x 0.0001164 deg covers 110.5 m^2 there
    assert area["hectares"] == pytest.approx(area["pixels"] * 110.5 / 1e4, rel=0.001)
    assert f"Score 2.0 or more: {area['hectares']:,.2f} ha ({area['pixels']:,} px)," in (
        w.status.value
    )
    with rasterio.open(paths[0]) as src:  # the centre of the hole, in degrees
        lon, lat = src.xy(70, 70)
    assert w.select(lat, lon) and "no data in one of the dates" in w.status.value


def test_maps_take_dataarrays_as_they_are(model):
    """A notebook's DataArrays: open_raster's cropped to an area, rioxarray's of one's own (read
    as its file: NAIP's R, G, B, NIR). The change map was a TypeError for them."""
    import rioxarray

    before = open_raster(NAIP_CHANGE / "naip_2009.tif")
    area = before.isel(y=slice(0, 96), x=slice(0, 128))
    w = ChangeMap(
        model, area, rioxarray.open_rasterio(NAIP_CHANGE / "naip_2020.tif"), basemap=False
    )
    assert w.score.shape == (96, 128) and np.isfinite(w.score).all()
    naip = raster_modality(open_raster(NAIP_CHANGE / "naip_2020.tif")).name
    assert w.result.modality == naip
    embedded = EmbeddingMap(model, rioxarray.open_rasterio(sample_path("naip_rgbn_2020.tif")))
    assert embedded.modality.name == naip
