"""Which registered sensor a raster's header points to: its band count, band names and data
type (``protocol.sensor_candidates``, the rule the QGIS dialog's hint follows too). ``io`` then
checks the values against the sensor's statistics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .modalities import Modality, get_modality, list_modalities
from .protocol import count, export_subsets, sensor_candidates
from .rasterfiles import RasterError


def some_bands_hint(band_count: int, sensor: Modality | None = None) -> str:
    """How a refusal of ``band_count`` unnamed bands says to name them as some of a sensor's,
    a clause to put after others: the common exports of as many bands of ``sensor`` (the one
    the user named), else of any sensor (``protocol.export_subsets``: Sentinel-2's 10 m bands
    for four; QGIS's Sensor list and the raster explorer offer them too), else
    ``{some_bands}``, an example where names are typed."""
    records = sensor_records()
    named = [r for r in records if sensor is not None and r["name"] == sensor.name]
    found = export_subsets(named, band_count) or export_subsets(records, band_count)
    if not found:
        return "{some_bands}"
    such = " or ".join(name for name, _, _ in found)
    sensors = " or ".join(dict.fromkeys(sensor for _, sensor, _ in found))
    return (  # (10 m bands B02, B03, B04, B08 of Sentinel-2 L1C or Sentinel-2 L2A)
        f"; some of a sensor's bands by their names after its own, such as {such} "
        f"({found[0][2]} of {sensors})"
    )


def sensor_records() -> list[dict[str, Any]]:
    """Every registered sensor's record, as the protocol's rules take them."""
    return [get_modality(n).to_dict() for n in list_modalities()]


def registry_bands() -> list[str]:
    """Every band name of the registry, longest first (so that 'B8A' is found before 'B8')."""
    names = {b for n in list_modalities() for b in get_modality(n).bands}
    return sorted(names, key=len, reverse=True)


def detect_modality(
    band_count: int, descriptions: Sequence[str | None] | None, dtype: Any
) -> Modality:
    """Guess the modality from the band count, band names and data type; ambiguity is an error
    that lists the candidates and the ``modality=`` override. (``open_raster`` also looks at the
    values.)"""
    found = likely_modalities(band_count, descriptions, dtype)
    if len(found) > 1:
        raise RasterError(
            f"{band_count} bands could be any of {', '.join(m.name for m in found)}",
            "say which with {modality}",
        )
    return found[0]


def likely_modalities(
    band_count: int, descriptions: Sequence[str | None] | None, dtype: Any
) -> list[Modality]:
    """The modalities a raster may be from its band count, band names and data type (see
    ``protocol.sensor_candidates``), most likely first; none is an error."""
    sensors = sensor_records()
    found = sensor_candidates(
        sensors, band_count, descriptions, None if dtype is None else np.dtype(dtype).name
    )
    if not found:
        raise RasterError(
            f"no known sensor has {count(band_count, 'band')}",
            "name its sensor with {modality} ({modalities} lists them; others can be "
            f"registered{some_bands_hint(band_count)}), or give all the bands of the scene",
            bands=band_count,
        )
    return [get_modality(n) for n in found]
