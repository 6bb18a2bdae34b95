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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .modalities import Modality
from .protocol import band_names, is_8bit

FIT_FACTOR = 32.0  # band means more than 32x off a modality's: not its units. Scenes of one
# sensor in one unit stay within ~12x of its means (a EuroSAT lake chip: 11x below the L1C
# means); a unit change is ~40x (8-bit vs reflectance x 10000) or more, and changes between
# 8 and 16 bits are caught by the value range.
DB_FIT_STDS = 4.0  # for dB modalities (means near or below 0): means within 4 std
# Sentinel-2 processing baseline 04.00 (25 January 2022) added ``Modality.baseline_offset``
OFFSET_SINCE_BASELINE = (4, 0)
# Without a baseline named, values carry the offset when every band's darkest pixels (0.1th
# percentile of its positive values) are at least 0.95x the offset and the darkest band's at most
# 1.3x. Without the offset the darkest band lies far lower (at most 0.18x in all of EuroSAT, the
# OSCD cities, BigEarthNet and the two L1C scenes: L1C's cirrus band B10, L2A's blue over
# vegetation or SWIR over water); with it, dark pixels sit just above the offset. A scene bright
# everywhere (desert, snow) without the offset can look the same: named as what was done.
OFFSET_WINDOW = (0.95, 1.3)
# Band order. Two sensors with as many bands, of which the file names none, differ in which
# band is where; the band means then say which. The spread of a sample's band means over a
# sensor's (the largest ratio over the smallest), over 'rgbn' (R, G, B, NIR): 1.0-1.4 for the ten
# NAIP years of the shared data, 6.4-7.4 for the eight Peru composites (SWIR1, NIR, red, green);
# over 'landsat_composite_8bit': 5.0-7.9 for NAIP, 1.04-1.13 for the composites. A scene of one
# land cover (water, a field in one season) bends the spread too, so only this much is a doubt...
ORDER_SPREAD = 3.0
# ... and another sensor wins only with less than half of it.
ORDER_MARGIN = 2.0
# A spread this wide is no scene of the sensor: at most 89x on the shared data (a EuroSAT chip
# of sea: its cirrus band's mean is tiny), 9.4 on the OSCD cities, 40 on BigEarthNet, 5.2 on
# EnMAP; a Sentinel-2 file with B8A in another place 970x to 5000x, Landsat-8's B1 ... B11 read
# as Sentinel-2's 1000x. The reading is warned about.
ODD_SPREAD = 300.0


def detect_conversion(
    sample: np.ndarray, dtype: Any, m: Modality, baseline: str | None = None
) -> dict[str, Any]:
    """How to bring stored values into the modality's units, judged from a sample:
    floats in 0..~1 for a DN modality are physical reflectance (-> DN), non-negative
    backscatter for a dB modality is linear power (-> dB), and integers that carry the
    modality's ``baseline_offset`` lose it (``baseline``: the processing baseline the file
    names, e.g. '05.09'; else judged from the values, ``carries_offset``)."""
    if m.baseline_offset and np.issubdtype(np.dtype(dtype), np.integer):
        if carries_offset(sample, m.baseline_offset, baseline):
            return {
                "kind": "affine",
                "scale": 1.0,
                "offset": -m.baseline_offset,
                "baseline_offset": m.baseline_offset,
                "baseline": baseline,  # None: judged from the values
            }
    finite = sample[np.isfinite(sample)]
    if finite.size == 0 or not np.issubdtype(np.dtype(dtype), np.floating):
        return {"kind": "none"}
    if "dB" in m.units:
        if finite.min() >= 0 and np.median(finite) < 1.0:
            return {"kind": "linear_to_db", **_amplitude(sample, m)}
        return {"kind": "none"}
    typical = float(np.median(m.mean))
    p1, p99 = (float(v) for v in np.percentile(finite, [1, 99]))
    if m.scale < 1 and -0.5 <= p1 and p99 <= 1.5 and typical > 10 * max(p99, 1e-6):
        return reflectance_conversion(m)
    return {"kind": "none"}


def reflectance_conversion(m: Modality) -> dict[str, Any]:
    """The conversion of physical reflectance (0..1) into the modality's units."""
    return {"kind": "affine", "scale": 1.0 / m.scale, "offset": -m.offset / m.scale}


def _amplitude(sample: np.ndarray, m: Modality) -> dict[str, Any]:
    """``{"factor": 20.0}`` where non-negative linear values are amplitudes, not power (ASF's
    RTC products come in either): their band means in dB, taken as amplitudes (20 log10), lie
    ``ORDER_MARGIN`` times closer to the sensor's than taken as power (10 log10); else {}.
    On the six BigEarthNet-S1 patches as power, 0.16-0.77 standard deviations from the means
    as power and 1.46-2.68 as amplitudes; as amplitudes, 1.58-1.88 and 0.16-0.77. Read as
    power, amplitudes were half their dB, within the fit of 4 deviations, without a word."""
    values = sample.reshape(sample.shape[0], -1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(values > 0, np.log10(values), np.nan)
    if not np.isfinite(logs).any(axis=1).all():
        return {}
    # in order of size, as the bands may be in another order (VH before VV): the dB scale
    # does not change it
    order = np.argsort(m.mean)
    means = np.sort(np.nanmean(logs, axis=1))
    mean, std = np.asarray(m.mean)[order], np.asarray(m.std)[order]

    def distance(factor: float) -> float:
        return float(np.median(np.abs(factor * means - mean) / std))

    return {"factor": 20.0} if distance(20.0) * ORDER_MARGIN <= distance(10.0) else {}


def carries_offset(sample: np.ndarray, offset: float, baseline: str | None) -> bool:
    """Whether a sample [C, h, w] (nodata as NaN) carries ``offset``: the processing baseline
    named, else where the bands' darkest pixels lie (``OFFSET_WINDOW``)."""
    if baseline is not None:
        return baseline_version(baseline) >= OFFSET_SINCE_BASELINE
    darkest = []
    for band in sample.reshape(sample.shape[0], -1):
        positive = band[np.isfinite(band) & (band > 0)]  # 0: Sentinel-2's nodata
        if positive.size == 0:
            return False
        darkest.append(float(np.percentile(positive, 0.1)))
    low, high = OFFSET_WINDOW
    return min(darkest) >= low * offset and min(darkest) <= high * offset


def baseline_version(baseline: str) -> tuple[int, int]:
    """'05.09', 'N0509' or '5.9' -> (5, 9); (0, 0) when it is not a version."""
    digits = baseline.strip().upper().lstrip("N")
    if "." in digits:
        major, _, minor = digits.partition(".")
    else:
        major, minor = digits[:2], digits[2:4]
    try:
        return int(major), int(minor or 0)
    except ValueError:
        return (0, 0)


def to_model_units(values: np.ndarray, conversion: dict[str, Any]) -> np.ndarray:
    """Apply a conversion from ``detect_conversion`` to a block of values (float32 out)."""
    values = values.astype(np.float32, copy=False)
    kind = conversion.get("kind", "none")
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # -> inf/NaN: invalid
        if kind == "affine":
            return values * np.float32(conversion["scale"]) + np.float32(conversion["offset"])
        if kind == "linear_to_db":  # power <= 0 (or -inf, NaN) has no dB value: invalid
            factor = np.float32(conversion.get("factor", 10.0))  # 20: amplitudes
            db = factor * np.log10(np.maximum(values, np.float32(1e-10)))
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
    preferred_to: ScaleFit | None = None  # the sensor detection named, whose band order lost
    stored_as: str | None = None  # another order of the sensor's bands that the file follows
    # (``extra.band_orders``: its name), and what showed it, a clause for the note:
    stored_why: str = ""
    # the darkest pixels of the band the sensor's records keep above a floor (``extra.darkest``:
    # Sentinel-2 L1C's blue), where they lie below it; else None
    dark: float | None = None

    @property
    def below_zero(self) -> bool:
        """Whether most band means lie below the value that stands for zero in the sensor's
        physical units (``Modality.offset``: Landsat Level-1 DN 5,000, Collection 2 surface
        reflectance 7,273): negative reflectance on average is no scene of it. PlanetScope
        surface reflectance x 10000 (band means 400-3,000) fitted Landsat-8 Level-1's
        statistics within ``FIT_FACTOR`` (0.09x) and was read as it."""
        zero = _zero_value(self.modality)
        got = np.asarray(self.means, dtype=float)
        got = got[np.isfinite(got)]
        return zero is not None and got.size > 0 and float(np.median(got)) < zero

    def dimmer_than_expected(self) -> bool:
        """Whether a band the sensor's scenes always hold brighter than another
        (``extra.brighter``: Sentinel-1's VV over VH) is the dimmer one here, by its margin."""
        rule = self.modality.extra.get("brighter")
        bands = self.modality.bands
        if not rule or rule["band"] not in bands or rule["than"] not in bands:
            return False
        bright, dim = self.means[bands.index(rule["band"])], self.means[bands.index(rule["than"])]
        return bool(bright + rule["by"] <= dim)

    @property
    def spread(self) -> float:
        """How unevenly the band means differ from the modality's: the largest ratio of a
        band's mean to the modality's over the smallest (1: the same profile; nan: signed
        units, or no positive mean). Bands in another order than the modality's spread wide."""
        mean = np.asarray(self.modality.mean, dtype=float)
        got = np.asarray(self.means, dtype=float)
        ok = np.isfinite(got) & (got > 0) & (mean > 0)
        if (mean <= 0).any() or ok.sum() < 2:
            return math.nan
        ratio = got[ok] / mean[ok]
        return float(ratio.max() / ratio.min())

    def odd_bands(self) -> str:
        """The bands whose means lie lowest and highest over the modality's, in words:
        'B10 at 0.01x its mean, B09 at 12x'."""
        ratio = np.asarray(self.means, dtype=float) / np.asarray(self.modality.mean, dtype=float)
        ratio[~np.isfinite(ratio) | (ratio <= 0)] = np.nan
        low, high = int(np.nanargmin(ratio)), int(np.nanargmax(ratio))
        bands, shown = self.modality.bands, [f"{r:.2g}" if r < 10 else f"{r:.0f}" for r in ratio]
        return f"{bands[low]} at {shown[low]}x its mean, {bands[high]} at {shown[high]}x"

    def describe(self, dtype: Any) -> str:
        """The values in a few words: '(uint8, band means 39-98)'."""
        return f"({np.dtype(dtype).name}, band means {span(self.means)})"

    def mismatch(self) -> str:
        """How far off the values are, in words: '~100x smaller than'."""
        zero, near = _zero_value(self.modality), 1 / FIT_FACTOR <= self.factor <= FIT_FACTOR
        if self.below_zero and zero is not None and near:  # else the factor says more
            what = "reflectance" if "reflectance" in self.modality.units else "its units"
            return f"mostly below the {zero:,.0f} that stands for zero {what} in"
        if not math.isfinite(self.factor) or self.factor <= 0:
            return "not in the range of"
        if self.factor >= 1:
            return f"~{_round(self.factor)}x larger than"
        return f"~{_round(1 / self.factor)}x smaller than"

    def note(self) -> str:
        """One sentence for the record (the result line, the output's tags)."""
        how = {"affine": " after scaling to its units", "linear_to_db": " after conversion to dB"}
        conv = how.get(self.conversion.get("kind", "none"), "")
        if self.conversion.get("factor") == 20.0:
            conv += " (20 log10: the values are amplitudes, whose dB fit, not power)"
        if self.conversion.get("baseline_offset"):
            baseline = self.conversion.get("baseline")
            why = (
                f"baseline {baseline}"
                if baseline
                else (
                    "no band's darkest pixels lie below it; a scene from before 2022 bright "
                    "everywhere (desert, snow) can look so: to read it as it is, tag it "
                    "with `gdal_edit.py -mo PROCESSING_BASELINE=03.01 FILE`"
                )
            )
            conv = (
                f" less the +{self.conversion['baseline_offset']:g} that processing baseline "
                f"04.00 and later adds ({why})"
            )
        read = f"read as '{self.modality.name}', in {self.modality.units}{conv}"
        if not self.fits:
            return f"{read}, as asked; the values are {self.mismatch()} its statistics"
        ratio = f"{self.factor:.2f}x" if math.isfinite(self.factor) else "n/a"
        fit = f"{read}; the values fit its statistics (band means {ratio} its own)"
        if self.dark is not None:
            floor = self.modality.extra["darkest"]
            fit += (
                f", but its {floor['band']}'s darkest pixels ({self.dark:.0f}) lie below the "
                f"{floor['above']:g} that this sensor's keep above: they look like "
                f"{floor['darker']}"
            )
        if self.stored_as is not None:
            return (
                f"{fit}: its bands carry no names, and {self.stored_why}: read in "
                f"{self.stored_as}; name the file's bands (their descriptions) to read them "
                "otherwise"
            )
        other = self.preferred_to
        if other is None:
            return fit
        name, bands = other.modality.name, band_names(other.modality.bands)
        return (
            f"{fit}: its bands carry no sensor's names, and band by band its means follow this "
            f"sensor's ({band_names(self.modality.bands)}; within {self.spread:.1f}x) rather "
            f"than those of '{name}' ({bands}; {other.spread:.1f}x apart); if it is '{name}', "
            "choose that sensor"
        )


def scale_fit(
    sample: np.ndarray,
    dtype: Any,
    m: Modality,
    baseline: str | None = None,
    conversion: dict[str, Any] | None = None,
) -> ScaleFit:
    """Compare a sample [C, h, w] (nodata as NaN) with modality ``m``'s statistics
    (``baseline``: see ``detect_conversion``), converted as ``conversion`` says, else as
    ``detect_conversion`` judges."""
    if conversion is None:
        conversion = detect_conversion(sample, dtype, m, baseline)
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
    fit = ScaleFit(m, conversion, tuple(means), factor, _fits(values, dtype, m, factor))
    return replace(fit, fits=False) if fit.below_zero else replace(fit, dark=_dark(values, m))


def _dark(values: np.ndarray, m: Modality) -> float | None:
    """The 1st percentile of the positive values [C, n] of the band whose darkest pixels the
    sensor keeps above a floor (``extra.darkest``), where it lies below; else None."""
    floor = m.extra.get("darkest")
    if not floor or floor["band"] not in m.bands:
        return None
    band = values[m.bands.index(floor["band"])]
    band = band[np.isfinite(band) & (band > 0)]
    if band.size == 0:
        return None
    darkest = float(np.percentile(band, 1))
    return darkest if darkest < floor["above"] else None


def _zero_value(m: Modality) -> float | None:
    """The stored value that stands for zero in the modality's physical units, where that is
    above zero (``value * scale + offset`` with a negative offset); else None."""
    if m.offset < 0 < m.scale:
        return -m.offset / m.scale
    return None


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


# a share of a sample's values below zero in a sensor's units where its scenes have none
# (reflectance, digital numbers) that no scene of it holds: of 223 shared rasters of such
# sensors, at most 0.003%; a difference of two dates, or centred values, about half. The same
# share in the top half of an unsigned integer type's range, above any scene of the sensor
# (mean + WRAP_STDS standard deviations), is a difference that wrapped around below zero
BELOW_ZERO_SHARE = 0.1
WRAP_STDS = 6
# how their notes say so (a note of it, the values' reading was told of)
IMPOSSIBLE_WORDS = ("'s values are below zero in ", "'s values lie in the top half of ")


def impossible_values_note(
    sample: np.ndarray, dtype: Any, conversion: dict[str, Any], m: Modality, what: str
) -> str | None:
    """What to tell of ``what`` (a file, "the DataArray") where more than BELOW_ZERO_SHARE of a
    sample's values [C, ...] lie below zero in units that have none there, or wrapped around
    from below zero to the top of an unsigned integer type; else None. A difference of two
    dates fitted the sensor's scale (band means 0.09x its own, by those above zero) and ran
    without a word (hidden-pixel error 11.1 against 0.15 for the trivial baseline), as did one
    of two uint16 dates (``after - before``: 21% of its values wrapped to the top of uint16's
    range, band means 3.2x the sensor's; error 8678 against 1342)."""
    if "dB" in m.units or not (np.asarray(m.mean) > 0).all():
        return None
    values = to_model_units(sample, conversion)
    values = values[np.isfinite(values)]
    if not values.size:
        return None
    below = float((values < 0).mean())
    if below > BELOW_ZERO_SHARE:
        return (
            f"{what}{IMPOSSIBLE_WORDS[0]}{below:.0%} of a sample, where no scene of "
            f"'{m.name}' ({m.units}) has any: a difference of two dates, or centred values, "
            "are no image of it, and the outputs will not mean much"
        )
    if not np.issubdtype(np.dtype(dtype), np.unsignedinteger):
        return None
    half = to_model_units(np.array([2.0 ** (8 * np.dtype(dtype).itemsize - 1)]), conversion)[0]
    highest = float((np.asarray(m.mean) + WRAP_STDS * np.asarray(m.std)).max())
    wrapped = float((values >= half).mean())
    if highest >= half or wrapped <= BELOW_ZERO_SHARE:
        return None
    return (
        f"{what}{IMPOSSIBLE_WORDS[1]}{np.dtype(dtype).name}'s range in {wrapped:.0%} of a "
        f"sample, far above any scene of '{m.name}' ({m.units}): a difference of two dates of "
        "unsigned integers wraps around below zero (subtract them as floats: "
        "after.astype('float32') - before), and the outputs will not mean much"
    )
