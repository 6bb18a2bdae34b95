"""Opening real rasters lazily, detecting modality and units, and refusing bad input clearly."""

from __future__ import annotations

import glob
import random
import warnings

import numpy as np
import pytest
import rasterio

from ofa_explore.demo import sample_path
from ofa_explore.io import RasterError, ScaleWarning, open_raster, raster_modality
from ofa_explore.modalities import _REGISTRY, Modality, register_modality
from ofa_explore.scale import to_model_units


def write_tif(path, data, crs="EPSG:32633", transform=None, nodata=None, descriptions=None):
    transform = transform or rasterio.transform.from_origin(500000, 5300000, 10, 10)
    profile = dict(
        driver="GTiff",
        count=data.shape[0],
        height=data.shape[1],
        width=data.shape[2],
        dtype=data.dtype,
        transform=transform,
        nodata=nodata,
    )
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return path


@pytest.mark.parametrize(
    "filename,modality,bands",
    [
        ("eurosat_forest.tif", "s2_l1c", 13),
        ("bigearthnet_s1_20170613.tif", "s1_grd", 2),
        ("naip_rgbn_2020.tif", "rgbn", 4),
        ("neon_rgb_osbs.tif", "rgb", 3),
    ],
)
def test_detects_modality_and_keeps_georeferencing(filename, modality, bands):
    path = sample_path(filename)
    da = open_raster(path)
    assert raster_modality(da).name == modality
    assert list(da.band.values) == list(raster_modality(da).bands) and da.sizes["band"] == bands
    with rasterio.open(path) as src:
        assert da.rio.crs == src.crs and da.rio.transform() == src.transform
        assert da.rio.nodata == src.nodata
    assert not isinstance(da.variable._data, np.ndarray)  # lazy: nothing read yet


def test_large_scene_stays_lazy(shared):
    da = open_raster(shared / "naip" / "m_4709963_se_14_1_20200831.tif")
    assert da.sizes == {"band": 4, "y": 723, "x": 934}
    window = da.isel(y=slice(100, 110), x=slice(200, 220)).values
    with rasterio.open(shared / "naip" / "m_4709963_se_14_1_20200831.tif") as src:
        expected = src.read(window=rasterio.windows.Window(200, 100, 20, 10))
    assert np.array_equal(window, expected)


def test_single_band_files_are_stacked_in_band_order_on_the_finest_grid(shared):
    files = sorted(glob.glob(str(shared / "bigearthnet/S2/S2A_MSIL2A_20170613T101031_87_48/*.tif")))
    random.Random(0).shuffle(files)
    da = open_raster(files)
    m = raster_modality(da)
    assert m.name == "s2_l2a" and list(da.band.values) == list(m.bands)
    assert da.sizes["y"] == da.sizes["x"] == 120 and da.rio.transform().a == 10
    with rasterio.open(next(f for f in files if f.endswith("_B04.tif"))) as src:
        assert np.array_equal(da.sel(band="B04").values, src.read(1))  # 10 m band untouched
    with rasterio.open(next(f for f in files if f.endswith("_B01.tif"))) as src:
        b01 = src.read(1).astype(float)  # 60 m band, bilinear to 10 m: same mean, 6x the pixels
    assert abs(da.sel(band="B01").values.mean() - b01.mean()) < 0.05 * b01.mean()


def test_a_scene_folder_is_read_as_the_sensor_its_band_files_hold(shared, tmp_path):
    """Landsat-8's folder as downloaded (B1 ... B11 and BQA, 12 files) was taken for Sentinel-2
    L2A, the one sensor of 12 bands, and refused for want of a B01; it is Landsat-8 Level-1, and
    the panchromatic, thermal and quality bands are left out with a note."""
    folder = shared / "landsat/l8_gulf_coast"
    files = sorted(glob.glob(str(folder / "*.tif")))
    assert len(files) == 12
    for modality in (None, "landsat_oli_l1"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ScaleWarning)  # the values fit the sensor
            da = open_raster(files, modality=modality)
        assert raster_modality(da).name == "landsat_oli_l1"
        assert list(da.band.values) == ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9"]
        assert "left out B10.tif, B11.tif, B8.tif, BQA.tif" in da.attrs["ofa_notes"][0]
        with rasterio.open(folder / "B9.tif") as src:
            assert np.array_equal(da.sel(band="B9").values, src.read(1))

    da = open_raster(folder)  # the folder itself: its rasters
    assert raster_modality(da).name == "landsat_oli_l1" and da.sizes["band"] == 8
    with pytest.raises(RasterError, match="is a folder with no raster files"):
        open_raster(tmp_path)
    with pytest.raises(RasterError, match="has 4 bands; a list of files .* single-band files"):
        open_raster(shared / "naip")  # a folder of scenes (it said: no sensor has 10 bands)

    # a band file more than Sentinel-2 L1C's 13 (a product's scene classification) is left out
    s2 = sorted(glob.glob(str(shared / "s2_scenes/brandenburg_20170216/*.tif")))
    with rasterio.open(s2[0]) as src:
        scl = src.read(1) % 11
    write_tif(tmp_path / "SCL.tif", scl.astype(np.uint8)[None])
    da = open_raster([*s2, str(tmp_path / "SCL.tif")])
    assert raster_modality(da).name == "s2_l1c" and da.sizes["band"] == 13
    assert da.attrs["ofa_notes"][0].startswith("left out SCL.tif: not bands of 's2_l1c'")
    with pytest.raises(RasterError, match="cannot tell which file holds band B12"):
        open_raster([f for f in s2 if not f.endswith("B12.tif")] + [str(tmp_path / "SCL.tif")])


def test_a_file_of_some_named_bands_of_a_sensor_is_read_as_those_bands(shared, tmp_path):
    """Sentinel-2's four 10 m bands exported alone (the usual export) were refused: 4 bands of
    uint16 were taken for NAIP's R, G, B, NIR, whose 8-bit statistics they do not fit. Named,
    they are read as those bands of Sentinel-2, by their wavelengths."""
    folder = shared / "s2_scenes/chesapeake"
    bands = []
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(folder / f"{band}.tif") as src:
            bands.append(src.read(1, window=rasterio.windows.Window(0, 0, 256, 256)))
    data = np.stack(bands)
    for names in (["B02", "B03", "B04", "B08"], ["B2", "B3", "B4", "B8"]):  # ESA's, GEE's
        path = write_tif(tmp_path / f"{names[0]}.tif", data, descriptions=names)
        da = open_raster(path)
        m = raster_modality(da)
        assert m.name == "s2_l1c_b02_b03_b04_b08" and tuple(da.band.values) == m.bands
        assert m.wavelengths == pytest.approx([0.49, 0.56, 0.665, 0.842], abs=0.01)
        assert np.array_equal(da.values, data)
        assert da.attrs["ofa_notes"][0].startswith("its bands B02, B03, B04, B08 are 4 of the 13")
        assert "'s2_l2a' too" in da.attrs["ofa_notes"][0]
    assert raster_modality(open_raster(path, modality="s2_l2a")).name == "s2_l2a_b02_b03_b04_b08"
    # in another order, they stay in the file's order
    path = write_tif(tmp_path / "bgr.tif", data[[2, 1, 0]], descriptions=["B04", "B03", "B02"])
    assert raster_modality(open_raster(path)).bands == ("B04", "B03", "B02")
    with pytest.raises(RasterError, match="values .* larger than those of 'rgbn'"):
        open_raster(write_tif(tmp_path / "unnamed.tif", data))  # unnamed: as before

    # a file each, named by their file names: the same; of several sensors with such bands,
    # the one whose statistics the values fit closest (Landsat-8's B2, B3, B4 are Landsat's)
    files = [str(folder / f"{band}.tif") for band in ("B02", "B03", "B04", "B08")]
    assert raster_modality(open_raster(files)).name == "s2_l1c_b02_b03_b04_b08"
    assert raster_modality(open_raster(files, "s2_l2a")).name == "s2_l2a_b02_b03_b04_b08"
    landsat = [str(shared / f"landsat/l8_gulf_coast/{band}.tif") for band in ("B2", "B3", "B4")]
    da = open_raster(landsat)
    assert raster_modality(da).name == "landsat_oli_l1_b2_b3_b4"
    assert "too" not in da.attrs["ofa_notes"][0]  # Sentinel-2's means are 8x off: not named
    with pytest.raises(RasterError, match="no known sensor has 1 band"):
        open_raster(files[:1])  # one band does not tell the sensor apart


def test_bands_picked_of_an_unnamed_sentinel2_file_are_those_bands(shared):
    """EuroSAT's chips name no bands. Bands 2, 3, 4, 8 were refused (four uint16 bands do not
    fit NAIP's statistics), and the 12 without B10 were read as L2A's 12 in L2A's order: B09
    as B8A, B11 as B09, B12 as B11, B8A as B12. They are those bands of Sentinel-2 L1C."""
    chip = shared / "eurosat/River/River_1.tif"
    with rasterio.open(chip) as src:
        pixels = src.read()
    da = open_raster(chip, bands=[2, 3, 4, 8])
    assert raster_modality(da).name == "s2_l1c_b02_b03_b04_b08"
    assert np.array_equal(da.values, pixels[[1, 2, 3, 7]])
    assert da.attrs["ofa_notes"][0] == (
        "bands 2, 3, 4, 8 of the file's 13 ('s2_l1c') are its B02, B03, B04, B08"
    )
    no_b10 = [1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]
    da = open_raster(chip, bands=no_b10)
    m = raster_modality(da)
    assert m.name.startswith("s2_l1c_") and "'s2_l2a'" not in str(da.attrs["ofa_notes"])
    for band, number in (("B09", 9), ("B11", 11), ("B12", 12), ("B8A", 13)):
        assert np.array_equal(da.sel(band=band).values, pixels[number - 1])


def test_s1_polarisation_files_in_any_order(shared):
    patch = sorted(glob.glob(str(shared / "bigearthnet/S1/*")))[0]
    da = open_raster(sorted(glob.glob(patch + "/*.tif")))  # VH sorts before VV
    assert raster_modality(da).name == "s1_grd" and list(da.band.values) == ["VV", "VH"]
    assert da.sel(band="VV").values.mean() > da.sel(band="VH").values.mean()


def test_described_bands_are_put_in_modality_order(tmp_path):
    data = np.stack([np.full((32, 32), -20, np.float32), np.full((32, 32), -10, np.float32)])
    da = open_raster(write_tif(tmp_path / "vhvv.tif", data, descriptions=["VH", "VV"]))
    assert list(da.band.values) == ["VV", "VH"]
    assert da.sel(band="VV").values.mean() == -10


def test_value_scale_detection(tmp_path):
    dn = open_raster(sample_path("eurosat_forest.tif")).values.astype(np.float32)
    refl = write_tif(tmp_path / "refl.tif", dn / 10000)
    da = open_raster(refl, modality="s2_l1c")
    assert da.attrs["ofa_conversion"]["kind"] == "affine"
    np.testing.assert_allclose(
        to_model_units(da.values, da.attrs["ofa_conversion"]), dn, rtol=1e-4, atol=0.5
    )
    db = open_raster(sample_path("bigearthnet_s1_20170613.tif")).values
    lin = write_tif(
        tmp_path / "lin.tif", (10 ** (db / 10)).astype(np.float32), descriptions=["VV", "VH"]
    )
    da = open_raster(lin)
    assert da.attrs["ofa_conversion"] == {"kind": "linear_to_db"}
    np.testing.assert_allclose(to_model_units(da.values, da.attrs["ofa_conversion"]), db, atol=1e-3)
    assert open_raster(sample_path("eurosat_forest.tif")).attrs["ofa_conversion"] == {
        "kind": "none"
    }


def test_ambiguous_and_unknown_band_counts(tmp_path):
    register_modality(
        Modality(
            name="test_quad",
            bands=("a", "b", "c", "d"),
            wavelengths=(0.5, 0.6, 0.7, 0.8),
            gsd=3,
            mean=(1, 1, 1, 1),
            std=(1, 1, 1, 1),
            units="u",
            autodetect=True,
        )
    )
    try:
        path = write_tif(tmp_path / "four.tif", np.ones((4, 16, 16), np.float32))
        with pytest.raises(RasterError) as err:
            open_raster(path)
        assert (
            "rgbn" in str(err.value)
            and "test_quad" in str(err.value)
            and "modality=" in str(err.value)
        )
        assert raster_modality(open_raster(path, modality="rgbn")).name == "rgbn"
    finally:
        _REGISTRY.pop("test_quad")
    with pytest.raises(RasterError, match="no known sensor has 5 bands"):
        open_raster(write_tif(tmp_path / "five.tif", np.ones((5, 16, 16), np.float32)))


def test_uint8_two_band_sar_is_the_8bit_layout(tmp_path):
    da = open_raster(write_tif(tmp_path / "s1_8bit.tif", np.full((2, 16, 16), 120, np.uint8)))
    assert raster_modality(da).name == "s1"


def test_bad_inputs_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="raster not found"):
        open_raster(tmp_path / "missing.tif")
    (tmp_path / "notes.tif").write_text("this is not a raster")
    with pytest.raises(RasterError, match="cannot read"):
        open_raster(tmp_path / "notes.tif")
    good = sample_path("naip_rgbn_2020.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(good[: len(good) // 3])
    with pytest.raises(RasterError, match="corrupt|cannot read"):
        open_raster(tmp_path / "cut.tif")
    with pytest.raises(RasterError, match="expects 13 bands"):
        open_raster(sample_path("naip_rgbn_2020.tif"), modality="s2_l1c")
    nodata = write_tif(tmp_path / "empty.tif", np.zeros((4, 16, 16), np.uint8), nodata=0)
    with pytest.raises(RasterError, match="no pixel with data"):
        open_raster(nodata)
    nan = write_tif(tmp_path / "nan.tif", np.full((2, 16, 16), np.nan, np.float32))
    with pytest.raises(RasterError, match="no pixel with data"):
        open_raster(nan)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RasterError, match="is a folder with no raster files"):
        open_raster(tmp_path / "empty")  # (a folder of rasters is read as a scene's band files)
    with pytest.raises(KeyError, match="unknown modality"):
        open_raster(sample_path("naip_rgbn_2020.tif"), modality="landsat9")


def test_missing_crs_warns_and_continues(tmp_path):
    path = write_tif(tmp_path / "nocrs.tif", np.ones((3, 16, 16), np.uint8), crs=None)
    with pytest.warns(UserWarning, match="no CRS"):
        da = open_raster(path)
    assert da.rio.crs is None and raster_modality(da).name == "rgb"


def test_nodata_override(shared):
    path = shared / "neon_rgb" / "OSBS_029.tif"
    assert open_raster(path).rio.nodata == 255  # as the file says
    assert open_raster(path, nodata=None).rio.nodata is None  # 255 is a bright pixel here
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        open_raster(path, nodata=None)


def test_enmap_file_is_read_by_its_own_wavelengths(shared):
    """EnMAP's band tags carry wavelength (nm) and bad-band flags: no modality needed, bad
    bands (filled with nodata) left out, georeferencing kept."""
    path = shared / "enmap_potsdam" / "images" / "enmap_potsdam_tile_128_0.tif"
    with rasterio.open(path) as src:
        flags = [src.tags(i)["bbl"] for i in range(1, src.count + 1)]
        first_nm = float(src.tags(1)["wavelength"])
        crs, transform = src.crs, src.transform
    good = flags.count("1")
    assert 0 < good < len(flags)  # the file does flag bad bands
    da = open_raster(path)
    m = raster_modality(da)
    assert m.kind == "hyperspectral" and m.num_bands == da.sizes["band"] == good
    assert m.wavelengths[0] == pytest.approx(first_nm / 1000)
    assert m.gsd == 30.0
    assert da.rio.crs == crs and da.rio.transform() == transform
    assert not (da.values == da.rio.nodata).any()  # the nodata-filled bad bands are gone


def test_wavelength_tags_in_micrometres_and_unflagged(tmp_path):
    path = tmp_path / "cube.tif"
    waves = [0.45, 0.55, 0.65, 0.85, 1.6]
    profile = dict(
        driver="GTiff",
        width=16,
        height=16,
        count=5,
        dtype="float32",
        crs="EPSG:32633",
        transform=rasterio.transform.from_origin(0, 160, 10, 10),
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).uniform(0, 3000, (5, 16, 16)).astype("float32"))
        for i, w in enumerate(waves, start=1):
            dst.update_tags(i, wavelength=str(w), wavelength_units="Micrometers")
    m = raster_modality(open_raster(path))
    assert m.wavelengths == pytest.approx(waves) and m.num_bands == 5


def test_bands_subset_keeps_the_chosen_wavelengths(shared):
    """1-based band numbers in the order given, applied before the wavelength tags are read."""
    path = shared / "enmap_potsdam" / "images" / "enmap_potsdam_tile_128_0.tif"
    picked = [60, 20, 40]
    with rasterio.open(path) as src:
        nm = [float(src.tags(b)["wavelength"]) for b in picked]
        assert all(src.tags(b)["bbl"] == "1" for b in picked)
        pixels = src.read(picked)
    da = open_raster(path, bands=picked)
    m = raster_modality(da)
    assert m.kind == "hyperspectral" and m.num_bands == da.sizes["band"] == 3
    assert m.wavelengths == pytest.approx([w / 1000 for w in nm])
    assert np.array_equal(da.values, pixels)
    assert da.attrs["long_name"][0].startswith("band 60 ")  # descriptions follow the bands


def test_bands_subset_detects_on_the_chosen_bands_and_refuses_bad_numbers(shared):
    naip = shared / "naip" / "m_4709963_se_14_1_20200831.tif"
    da = open_raster(naip, bands=[3, 2, 1])
    assert raster_modality(da).name == "rgb"
    with rasterio.open(naip) as src:
        assert np.array_equal(da.values, src.read([3, 2, 1]))
    chip = sample_path("eurosat_forest.tif")
    assert np.array_equal(open_raster(chip, bands=range(1, 14)).values, open_raster(chip).values)
    with pytest.raises(
        RasterError,
        match=r"band 14 does not exist: .* has 13 bands \(bands are "
        r"numbered from 1\)",
    ):
        open_raster(chip, bands=[4, 3, 14])
    with pytest.raises(RasterError, match="band 0 does not exist"):
        open_raster(chip, bands=[0, 1, 2])
    with pytest.raises(RasterError, match="band 4 is picked twice.* 13 bands"):
        open_raster(chip, bands=[4, 4, 3])
    files = sorted(glob.glob(str(shared / "bigearthnet/S2/S2A_MSIL2A_20170613T101031_87_48/*.tif")))
    with pytest.raises(RasterError, match="single-band files"):
        open_raster(files, bands=[1, 2, 3])
