"""What every widget needs and that is easy to test without a browser: reading a scene for
display, pictures as PNG, georeferenced overlays, cosine similarity, cell areas."""

from __future__ import annotations

import base64
import socket
from pathlib import Path

import numpy as np
import xarray as xr

from ..arrays import SCENES, opened_array
from ..errors import BadInput
from ..io import CONVERSION_ATTR, open_raster, raster_modality
from ..modalities import Modality
from ..scale import to_model_units
from ..visualize import composite, png_bytes, stretch_limits, to_uint8

MAX_DISPLAY_SIDE = 1024  # larger scenes are shown decimated
COLORMAPS = ("magma", "viridis", "inferno", "plasma", "cividis", "gray")


def read_scene(
    source: str | Path | xr.DataArray | xr.Dataset, modality: str | Modality | None = None
) -> tuple[np.ndarray, Modality, xr.DataArray]:
    """(pixels [C, H, W] in model units, decimated to at most MAX_DISPLAY_SIDE, modality,
    the lazy DataArray) of a raster file or a DataArray (``opened_array``: open_raster's, as
    worked on since, or one's own)."""
    if isinstance(source, SCENES):
        da = opened_array(source, modality)
    else:
        da = open_raster(source, modality)
    step = display_step(da)
    values = da.isel(y=slice(None, None, step), x=slice(None, None, step)).values
    pixels = to_model_units(values, da.attrs[CONVERSION_ATTR]).astype(np.float32)
    return pixels, raster_modality(da), da


def shown_path(source) -> str:
    """A file as a person wants to read it: relative to the working folder when inside it,
    else its name (the folders of an installation or a temporary upload say nothing)."""
    if not isinstance(source, (str, Path)):
        return ""
    path = Path(source)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def rgb_picture(
    pixels: np.ndarray,
    modality: Modality,
    bands: tuple[int, int, int] | None = None,
    percentiles: tuple[float, float] = (2, 98),
) -> np.ndarray:
    """[H, W, 3] uint8: the natural-colour composite (or the chosen band indices), stretched."""
    rgb = pixels[list(bands)] if bands else composite(pixels, modality)
    return to_uint8(rgb, stretch_limits(rgb, percentiles))


def colormap_picture(
    values: np.ndarray,
    cmap: str = "magma",
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
) -> np.ndarray:
    """[H, W] -> [H, W, 4] uint8 RGBA; NaN, and values below ``threshold``, transparent."""
    from matplotlib import colormaps

    finite = np.isfinite(values)
    lo = np.nanmin(values) if vmin is None and finite.any() else (vmin or 0.0)
    hi = np.nanmax(values) if vmax is None and finite.any() else (vmax or 1.0)
    scaled = np.clip((np.nan_to_num(values, nan=lo) - lo) / max(hi - lo, 1e-12), 0, 1)
    rgba = (colormaps[cmap](scaled) * 255).round().astype(np.uint8)
    hidden = (
        ~finite if threshold is None else ~finite | (np.nan_to_num(values, nan=-np.inf) < threshold)
    )
    rgba[hidden, 3] = 0
    return rgba


def class_picture(classes: np.ndarray, colors: list[str], nodata: int = 255) -> np.ndarray:
    """Class indices [H, W] -> RGBA with the head's colours; nodata transparent."""
    table = np.zeros((256, 4), np.uint8)
    for i, color in enumerate(colors):
        table[i] = [int(color[j : j + 2], 16) for j in (1, 3, 5)] + [255]
    table[nodata] = 0
    return table[classes.astype(np.uint8)]


def on_display_grid(picture: np.ndarray, cell: int, da: xr.DataArray) -> np.ndarray:
    """A picture of output cells (each ``cell`` input pixels wide) redrawn on the pixel grid the
    scene is displayed on (``read_scene``'s decimation), so that both share one extent and the
    cells cut by the raster's edges end exactly at the scene's edge."""
    step = display_step(da)
    rows = np.arange(0, da.sizes["y"], step) // cell
    cols = np.arange(0, da.sizes["x"], step) // cell
    return picture[np.minimum(rows, len(picture) - 1)][:, np.minimum(cols, picture.shape[1] - 1)]


def display_step(da: xr.DataArray) -> int:
    """Decimation that keeps the displayed scene within MAX_DISPLAY_SIDE pixels."""
    return max(1, int(np.ceil(max(da.sizes["y"], da.sizes["x"]) / MAX_DISPLAY_SIDE)))


def colorbar_html(
    cmap: str, vmin: float, vmax: float, label: str, threshold: float | None = None
) -> str:
    """A horizontal colour bar (a small PNG) with its end values, and the threshold marked."""
    from matplotlib import colormaps

    ramp = (colormaps[cmap](np.linspace(0, 1, 256))[None].repeat(12, 0) * 255).astype(np.uint8)
    if threshold is not None:  # values below the threshold are not drawn: grey them out here
        cut = int(round((threshold - vmin) / (vmax - vmin) * 255))
        ramp[:, : max(cut, 0), 3] = 60
    mark = ""
    if threshold is not None:
        left = 100 * (threshold - vmin) / (vmax - vmin)
        mark = (
            f"<div style='position:absolute;left:{left:.1f}%;top:-3px;height:18px;"
            "border-left:2px solid #000'></div>"
        )
    return (
        "<div style='display:flex;align-items:center;gap:6px;font-size:12px'>"
        f"<span>{label}</span><span>{vmin:g}</span>"
        "<div style='position:relative;width:256px;height:12px'>"
        f"<img src='{data_url(png(ramp))}' style='width:256px;height:12px;display:block'>"
        f"{mark}</div><span>{vmax:g}</span></div>"
    )


def png(array: np.ndarray, scale: int = 1) -> bytes:
    from PIL import Image

    picture = Image.fromarray(array)
    if scale > 1:
        picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    return png_bytes(picture)


def data_url(png_data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png_data).decode()


def latlon_bounds(da: xr.DataArray) -> tuple[tuple[float, float], tuple[float, float]]:
    """((south, west), (north, east)) of a raster, for a map overlay."""
    from rasterio.warp import transform_bounds

    if da.rio.crs is None:
        raise BadInput(
            "the raster has no CRS, so it cannot be placed on a map",
            "assign one (e.g. `gdal_edit.py -a_srs EPSG:32633 file.tif`)",
        )
    west, south, east, north = transform_bounds(da.rio.crs, "EPSG:4326", *da.rio.bounds())
    return (south, west), (north, east)


def latlon_to_cell(da: xr.DataArray, lat: float, lon: float, cell: int) -> tuple[int, int] | None:
    """(row, col) of the ``cell``-pixel block of the raster under a map click; None outside."""
    from rasterio.warp import transform

    try:
        xs, ys = transform("EPSG:4326", da.rio.crs, [lon], [lat])
    except Exception:  # noqa: BLE001 - GDAL's "outside of projection domain" (CPLE_* errors)
        return None
    if not np.isfinite([xs[0], ys[0]]).all():
        return None
    col, row = ~da.rio.transform() * (xs[0], ys[0])
    r, c = int(row // cell), int(col // cell)
    rows, cols = -(-da.sizes["y"] // cell), -(-da.sizes["x"] // cell)
    return (r, c) if 0 <= r < rows and 0 <= c < cols else None


def cosine_similarity(embeddings: np.ndarray, row: int, col: int) -> np.ndarray:
    """[D, h, w] embeddings -> [h, w] cosine similarity to the vector at (row, col), after
    removing the scene's mean embedding (which all patches share and which would make every
    patch look alike); NaN where there are no embeddings (nodata)."""
    e = np.asarray(embeddings, dtype=np.float32)
    e = e - np.nanmean(e.reshape(len(e), -1), axis=1)[:, None, None]
    ref = e[:, row, col]
    norms = np.linalg.norm(e, axis=0) * (np.linalg.norm(ref) + 1e-12)
    return np.einsum("dhw,d->hw", e, ref) / np.where(norms > 0, norms, np.nan)


def basemap_reachable(host: str = "tile.openstreetmap.org", timeout: float = 0.5) -> bool:
    """Offline-first: add a tile basemap only when its server answers."""
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False
