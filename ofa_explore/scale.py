"""In which units a raster's values are stored, judged from a sample of its pixels.

A sensor's statistics (``Modality.mean``/``std``) are in the units the model was trained on. A
file of the right sensor in other units (8-bit DN where reflectance x 10000 is expected, 16-bit
values where 8-bit ones are) gives garbage without any error, so every raster is compared with
its modality before the model sees it: floats in physical units are converted
(``detect_conversion``), and values whose typical size is far from the modality's
(``ScaleFit``) make detection pick a candidate they fit or refuse, naming the scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .modalities import Modality
from .protocol import is_8bit

FIT_FACTOR = 32.0  # band means more than 32x off a modality's: not its units. Scenes of one
# sensor in one unit stay within ~12x of its means (a EuroSAT lake chip: 11x below the L1C
# means); a unit change is ~40x (8-bit vs reflectance x 10000) or more, and changes between
# 8 and 16 bits are caught by the value range.
DB_FIT_STDS = 4.0  # for dB modalities (means near or below 0): means within 4 std


def detect_conversion(sample: np.ndarray, dtype: Any, m: Modality) -> dict[str, Any]:
    """How to bring stored values into the modality's units, judged from a sample:
    floats in 0..~1 for a DN modality are physical reflectance (-> DN), and non-negative
    backscatter for a dB modality is linear power (-> dB)."""
    finite = sample[np.isfinite(sample)]
    if finite.size == 0 or not np.issubdtype(np.dtype(dtype), np.floating):
        return {"kind": "none"}
    if "dB" in m.units:
        if finite.min() >= 0 and np.median(finite) < 1.0:
            return {"kind": "linear_to_db"}
        return {"kind": "none"}
    typical = float(np.median(m.mean))
    p1, p99 = (float(v) for v in np.percentile(finite, [1, 99]))
    if m.scale < 1 and -0.5 <= p1 and p99 <= 1.5 and typical > 10 * max(p99, 1e-6):
        return {"kind": "affine", "scale": 1.0 / m.scale, "offset": -m.offset / m.scale}
    return {"kind": "none"}


def to_model_units(values: np.ndarray, conversion: dict[str, Any]) -> np.ndarray:
    """Apply a conversion from ``detect_conversion`` to a block of values (float32 out)."""
    values = values.astype(np.float32, copy=False)
    kind = conversion.get("kind", "none")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # -> inf/NaN: invalid
        if kind == "affine":
            return values * np.float32(conversion["scale"]) + np.float32(conversion["offset"])
        if kind == "linear_to_db":  # power <= 0 (or -inf, NaN) has no dB value: invalid
            db = np.float32(10.0) * np.log10(np.maximum(values, np.float32(1e-10)))
            return np.where(values > 0, db, np.float32(np.nan))
    return values


@dataclass(frozen=True)
class ScaleFit:
    """How a sample's band means compare with a modality's, after its conversion."""

    modality: Modality
    conversion: dict[str, Any]
    means: tuple[float, ...]  # the sample's per-band means, in the modality's units
    factor: float  # typical ratio sample / modality (geometric median over bands); nan: none
    fits: bool

    def describe(self, dtype: Any) -> str:
        """The values in a few words: '(uint8, band means 39-98)'."""
        return f"({np.dtype(dtype).name}, band means {span(self.means)})"

    def mismatch(self) -> str:
        """How far off the values are, in words: '~100x smaller than'."""
        if not math.isfinite(self.factor) or self.factor <= 0:
            return "not in the range of"
        if self.factor >= 1:
            return f"~{_round(self.factor)}x larger than"
        return f"~{_round(1 / self.factor)}x smaller than"

    def note(self) -> str:
        """One sentence for the record (the result line, the output's tags)."""
        how = {"affine": " after scaling to its units", "linear_to_db": " after conversion to dB"}
        conv = how.get(self.conversion.get("kind", "none"), "")
        read = f"read as '{self.modality.name}', in {self.modality.units}{conv}"
        if not self.fits:
            return f"{read}, as asked; the values are {self.mismatch()} its statistics"
        ratio = f"{self.factor:.2f}x" if math.isfinite(self.factor) else "n/a"
        return f"{read}; the values fit its statistics (band means {ratio} its own)"


def scale_fit(sample: np.ndarray, dtype: Any, m: Modality) -> ScaleFit:
    """Compare a sample [C, h, w] (nodata as NaN) with modality ``m``'s statistics."""
    conversion = detect_conversion(sample, dtype, m)
    values = to_model_units(sample, conversion).reshape(sample.shape[0], -1)
    means = []
    for band in values:
        band = band[np.isfinite(band)]
        means.append(float(band.mean()) if band.size else math.nan)
    mean, std = np.asarray(m.mean), np.asarray(m.std)
    got = np.asarray(means)
    ok = np.isfinite(got)
    if not ok.any():
        return ScaleFit(m, conversion, tuple(means), math.nan, False)
    if (mean <= 0).any():  # dB and other signed units: compare in standard deviations
        distance = float(np.median(np.abs(got[ok] - mean[ok]) / std[ok]))
        factor = float(np.median(got[ok]) / np.median(mean[ok]))
        return ScaleFit(m, conversion, tuple(means), factor, distance <= DB_FIT_STDS)
    positive = ok & (got > 0)
    if not positive.any():
        return ScaleFit(m, conversion, tuple(means), math.nan, False)
    factor = float(np.exp(np.median(np.log(got[positive] / mean[positive]))))
    return ScaleFit(m, conversion, tuple(means), factor, _fits(values, dtype, m, factor))


def _fits(values: np.ndarray, dtype: Any, m: Modality, factor: float) -> bool:
    """Whether values [C, n] in the modality's units can be in them: bytes cannot hold a
    modality whose means exceed 255, an 8-bit modality cannot hold values beyond 255, and
    otherwise the band means are within FIT_FACTOR of the modality's."""
    eight_bit = "8-bit" in m.units
    if is_8bit(dtype):
        return eight_bit or float(np.median(m.mean)) <= 255
    if eight_bit:
        finite = values[np.isfinite(values)]
        if finite.size and float(np.percentile(finite, 99)) > 255 * 1.05:
            return False
    return 1 / FIT_FACTOR <= factor <= FIT_FACTOR


def span(values: tuple[float, ...]) -> str:
    """Values in a few characters: '98', '39 to 98', '5,410 to 6,200'."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "none"
    lo, hi = min(finite), max(finite)
    if math.isclose(lo, hi, rel_tol=0.05):
        return _number(lo)
    return f"{_number(lo)} to {_number(hi)}"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _round(factor: float) -> str:
    """A factor to two significant digits, as a plain number: 96 -> '96', 1234 -> '1200'."""
    return f"{float(f'{factor:.2g}'):g}"
