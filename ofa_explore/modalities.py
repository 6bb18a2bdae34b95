"""Sensor facts as data: which bands a modality has, at which wavelengths, GSD and statistics.

Every number lives once, in ``data/modalities.json`` (with its source); this module turns it into
``Modality`` records and keeps the registry that the model, I/O and checkpoints look names up in.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from typing import Any

from .errors import BadInput, NotFound, literal
from .protocol import band_names, count, subset_name, subset_of

KINDS = ("optical", "sar", "hyperspectral")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Modality:
    """One sensor layout as it lies on disk: bands in file order and how to normalise them.

    ``mean``/``std`` are in the file's own units; ``value * scale + offset`` gives the physical
    quantity named by ``units`` (e.g. reflectance). ``baseline_offset``: what newer processing
    adds to every valid value (Sentinel-2's processing baseline 04.00, from 25 January 2022,
    adds 1000), removed on reading where the file or its values show it (``scale``). SAR
    ``wavelengths`` are the pseudo-values that wavelength-conditioned weights were trained
    with (see ``SAR_WAVELENGTH_CONVENTIONS``).
    """

    name: str
    bands: tuple[str, ...]
    wavelengths: tuple[float, ...]  # µm
    gsd: float | None  # metres; None when it varies (generic RGB)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    units: str
    kind: str = "optical"
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    baseline_offset: float = 0.0
    description: str = ""
    source: str = ""
    autodetect: bool = False  # preferred by io.open_raster when guessing from the band count
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        for key in ("bands", "wavelengths", "mean", "std"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if not _NAME.match(self.name):
            raise BadInput(
                f"modality name {self.name!r} must be lower-case letters, digits "
                "and underscores, starting with a letter (e.g. 'my_sensor')"
            )
        if self.kind not in KINDS:
            raise BadInput(f"modality kind must be one of {KINDS}, got {self.kind!r}")
        n = len(self.bands)
        if n == 0:
            raise BadInput(f"modality {self.name!r} needs at least one band")
        for key in ("wavelengths", "mean", "std"):
            if len(getattr(self, key)) != n:
                raise BadInput(
                    f"modality {self.name!r}: {len(getattr(self, key))} {key} for "
                    f"{n} bands; give one per band"
                )
        if any(s <= 0 for s in self.std):
            raise BadInput(f"modality {self.name!r}: every std must be positive")
        if any(w <= 0 for w in self.wavelengths):
            raise BadInput(f"modality {self.name!r}: wavelengths must be positive (µm)")

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("bands", "wavelengths", "mean", "std"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Modality:
        return cls(**d)

    def select(self, bands: Sequence[str], name: str | None = None) -> Modality:
        """The same sensor with a subset or reordering of its bands."""
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise BadInput(
                f"{self.name!r} has no band(s) {missing}; it has {band_names(self.bands)}"
            )
        idx = [self.bands.index(b) for b in bands]
        pick = lambda values: tuple(values[i] for i in idx)  # noqa: E731
        return replace(
            self,
            name=name or f"{self.name}_subset",
            bands=tuple(bands),
            wavelengths=pick(self.wavelengths),
            mean=pick(self.mean),
            std=pick(self.std),
        )

    def band_label(self, i: int) -> str:
        """A band's name with its physical wavelength, for people: "B04 (0.665 µm)", or for SAR
        "VV (C-band radar, 5.55 cm)" (its ``wavelengths`` are pseudo-values for the model)."""
        if self.kind == "sar":
            return f"{self.bands[i]} ({self._radar()})"
        return f"{self.bands[i]} ({self.wavelengths[i]:.3f} µm)"

    def _radar(self) -> str:
        band, cm = self.extra.get("radar_band"), self.extra.get("radar_wavelength_cm")
        return f"{band}-band radar, {cm:g} cm" if band and cm else "radar"

    def describe(self) -> str:
        gsd = f"{self.gsd:g} m" if self.gsd else "varies"
        lines = [
            f"{self.name}: {self.description}",
            f"  kind {self.kind}, {count(self.num_bands, 'band')}, GSD {gsd}, units: {self.units}"
            f" (x {self.scale:g}{f' {self.offset:+g}' if self.offset else ''})",
            f"  nodata {self.nodata}; source: {self.source}",
        ]
        if self.baseline_offset:
            lines.append(
                f"  products of processing baseline 04.00 and later store values "
                f"{self.baseline_offset:+g}: removed on reading"
            )
        lines.append(f"  {'band':<8}{'µm':>8}{'mean':>14}{'std':>14}")
        for b, w, m, s in zip(self.bands, self.wavelengths, self.mean, self.std):
            lines.append(f"  {b:<8}{w:>8.3f}{m:>14.4f}{s:>14.4f}")
        if self.kind == "sar":
            lines.append(
                f"  {self._radar()}; the µm column holds the pseudo-wavelength that the "
                "wavelength-conditioned embedding uses for SAR"
            )
        return "\n".join(lines)


class UnknownModalityError(NotFound, ValueError, KeyError):
    """Raised for a modality name nobody registered; the message suggests or lists known ones.
    In Python (``str``) it also says how to register another sensor."""

    def __str__(self) -> str:
        return (
            super().__str__() + "; for another sensor: ofa_explore.register_modality(Modality("
            "name=..., bands=..., wavelengths=..., gsd=..., mean=..., std=..., units=...)), or "
            "ofa_explore.hyperspectral_modality(wavelengths) for a hyperspectral cube"
        )


def _load_builtin() -> tuple[dict[str, Modality], dict[str, float]]:
    text = resources.files(__package__).joinpath("data/modalities.json").read_text()
    data = json.loads(text)
    mods = {d["name"]: Modality.from_dict(d) for d in data["modalities"]}
    return mods, dict(data["sar_wavelength_conventions"])


_REGISTRY, SAR_WAVELENGTH_CONVENTIONS = _load_builtin()
BUILTIN_MODALITIES: tuple[str, ...] = tuple(_REGISTRY)


def list_modalities() -> list[str]:
    """Names of every registered modality, built-in first."""
    return list(_REGISTRY)


def get_modality(name: str) -> Modality:
    """The registered modality called ``name``, or some of its bands read alone as
    ``subset_name`` names them ('s2_l2a_b02_b03_b04_b08', 's1_grd_vv'): the name a note gives
    for a file of some named bands, and the one way to read a file of unnamed ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        if isinstance(name, str):
            found = subset_of([m.to_dict() for m in _REGISTRY.values()], name)
            if found is not None:
                return some_bands(_REGISTRY[found[0]], found[1])
        raise _unknown(name) from None


def some_bands(sensor: Modality, bands: Sequence[str]) -> Modality:
    """``sensor``'s record for some of its bands, named (``subset_name``) and described as such;
    the model reads them by their wavelengths where it has no embedding of them."""
    some = sensor.select(list(bands), name=subset_name(sensor.name, bands))
    return replace(some, description=f"{', '.join(bands)} of {sensor.description}")


# What people call the sensors, for "did you mean" (keys as _plain writes them)
ALIASES: dict[str, tuple[str, ...]] = {
    "sentinel2": ("s2_l1c", "s2_l2a"),
    "sentinel2a": ("s2_l1c", "s2_l2a"),
    "sentinel2b": ("s2_l1c", "s2_l2a"),
    "msi": ("s2_l1c", "s2_l2a"),
    "l1c": ("s2_l1c",),
    "l2a": ("s2_l2a",),
    "sentinel1": ("s1_grd",),
    "sentinel1a": ("s1_grd",),
    "sentinel1b": ("s1_grd",),
    "grd": ("s1_grd",),
    "sar": ("s1_grd",),
    "landsat": ("landsat_oli", "landsat_etm"),
    "landsat8": ("landsat_oli", "landsat_oli_l1"),
    "landsat9": ("landsat_oli", "landsat_oli_l1"),
    "oli": ("landsat_oli", "landsat_oli_l1"),
    "landsat7": ("landsat_etm",),
    "etm": ("landsat_etm",),
    "hyperspectral": ("enmap",),
    "aerial": ("rgb", "rgbn"),
    "rgbnir": ("rgbn",),
    "gaofen2": ("gaofen",),
}


def _plain(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _suggestions(name: str) -> list[str]:
    """Registered names the user may have meant: known aliases, then close spellings."""
    plain = _plain(name)
    names = {_plain(n): n for n in _REGISTRY}
    found = [n for n in ALIASES.get(plain, ()) if n in _REGISTRY]
    if plain in names:  # S2-L1C, s2l1c
        found.append(names[plain])
    if not found:
        close = difflib.get_close_matches(plain, list(names), n=3, cutoff=0.75)
        found = [names[m] for m in close]
    return list(dict.fromkeys(found))[:3]


def _unknown(name: object) -> UnknownModalityError:
    """One short line: what the user may have meant, else the names there are."""
    shown = literal(name)
    found = _suggestions(name) if isinstance(name, str) else []
    if found:
        either = ", ".join(found[:-1]) + " or " + found[-1] if len(found) > 1 else found[0]
        fix = f"did you mean {either}? ({{modalities}} lists them)"
    else:
        fix = f"choose one of {', '.join(_REGISTRY)} ({{modalities}} describes them)"
    return UnknownModalityError(f"unknown modality {shown!r}", fix, modality=str(name))


def register_modality(modality: Modality, overwrite: bool = False) -> Modality:
    """Make a sensor known by name to the model, the I/O and checkpoints."""
    if not isinstance(modality, Modality):
        raise TypeError(f"expected a Modality, got {type(modality).__name__}")
    if modality.name in _REGISTRY and not overwrite and _REGISTRY[modality.name] != modality:
        raise BadInput(
            f"a different modality named {modality.name!r} is already registered; "
            "choose another name or pass {overwrite}"
        )
    if modality.name in BUILTIN_MODALITIES and overwrite:
        raise BadInput(
            f"{modality.name!r} is built in and cannot be replaced; register your "
            "variant under another name"
        )
    _REGISTRY[modality.name] = modality
    return modality


def wavelength_names(waves: Sequence[float]) -> tuple[str, ...]:
    """Bands named by their centre wavelength in nm ('665nm'), with a decimal more where two
    would share a name (EnMAP's overlapping detectors: '911.7nm', '911.9nm'), so that a cube's
    bands can be selected by name."""
    names = [f"{w * 1000:.0f}nm" for w in waves]
    return tuple(
        f"{w * 1000:.1f}nm" if names.count(name) > 1 else name for w, name in zip(waves, names)
    )


def hyperspectral_modality(
    wavelengths: Iterable[float],
    name: str = "hyperspectral",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    gsd: float | None = None,
    units: str = "reflectance x 10000",
    scale: float = 1.0e-4,
    register: bool = False,
) -> Modality:
    """A hyperspectral sensor from its band centres (µm).

    Without ``mean``/``std`` the EnMAP statistics are interpolated at these wavelengths, which
    suits surface-reflectance cubes scaled by 10000; pass your own for anything else.
    """
    waves = [float(w) for w in wavelengths]
    if not waves:
        raise BadInput("give at least one wavelength (µm)")
    if max(waves) > 30:
        raise BadInput(
            f"wavelengths look like nanometres (max {max(waves):g}); pass µm, "
            "e.g. [w / 1000 for w in wavelengths_nm]"
        )
    ref = _REGISTRY["enmap"]
    interpolated = mean is None or std is None
    mean = list(mean) if mean is not None else _interp(waves, ref.wavelengths, ref.mean)
    std = list(std) if std is not None else _interp(waves, ref.wavelengths, ref.std)
    modality = Modality(
        name=name,
        bands=wavelength_names(waves),
        wavelengths=tuple(waves),
        gsd=gsd,
        mean=tuple(mean),
        std=tuple(std),
        units=units,
        kind="hyperspectral",
        scale=scale,
        description=f"hyperspectral cube, {len(waves)} bands {min(waves):.3f}-{max(waves):.3f} µm",
        source="user wavelengths"
        + ("; EnMAP statistics interpolated by wavelength" if interpolated else ""),
    )
    return register_modality(modality) if register else modality


def _interp(x: Sequence[float], xp: Sequence[float], fp: Sequence[float]) -> list[float]:
    """Linear interpolation on sorted copies (EnMAP's list has a few repeated centres)."""
    import numpy as np

    order = np.argsort(xp, kind="stable")
    return np.interp(x, np.asarray(xp)[order], np.asarray(fp)[order]).tolist()


def sar_wavelength(convention: str) -> float:
    """The pseudo-wavelength a set of weights expects for SAR bands ('ofa', 'dofa_v1', ...)."""
    try:
        return SAR_WAVELENGTH_CONVENTIONS[convention]
    except KeyError:
        raise BadInput(
            f"unknown SAR convention {convention!r}; known: {', '.join(SAR_WAVELENGTH_CONVENTIONS)}"
        ) from None
