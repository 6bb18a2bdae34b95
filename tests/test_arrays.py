"""A scene held as an xarray DataArray (as stackstac and odc-stac give it) written as the GeoTIFF
that open_raster reads: its band names kept as the bands' descriptions."""

from __future__ import annotations

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
