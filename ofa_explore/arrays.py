"""A scene held as an xarray DataArray (stackstac's, odc-stac's, rioxarray's), written as the
GeoTIFF that ``open_raster`` reads with all its rules: the band coordinate becomes the bands'
descriptions, which say what each band is ('B02', 'blue', 'nir08'). Written plainly with
rioxarray, the bands lost their names and were read by their count."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from .errors import BadInput, OutputExists
from .fileio import atomic_output


def save_raster(da: xr.DataArray, path: str | Path, overwrite: bool = False) -> Path:
    """``da`` (band, y, x; other dimensions of length one are dropped) as a tiled, compressed
    GeoTIFF at ``path`` with its band names, CRS, transform and nodata, written atomically;
    returns ``path``. Several dates or other dimensions are refused: select or reduce them."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExists(f"{path} exists", "pass {overwrite} to replace it")
    if "y" not in da.dims or "x" not in da.dims:
        raise BadInput(
            f"the DataArray's dimensions are {', '.join(map(str, da.dims))}, without y and x",
            "name them as rioxarray does, e.g. da.rename(lat='y', lon='x')",
        )
    extra = [d for d in da.dims if d not in ("band", "y", "x")]
    many = [d for d in extra if da.sizes[d] > 1]
    if many:
        raise BadInput(
            f"the DataArray has {', '.join(f'{d} ({da.sizes[d]})' for d in many)} beside band, "
            "y and x: one scene is written at a time",
            f"select one with da.isel({many[0]}=0), or reduce it, e.g. da.median('{many[0]}')",
        )
    da = da.squeeze(extra, drop=True)
    if "band" not in da.dims:
        da = da.expand_dims(band=[1])
    out = da.transpose("band", "y", "x").rename(None)  # a dask array's name is no band's
    values = list(da["band"].values)
    if not all(isinstance(b, (int, float)) or str(b).isdigit() for b in values):
        out = out.assign_attrs(long_name=tuple(str(b) for b in values))  # rioxarray's: numbers
    with atomic_output(path, suffix=".tmp.tif") as tmp:
        out.rio.to_raster(tmp, driver="GTiff", tiled=True, compress="DEFLATE")
    return path
