"""A leafmap map that works offline: the scene and results as image overlays placed by their
bounds, a tile basemap only when its server answers."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .display import basemap_reachable, data_url, latlon_bounds, png


def scene_map(
    da: xr.DataArray, rgb: np.ndarray, height: str = "480px", basemap: bool | None = None
):
    """(map, scene overlay): a leafmap (ipyleaflet) map centred on the raster."""
    m = offline_map(da, height, basemap)
    scene = overlay(rgb, latlon_bounds(da), "scene")
    m.add(scene)
    return m, scene


def offline_map(da: xr.DataArray, height: str = "480px", basemap: bool | None = None):
    """A leafmap (ipyleaflet) map fitted to the raster, with only the controls that work
    offline and a tile basemap only when its server answers."""
    import ipyleaflet
    from leafmap import leafmap

    (south, west), (north, east) = latlon_bounds(da)
    m = leafmap.Map(center=((south + north) / 2, (west + east) / 2), zoom=14)
    m.layout.height = height
    offline = (
        ipyleaflet.ZoomControl,
        ipyleaflet.FullScreenControl,
        ipyleaflet.ScaleControl,
        ipyleaflet.AttributionControl,
    )
    for control in [c for c in m.controls if not isinstance(c, offline)]:
        m.remove(control)  # leafmap's toolbar (basemaps, search, downloads) needs the internet
    if basemap is None:
        basemap = basemap_reachable()
    if not basemap:  # offline: no grey tiles that never load
        for layer in [lyr for lyr in m.layers if isinstance(lyr, ipyleaflet.TileLayer)]:
            m.remove(layer)
    m.fit_bounds([[south, west], [north, east]])
    return m


# drawn pixel for pixel: no smoothing that lets the colours of neighbouring patches bleed
PIXELATED_CSS = "<style>.leaflet-image-layer { image-rendering: pixelated; }</style>"


def overlay(array: np.ndarray, bounds, name: str, opacity: float = 1.0, pane: str = ""):
    """A picture placed by its (lat, lon) bounds; ``pane``: a map pane of its own (a swipe
    clips a picture's whole pane), else Leaflet's overlay pane."""
    import ipyleaflet

    return ipyleaflet.ImageOverlay(
        url=data_url(png(array)), bounds=bounds, name=name, opacity=opacity, pane=pane
    )


def write_geotiff(array: np.ndarray, like: xr.DataArray, path, bands: list[str], cell: int) -> None:
    """``array`` [B, h, w] of ``cell`` x ``cell``-pixel cells of ``like``, written atomically."""
    from pathlib import Path

    from affine import Affine

    from ..fileio import atomic_output

    path = Path(path)
    transform = like.rio.transform() @ Affine.scale(cell)
    out = xr.DataArray(
        array.astype(np.float32), dims=("band", "y", "x"), coords={"band": bands}
    ).rio.write_crs(like.rio.crs)
    out = out.rio.write_transform(transform).rio.write_nodata(np.nan)
    with atomic_output(path, suffix=".tif") as tmp:
        out.rio.to_raster(tmp, compress="deflate")
