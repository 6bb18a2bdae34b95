"""Areas in square metres: the same for every pixel of a projected grid (in its unit of
length), shrinking towards the poles on the ellipsoid of a geographic grid; pyproj's geodesic
areas are the reference."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from pyproj import Geod
from rasterio.crs import CRS

from ofa_explore.areas import cell_areas_m2, polygon_areas_m2, row_areas_m2

WGS84 = CRS.from_epsg(4326)


@pytest.mark.parametrize("lat", [0.0, 45.5, 70.0, -60.0, 89.9])
def test_rows_in_degrees_match_geodesic_areas(lat):
    res = 1e-4  # a Sentinel-2 pixel resampled to degrees
    rows = row_areas_m2(WGS84, Affine(res, 0, 3.8, 0, -res, lat + 0.0005), 10, 1)
    geod = Geod(ellps="WGS84")
    for i in (0, 9):
        top = lat + 0.0005 - i * res
        area, _ = geod.polygon_area_perimeter(
            [3.8, 3.8 + res, 3.8 + res, 3.8], [top, top, top - res, top - res]
        )
        assert rows[i] == pytest.approx(abs(area), rel=1e-7)
    if lat:  # row 0 is the northernmost: smaller towards the pole
        assert (rows[0] < rows[-1]) == (lat > 0)


def _geodesic_m2(crs: CRS, x: list[float], y: list[float]) -> float:
    """pyproj's geodesic area of a polygon given in a projected CRS, edges densified."""
    from pyproj import Transformer

    edges = shapely.segmentize(shapely.Polygon(zip(x, y)), 1.0)  # 1 CRS unit
    to_lonlat = Transformer.from_crs(crs.to_wkt(), "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(*np.asarray(edges.exterior.coords).T)
    return abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])


def test_whole_earth_and_projected_grids_on_the_ellipsoid():
    earth = row_areas_m2(WGS84, Affine(1, 0, -180, 0, -1, 90), 180, 360).sum() * 360
    assert earth == pytest.approx(5.10065621724e14, rel=1e-9)  # WGS 84's surface
    sphere = CRS.from_proj4("+proj=longlat +R=6371000 +no_defs")
    earth = row_areas_m2(sphere, Affine(1, 0, -180, 0, -1, 90), 180, 360).sum() * 360
    assert earth == pytest.approx(4 * np.pi * 6371000**2, rel=1e-9)
    for epsg, x0, y0, res in [
        (32633, 500000, 5762000, 10),  # UTM 33N at 52 deg N, on the zone's central meridian
        (32633, 300000, 5762000, 10),  # 200 km west of it
        (3857, 1447153, 6800125, 10),  # Web Mercator at 52 deg N: 10 "m" cover 37.9 m^2
        (3035, 4500000, 3200000, 10),  # equal-area (LAEA Europe)
        (2227, 6000000, 2100000, 30),  # California III in US survey feet
    ]:
        crs = CRS.from_epsg(epsg)
        rows = row_areas_m2(crs, Affine(res, 0, x0, 0, -res, y0), 4, 1)
        x, y = (
            [x0, x0 + res, x0 + res, x0],
            [y0 - 3 * res, y0 - 3 * res, y0 - 4 * res, y0 - 4 * res],
        )
        assert rows[3] == pytest.approx(_geodesic_m2(crs, x, y), rel=1e-6), epsg
        box = shapely.box(x0, y0 - 4 * res, x0 + 40 * res, y0)
        (area,) = polygon_areas_m2([box], crs)
        assert area == pytest.approx(_geodesic_m2(crs, *box.exterior.xy), rel=1e-6), epsg
    assert row_areas_m2(None, Affine.identity(), 3, 3) is None
    off = row_areas_m2(CRS.from_epsg(32631), Affine(10, 0, -9e9, 0, -10, 9e9), 2, 2)
    assert off.tolist() == [100.0, 100.0]  # off the projection: the planar area, not NaN


def test_cells_cut_by_the_edge_and_polygons_agree_with_rows():
    transform = Affine(1e-4, 0, 13.0, 0, -1e-4, 52.0)
    rows = row_areas_m2(WGS84, transform, 20, 13)
    cells = cell_areas_m2(rows, 13, 8)  # 3 x 2 cells, the last row and column cut
    assert cells.shape == (3, 2) and cells.sum() == pytest.approx(rows.sum() * 13)
    assert cells[2, 1] == pytest.approx(rows[16:].sum() * 5)
    box = shapely.box(13.0, 52.0 - 20e-4, 13.0 + 13e-4, 52.0)
    (area,) = polygon_areas_m2([box], WGS84)
    assert area == pytest.approx(rows.sum() * 13, rel=1e-5)  # geodesic edges, parallels
    assert polygon_areas_m2([box], None) is None
