"""Real GeoTIFFs cut down for the tests: a window of a shared scene as its own file, or a
scene's bands as a Sentinel-2 product holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window


def crop(src: str | Path, dst: str | Path, window: Window, **changes) -> Path:
    """``window`` of ``src`` as the GeoTIFF ``dst``, with its band descriptions and tags
    (striped, so any size is valid); ``changes`` edit the profile (``count=`` keeps the first
    bands)."""
    with rasterio.open(src) as s:
        profile = s.profile | {
            "width": window.width,
            "height": window.height,
            "transform": s.window_transform(window),
            "tiled": False,
        }
        data, descriptions = s.read(window=window), s.descriptions
        tags, band_tags = s.tags(), [s.tags(i + 1) for i in range(s.count)]
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    profile.update(changes)
    count = profile["count"]
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data[:count])
        out.descriptions = descriptions[:count]
        out.update_tags(**tags)
        for i, band in enumerate(band_tags[:count]):
            out.update_tags(i + 1, **band)
    return Path(dst)


# Sentinel-2's bands and their pixel sizes in metres
S2_PIXEL_M = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20}
S2_PIXEL_M |= {"B8A": 20, "B11": 20, "B12": 20, "B01": 60, "B09": 60, "B10": 60}


def product_bands(src: str | Path, folder: Path, stem: str, crs: str | None = None) -> Path:
    """The bands of ``src`` (a multi-band file with band names) as a Sentinel-2 product's
    IMG_DATA holds them: a JPEG 2000 file a band, ``{stem}_{band}.jp2``, without band names,
    and the 3-band true-colour ``{stem}_TCI.jp2``; with ``crs``, each band reprojected into it
    at its own pixel size (``S2_PIXEL_M``, averaged from ``src``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src) as s:
        for i, band in enumerate(s.descriptions, start=1):
            data, transform, to = s.read(i), s.transform, s.crs
            if crs is not None:
                to, res = rasterio.crs.CRS.from_user_input(crs), S2_PIXEL_M[band]
                transform, width, height = calculate_default_transform(
                    s.crs, to, s.width, s.height, *s.bounds, resolution=res
                )
                moved = np.zeros((height, width), data.dtype)
                reproject(
                    data, moved, src_transform=s.transform, src_crs=s.crs, dst_transform=transform,
                    dst_crs=to, resampling=Resampling.average if res > 10 else Resampling.bilinear,
                )  # fmt: skip
                data = moved
            write_jp2(folder / f"{stem}_{band}.jp2", data[None], to, transform)
            if band == "B04":  # the true-colour quicklook, at the 10 m grid
                rgb = [s.read(s.descriptions.index(b) + 1) for b in ("B04", "B03", "B02")]
                tci = np.clip(np.stack(rgb) / 40, 0, 255).astype(np.uint8)
                write_jp2(folder / f"{stem}_TCI.jp2", tci, s.crs, s.transform)
    return folder


def write_jp2(path: Path, data: np.ndarray, crs, transform) -> Path:
    """``data`` [bands, h, w] as a lossless JPEG 2000 file, as Sentinel-2 products hold them."""
    profile = dict(driver="JP2OpenJPEG", count=data.shape[0], height=data.shape[1])
    profile |= dict(width=data.shape[2], dtype=data.dtype, crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(data)
    return path
