"""Data the model was not trained on: the value scale is detected for integer files too (or the
file is refused, naming the scale), edge cells are computed from real pixels, and reconstruct
checks itself against the trivial baseline. Real Landsat files of one sensor family: Landsat-5
TM 8-bit (Nanjing), Landsat-8 OLI 16-bit (Gulf Coast, Brazil)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from ofa_explore.engine import predict_raster
from ofa_explore.io import RasterError, ScaleWarning, open_raster, raster_modality, source_tags
from ofa_explore.pretrained import load_model


@pytest.fixture(scope="module")
def model():
    return load_model()


def crop(src: str, dst, height: int, width: int, nodata=None):
    """The top-left height x width pixels of a real scene, as a new GeoTIFF."""
    with rasterio.open(src) as s:
        window = Window(0, 0, width, height)
        profile = s.profile | dict(
            width=width, height=height, transform=s.window_transform(window), tiled=False
        )
        data = s.read(window=window)
    if nodata is not None:
        profile["nodata"] = nodata
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(dst, "w", **profile) as d:
        d.write(data)
    return dst


def test_8bit_landsat_is_read_as_8bit_dn_not_as_reflectance(shared):
    """Six uint8 Landsat bands used to be read with surface-reflectance statistics (means
    ~9000): now the 8-bit layout of the sensor family, and the record says why."""
    da = open_raster(shared / "change/landsat_tm/nanjing/nanjing_20000503.tif")
    assert raster_modality(da).name == "landsat_tm_8bit"
    tags = source_tags(da)
    assert tags["ofa_modality"] == "landsat_tm_8bit" and "8-bit" in tags["ofa_units"]
    assert "fit its statistics" in tags["ofa_notes"]


def test_16bit_landsat_of_the_same_family_keeps_its_own_scale(shared):
    da = open_raster([shared / f"landsat/l8_gulf_coast/B{b}.tif" for b in (1, 2, 3, 4, 5, 6, 7, 9)])
    assert raster_modality(da).name == "landsat_oli_l1"
    assert "band means" in source_tags(da)["ofa_notes"]


def test_16bit_values_where_8bit_are_expected_are_refused_naming_the_scale(shared, tmp_path):
    """Landsat-8 blue/green/red in 16-bit DN: three bands suggest 8-bit RGB, whose statistics
    are ~50x smaller; nothing fits, so one line says so. Named B2, B3, B4 (as the file has
    them), they are those bands of Landsat-8 Level-1 (they were refused too)."""
    named = shared / "landsat/l8_224078_20200518_B2B3B4.tif"
    assert raster_modality(open_raster(named)).name == "landsat_oli_l1_b2_b3_b4"
    unnamed = tmp_path / "b2b3b4.tif"
    with rasterio.open(named) as src:
        profile = {**src.profile, "width": 512, "height": 512}  # (the grid does not matter)
        with rasterio.open(unnamed, "w", **profile) as dst:
            dst.write(src.read(out_shape=(3, 512, 512)))
    with pytest.raises(RasterError) as err:
        open_raster(unnamed)
    text = str(err.value)
    assert "uint16" in text and "larger than those of 'rgb'" in text and "modality" in text
    assert "\n" not in text


def test_a_modality_given_in_other_units_warns(shared):
    with pytest.warns(ScaleWarning, match=r"~\d+x smaller than the statistics of 'landsat_etm'"):
        da = open_raster(
            shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", modality="landsat_etm"
        )
    assert raster_modality(da).name == "landsat_etm"  # the caller's word stands


@pytest.mark.parametrize("year", ["1985", "2020"])
def test_unnamed_bands_in_another_order_are_read_by_the_sensor_their_means_follow(
    shared, tmp_path, year
):
    """Four unnamed 8-bit bands were read as NAIP's R, G, B, NIR although the Peru composites
    hold SWIR1, NIR, red, green (band means 7x apart band to band): now the band means choose
    the sensor, the note says why and how to choose the other; bands named, or a sensor
    given, still decide; the NAIP years stay NAIP."""
    path = shared / f"landsat/peru_composites/{year}.tif"
    da = open_raster(path)
    assert raster_modality(da).name == "landsat_composite_8bit"
    assert list(da.band.values) == ["SWIR1", "NIR", "R", "G"]
    note = source_tags(da)["ofa_notes"]
    assert "carry no sensor's names" in note and "if it is 'rgbn', choose that sensor" in note
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScaleWarning)
        assert raster_modality(open_raster(path, modality="rgbn")).name == "rgbn"
    named = tmp_path / "named.tif"
    with rasterio.open(path) as src:
        profile, data = src.profile, src.read()
    with rasterio.open(named, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = ("R", "G", "B", "NIR")
    assert raster_modality(open_raster(named)).name == "rgbn"
    for naip in sorted((shared / "naip").glob("*.tif")):
        kept = open_raster(naip)
        assert raster_modality(kept).name == "rgbn", naip.name
        assert "no sensor's names" not in source_tags(kept)["ofa_notes"]


def test_reflectance_floats_are_converted_and_the_note_says_so(tmp_path):
    from ofa_explore.demo import sample_path

    with rasterio.open(sample_path("eurosat_forest.tif")) as src:
        profile, data = src.profile, src.read().astype("float32") / 10000
    profile.update(dtype="float32")
    with rasterio.open(tmp_path / "refl.tif", "w", **profile) as dst:
        dst.write(data)
    da = open_raster(tmp_path / "refl.tif")
    assert da.attrs["ofa_conversion"]["kind"] == "affine"
    assert "after scaling to its units" in source_tags(da)["ofa_notes"]


def edge_ratio(embedding: np.ndarray) -> tuple[float, float]:
    """Largest distance from the mean embedding among the last row and column of cells, and
    among the others, each over the median distance."""
    ok = np.isfinite(embedding).all(axis=0)
    vectors = embedding[:, ok].T
    dist = np.full(ok.shape, np.nan)
    dist[ok] = np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)
    edge = np.zeros(ok.shape, bool)
    edge[-1, :] = edge[:, -1] = True
    median = np.nanmedian(dist)
    return np.nanmax(dist[edge]) / median, np.nanmax(dist[~edge]) / median


@pytest.mark.parametrize("modality", [None, "landsat_etm"])
def test_cells_cut_by_the_edge_are_not_outliers(shared, tmp_path, model, modality):
    """A 253 x 245 crop (not a multiple of the 8-pixel patch): the cut cells used to be filled
    with the modality's mean, which at the wrong scale made them 43x further from the mean
    embedding than the median cell. Even then they are now ordinary cells."""
    path = crop(
        shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", tmp_path / "c.tif", 253, 245
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScaleWarning)
        result = predict_raster(model, path, "embed", modality=modality)
    embedding = result.data.values
    assert embedding.shape[1:] == (32, 31) and np.isfinite(embedding).all()
    edge, interior = edge_ratio(embedding)
    assert edge < 5 and edge < 1.5 * interior


def test_cells_outside_the_data_are_nodata_and_the_colour_view_ignores_them(
    shared, tmp_path, model
):
    """A crop whose right third is nodata: those cells are NaN in the embedding and 0 in the
    colour view, whose colours are stretched over the valid cells only."""
    path = crop(
        shared / "change/landsat_tm/nanjing/nanjing_20000503.tif",
        tmp_path / "n.tif",
        64,
        96,
        nodata=0,
    )
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        data[:, :, 64:] = 0
        dst.write(data)
    result = predict_raster(model, path, "embed")
    embedding, pca = result.data.values, result.pca.values
    outside = ~np.isfinite(embedding).all(axis=0)
    assert outside[:, 8:].all() and not outside[:, :8].any()
    assert (pca[:, outside] == 0).all() and (pca[:, ~outside] > 0).all()
    assert len(np.unique(pca[0, ~outside])) > 8  # stretched over real cells, not flattened


def test_reconstruct_reports_its_error_against_the_trivial_baseline(shared, tmp_path, model):
    path = crop(
        shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", tmp_path / "r.tif", 128, 128
    )
    out = tmp_path / "rec.tif"
    result = predict_raster(model, path, "reconstruct", out, mask_ratio=0.75)
    checks = result.checks
    assert checks["hidden_pixels"] > 0.6 * 128 * 128  # most of 75 % hidden: valid centres
    assert 0 < checks["hidden_mse"] and 0 < checks["baseline_mse"]
    assert any("trivial baseline" in note for note in result.notes)
    assert result.notes[0].startswith("read as 'landsat_tm_8bit'")  # how it was read comes first
    with rasterio.open(out) as src:
        tags = src.tags()
    assert float(tags["ofa_hidden_mse"]) == pytest.approx(checks["hidden_mse"], rel=1e-5)
    assert tags["ofa_modality"] == "landsat_tm_8bit"
    no_mask = predict_raster(model, path, "reconstruct", mask_ratio=0)
    assert no_mask.checks == {} and no_mask.warnings == []


def test_reconstruct_warns_when_it_does_no_better_than_the_baseline(shared, tmp_path, model):
    """The 8-bit TM scene read with the Peru composites' statistics (as the issue's user did
    with --modality landsat_composite_8bit --bands 5,4,3,2): the model loses to the trivial
    baseline, and says so."""
    path = crop(
        shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", tmp_path / "r.tif", 128, 128
    )
    raster = open_raster(path, modality="landsat_composite_8bit", bands=[5, 4, 3, 2])
    result = predict_raster(model, raster, "reconstruct")
    assert result.checks["hidden_mse"] > result.checks["baseline_mse"]
    assert len(result.warnings) == 1 and "no better than the trivial baseline" in result.warnings[0]


def test_zero_borders_without_a_nodata_value_are_nodata_not_outliers(shared, tmp_path, model):
    """Landsat scenes come with 0-filled borders around the tilted footprint, often without a
    nodata value (as the shared Landsat-8 file from the same carrier). Pixels that are 0 in every
    band are taken as nodata, and said so."""
    path = crop(
        shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", tmp_path / "z.tif", 160, 160
    )
    with rasterio.open(path, "r+") as dst:
        data = dst.read()
        rows, cols = np.indices(data.shape[1:])
        data[:, cols - rows > 100] = 0  # the top-right corner, as outside a tilted footprint
        data[:, :, -5:] = 0  # most of the last column of cells
        dst.write(data)
    result = predict_raster(model, path, "embed")
    assert any("0 in every band" in note for note in result.notes)
    embedding = result.data.values
    border = ~np.isfinite(embedding).all(axis=0)
    assert border[0, -1] and border[:, -1].all() and not border[-1, 0]
    edge, interior = edge_ratio(embedding)
    assert edge < 5
    kept = predict_raster(model, open_raster(path, nodata=None), "embed")
    assert np.isfinite(kept.data.values).all()  # nodata unset on purpose: all of it is data
    assert not any("0 in every band" in note for note in kept.notes)


def test_the_cli_says_what_it_decided_and_warns_in_one_line_each(shared, tmp_path, capsys):
    """The result line carries the scale decision and the self-check; a value scale that does
    not fit the sensor given, and a reconstruction that loses to the baseline, are one
    `ofa reconstruct: warning:` line each (no Python warning format, no source line)."""
    from ofa_explore.cli import main

    path = crop(
        shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", tmp_path / "s.tif", 64, 64
    )
    assert main(["reconstruct", str(path), "-o", str(tmp_path / "a.tif"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "note: read as 'landsat_tm_8bit', in 8-bit DN" in out and "trivial baseline" in out
    code = main(
        ["reconstruct", str(path), "-o", str(tmp_path / "b.tif"), "-q", "--modality", "landsat_etm"]
    )
    assert code == 0
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 2 and all(x.startswith("ofa reconstruct: warning: ") for x in lines)
    assert "x smaller than the statistics of 'landsat_etm'" in lines[0]
    assert "no better than the trivial baseline" in lines[1]
    assert "as asked; the values are ~" in captured.out
    with rasterio.open(tmp_path / "b.tif") as src:
        assert "as asked" in src.tags()["ofa_notes"]


def test_reconstruct_warns_when_it_barely_beats_the_baseline(shared, model):
    """The whole Nanjing TM scene read at the right scale: the shipped model's hidden-pixel
    error is within 10 % of the trivial baseline's, and the result says so."""
    result = predict_raster(
        model, shared / "change/landsat_tm/nanjing/nanjing_20000503.tif", "reconstruct"
    )
    checks = result.checks
    assert 0.9 * checks["baseline_mse"] < checks["hidden_mse"] < checks["baseline_mse"]
    assert len(result.warnings) == 1 and "only slightly better" in result.warnings[0]
