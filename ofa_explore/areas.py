"""Areas of what the engine maps, on the ground as QGIS measures them (on the CRS's ellipsoid,
not in the plane of its projection): each pixel row's area in square metres, polygons' areas,
and the table of class areas that the CLI prints and the widgets show."""

from __future__ import annotations

import numpy as np
import xarray as xr
from affine import Affine


def _has_areas(crs) -> bool:
    """Whether ground areas can be measured: a geographic CRS, or a projected one in a linear
    unit that converts to metres."""
    return crs is not None and (not crs.is_projected or _metres_per_unit(crs) is not None)


def _metres_per_unit(crs) -> float | None:
    try:
        _, factor = crs.linear_units_factor
    except Exception:  # noqa: BLE001 - rasterio raises CRSError where there is no linear unit
        return None
    return float(factor) if factor else None


def row_areas_m2(crs, transform: Affine, height: int, width: int) -> np.ndarray | None:
    """[height] each row's pixel area in m² on the CRS's ellipsoid, as QGIS measures areas:
    in a projected CRS the area of the pixel in the row's middle (a 10 m UTM pixel covers
    100.08 m² on the zone's central meridian, a 10 "m" Web Mercator one 38 m² at 52° N); in a
    geographic one the exact area between the row's two parallels (north-up grids); None
    without a CRS or for other grids."""
    if not _has_areas(crs):
        return None
    if crs.is_projected:
        x, y = transform * (np.full(height, width / 2), np.arange(height) + 0.5)  # type: ignore[operator]
        return abs(transform.determinant) * _ground_m2_per_unit2(crs, x, y)
    if not crs.is_geographic or transform.b or transform.d:
        return None
    from pyproj import CRS

    ellipsoid = CRS.from_user_input(crs.to_wkt()).ellipsoid
    if ellipsoid is None:
        return None
    edges = np.radians(transform.f + transform.e * np.arange(height + 1))
    band = _zone_area(edges, ellipsoid.semi_major_metre, ellipsoid.semi_minor_metre)
    return np.abs(np.diff(band)) * abs(np.radians(transform.a))


def _ground_m2_per_unit2(crs, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """m² on the ellipsoid per square unit of the projected ``crs`` at the points (x, y): the
    projection's Jacobian (central differences of pyproj's inverse) times the ellipsoid's area
    element M N cos(latitude)."""
    from pyproj import CRS, Transformer

    projected = CRS.from_user_input(crs.to_wkt())
    geodetic = projected.geodetic_crs
    if geodetic is None or projected.ellipsoid is None:
        return np.full(np.shape(x), (_metres_per_unit(crs) or 1.0) ** 2)
    radians = geodetic.axis_info[0].unit_conversion_factor  # per degree (or grad)
    inverse = Transformer.from_crs(projected, geodetic, always_xy=True)
    x, y, h = np.asarray(x, float), np.asarray(y, float), 0.5

    def lonlat(dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = inverse.transform(x + dx, y + dy)
        return np.asarray(lon) * radians, np.asarray(lat) * radians

    (le, pe), (lw, pw) = lonlat(h, 0), lonlat(-h, 0)
    (ln, pn), (ls, ps) = lonlat(0, h), lonlat(0, -h)
    a, b = projected.ellipsoid.semi_major_metre, projected.ellipsoid.semi_minor_metre
    with np.errstate(invalid="ignore"):  # inf where a point is off the projection
        jacobian = np.abs((le - lw) * (pn - ps) - (ln - ls) * (pe - pw)) / (2 * h) ** 2
        lat = (pe + pw) / 2
        e2 = 1 - (b / a) ** 2
        w = 1 - e2 * np.sin(lat) ** 2
        meridian, normal = a * (1 - e2) / w**1.5, a / np.sqrt(w)
        ground = jacobian * meridian * normal * np.cos(lat)
    planar = (_metres_per_unit(crs) or 1.0) ** 2  # where pyproj cannot invert the point
    return np.where(np.isfinite(ground) & (ground > 0), ground, planar)


def _zone_area(latitude: np.ndarray, a: float, b: float) -> np.ndarray:
    """The ellipsoid's area from the equator to ``latitude`` (radians) per radian of longitude
    (the authalic latitude's closed form)."""
    s = np.sin(np.clip(latitude, -np.pi / 2, np.pi / 2))
    e = np.sqrt(max(1 - (b / a) ** 2, 0.0))
    if e < 1e-12:  # a sphere
        return a**2 * s
    return b**2 / 2 * (s / (1 - (e * s) ** 2) + np.arctanh(e * s) / e)


def raster_row_areas_m2(da: xr.DataArray) -> np.ndarray | None:
    """``row_areas_m2`` of a raster DataArray."""
    return row_areas_m2(da.rio.crs, da.rio.transform(), da.sizes["y"], da.sizes["x"])


def cell_areas_m2(rows_m2: np.ndarray, width: int, cell: int) -> np.ndarray:
    """[rows, cols] the area in m² of each ``cell`` x ``cell``-pixel output cell over a raster
    with these row areas, counting only the pixels inside (the last row and column of cells
    may be cut by the edge)."""
    height = len(rows_m2)
    per_cell_row = np.add.reduceat(rows_m2, np.arange(0, height, cell))
    cols = np.minimum(cell, width - np.arange(0, width, cell))
    return np.outer(per_cell_row, cols)


def masked_area_m2(mask: np.ndarray, rows_m2: np.ndarray) -> float:
    """The area in m² of the True pixels of a [H, W] mask whose rows have these areas."""
    return float(mask.sum(axis=1) @ rows_m2)


def polygon_areas_m2(polygons: list, crs) -> np.ndarray | None:
    """Each (shapely) polygon's area in m² on the CRS's ellipsoid: in a projected CRS its planar
    area times the ground area of a square unit at its middle, in a geographic one geodesic;
    None without a CRS that has areas."""
    if not _has_areas(crs):
        return None
    if crs.is_projected:
        planar = np.array([p.area for p in polygons], dtype=float)
        if not polygons:
            return planar
        middle = [p.representative_point() for p in polygons]
        x, y = np.array([m.x for m in middle]), np.array([m.y for m in middle])
        return planar * _ground_m2_per_unit2(crs, x, y)
    if not crs.is_geographic:
        return None
    from pyproj import CRS

    geod = CRS.from_user_input(crs.to_wkt()).get_geod()
    if geod is None:
        return None
    return np.array([abs(geod.geometry_area_perimeter(p)[0]) for p in polygons], dtype=float)


def class_area_table(names: list[str], pixels: np.ndarray, m2: np.ndarray | None) -> list[dict]:
    """Per class: input pixels, hectares (``m2``: each class's area in m²; None without a CRS
    that has areas) and share of the classified area; largest first."""
    total = max(int(pixels.sum()), 1)
    rows = [
        {
            "class": name,
            "pixels": int(n),
            "hectares": None if m2 is None else float(m2[i] / 1e4),
            "share": float(n / total),
        }
        for i, (name, n) in enumerate(zip(names, pixels))
    ]
    return sorted(rows, key=lambda r: -r["pixels"])
