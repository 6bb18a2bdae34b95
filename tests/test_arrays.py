"""A scene held as an xarray DataArray (as stackstac and odc-stac give it) written as the GeoTIFF
that open_raster reads: its band names kept as the bands' descriptions."""

from __future__ import annotations

import shutil
from pathlib import Path

import dask.array
import numpy as np
import pytest
import rasterio
import xarray as xr

from ofa_explore.arrays import save_raster
from ofa_explore.errors import BadInput, OutputExists
from ofa_explore.io import RasterError, open_raster, raster_modality


def stack_of(shared, names: list[str], files: list[str]) -> xr.DataArray:
    """A BigEarthNet Sentinel-2 L2A patch as stackstac holds a search's items: (time, band, y,
    x), dask-backed, the band coordinate its asset names, the CRS in the attributes."""
    patch = sorted((shared / "bigearthnet/S2").iterdir())[0]
    layers = []
    for band in files:
        with rasterio.open(next(patch.glob(f"*_{band}.tif"))) as src:
            layers.append(src.read(1))
            t, crs = src.transform, src.crs
    h, w = layers[0].shape
    x, y = t.c + t.a * (np.arange(w) + 0.5), t.f + t.e * (np.arange(h) + 0.5)
    data = dask.array.from_array(np.stack(layers)[None], chunks=(1, 1, 60, 60))
    coords = {"time": [np.datetime64("2017-06-13")], "band": names, "x": x, "y": y}
    return xr.DataArray(
        data, dims=("time", "band", "y", "x"), coords=coords, attrs={"crs": str(crs)}
    )


def test_a_stackstac_array_is_read_by_its_band_names(shared, tmp_path):
    """Written with rioxarray alone, its bands had no names: four uint16 bands were refused
    (values 9.9x NAIP's). Saved so, they are Sentinel-2 L2A's 10 m bands, on the same grid."""
    da = stack_of(shared, ["blue", "green", "red", "nir"], ["B02", "B03", "B04", "B08"])
    plain = tmp_path / "plain.tif"
    da.isel(time=0).rio.to_raster(plain)
    with pytest.raises(RasterError, match="no known sensor has 4 bands|are ~"):
        open_raster(plain)
    path = save_raster(da, tmp_path / "scene.tif")
    raster = open_raster(path)
    assert raster_modality(raster).name == "s2_l2a_b02_b03_b04_b08"
    assert np.array_equal(raster.values, da.isel(time=0).values)
    assert raster.rio.crs == "EPSG:32633" and raster.rio.transform() == plain_transform(plain)
    with pytest.raises(OutputExists):
        save_raster(da, path)  # nothing of the user's is replaced unasked
    save_raster(da.isel(band=[2, 1, 0]), path, overwrite=True)
    assert raster_modality(open_raster(path)).bands == ("B04", "B03", "B02")


def plain_transform(path):
    with rasterio.open(path) as src:
        return src.transform


def test_arrays_of_several_scenes_or_other_dimensions_are_refused(shared, tmp_path):
    da = stack_of(shared, ["B02", "B03"], ["B02", "B03"])
    two = xr.concat([da, da], dim="time")
    with pytest.raises(BadInput, match=r"time \(2\) beside band, y and x") as refused:
        save_raster(two, tmp_path / "two.tif")
    assert "da.isel(time=0)" in refused.value.render() and not (tmp_path / "two.tif").exists()
    latlon = da.isel(time=0).rename(y="lat", x="lon")
    with pytest.raises(BadInput, match="dimensions are band, lat, lon, without y and x"):
        save_raster(latlon, tmp_path / "latlon.tif")
    numbered = da.isel(time=0).assign_coords(band=[1, 2])  # rioxarray's own: no names to keep
    with rasterio.open(save_raster(numbered, tmp_path / "numbered.tif")) as src:
        assert src.descriptions == (None, None)


# ---------------------------------------------------------------- a DataArray open_raster gave


@pytest.fixture(scope="module")
def oscd_crop(shared, tmp_path_factory) -> Path:
    """A real 96 px square of an OSCD date (Sentinel-2 L1C, 13 unnamed bands in ESA's order)."""
    from rasterio.windows import Window
    from rasters import crop  # tests/rasters.py

    source = shared / "change" / "oscd" / "bercy" / "bercy_20161130.tif"
    if not source.exists():
        pytest.skip(f"no OSCD date at {source}")
    return crop(source, tmp_path_factory.mktemp("oscd") / "b.tif", Window(0, 0, 96, 96))


def _reconstruct(model, raster, **kw):
    from ofa_explore.engine import predict_raster

    return predict_raster(model, raster, "reconstruct", seed=0, precision="fp32", **kw)


def test_an_opened_raster_divided_into_reflectance_reads_as_reflectance(oscd_crop):
    """Its attributes said the file's digital numbers: divided by 10,000 it was read as them,
    without a word (hidden-pixel error 0.985 against 8.7e-10 for the trivial baseline)."""
    import ofa_explore

    model = ofa_explore.load_model()
    da = open_raster(oscd_crop)
    as_read = _reconstruct(model, da)
    divided = _reconstruct(model, da / 10000)
    assert divided.checks["hidden_mse"] == pytest.approx(as_read.checks["hidden_mse"], rel=1e-4)
    assert divided.checks["hidden_mse"] < divided.checks["baseline_mse"]
    assert any("not in the file's units" in n and "after scaling" in n for n in divided.notes)
    assert not any("not in the file's units" in n for n in as_read.notes)


def test_values_that_fit_no_reading_of_the_sensor_are_warned_of(oscd_crop):
    import ofa_explore
    from ofa_explore.io import ScaleWarning

    model = ofa_explore.load_model()
    standardised = open_raster(oscd_crop).astype("float32")
    standardised = (standardised - standardised.mean()) / standardised.std()
    with pytest.warns(ScaleWarning, match="DataArray's values .* statistics of 's2_l1c'"):
        result = _reconstruct(model, standardised)
    assert any("will not mean much" in n for n in result.notes)


def test_bands_selected_by_name_are_those_bands_of_the_sensor(oscd_crop):
    """Selected by name they were refused ("modality 's2_l1c' expects 13 bands, got 4");
    they read as the file's bands 2, 3, 4, 8 picked by open_raster: the same map."""
    import ofa_explore
    from ofa_explore.engine import predict_raster

    model = ofa_explore.load_model()
    da = open_raster(oscd_crop)
    picked = da.sel(band=["B02", "B03", "B04", "B08"])
    result = predict_raster(model, picked, "embed", precision="fp32")
    assert result.modality == "s2_l1c_b02_b03_b04_b08"
    assert any("4 of the 13 of 's2_l1c'" in n for n in result.notes)
    from_file = predict_raster(model, open_raster(oscd_crop, bands=[2, 3, 4, 8]), "embed")
    assert np.allclose(result.data.values, from_file.data.values, atol=1e-5)
    # all 13 in another order are the sensor's 13, put back in its order
    reordered = predict_raster(model, da.isel(band=list(range(12, -1, -1))), "embed")
    whole = predict_raster(model, da, "embed")
    assert reordered.modality == "s2_l1c"
    assert np.allclose(reordered.data.values, whole.data.values, atol=1e-5)
    # bands renamed are no bands of it
    with pytest.raises(BadInput, match="are not bands of 's2_l1c'") as refused:
        predict_raster(model, da.assign_coords(band=list(range(13))), "embed")
    assert "da.sel(band=" in refused.value.render()


def test_a_sensor_named_for_an_array_is_read_as_it_or_refused(oscd_crop):
    """``modality=`` was ignored for a DataArray without a word."""
    import ofa_explore
    from ofa_explore.engine import predict_raster

    model = ofa_explore.load_model()
    da = open_raster(oscd_crop)
    with pytest.raises(BadInput, match="holds 13 bands .* but 'rgb' has 3"):
        predict_raster(model, da, "embed", modality="rgb")
    same = predict_raster(model, da, "embed", modality="s2_l1c")
    assert same.modality == "s2_l1c"


def test_an_array_of_ones_own_is_read_in_place_as_its_file_would_be(shared, oscd_crop, tmp_path):
    """stackstac's (dask, a time dimension of one) and rioxarray's DataArrays were refused ("not
    opened with open_raster"): they are read with open_raster's rules on a sample of them, the
    same sensor, order, notes and reconstruction as the file save_raster writes of them."""
    import rioxarray

    import ofa_explore
    from ofa_explore.engine import predict_raster
    from ofa_explore.io import ScaleWarning

    model = ofa_explore.load_model()
    da = stack_of(shared, ["blue", "green", "red", "nir"], ["B02", "B03", "B04", "B08"])
    in_place = _reconstruct(model, da)
    saved = _reconstruct(model, save_raster(da, tmp_path / "scene.tif"))
    assert in_place.modality == saved.modality == "s2_l2a_b02_b03_b04_b08"
    assert in_place.checks == saved.checks
    assert len(in_place.notes) == len(saved.notes)  # the same (its sample's means: 1.65x, 1.64x)
    assert not any("sample" in n or "ofa-array" in n for n in in_place.notes)
    # 13 unnamed bands in ESA's order (B8A after B08), as the file is read
    plain = Path(shutil.copy(oscd_crop, tmp_path / "plain.tif"))
    with rasterio.open(plain, "r+") as f:
        for i in range(1, f.count + 1):
            f.set_band_description(i, "")
    ours = _reconstruct(model, rioxarray.open_rasterio(plain))
    theirs = _reconstruct(model, plain)
    assert ours.modality == theirs.modality == "s2_l1c" and ours.checks == theirs.checks
    assert any("ESA's order" in n for n in ours.notes)
    # rioxarray's numbers of a file's bands name them by its descriptions (three picked: were
    # three unnamed 16-bit bands)
    picked = rioxarray.open_rasterio(oscd_crop).isel(band=[3, 2, 1])
    assert _reconstruct(model, picked).modality == "s2_l1c_b04_b03_b02"
    # the rules' refusals and warnings speak of the DataArray
    five = xr.DataArray(
        np.random.default_rng(0).random((5, 64, 64)),
        dims=("band", "y", "x"),
        coords={"band": [1, 2, 3, 4, 5], "y": np.arange(64.0)[::-1], "x": np.arange(64.0)},
    )
    with pytest.raises(RasterError, match="no known sensor has 5 bands") as refused:
        predict_raster(model, five, "embed")
    assert "sample" not in refused.value.render() and "ofa-array" not in refused.value.render()
    with pytest.warns(ScaleWarning, match="^the DataArray's values"):
        predict_raster(model, da.isel(time=0) * 1000, "embed", modality="s2_l2a_b02_b03_b04_b08")


def test_an_array_mostly_without_data_is_read_from_where_it_has_some(shared):
    """The sample's windows may all fall where a scene has no data (NaN): it is then read from
    every n-th row and column of it, rather than refused as empty."""
    import rioxarray

    import ofa_explore
    from ofa_explore.engine import predict_raster

    date = shared / "change" / "oscd" / "bercy" / "bercy_20161130.tif"
    da = rioxarray.open_rasterio(date)  # 395 x 360 px: windows from rows 0, 121, 242 and 363
    block = xr.zeros_like(da.isel(band=0), dtype=bool)
    block[40:72, 40:72] = True  # data in 32 x 32 px between the windows, NaN elsewhere
    result = predict_raster(ofa_explore.load_model(), da.where(block), "embed", precision="fp32")
    assert result.modality == "s2_l1c"
    assert np.isfinite(result.data.values[0]).sum() == 16  # the block's 4 x 4 patches


def test_an_odc_stac_dataset_of_a_variable_a_band_is_a_scene(shared, tmp_path):
    """odc-stac's ``load`` gives a Dataset (a variable a band, a time dimension, latitude and
    longitude in degrees): a TypeError in predict_raster before ("expected str ... not
    Dataset"). Its variables are its bands, read as the DataArray of them is."""
    import ofa_explore
    from ofa_explore.engine import predict_raster

    da = stack_of(shared, ["blue", "green", "red", "nir"], ["B02", "B03", "B04", "B08"])
    ds = da.to_dataset("band").rio.write_crs("EPSG:32633")  # as odc.stac.load(...) gives it
    model = ofa_explore.load_model()
    from_dataset = _reconstruct(model, ds)
    assert from_dataset.modality == "s2_l2a_b02_b03_b04_b08"
    assert from_dataset.checks == _reconstruct(model, da).checks
    saved = save_raster(ds, tmp_path / "scene.tif")
    assert raster_modality(open_raster(saved)).name == "s2_l2a_b02_b03_b04_b08"
    degrees = ds.rename(y="latitude", x="longitude")
    with pytest.raises(BadInput, match="without y and x") as refused:
        predict_raster(model, degrees, "embed")
    assert "da.rename(latitude='y', longitude='x')" in refused.value.render()


# ---------------------------------------------------------------- hyperspectral cubes


@pytest.fixture(scope="module")
def enmap_tile(shared) -> Path:
    """A real EnMAP tile (224 bands tagged with their wavelengths, 6 of them bad: all nodata)."""
    return sorted((shared / "enmap_potsdam" / "images").glob("*.tif"))[0]


def test_a_cube_held_in_xarray_is_read_by_its_wavelengths(enmap_tile, tmp_path):
    """rioxarray keeps a cube's wavelengths only in the bands' descriptions ("band 1 (418.24
    Nanometers)"): it was refused ("no known sensor has 224 bands"); a cube with a wavelength
    dimension (as HyperCoast reads EMIT, PRISMA, DESIS) was refused as several scenes. Both
    read as the file does, through the wavelength-conditioned embedding."""
    import rioxarray

    import ofa_explore

    model = ofa_explore.load_model()
    as_file = _reconstruct(model, enmap_tile)
    rx = rioxarray.open_rasterio(enmap_tile)
    ours = _reconstruct(model, rx)
    assert ours.modality == as_file.modality and ours.checks == as_file.checks
    assert ours.data.sizes["band"] == as_file.data.sizes["band"] == 218
    with rasterio.open(enmap_tile) as src:
        tags = [src.tags(i) for i in range(1, src.count + 1)]
    waves = [float(t["wavelength"]) for t in tags]
    reflectance = rx.where(rx != rx.rio.nodata).values / 10000
    cube = xr.DataArray(  # reflectance 0-1, NaN in the bad bands, wavelengths in nm
        reflectance,
        dims=("wavelength", "y", "x"),
        coords={"wavelength": ("wavelength", waves, {"units": "nm"}), "y": rx.y, "x": rx.x},
    ).rio.write_crs(rx.rio.crs)
    cubed = _reconstruct(model, cube)
    assert cubed.modality == as_file.modality and cubed.data.sizes["band"] == 218
    dataset = cube.rename(wavelength="wavelengths").to_dataset(name="reflectance")  # as EMIT's
    assert _reconstruct(model, dataset).checks == cubed.checks
    assert cubed.checks["hidden_mse"] == pytest.approx(as_file.checks["hidden_mse"], rel=1e-4)
    # bad bands flagged, filled with -0.01 rather than left empty (as EMIT's are)
    flagged = cube.fillna(-0.01).assign_coords(
        good_wavelengths=("wavelength", [int(t["bbl"]) for t in tags])
    )
    assert _reconstruct(model, flagged).checks == cubed.checks
    saved = open_raster(save_raster(flagged, tmp_path / "cube.tif"))  # for QGIS, the CLI
    assert raster_modality(saved).num_bands == 218
    assert np.allclose(
        raster_modality(saved).wavelengths, raster_modality(open_raster(enmap_tile)).wavelengths
    )


def test_an_opened_cube_divided_into_reflectance_reads_as_reflectance(enmap_tile, tmp_path):
    """A cube is read without a statistics check, its units judged from its values alone: divided
    by 10,000 after open_raster, it was read as the file's numbers (hidden-pixel error 0.852
    against 6.7e-10 for the trivial baseline). Now judged again, as the file of it would be; and
    saved, it keeps its wavelengths (it was refused: "no known sensor has 218 bands")."""
    import ofa_explore

    model = ofa_explore.load_model()
    cube = open_raster(enmap_tile)
    as_read = _reconstruct(model, cube)
    divided = _reconstruct(model, cube / 10000)
    assert divided.checks["hidden_mse"] == pytest.approx(as_read.checks["hidden_mse"], rel=1e-4)
    assert any("not in the file's units: read as reflectance" in n for n in divided.notes)
    saved = open_raster(save_raster(cube / 10000, tmp_path / "reflectance.tif"))
    assert raster_modality(saved).bands == raster_modality(cube).bands
    assert np.allclose(raster_modality(saved).wavelengths, raster_modality(cube).wavelengths)
    again = _reconstruct(model, saved)  # read as reflectance
    assert again.checks["hidden_mse"] == pytest.approx(divided.checks["hidden_mse"], rel=1e-4)
    multiplied = _reconstruct(model, saved * 10000)  # out of it again: as the file's numbers
    assert multiplied.checks["hidden_mse"] == pytest.approx(as_read.checks["hidden_mse"], rel=1e-4)
    assert any(
        "not in the file's units: read as they are, in its units" in n for n in multiplied.notes
    )
    assert not any("not in the file's units" in n for n in as_read.notes)


def test_bands_selected_of_a_cube_are_a_cube_of_their_own(enmap_tile):
    """EnMAP's overlapping detectors gave two bands one name ('912nm'): da.sel(band=[...]) of an
    opened cube failed in pandas ("Reindexing only valid with uniquely valued Index objects"),
    and bands across the overlap were refused as a name given twice. Bands selected are a cube
    of their wavelengths, as bands picked of its file are."""
    import ofa_explore

    model = ofa_explore.load_model()
    cube = open_raster(enmap_tile)
    names = [str(b) for b in cube["band"].values]
    assert len(set(names)) == len(names) and "911.7nm" in names and "911.9nm" in names
    visible = _reconstruct(model, cube.sel(band=["468nm", "561nm", "666nm"]))
    assert visible.modality == "hyperspectral" and visible.data.sizes["band"] == 3
    assert any("3 bands of the cube's 218 (0.468-0.666 µm)" in n for n in visible.notes)
    overlap = _reconstruct(model, cube.isel(band=slice(80, 110)))  # both detectors' bands
    picked = _reconstruct(model, open_raster(enmap_tile, bands=list(range(81, 111))))
    assert overlap.data.sizes["band"] == 30 and overlap.checks == picked.checks
    turned = _reconstruct(model, cube.isel(band=slice(None, None, -1)))  # put back in order
    assert turned.checks == _reconstruct(model, cube).checks


def test_stackstacs_centre_wavelengths_name_unnamed_bands_and_never_break_named_ones(shared):
    """stackstac keeps STAC's eo:bands as coordinates: ``center_wavelength`` (µm; None for a
    band without one, as a scene classification layer). Named bands read by their names as
    before; bands without names are read by those wavelengths (refused before: "no known
    sensor has 4 bands")."""
    import ofa_explore
    from ofa_explore.engine import predict_raster

    model = ofa_explore.load_model()
    da = stack_of(shared, ["blue", "green", "red", "nir"], ["B02", "B03", "B04", "B08"])
    named = predict_raster(model, da, "embed")
    partly = da.assign_coords(center_wavelength=("band", [0.49, None, 0.665, 0.842]))
    again = predict_raster(model, partly, "embed")
    assert again.modality == named.modality == "s2_l2a_b02_b03_b04_b08"
    assert np.allclose(again.data.values, named.data.values)
    unnamed = da.assign_coords(
        band=[1, 2, 3, 4], center_wavelength=("band", [0.49, 0.56, 0.665, 0.842])
    )
    assert predict_raster(model, unnamed, "embed").modality == "hyperspectral"


def test_an_array_coarsened_decimated_or_turned_keeps_its_place(oscd_crop, tmp_path):
    """rioxarray gives a file's transform back after ``coarsen``, a step or y turned around:
    embeddings of a 2x coarsened date lay on a grid of the file's pixel size, half the area
    (and a date with y ascending, on the area south of it), without a word. Now on the grid
    the coordinates give."""
    import ofa_explore
    from ofa_explore.engine import predict_raster

    model = ofa_explore.load_model()
    da = open_raster(oscd_crop)  # 96 x 96 px, 12 patches of 8 px each way
    left, bottom, right, top = da.rio.bounds()
    cases = {
        "coarsened": da.coarsen(x=2, y=2).mean(),
        "decimated": da.isel(x=slice(None, None, 2), y=slice(None, None, 2)),
        "turned": da.isel(y=slice(None, None, -1)),
    }
    for name, held in cases.items():
        out = predict_raster(model, held, "embed").data
        x0, y0, x1, y1 = out.rio.bounds(recalc=True)
        assert abs(x0 - left) < 0.6 * abs(held.rio.transform(recalc=True).a), name
        assert x1 == pytest.approx(right, abs=abs(out.rio.transform().a)), name
        assert min(y0, y1) == pytest.approx(bottom, abs=abs(out.rio.transform().e)), name
        assert max(y0, y1) == pytest.approx(top, abs=abs(out.rio.transform().e)), name
    with rasterio.open(save_raster(cases["coarsened"], tmp_path / "coarse.tif")) as src:
        assert src.bounds.right == pytest.approx(right, abs=abs(src.transform.a))


def test_an_opened_array_in_the_shapes_notebooks_leave_it(oscd_crop):
    """One band selected by name drops the band dimension (``da.sel(band="B04")``: "TypeError:
    iteration over a 0-d array"); a time dimension of one (``expand_dims``, a concatenation
    narrowed) and bands last (``transpose("y", "x", "band")``) were raw numpy errors. Each now
    reads as the same array in (band, y, x)."""
    import ofa_explore

    model = ofa_explore.load_model()
    da = open_raster(oscd_crop)
    red = _reconstruct(model, da.sel(band="B04"))
    assert red.modality == "s2_l1c_b04"
    assert red.checks == _reconstruct(model, da.sel(band=["B04"])).checks
    as_read = _reconstruct(model, da).checks
    dated = da.expand_dims(time=[np.datetime64("2016-11-30")])
    assert _reconstruct(model, dated).checks == as_read
    assert _reconstruct(model, da.transpose("y", "x", "band")).checks == as_read
    with pytest.raises(BadInput, match=r"time \(2\) beside band, y and x"):
        _reconstruct(model, xr.concat([dated, dated], dim="time"))


def test_a_difference_of_two_dates_is_warned_of(shared):
    """Two dates' difference has band means around zero, and those above it fitted Sentinel-2's
    scale (0.09x its own): it ran as a scene, without a word (hidden-pixel error 11.1 against
    0.15 for the trivial baseline). Values below zero in most of a sample are no scene of a
    sensor whose units have none there."""
    import ofa_explore
    from ofa_explore.io import ScaleWarning

    folder = shared / "change" / "oscd" / "bercy"
    area = {"x": slice(0, 96), "y": slice(0, 96)}
    before, after = (
        open_raster(folder / f"bercy_{d}.tif").isel(area).astype("float32")
        for d in ("20161130", "20170829")
    )
    model = ofa_explore.load_model()
    with pytest.warns(ScaleWarning, match=r"below zero in \d+% of a sample"):
        result = _reconstruct(model, after - before)
    assert any("a difference of two dates" in n for n in result.notes)
    assert not any("below zero" in n for n in _reconstruct(model, after).notes)
    # of the dates as read (uint16), the difference wraps around below zero to 65535: its
    # band means 3.2x the sensor's fitted, and it ran without a word
    before, after = (date.astype("uint16") for date in (before, after))
    with pytest.warns(ScaleWarning, match=r"top half of uint16's range in \d+% of a sample"):
        wrapped = _reconstruct(model, after - before)
    assert any("subtract them as floats" in n for n in wrapped.notes)
    assert not any("top half" in n for n in _reconstruct(model, after).notes)


def test_a_difference_is_warned_of_once_at_the_users_line_however_it_comes(
    shared, tmp_path, capsys
):
    """The difference of two dates was warned of only as a DataArray ``open_raster`` gave: as a
    file (``predict_raster`` of its path, ``change()``'s AFTER), or a DataArray of one's own
    (rioxarray's), it ran without a word, and ``ofa embed`` called the file "the DataArray".
    Now each is warned of once, in its own words, at the caller's line, not inside the
    package."""
    import warnings

    import rioxarray

    import ofa_explore
    from ofa_explore.cli import main
    from ofa_explore.engine import predict_raster
    from ofa_explore.io import ScaleWarning

    folder = shared / "change" / "oscd" / "bercy"
    dates = [folder / f"bercy_{d}.tif" for d in ("20161130", "20170829")]
    with rasterio.open(dates[0]) as b, rasterio.open(dates[1]) as a:
        window = rasterio.windows.Window(0, 0, 96, 96)
        profile = b.profile | {
            "dtype": "float32",
            "width": 96,
            "height": 96,
            "transform": b.window_transform(window),
        }
        difference = a.read(window=window).astype("float32") - b.read(window=window)
    path = tmp_path / "difference.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(difference)
    model = ofa_explore.load_model()
    before = open_raster(dates[0]).isel(x=slice(0, 96), y=slice(0, 96))

    def warned(run) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run()
        said = [w for w in caught if issubclass(w.category, ScaleWarning)]
        assert all(w.filename == __file__ for w in said)  # the caller's line, not the package's
        return [str(w.message) for w in said]

    embed = "embed"
    assert warned(lambda: predict_raster(model, path, embed)) == [
        f"{path}'s values are below zero in 21% of a sample, where no scene of 's2_l1c' (TOA "
        "reflectance x 10000 (L1C DN)) has any: a difference of two dates, or centred values, "
        "are no image of it, and the outputs will not mean much"
    ]
    own = warned(lambda: predict_raster(model, rioxarray.open_rasterio(path), embed))
    assert len(own) == 1 and own[0].startswith("the DataArray's values are below zero in 21%")
    held = rioxarray.open_rasterio(path)
    after = warned(lambda: ofa_explore.change(before, held))
    assert len(after) == 1 and after[0].startswith("AFTER's values are below zero in 21%")
    assert warned(lambda: ofa_explore.change(before, path))[0].startswith(f"{path}'s values")
    assert warned(lambda: ofa_explore.change(before, dates[1])) == []
    # the command line: once, of the file
    code = main(["embed", str(path), "-o", str(tmp_path / "e.tif"), "-q", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0 and err.count("below zero") == 1 and "DataArray" not in err, err


def test_a_south_up_raster_is_read_north_up(oscd_crop, tmp_path):
    """A raster with y ascending (a south-up GeoTIFF, or a DataArray turned) was read as it lies:
    the model saw the scene upside down (embeddings other than the north-up file's). Now turned
    north up on reading: the same embeddings, north up."""
    from affine import Affine

    import ofa_explore
    from ofa_explore.engine import predict_raster

    south_up = tmp_path / "south_up.tif"
    with rasterio.open(oscd_crop) as src:
        t, profile = src.transform, src.profile
        turned = Affine(t.a, t.b, t.c, t.d, -t.e, t.f + t.e * src.height)
        with rasterio.open(south_up, "w", **(profile | {"transform": turned})) as dst:
            dst.write(src.read()[:, ::-1])
            dst.descriptions = src.descriptions
    model = ofa_explore.load_model()
    embed = lambda raster: predict_raster(model, raster, "embed", precision="fp32").data  # noqa: E731
    north = embed(oscd_crop)
    for raster in (south_up, open_raster(oscd_crop).isel(y=slice(None, None, -1))):
        out = embed(raster)
        assert out.rio.transform().e < 0
        assert np.allclose(out.values, north.values, atol=1e-5)
