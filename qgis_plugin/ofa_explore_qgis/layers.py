"""The layer and its sensor: the bands a GDAL layer offers, the sensors a model can read them as,
and the check of the user's choice, in the dialog's words. Torch-free, Qt-free."""

from __future__ import annotations

from dataclasses import dataclass

from ._shared import enmap_product, protocol
from .engine import EngineError, ModelInfo


@dataclass(frozen=True)
class Band:
    number: int  # 1-based, as GDAL and QGIS count
    name: str
    wavelength_um: float | None = None
    bad: bool = False  # flagged bad in the file (``bbl`` = 0); the engine leaves it out
    data_type: str = ""  # GDAL's name: Byte, UInt16, Float32...
    alpha: bool = False  # the file's alpha band (transparency): a mask, left out like a bad one


@dataclass(frozen=True)
class SensorChoice:
    label: str
    modality: str | None  # None: the engine decides (detection, or the bands' wavelengths)
    bands: int | None  # how many bands it expects (None: any)


def layer_bands(path: str) -> list[Band]:
    """The bands of a raster file as GDAL reports them: description (or "Band n"), the centre
    wavelength and bad-band flag when the file tags them (ENVI/EnMAP ``wavelength`` +
    ``wavelength_units``, ``bbl``; an EnMAP product's image: its METADATA.XML, as the engine
    reads it), the data type, and whether it is the alpha band."""
    from osgeo import gdal

    try:
        ds = gdal.Open(path)
    except RuntimeError:  # GDAL with exceptions on
        ds = None
    if ds is None:
        raise EngineError(f"GDAL cannot open {path}")
    bands = []
    product = enmap_product.band_tags(path)
    for i in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(i)
        tags = band.GetMetadata() or {}
        if product and len(product) == ds.RasterCount and not protocol.band_wavelength(tags):
            tags = product[i - 1]
        bands.append(
            Band(
                i,
                band.GetDescription() or f"Band {i}",
                protocol.band_wavelength(tags),
                protocol.bad_band(tags),
                gdal.GetDataTypeName(band.DataType),
                band.GetColorInterpretation() == gdal.GCI_AlphaBand and _mask_values(band),
            )
        )
    return bands


def _mask_values(band) -> bool:
    """Whether a band GDAL calls alpha holds a mask's values (``protocol.alpha_mask``): a NIR
    band written with GDAL's defaults is called alpha too. Read from 8 x 8 small windows spread
    over the layer, as the engine samples a file without overviews, so that a large orthophoto
    costs 64 blocks on QGIS's main thread, not a decimated pass over all of it."""
    from osgeo import gdal

    bits = gdal.GetDataTypeSize(band.DataType)
    if gdal.GetDataTypeName(band.DataType) not in ("Byte", "UInt16", "UInt32"):
        return False
    w, h = min(8, band.XSize), min(8, band.YSize)
    values = []
    for k in range(8):
        for j in range(8):
            x, y = (band.XSize - w) * j // 7, (band.YSize - h) * k // 7
            values.extend(band.ReadAsArray(x, y, w, h).ravel().tolist())
    return protocol.alpha_mask(values, 2**bits - 1)


def other_layers(registry: list[dict], bands: list[Band]) -> set[int]:
    """The numbers of a layer's bands that it names as none of a sensor's bands whose others it
    holds (``protocol.bands_among_others``: an Earth Engine export's AOT, SCL, TCI and QA
    layers); the engine leaves them out, and the dialog unticks them."""
    kept = protocol.bands_among_others(registry, [b.name for b in bands])
    return set() if kept is None else {b.number for b in bands} - set(kept)


def sensor_choices(
    model: ModelInfo, registry: list[dict], bands: list[Band], total: int | None = None
) -> list[SensorChoice]:
    """The sensors this model accepts for the selected bands (of the layer's ``total``), "auto"
    first: the model's own sensors, then (when the model has the wavelength path) every
    registered sensor."""
    guess = guess_sensor(registry, bands, total)
    auto = (
        "auto (from the bands' wavelengths)"
        if by_wavelength(registry, bands)
        else f"auto (looks like {sensor_name(registry, guess)})"
        if guess
        else "auto (the engine decides)"
    )
    choices = [SensorChoice(auto, None, None)]
    described = {m["name"]: m for m in registry}
    for name, record in model.modalities.items():
        desc = described.get(name, record).get("description") or name
        choices.append(SensorChoice(f"{desc} [{name}]", name, len(record["bands"])))
    if model.by_wavelength:
        for record in registry:
            if record["name"] not in model.modalities:
                choices.append(
                    SensorChoice(
                        f"{record.get('description') or record['name']} "
                        f"[{record['name']}, by wavelength]",
                        record["name"],
                        len(record["bands"]),
                    )
                )
        # some of a sensor's bands that files hold alone, as many as selected (Sentinel-2's
        # 10 m bands): unnamed, the engine reads them only as named here; of wider types
        # than bytes, as the sensors' are (an 8-bit RGB layer is no Sentinel-2 export)
        if not all(protocol.is_8bit(b.data_type) for b in bands):
            for name, sensor, words in protocol.export_subsets(registry, len(bands)):
                choices.append(SensorChoice(f"{sensor}: {words} [{name}]", name, len(bands)))
    return choices


def by_wavelength(registry: list[dict], bands: list[Band]) -> bool:
    """Whether the engine reads these bands by the wavelengths the file tags them with (EnMAP):
    each has one, and their names are not a known sensor's bands (GDAL's Sentinel-2 layers
    carry both; ``protocol.names_sensor_bands``)."""
    return (
        bool(bands)
        and all(b.wavelength_um for b in bands)
        and not protocol.names_sensor_bands(registry, [b.name for b in bands])
    )


def guess_sensor(registry: list[dict], bands: list[Band], total: int | None = None) -> str | None:
    """The sensor the engine's detection would pick for these bands (the same rule: band count,
    names, 8-bit data, sensors marked for detection), or None; a hint only. Unnamed bands
    picked of a layer of ``total`` bands whose count is one sensor's are some of its bands
    (the engine checks that the values fit it)."""
    picked = _picked(registry, bands, total)
    if picked is not None:
        return protocol.subset_name(*picked)
    types = {b.data_type for b in bands}
    return protocol.sensor_hint(
        registry, len(bands), [b.name for b in bands], types.pop() if len(types) == 1 else None
    )


def _picked(registry: list[dict], bands: list[Band], total: int | None) -> tuple | None:
    """Unnamed bands picked of a layer of ``total``: the sensor and its bands they are
    (``protocol.picked_bands``), or None."""
    if not total or not all(b.name == f"Band {b.number}" for b in bands):
        return None
    return protocol.picked_bands(registry, total, [b.number for b in bands])


def check_selection(
    choice: SensorChoice, bands: list[Band], registry: list[dict], total: int | None = None
) -> str | None:
    """Why these bands (of the layer's ``total``) cannot run with this sensor (a sentence for
    the dialog), or None."""
    if not bands:
        return "Choose at least one band of the layer."
    chosen = [r for r in registry if r["name"] == choice.modality]
    if (
        choice.bands is not None
        and choice.bands != len(bands)
        and not protocol.band_subsets(chosen, [b.name for b in bands])
        and _picked(chosen, bands, total) is None
    ):
        selected = f"{protocol.count(len(bands), 'band')} {'is' if len(bands) == 1 else 'are'}"
        return (
            f"{choice.label} has {choice.bands} bands but {selected} selected: "
            f"select the layer's {choice.bands} bands in the sensor's order."
        )
    if choice.modality is None and not by_wavelength(registry, bands):
        if (
            not protocol.sensor_candidates(registry, len(bands))
            and not protocol.band_subsets(registry, [b.name for b in bands])
            and _picked(registry, bands, total) is None
        ):
            return (
                f"No sensor the model knows has {protocol.count(len(bands), 'band')}, the bands "
                "carry no "
                "wavelengths, and their names are not those of some of a sensor's bands: "
                "select the bands that match a sensor, or choose the sensor."
            )
    return None


def sensor_name(registry: list[dict], name: str) -> str:
    """A sensor as people call it ("Sentinel-2 L1C", "NAIP-style aerial R, G, B, NIR"): the
    registry's description up to its details (", 13 bands...", " (8-bit)"), with the bands
    when some of its bands are read alone ("Sentinel-2 L1C bands B02, B03, B04, B08"); else
    the name."""
    for record in registry:
        if record["name"] == name and record.get("description"):
            return protocol.sensor_label(record)
    subset = protocol.subset_of(registry, name)
    if subset is not None:
        return f"{sensor_name(registry, subset[0])} bands {', '.join(subset[1])}"
    return name


def read_as(
    choice: SensorChoice, bands: list[Band], registry: list[dict], total: int | None = None
) -> str | None:
    """The sensor the engine will read these bands as: the one chosen, else the one it would
    detect; None when it reads them by their wavelengths (tagged files such as EnMAP) or cannot
    tell."""
    if choice.modality:
        chosen = [r for r in registry if r["name"] == choice.modality]
        some = protocol.band_subsets(chosen, [b.name for b in bands])
        picked = some[0] if some else _picked(chosen, bands, total)
        return protocol.subset_name(*picked) if picked else choice.modality
    if by_wavelength(registry, bands):
        return None
    return guess_sensor(registry, bands, total)


def head_problem(info: dict, sensor: str | None, registry: list[dict]) -> str | None:
    """Why a head cannot classify bands read as ``sensor`` (the engine refuses a head trained
    on another sensor), or None when it fits."""
    trained = info.get("modality")
    if not trained or trained == sensor:
        return None
    layer = (
        f"this layer looks like {sensor_name(registry, sensor)}"
        if sensor
        else "this layer's bands are not recognised as that sensor"
    )
    return f"trained on {sensor_name(registry, trained)}; {layer}"
