"""The changed areas of a change map's mask as polygons with their area and their pixels'
mean and highest score, written to a GeoPackage by pyogrio (so a GIS opens them directly)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from ..areas import polygon_areas_m2
from ..engine import PredictionResult
from ..engine.run import GDAL_CACHE_BYTES
from ..errors import BadInput, MissingPart, OutputExists
from ..fileio import atomic_output, check_writable


def check_polygons(polygons, threshold, overwrite: bool) -> Path | None:
    """``polygons`` as ``change()`` takes it, checked before any work: a new .gpkg beside a
    threshold, with pyogrio and shapely installed; None when no polygons were asked for."""
    if polygons is None:
        return None
    path = Path(polygons)
    if threshold is None:
        raise BadInput(
            "{polygons} outlines the changed areas of the mask",
            "add {threshold} VALUE, auto or otsu",
        )
    if path.suffix.lower() != ".gpkg":
        raise BadInput(f"polygons {path} must be a GeoPackage", "give {polygons} a .gpkg name")
    if path.exists() and not overwrite:
        raise OutputExists(f"{path} exists", "pass {overwrite} to replace it")
    vector_writer()
    return check_writable(path)


def vector_writer():
    """pyogrio and shapely (the `change` extra), or what to install."""
    try:
        import pyogrio
        import pyogrio.raw
        import shapely
    except ImportError:
        raise MissingPart(
            "writing polygons needs pyogrio and shapely",
            "install them: pip install 'ofa-explore[change]'",
        ) from None
    return pyogrio, shapely


def write_polygons(result: PredictionResult, path: Path) -> int:
    """The mask's changed areas as polygons with their area (hectares where the CRS has areas,
    on the ellipsoid in degrees; else pixels) and the mean and highest score of their pixels (to
    sort or style the areas by how strongly they changed), written to a GeoPackage atomically.
    From a file, the map is read in strips of rows and never held whole."""
    pyogrio, shapely = vector_writer()
    from rasterio.features import shapes

    with ExitStack() as stack:
        if result.path is not None:
            stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))  # as the engine's
            src = stack.enter_context(rasterio.open(result.path))
            mask = rasterio.band(_mask_file(src, stack), 1)  # GDAL polygonises it block by block
            transform, crs, shape = src.transform, src.crs, src.shape

            def scores(window: Window) -> np.ndarray:
                return src.read(1, window=window)
        else:
            assert result.data is not None
            values = result.data.values
            mask = (values[1] == 1).view(np.uint8)
            transform, crs, shape = result.data.rio.transform(), result.data.rio.crs, mask.shape

            def scores(window: Window) -> np.ndarray:
                return values[0][window.toslices()]

        geoms = [shapely.geometry.shape(g) for g, _ in shapes(mask, mask=mask, transform=transform)]
        stats = area_scores(geoms, transform, shape, scores)
    m2 = polygon_areas_m2(geoms, crs)
    pixels = np.array([g.area for g in geoms], dtype=np.float64) / abs(transform.determinant)
    field, areas = ("pixels", pixels) if m2 is None else ("hectares", m2 / 1e4)
    with atomic_output(path, suffix=".tmp.gpkg") as tmp:
        tmp.unlink()
        pyogrio.raw.write(  # the raw writer: no pandas needed
            tmp,
            geometry=shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([]),
            field_data=[areas, stats[:, 0], stats[:, 1]],
            fields=[field, "score_mean", "score_max"],
            geometry_type="Polygon",
            crs=crs.to_wkt() if crs is not None else None,
            driver="GPKG",
            layer="change",
            dataset_options={"VERSION": "1.2"},  # read without a warning by older GDAL (QGIS 3.22)
        )
    return len(geoms)


STRIP_PIXELS = 1_000_000  # pixels of the mask or the score read at a time (~10 MB)


def _mask_file(src, stack: ExitStack):
    """The map's mask (band 2 == 1) as a deflated uint8 GeoTIFF in memory, written a strip of
    rows at a time, for GDAL to polygonise block by block: a mostly empty mask deflates to
    little, where the mask as an array took 1 byte a pixel (120 MB for a Sentinel-2 tile)."""
    from rasterio.io import MemoryFile

    memory = stack.enter_context(MemoryFile())
    profile = dict(driver="GTiff", width=src.width, height=src.height, count=1, dtype="uint8")
    with memory.open(**profile, compress="deflate", transform=src.transform) as dst:
        strip = max(1, STRIP_PIXELS // src.width)
        for top in range(0, src.height, strip):
            rows = Window(0, top, src.width, min(strip, src.height - top))
            dst.write((src.read(2, window=rows) == 1).astype(np.uint8), 1, window=rows)
    return stack.enter_context(memory.open())


def area_scores(
    polygons, transform, shape: tuple[int, int], scores, strip_rows: int | None = None
) -> np.ndarray:
    """The mean and highest score (n x 2) of the pixels whose centres lie in each of
    ``polygons`` (the mask's areas: whole pixels, none shared), read in strips of rows
    (``scores(window)``): one rasterisation of the areas' numbers a strip, not one per area
    (0.35 ms an area, 20 s for 57,000; now 0.05 ms, bench/bench_polygons.py)."""
    from rasterio.features import rasterize
    from rasterio.windows import transform as window_transform

    height, width = shape
    strip_rows = strip_rows or max(1, STRIP_PIXELS // max(width, 1))
    count = len(polygons)
    total = np.zeros(count + 1)
    pixels = np.zeros(count + 1)
    highest = np.full(count + 1, -np.inf)
    if count:  # each area's rows, from its bounds' corners (any transform)
        x0, y0, x1, y1 = np.array([p.bounds for p in polygons]).T
        _, rows = (~transform) * (np.stack([x0, x1, x0, x1]), np.stack([y0, y0, y1, y1]))
        first, last = rows.min(axis=0), rows.max(axis=0)
    for top in range(0, height if count else 0, strip_rows):
        window = Window(0, top, width, min(strip_rows, height - top))
        inside = np.flatnonzero((first < top + window.height) & (last > top))
        if not inside.size:
            continue
        number = rasterize(
            ((polygons[i], i + 1) for i in inside),
            out_shape=(window.height, window.width),
            transform=window_transform(window, transform),
            dtype="int32",
        )
        values = scores(window)
        keep = (number > 0) & ~np.isnan(values)
        number, values = number[keep], values[keep].astype(np.float64)
        total += np.bincount(number, weights=values, minlength=count + 1)
        pixels += np.bincount(number, minlength=count + 1)
        np.maximum.at(highest, number, values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / pixels
    highest[pixels == 0] = np.nan  # an area without a score (nodata under it)
    return np.stack([mean, highest], axis=1)[1:]
