"""The modality registry: real sensor facts, checked against real imagery where we have it."""

from __future__ import annotations

import glob

import numpy as np
import pytest
from conftest import read_tif

from ofa_explore.modalities import (
    _REGISTRY,
    SAR_WAVELENGTH_CONVENTIONS,
    Modality,
    get_modality,
    hyperspectral_modality,
    list_modalities,
    register_modality,
    sar_wavelength,
)


@pytest.fixture(autouse=True)
def _registry_kept():
    """The sensors a test here registers are gone after it, so that tests run after these
    (the CLI's list of sensors in an error) see the built-in ones alone."""
    saved = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(saved)


REQUIRED = {
    "s1": 2,
    "s2": 9,
    "naip": 3,
    "enmap": 202,
    "gaofen": 4,
    "s2_l1c": 13,
    "s2_l2a": 12,
    "s1_grd": 2,
    "rgb": 3,
    "rgbn": 4,
    "landsat_oli": 7,
    "landsat_etm": 6,
}


def test_builtin_modalities_and_band_counts():
    for name, n in REQUIRED.items():
        m = get_modality(name)
        assert m.num_bands == n == len(m.wavelengths) == len(m.mean) == len(m.std)
        assert m.source and m.units
    assert set(REQUIRED) <= set(list_modalities())


def test_ofa_pretraining_modalities_match_the_published_code():
    s2 = get_modality("s2")
    assert s2.bands == ("B4", "B3", "B2", "B5", "B6", "B7", "B8", "B11", "B12")
    assert s2.wavelengths == (0.665, 0.56, 0.49, 0.705, 0.74, 0.783, 0.842, 1.61, 2.19)
    assert get_modality("s1").bands == ("VH", "VV")
    enmap = get_modality("enmap")
    assert enmap.wavelengths[0] == 0.418 and enmap.wavelengths[-1] == 2.445
    assert enmap.mean[0] == pytest.approx(490.4891)  # 0.04904891 reflectance x 10000
    assert get_modality("naip").mean == (123.675, 116.28, 103.53)


def test_sar_conventions_are_recorded():
    assert sar_wavelength("dofa_v1") == 3.75 and sar_wavelength("dofa_v2") == 5.405
    assert get_modality("s1_grd").kind == "sar"
    assert set(SAR_WAVELENGTH_CONVENTIONS) >= {"ofa", "dofa_v1", "dofa_v2"}
    with pytest.raises(ValueError, match="known: ofa"):
        sar_wavelength("dofa_v9")


def test_eurosat_band_order_and_statistics_fit_real_chips(shared):
    chips = np.stack([read_tif(p) for p in sorted(glob.glob(str(shared / "eurosat/*/*.tif")))[::5]])
    measured = chips.reshape(chips.shape[0], 13, -1).mean(axis=(0, 2))
    m = get_modality("s2_l1c")
    assert m.bands[-1] == "B8A" and m.bands[9] == "B10"
    assert np.corrcoef(measured, m.mean)[0, 1] > 0.97  # same band order, same units
    assert measured[9] < 50  # B10 (cirrus) is near zero in the data and in the statistics


def test_bigearthnet_l2a_and_s1_statistics_fit_real_patches(shared):
    m = get_modality("s2_l2a")
    means = [
        np.mean(
            [read_tif(p).mean() for p in glob.glob(str(shared / f"bigearthnet/S2/*/*_{b}.tif"))]
        )
        for b in m.bands
    ]
    assert np.corrcoef(means, m.mean)[0, 1] > 0.8
    s1 = get_modality("s1_grd")
    vv = np.mean([read_tif(p).mean() for p in glob.glob(str(shared / "bigearthnet/S1/*/*_VV.tif"))])
    vh = np.mean([read_tif(p).mean() for p in glob.glob(str(shared / "bigearthnet/S1/*/*_VH.tif"))])
    assert abs(vv - s1.mean[0]) < 2 * s1.std[0] and abs(vh - s1.mean[1]) < 2 * s1.std[1]
    assert vv > vh  # VV first, as the statistics say


def test_unknown_name_lists_known_and_how_to_register():
    with pytest.raises(KeyError) as err:
        get_modality("sentinel3")
    msg = str(err.value)
    assert "s2_l1c" in msg and "register_modality" in msg and "hyperspectral_modality" in msg


def test_register_custom_modality():
    m = Modality(
        name="planetscope_test",
        bands=("B", "G", "R", "NIR"),
        wavelengths=(0.49, 0.565, 0.665, 0.865),
        gsd=3.0,
        mean=(500, 700, 800, 2500),
        std=(200, 250, 300, 700),
        units="SR x 10000",
        scale=1e-4,
    )
    register_modality(m)
    assert get_modality("planetscope_test") is m
    register_modality(m)  # the same record again is fine
    with pytest.raises(ValueError, match="already registered"):
        register_modality(Modality(**{**m.to_dict(), "gsd": 4.0}))
    with pytest.raises(ValueError, match="built in"):
        register_modality(get_modality("s2"), overwrite=True)


def test_bad_records_are_refused():
    with pytest.raises(ValueError, match="2 mean for 3 bands"):
        Modality(
            name="x",
            bands=("a", "b", "c"),
            wavelengths=(1, 2, 3),
            gsd=1,
            mean=(1, 2),
            std=(1, 1, 1),
            units="u",
        )
    with pytest.raises(ValueError, match="lower-case"):
        Modality(
            name="My Sensor", bands=("a",), wavelengths=(1,), gsd=1, mean=(1,), std=(1,), units="u"
        )
    with pytest.raises(ValueError, match="positive"):
        Modality(name="x", bands=("a",), wavelengths=(1,), gsd=1, mean=(1,), std=(0,), units="u")


def test_hyperspectral_from_any_wavelengths():
    cube = hyperspectral_modality([0.45, 0.55, 0.65, 2.2], name="cube4")
    enmap = get_modality("enmap")
    assert cube.num_bands == 4 and cube.kind == "hyperspectral"
    assert enmap.mean[0] * 0.5 < cube.mean[0] < enmap.mean[-1] * 5
    assert "interpolated" in cube.source
    with pytest.raises(ValueError, match="nanometres"):
        hyperspectral_modality([450, 550])


def test_select_subset_of_bands():
    rgb = get_modality("s2_l1c").select(["B04", "B03", "B02"], name="s2_rgb")
    assert rgb.wavelengths == (0.665, 0.56, 0.49) and rgb.mean[0] == get_modality("s2_l1c").mean[3]
    with pytest.raises(ValueError, match="no band"):
        get_modality("s2_l1c").select(["B99"])
