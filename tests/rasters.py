"""Real GeoTIFFs cut down for the tests: a window of a shared scene as its own file."""

from __future__ import annotations

from pathlib import Path

import rasterio
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
