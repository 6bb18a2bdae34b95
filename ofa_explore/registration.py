"""How far one date's features lie from the other's on a shared grid: phase correlation.

Two dates that are not co-registered show every edge as change. ``phase_shift`` measures the
translation between them on tiles of both (the change calibration's sample), so ``change()``
can report it and warn before anyone reads a map of edges as a map of change.

Phase correlation (Kuglin and Hines, 1975): the normalised cross-power spectrum of two shifted
images is a pure phase ramp, whose inverse transform peaks at the shift. The spectra of all
tiles and bands are summed first, so one estimate draws on the whole sample; the peak is then
refined to a fraction of a pixel on a finer grid of the same inverse transform, evaluated only
around the peak by two small matrix products (Guizar-Sicairos, Thurman and Fienup, 2008).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

UPSAMPLE = 20  # the sub-pixel grid: 1/20 px


class Shift(NamedTuple):
    """AFTER's features lie ``rows`` px below and ``cols`` px right of BEFORE's (negative: above,
    left). ``coherence`` is the correlation peak as a share of its highest possible value (1:
    the same image shifted; unrelated images: about 1 / sqrt(pixels compared)), so a low one
    says the dates share too little for the shift to mean much."""

    rows: float
    cols: float
    coherence: float

    @property
    def pixels(self) -> float:
        return float(np.hypot(self.rows, self.cols))


def phase_shift(before: np.ndarray, after: np.ndarray, upsample: int = UPSAMPLE) -> Shift:
    """The translation of ``after`` from ``before``, both [N, h, w] (N tiles or bands of the same
    places; NaN where there is no data). Each image is centred, filled with 0 where it has no
    data and tapered by a Hann window, so the tiles' edges do not correlate."""
    if before.shape != after.shape or before.ndim != 3:
        raise ValueError(f"two [N, h, w] stacks of one shape, got {before.shape}, {after.shape}")
    n, h, w = before.shape
    window = np.outer(np.hanning(h), np.hanning(w))

    def spectrum(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        x = x - np.nanmean(x, axis=(1, 2), keepdims=True)
        return np.fft.fft2(np.nan_to_num(x) * window)

    cross = spectrum(after) * np.conj(spectrum(before))
    cross = (cross / np.maximum(np.abs(cross), 1e-12)).sum(axis=0)
    surface = np.fft.ifft2(cross).real
    peak_y, peak_x = np.unravel_index(int(np.argmax(surface)), surface.shape)
    # signed whole-pixel shift, then the inverse transform on a 1/upsample grid of +-1.5 px
    rows0 = peak_y - h if peak_y > h // 2 else peak_y
    cols0 = peak_x - w if peak_x > w // 2 else peak_x
    steps = np.arange(-1.5 * upsample, 1.5 * upsample + 1) / upsample
    ys, xs = rows0 + steps, cols0 + steps
    rows_dft = np.exp(2j * np.pi * np.outer(ys, np.fft.fftfreq(h)))
    cols_dft = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(w), xs))
    fine = (rows_dft @ cross @ cols_dft).real / (h * w)
    j, i = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return Shift(float(ys[j]), float(xs[i]), float(fine[j, i] / n))
