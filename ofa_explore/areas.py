"""Areas of what the engine maps: the pixel area in square metres and the table of class areas
that the CLI prints and the widgets show."""

from __future__ import annotations

import numpy as np
import xarray as xr


def is_metric(crs) -> bool:
    """Whether a (rasterio) CRS measures in metres, so areas can be hectares."""
    return (
        crs is not None
        and crs.is_projected
        and (crs.linear_units or "").lower() in ("metre", "meter", "m")
    )


def pixel_area_m2(da: xr.DataArray) -> float | None:
    """One pixel's area in m², or None where the CRS is missing or not in metres (degrees)."""
    if not is_metric(da.rio.crs):
        return None
    res_x, res_y = da.rio.resolution()
    return abs(res_x * res_y)


def class_area_table(names: list[str], pixels: np.ndarray, pixel_m2: float | None) -> list[dict]:
    """Per class: input pixels, hectares (None without a metric CRS) and share of the classified
    area; largest first."""
    total = max(int(pixels.sum()), 1)
    rows = [
        {
            "class": name,
            "pixels": int(n),
            "hectares": None if pixel_m2 is None else float(n * pixel_m2 / 1e4),
            "share": float(n / total),
        }
        for name, n in zip(names, pixels)
    ]
    return sorted(rows, key=lambda r: -r["pixels"])
