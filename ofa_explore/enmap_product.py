"""An EnMAP product as DLR delivers it: ``<ID>-SPECTRAL_IMAGE.TIF``, whose bands carry no
wavelengths, beside ``<ID>-METADATA.XML``, whose ``specific/bandCharacterisation`` gives each
band's centre wavelength and width (nm) and the gain and offset that make its numbers
reflectance. Read alone, the image's 224 unnamed bands were "no known sensor has 224 bands"."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from pathlib import Path

IMAGE = "-SPECTRAL_IMAGE"
METADATA = "-METADATA.XML"
IMAGE_SUFFIXES = (".tif", ".tiff", ".bsq", ".bil", ".bip")


def product_image(path: Path) -> Path | None:
    """The spectral image that an EnMAP product's METADATA.XML, or its folder, stands for; None
    for any other path."""
    if path.is_file() and path.name.upper().endswith(METADATA):
        metadata = path
    elif path.is_dir():
        found = [p for p in path.iterdir() if p.name.upper().endswith(METADATA)]
        if len(found) != 1:
            return None
        metadata = found[0]
    else:
        return None
    stem = metadata.name[: -len(METADATA)].upper() + IMAGE
    images = sorted(
        p
        for p in metadata.parent.iterdir()
        if p.stem.upper() == stem and p.suffix.lower() in IMAGE_SUFFIXES
    )
    return images[0] if images else None


def band_tags(image: str | Path) -> list[dict[str, str]] | None:
    """Each band's tags as ENVI files carry them (``wavelength`` in nm, ``fwhm``, ``gain``,
    ``offset``), from the METADATA.XML beside an EnMAP product's spectral image; None for
    other files, or where the metadata holds no band characterisation."""
    image = Path(image)
    if not image.stem.upper().endswith(IMAGE):
        return None
    metadata = image.with_name(image.stem[: -len(IMAGE)] + METADATA)
    if not metadata.is_file():
        return None
    root = ElementTree.parse(metadata).getroot()
    bands = root.findall("specific/bandCharacterisation/bandID")
    tags = []
    for band in sorted(bands, key=lambda b: int(b.get("number", 0))):
        wavelength = band.findtext("wavelengthCenterOfBand")
        if wavelength is None:
            return None
        tags.append(
            {
                "wavelength": wavelength.strip(),
                "wavelength_units": "Nanometers",
                "fwhm": (band.findtext("FWHMOfBand") or "").strip(),
                "gain": (band.findtext("GainOfBand") or "1").strip(),
                "offset": (band.findtext("OffsetOfBand") or "0").strip(),
            }
        )
    return tags or None


def reflectance_scale(tags: list[dict[str, str]]) -> tuple[float, float] | None:
    """The gain and offset that make the image's numbers reflectance (0-1), where every band
    shares them; None where they differ from band to band."""
    pairs = {(float(t.get("gain", 1)), float(t.get("offset", 0))) for t in tags}
    return next(iter(pairs)) if len(pairs) == 1 else None
