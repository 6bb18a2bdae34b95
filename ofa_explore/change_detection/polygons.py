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
    Reads the mask band whole (1 byte a pixel) and the score under each area."""
    pyogrio, shapely = vector_writer()
    from rasterio.features import shapes

    with ExitStack() as stack:
        if result.path is not None:
            src = stack.enter_context(rasterio.open(result.path))
            mask = src.read(2) == 1
            transform, crs = src.transform, src.crs

            def scores(window: Window) -> np.ndarray:
                return src.read(1, window=window)
        else:
            assert result.data is not None
            values = result.data.values
            mask = values[1] == 1
            transform, crs = result.data.rio.transform(), result.data.rio.crs

            def scores(window: Window) -> np.ndarray:
                return values[0][window.toslices()]

        geoms = [
            shapely.geometry.shape(g)
            for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)
        ]
        stats = np.array(
            [score_stats(g, transform, mask.shape, scores) for g in geoms], dtype=np.float64
        ).reshape(-1, 2)
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


def score_stats(polygon, transform, shape: tuple[int, int], scores) -> tuple[float, float]:
    """The mean and highest score of the pixels whose centres lie in ``polygon`` (one of the
    mask's areas, so whole pixels), read from the window around it only (``scores(window)``)."""
    from rasterio.features import geometry_mask
    from rasterio.windows import transform as window_transform

    x0, y0, x1, y1 = polygon.bounds
    cols, rows = (~transform) * (np.array([x0, x1, x0, x1]), np.array([y0, y0, y1, y1]))
    top, left = (max(int(np.floor(v.min() + 1e-6)), 0) for v in (rows, cols))
    bottom = min(int(np.ceil(rows.max() - 1e-6)), shape[0])
    right = min(int(np.ceil(cols.max() - 1e-6)), shape[1])
    window = Window(left, top, right - left, bottom - top)
    inside = geometry_mask(
        [polygon],
        out_shape=(window.height, window.width),
        transform=window_transform(window, transform),
        invert=True,
    )
    values = scores(window)[inside]
    return float(np.nanmean(values)), float(np.nanmax(values))
