"""The changed areas of a change map's mask as polygons with their area, written to a
GeoPackage by pyogrio (so a GIS opens them directly)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio

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
    on the ellipsoid in degrees; else pixels), written to a GeoPackage atomically. Reads the
    mask band whole (1 byte a pixel)."""
    pyogrio, shapely = vector_writer()
    from rasterio.features import shapes

    if result.path is not None:
        with rasterio.open(result.path) as src:
            mask = src.read(2) == 1
            transform, crs = src.transform, src.crs
    else:
        assert result.data is not None
        mask = result.data.values[1] == 1
        transform, crs = result.data.rio.transform(), result.data.rio.crs
    geoms = [
        shapely.geometry.shape(g)
        for g, _ in shapes(mask.astype(np.uint8), mask=mask, transform=transform)
    ]
    m2 = polygon_areas_m2(geoms, crs)
    pixels = np.array([g.area for g in geoms], dtype=np.float64) / abs(transform.determinant)
    field, values = ("pixels", pixels) if m2 is None else ("hectares", m2 / 1e4)
    with atomic_output(path, suffix=".tmp.gpkg") as tmp:
        tmp.unlink()
        pyogrio.raw.write(  # the raw writer: no pandas needed
            tmp,
            geometry=shapely.to_wkb(np.array(geoms, dtype=object)) if geoms else np.array([]),
            field_data=[values],
            fields=[field],
            geometry_type="Polygon",
            crs=crs.to_wkt() if crs is not None else None,
            driver="GPKG",
            layer="change",
            dataset_options={"VERSION": "1.2"},  # read without a warning by older GDAL (QGIS 3.22)
        )
    return len(geoms)
