"""Change between two dates: ``change(before, after)`` and ``ofa change BEFORE AFTER -o OUT.tif``.

The zero-shot score, per pixel of BEFORE's grid (float32, higher = more change, in standard
deviations of the scene's own scores):

    score = z(pixels) + ANOMALY_WEIGHT * z(anomaly) + EMBEDDING_WEIGHT * z(embeddings)

* pixels: each date's bands standardised by that date's own band means and deviations (which
  removes most of the difference of season, sun and haze), the absolute difference averaged
  over the visible and shortwave-infrared bands (PIXEL_BANDS_UM, from the modality's
  wavelengths; all bands of a sensor without wavelengths, and of SAR) and over a
  PIXEL_BOX x PIXEL_BOX window, so one pixel of misregistration barely counts. The near
  infrared and red edge (0.7-1.5 µm) are left out: they mostly see the vegetation's season.
* anomaly: the same bands' anomalous change (the Gaussian detector of Theiler and Perkins,
  2006): how unlikely the pixel's two dates are together, given how likely each date is alone,
  under the scene's joint band covariance of both dates. Where the whole scene changes alike
  (a season, haze, another sensor gain), the covariance has learnt that change and it scores
  low; so it ranks what changed unlike the rest, averaged over the same window.
* embeddings: 1 - cosine of the two dates' patch embeddings from the model, each date's mean
  embedding subtracted first (raw embeddings mostly say "other season"), one value per patch,
  interpolated bilinearly to pixels (``to_pixels``).
* z(): standardised by its mean and deviation over the scene, so scores of different scenes
  and sensors mean the same.

The band statistics and covariances, the mean embeddings and z's figures come from a sample of
tiles spread over the scene (``calibrate``) before the engine runs the task tile by tile;
memory stays flat in the raster's size. Measured on the 8 labelled OSCD cities in docs/EVALUATION.md
(scripts/evaluate_change.py), where the weights below were chosen.

With a trained change head (``ofa train-head --task change``, kind "change" in the checkpoint)
band 1 is instead the head's change logit, from the same calibrated inputs plus the token maps
of a few encoder blocks (``head_inputs``), smoothed by a Gaussian of ``HEAD_SMOOTH_PX`` and
standardised over the scene like the zero-shot score.

AFTER is warped onto BEFORE's grid by GDAL (rasterio's WarpedVRT, bilinear) when its grid differs.
Dates that are not co-registered show every edge as change: the calibration's sample measures
how far AFTER's features lie from BEFORE's (``registration.phase_shift``), and from
MISREGISTERED_PX AFTER is warped again from where its features lie (``align``, the default) or
a warning says so (``result.checks["shift_pixels"]``, ``["shift_rows"]``, ``["shift_cols"]``).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
import xarray as xr
from affine import Affine
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from xarray.backends import BackendArray
from xarray.core import indexing

from .areas import masked_area_m2, polygon_areas_m2
from .engine import (
    BATCH_TOKENS,
    EngineSettings,
    PredictionResult,
    Task,
    predict_raster,
    register,
)
from .engine.sinks import check_output
from .errors import BadInput, MissingPart
from .fileio import atomic_output, check_writable
from .io import (
    CONVERSION_ATTR,
    FILL_ATTR,
    MODALITY_ATTR,
    NOTES_ATTR,
    RasterError,
    _band_order,
    _open_file,
    open_raster,
    raster_modality,
)
from .modalities import Modality
from .protocol import (
    CHANGE_HEAD_TAG,
    CHANGE_THRESHOLD_TAG,
    MISREGISTERED_PX,
    SCENE_THRESHOLDS,
    WIDESPREAD_CHANGE,
    change_threshold,
)
from .registration import Shift, phase_shift
from .scale import to_model_units

EMBEDDING_WEIGHT = 0.25  # measured with 0, 0.25, 0.5 on OSCD and Nanjing, docs/EVALUATION.md
# the anomalous-change term's weight: measured 0, 0.25, 0.5, 0.75 on the 8 OSCD cities, the
# Nanjing pair and 9 sub-scenes of it (docs/EVALUATION.md); at 0.5 pooled OSCD AP 0.195 to
# 0.213, Nanjing's margin over its best band baseline 0.013 to 0.045, sub-scenes above it 4 to 7
ANOMALY_WEIGHT = 0.5
PIXEL_BOX = 5  # pixels; tolerance to ~1 px of misregistration, measured best of 3, 5, 7
# a head's logits are smoothed by a Gaussian of this many pixels: its map is made of tokens
# every 8 px and a pixel branch, and isolated pixels of change are mostly noise; leave-one-city-
# out pooled AP through `ofa change` rose by 0.003-0.004 with each of 3 seeds (docs/EVALUATION.md;
# 2 px: as much on cached inputs, a blurrier map)
HEAD_SMOOTH_PX = 1.0
# the bands the pixel term averages (wavelengths in µm): visible and shortwave infrared, without
# the coastal-aerosol band and the water-vapour band near 1.9 µm. Each band's AP alone, on the
# 8 labelled OSCD cities and the Landsat-5 Nanjing pair: visible and SWIR rank urban change,
# near infrared and red edge (the vegetation's season) do not. Against all the bands of
# 0.4-2.5 µm at weight 0.5: above abs(B04) in 7 of the 8 OSCD cities instead of 4 (rennes,
# where abs(B04) ranks best, 0.486 instead of 0.394 against 0.465), pooled AP 0.195 both,
# Nanjing 0.800 instead of 0.817 (best band baseline 0.787); docs/EVALUATION.md
PIXEL_BANDS_UM = ((0.45, 0.70), (1.5, 2.5))
ABSORPTION_UM = ((1.8, 1.95),)
# the anomaly term reads at most this many bands of each range of PIXEL_BANDS_UM, an imaging
# spectrometer's neighbouring bands averaged: EnMAP's 129 there as 2 x 4 instead of a 258 x 258
# covariance (a 256 x 256 px pair, 1 thread: 4.0-4.3 s instead of 5.1 s); multispectral bands
# stay apart
ANOMALY_BANDS = 4
SAMPLE_TILES = 16  # tiles read and embedded to calibrate the zero-shot score
# ... and a change head's inputs and logits, in training and at prediction: leave-one-city-out
# pooled AP 0.278 / 0.285 / 0.275 (seeds 0-2) against 0.244 / 0.252 / 0.243 with 16 tiles;
# the sample is embedded in the engine's batches (_over_sample), so the peak memory stays theirs
HEAD_SAMPLE_TILES = 64
# a --tile larger than the model's image reads fewer sample tiles, about as many pixels in all,
# but at least this many, spread over the scene: 1000 px dates at --tile 512 took 3.3 GB above
# the model and 54 s before (an embed 0.2 GB, 8 s), 0.6 GB and 25 s with 4 (bench/RESULTS.md)
MIN_SAMPLE_TILES = 4
# z() divides by no less: the terms are unitless (real scenes: 0.26-1.5), while two copies of one
# date leave float noise of 1e-7 in the embedding term that z would blow up to a score of +-0.7
MIN_TERM_STD = 1e-3
CHANGE_ATTR = "change"  # the calibration, in the pair modality's ``extra``
# AFTER's offset from BEFORE (registration.phase_shift on the calibration's sample, within
# 0.16 px of a known move on the 13 pairs of the shared data): from protocol.MISREGISTERED_PX,
# change() warps AFTER onto BEFORE's features (align=True, the default), or warns that edges
# will show as change. AFTER moved 1 px off, the zero-shot default's pooled AP on the 8 OSCD
# cities fell from 0.215 to 0.187, 3 px: 0.109; aligned from 0.3 px instead of 1, 0.229 against
# 0.228 on the pairs as they are, for a slower read of AFTER through a warp (docs/EVALUATION.md)
# ... when the dates share enough detail for the offset to be believed: the phase correlation
# of unrelated images peaks at a coherence of about 0.01 on 16 tiles, real pairs 0.14-0.62
MIN_COHERENCE = 0.03


# ------------------------------------------------------------------ the two dates as one raster
class _PairArray(BackendArray):
    """BEFORE's and AFTER's bands, in model units, as one lazily read [2C, H, W] float32 array:
    a pixel that either date has no data for is NaN in every band of its date."""

    def __init__(
        self,
        before: xr.DataArray,
        after: xr.DataArray,
        vrt: WarpedVRT | None = None,
        indexes: list[int] | None = None,
    ):
        self.before, self.after = before, after
        # the WarpedVRT that AFTER is read through (open while this lives) and AFTER's bands in
        # it, in the modality's order: read directly, as rioxarray's reads of a WarpedVRT
        # window took 10-20x as long (1000 px Sentinel-2, 64 px windows: 4.0 s against 0.2 s)
        self.vrt, self.indexes = vrt, indexes
        count = before.sizes["band"]
        self.shape = (2 * count, before.sizes["y"], before.sizes["x"])
        self.dtype = np.dtype("float32")

    def __deepcopy__(self, memo) -> _PairArray:
        return self  # read-only; a WarpedVRT cannot be copied (xarray copies on every write_*)

    def __getitem__(self, key):
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.BASIC, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        bands, ys, xs = key
        dates = [_units(self._raw(da, ys, xs), da) for da in (self.before, self.after)]
        return np.concatenate(dates)[bands]

    def _raw(self, da: xr.DataArray, ys, xs) -> np.ndarray:
        if da is self.after and self.vrt is not None and isinstance(ys, slice):
            height, width = self.shape[1:]
            window = Window.from_slices(ys, xs, height=height, width=width)
            return self.vrt.read(self.indexes, window=window)
        return np.atleast_3d(da.isel(y=ys, x=xs).values)


def _units(raw: np.ndarray, da: xr.DataArray) -> np.ndarray:
    """A window's raw values in the modality's units, NaN where the pixel has no data."""
    values = to_model_units(raw, da.attrs.get(CONVERSION_ATTR, {"kind": "none"}))
    bad = ~np.isfinite(values).all(axis=0)
    nodata = da.rio.nodata
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        bad |= (raw == nodata).any(axis=0)
    fill = da.attrs.get(FILL_ATTR)
    if fill is not None:
        bad |= (raw == fill).all(axis=0)
    values = values.astype(np.float32)
    values[:, bad] = np.nan
    return values


def open_pair(
    before: str | Path,
    after: str | Path,
    modality: str | Modality | None = None,
    offset: tuple[float, float] | None = None,
) -> xr.DataArray:
    """The two dates as one lazy DataArray on BEFORE's grid, ready for the "change" task. AFTER
    on another grid or CRS is warped by GDAL; a raster of another sensor or band set, or one
    that does not overlap, or the same file twice, is a one-line BadInput.
    ``offset``: (rows, cols) of BEFORE's pixels by which AFTER's features lie off BEFORE's
    (``registration.phase_shift``); AFTER is then warped from there, onto BEFORE's features."""
    return pair_of(*open_dates(before, after, modality), Path(after), offset)


def open_dates(
    before: str | Path, after: str | Path, modality: str | Modality | None = None
) -> tuple[xr.DataArray, xr.DataArray]:
    """Both dates opened (``open_raster``), checked to be two rasters of one sensor and bands."""
    if Path(before).resolve() == Path(after).resolve():
        raise BadInput(
            f"BEFORE and AFTER are the same file, {Path(before).name}",
            "give the later date of the same place as AFTER",
        )
    first = open_raster(before, modality)
    m = raster_modality(first)
    try:
        second = open_raster(after, modality or m)
    except RasterError as err:
        if modality is not None or "bands" not in err.context:
            raise
        raise BadInput(
            f"BEFORE is {m.name} ({m.num_bands} bands) but AFTER has {err.context['bands']} "
            "bands: the two dates must come from the same sensor and bands",
            "give two rasters with the same bands",
        ) from None
    m2 = raster_modality(second)
    if (m.name, m.bands) != (m2.name, m2.bands):
        raise BadInput(
            f"BEFORE is {m.name} ({m.num_bands} bands) but AFTER is {m2.name} "
            f"({m2.num_bands} bands): the two dates must come from the same sensor and bands",
            "give two rasters with the same bands",
        )
    return first, second


def pair_of(
    first: xr.DataArray,
    second: xr.DataArray,
    after: Path,
    offset: tuple[float, float] | None = None,
) -> xr.DataArray:
    """The pair of two opened dates (``open_pair``); ``after``: AFTER's file, for a warp."""
    m = raster_modality(first)
    vrt, indexes = None, None
    if offset is not None or not _same_grid(first, second):
        second, vrt, indexes = _warped(after, first, second, m, offset)
    # the pair: NaN marks nodata, values are in model units
    pair_modality = replace(
        m,
        bands=tuple(f"before_{b}" for b in m.bands) + tuple(f"after_{b}" for b in m.bands),
        wavelengths=m.wavelengths * 2,
        mean=m.mean * 2,
        std=m.std * 2,
        nodata=None,
    )
    lazy = indexing.LazilyIndexedArray(_PairArray(first, second, vrt, indexes))
    da = xr.DataArray(
        xr.Variable(("band", "y", "x"), lazy),
        coords={"band": list(pair_modality.bands), "y": first.y, "x": first.x},
    )
    da = da.rio.write_transform(first.rio.transform())
    if first.rio.crs is not None:
        da = da.rio.write_crs(first.rio.crs)
    da.attrs[MODALITY_ATTR] = pair_modality.to_dict()
    da.attrs[CONVERSION_ATTR] = {"kind": "none"}
    da.attrs[NOTES_ATTR] = [f"BEFORE: {n}" for n in first.attrs.get(NOTES_ATTR, [])] + [
        f"AFTER: {n}" for n in second.attrs.get(NOTES_ATTR, [])
    ]
    da.attrs["source"] = [first.attrs.get("source", ""), str(after)]
    return da


def _same_grid(a: xr.DataArray, b: xr.DataArray) -> bool:
    return (
        a.rio.crs == b.rio.crs
        and a.rio.shape == b.rio.shape
        and a.rio.transform().almost_equals(b.rio.transform())
    )


def _warped(
    path: Path,
    first: xr.DataArray,
    second: xr.DataArray,
    m: Modality,
    offset: tuple[float, float] | None = None,
) -> tuple[xr.DataArray, WarpedVRT, list[int]]:
    """AFTER warped onto BEFORE's grid (bilinear, GDAL), lazily, with AFTER's band order,
    nodata and units, the VRT and AFTER's bands in it (1-based, the modality's order); refused
    when the two do not overlap. With an ``offset`` (rows, cols), each pixel of BEFORE's grid
    reads AFTER that far away, where AFTER has its features."""
    if first.rio.crs is None or second.rio.crs is None:
        raise BadInput(
            "BEFORE and AFTER lie on different grids and one has no CRS, so AFTER cannot be "
            "placed on BEFORE's grid",
            "give both rasters a CRS, or the same grid",
        )
    left, bottom, right, top = transform_bounds(second.rio.crs, first.rio.crs, *second.rio.bounds())
    l1, b1, r1, t1 = first.rio.bounds()
    if left >= r1 or right <= l1 or bottom >= t1 or top <= b1:
        raise BadInput(
            f"BEFORE ({l1:.6g}, {b1:.6g}, {r1:.6g}, {t1:.6g}) and AFTER ({left:.6g}, "
            f"{bottom:.6g}, {right:.6g}, {top:.6g}, in BEFORE's CRS) do not overlap",
            "give two rasters of the same place",
        )
    src = rasterio.open(path)
    nodata = second.rio.nodata
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        nodata = second.attrs.get(FILL_ATTR, 0 if np.dtype(second.dtype).kind in "iu" else np.nan)
    rows, cols = offset or (0.0, 0.0)
    vrt = WarpedVRT(
        src,
        crs=first.rio.crs,
        transform=first.rio.transform() * Affine.translation(cols, rows),
        width=first.sizes["x"],
        height=first.sizes["y"],
        resampling=Resampling.bilinear,
        nodata=nodata,
    )
    raw = _open_file(vrt)  # rioxarray reads a WarpedVRT lazily
    order = _band_order(raw, m)
    warped = raw if order is None else raw.isel(band=order)
    indexes = [int(i) + 1 for i in (range(raw.sizes["band"]) if order is None else order)]
    warped = warped.rio.write_nodata(nodata, encoded=False)
    warped.attrs.update({k: v for k, v in second.attrs.items() if k != FILL_ATTR})
    warped.attrs[NOTES_ATTR] = second.attrs.get(NOTES_ATTR, []) + (
        [] if _same_grid(first, second) else ["warped onto BEFORE's grid (GDAL, bilinear)"]
    )  # a move onto BEFORE's features is the change task's note
    return warped, vrt, indexes


# ------------------------------------------------------------------ the score's two terms
def pixel_bands(m: Modality) -> list[int]:
    """Indices of the bands within PIXEL_BANDS_UM outside ABSORPTION_UM; all bands of SAR, or
    when no band is there."""
    picked = [
        i
        for i, w in enumerate(m.wavelengths)
        if any(low <= w <= high for low, high in PIXEL_BANDS_UM)
        and not any(a < w < b for a, b in ABSORPTION_UM)
    ]
    return picked if picked and m.kind != "sar" else list(range(m.num_bands))


def anomaly_bands(m: Modality) -> list[list[int]]:
    """The bands the anomaly term reads: ``pixel_bands`` as groups averaged together, at most
    ANOMALY_BANDS neighbours in wavelength per range of PIXEL_BANDS_UM (of SAR, and of a sensor
    without bands there, at most ANOMALY_BANDS of all its bands)."""
    bands = pixel_bands(m)
    ranges = [
        sorted((i for i in bands if low <= m.wavelengths[i] <= high), key=m.wavelengths.__getitem__)
        for low, high in PIXEL_BANDS_UM
    ]
    if m.kind == "sar" or not any(ranges):
        ranges = [bands]
    return [
        [int(i) for i in group]
        for indices in ranges
        if indices
        for group in np.array_split(indices, min(len(indices), ANOMALY_BANDS))
    ]


def _grouped(x: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """[N, C, H, W] -> [N, G, H, W]: each group's bands averaged."""
    weights = torch.zeros(len(groups), x.shape[1], dtype=x.dtype, device=x.device)
    for g, group in enumerate(groups):
        weights[g, group] = 1 / len(group)
    return torch.einsum("gc,nchw->nghw", weights, x)


def pixel_term(before: torch.Tensor, after: torch.Tensor, stats: dict[str, Any]) -> torch.Tensor:
    """[N, C, H, W] twice -> [N, H, W]: the mean absolute difference of the dates' own
    standardised bands of ``pixel_bands``, averaged over a PIXEL_BOX window."""
    bands = stats["pixel_bands"]

    def standard(x: torch.Tensor, date: str) -> torch.Tensor:
        mean = torch.tensor(stats[f"{date}_mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(stats[f"{date}_std"], dtype=x.dtype, device=x.device)
        return (x[:, bands] - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    diff = (standard(after, "after") - standard(before, "before")).abs().mean(1, keepdim=True)
    return _box(diff)[:, 0]


def _box(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] averaged over a PIXEL_BOX window (edges replicated): one pixel of
    misregistration barely counts."""
    pad = PIXEL_BOX // 2
    return F.avg_pool2d(F.pad(x, (pad,) * 4, mode="replicate"), PIXEL_BOX, 1)


def _gaussian(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """[N, C, H, W] smoothed by a Gaussian of ``sigma`` px (3 sigma each way, edges mirrored;
    a tile's edges count little where tiles blend)."""
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).repeat(x.shape[1], 1, 1, 1)  # [C, 1, 1, K], per channel
    x = F.pad(x, (radius,) * 4, mode="reflect")
    x = F.conv2d(x, kernel, groups=x.shape[1])
    return F.conv2d(x, kernel.transpose(2, 3), groups=x.shape[1])


def anomaly_term(before: torch.Tensor, after: torch.Tensor, stats: dict[str, Any]) -> torch.Tensor:
    """[N, C, H, W] twice -> [N, H, W]: the Gaussian anomalous change of ``anomaly_bands``,
    sqrt(max(0, z'(S^-1 - diag(Sb^-1, Sa^-1))z)) for z the pixel's bands of both dates less their
    means (S: their joint covariance, Sb and Sa each date's; ``anomaly_matrix`` holds the
    difference of inverses), averaged over a PIXEL_BOX window like the pixel term."""
    groups = stats["anomaly_bands"]

    def centred(x: torch.Tensor, date: str) -> torch.Tensor:
        mean = torch.tensor(stats[f"{date}_anomaly_mean"], dtype=x.dtype, device=x.device)
        return _grouped(x, groups) - mean.view(1, -1, 1, 1)

    z = torch.cat([centred(before, "before"), centred(after, "after")], dim=1)
    q = torch.tensor(stats["anomaly_matrix"], dtype=z.dtype, device=z.device)
    flat = z.flatten(2)  # [N, 2C', H*W]
    with torch.autocast(z.device.type, enabled=False):  # float32: within 1e-4 of float64 on
        quadratic = ((q @ flat) * flat).sum(1)  # OSCD and Nanjing; half precision is not
    return _box(quadratic.clamp(min=0).sqrt().view_as(z[:, :1]))[:, 0]


def anomaly_matrix(before: np.ndarray, after: np.ndarray) -> list[list[float]]:
    """The quadratic form of ``anomaly_term`` from two dates' sample pixels ([C, pixels] each):
    the inverse of their joint covariance less each date's own (Theiler and Perkins 2006),
    with a ridge of 1e-6 of the mean variance so a constant band does not break it."""

    def inverse(x: np.ndarray) -> np.ndarray:
        cov = np.atleast_2d(np.cov(x))
        ridge = 1e-6 * max(float(np.trace(cov)) / len(cov), 1e-12)
        return np.linalg.inv(cov + ridge * np.eye(len(cov)))

    b, a = before.astype(np.float64), after.astype(np.float64)
    k = len(b)
    q = inverse(np.concatenate([b, a]))
    q[:k, :k] -= inverse(b)
    q[k:, k:] -= inverse(a)
    return q.tolist()


def residual_fit(before: np.ndarray, after: np.ndarray) -> tuple[list[list[float]], list[float]]:
    """AFTER's bands predicted from BEFORE's by least squares over a sample ([C, pixels] each,
    standardised per date): the coefficients [C + 1, C] (the last row the offsets) and each
    band's residual deviation, for ``after_residuals``."""
    x = np.vstack([before, np.ones((1, before.shape[1]))]).astype(np.float64)
    y = after.astype(np.float64)
    gram = x @ x.T
    ridge = 1e-6 * float(np.trace(gram)) / len(gram)  # a constant band does not break it
    coef = np.linalg.solve(gram + ridge * np.eye(len(gram)), x @ y.T)
    spread = (y - coef.T @ x).std(axis=1)
    return coef.tolist(), np.maximum(spread, MIN_TERM_STD).tolist()


def after_residuals(zb: torch.Tensor, za: torch.Tensor, stats: dict[str, Any]) -> torch.Tensor:
    """[N, C, H, W] twice (each date's standardised bands) -> [N, C, H, W]: each band of AFTER
    less its prediction from all of BEFORE's (``residual_fit``), in residual deviations,
    absolute, averaged over a PIXEL_BOX window. A change the whole scene shares (the season,
    the light) is close to a linear map of the bands and costs little here, where the plain
    difference counts it everywhere (the change head reads these instead: docs/EVALUATION.md)."""
    with torch.autocast(za.device.type, enabled=False):  # float32, like the anomaly term
        coef = torch.tensor(stats["residual_matrix"], dtype=torch.float32, device=za.device)
        spread = torch.tensor(stats["residual_std"], dtype=torch.float32, device=za.device)
        predicted = torch.einsum("ck,nchw->nkhw", coef[:-1], zb.float())
        residual = za.float() - predicted - coef[-1].view(1, -1, 1, 1)
        return _box(residual.abs() / spread.view(1, -1, 1, 1))


def embedding_term(
    model, before: torch.Tensor, after: torch.Tensor, m: Modality, stats: dict[str, Any] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1 - cosine of the dates' patch embeddings, each date's mean embedding (``stats``)
    subtracted: [N, h, w] per patch, with the raw tokens of each date ([N, L, D]) for
    calibration."""
    n, _, height, width = before.shape
    # one date per pass: the engine's batch of tokens, not twice it (bench/RESULTS.md: 5% faster)
    tb, ta = (model.forward_features(x, m)[:, 1:].float() for x in (before, after))
    p = model.config.patch_size
    return token_distance(tb, ta, stats).reshape(n, height // p, width // p), tb, ta


def token_distance(
    tb: torch.Tensor, ta: torch.Tensor, stats: dict[str, Any] | None
) -> torch.Tensor:
    """1 - cosine of two dates' tokens [N, L, D] -> [N, L], each date's mean embedding
    (``stats``, when given) subtracted first."""
    if stats is not None:
        tb = tb - torch.tensor(stats["before_embedding"], device=tb.device)
        ta = ta - torch.tensor(stats["after_embedding"], device=ta.device)
    return 1 - F.cosine_similarity(tb, ta, dim=-1, eps=1e-6)


def to_pixels(term: torch.Tensor, patch: int) -> torch.Tensor:
    """A per-patch term [N, h, w] at pixel resolution [N, h * patch, w * patch], bilinear:
    nearest upsampling drew each 8 px patch as a square on the map (and ranked change no
    better: pooled AP of the zero-shot score 0.213 nearest, 0.215 bilinear; docs/EVALUATION.md)."""
    up = F.interpolate(term[:, None].float(), scale_factor=patch, mode="bilinear")
    return up[:, 0]


def combine(
    pixels: torch.Tensor, anomalies: torch.Tensor, embeddings: torch.Tensor, stats: dict[str, Any]
) -> torch.Tensor:
    """The score: z(pixels) + ANOMALY_WEIGHT * z(anomalies) + EMBEDDING_WEIGHT *
    z(embeddings, upsampled to pixels)."""
    up = to_pixels(embeddings, pixels.shape[-1] // embeddings.shape[-1])
    z_pix = (pixels - stats["pixel_mean"]) / stats["pixel_std"]
    z_anomaly = (anomalies - stats["anomaly_mean"]) / stats["anomaly_std"]
    z_emb = (up - stats["embedding_mean"]) / stats["embedding_std"]
    return z_pix + ANOMALY_WEIGHT * z_anomaly + EMBEDDING_WEIGHT * z_emb


def head_inputs(
    model, before: torch.Tensor, after: torch.Tensor, m: Modality, stats: dict, layers: list[int]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """What a ChangeHead reads of two dates [N, C, H, W] (model units, calibrated ``stats``):
    per block of ``layers``, |before - after| and the mean of the token maps; and the image of
    both dates' bands standardised per date, AFTER's residuals from BEFORE
    (``after_residuals``) and the zero-shot score's three terms, z-scored ([N, 3C + 3, H, W],
    ``heads.CHANGE_IMAGE``)."""
    from .inputs import prepare

    n = before.shape[0]
    last = model.config.depth - 1
    wanted = sorted(set(layers) | {last})
    xn, m = prepare(torch.cat([before, after]), m, model.modalities, model.config.patch_size)
    mb, ma = (dict(zip(wanted, model.forward_intermediates(x, m, wanted))) for x in xn.split(n))
    levels = []
    for layer in layers:
        tb, ta = mb[layer].float(), ma[layer].float()
        levels += [(tb - ta).abs(), (tb + ta) / 2]
    tb, ta = mb[last].float(), ma[last].float()  # one date per pass, as embedding_term
    tb = tb - torch.tensor(stats["before_embedding"], device=tb.device).view(1, -1, 1, 1)
    ta = ta - torch.tensor(stats["after_embedding"], device=ta.device).view(1, -1, 1, 1)
    distance = 1 - F.cosine_similarity(tb, ta, dim=1, eps=1e-6)
    pixels = pixel_term(before.float(), after.float(), stats)
    up = to_pixels(distance, pixels.shape[-1] // distance.shape[-1])
    z_pix = (pixels - stats["pixel_mean"]) / stats["pixel_std"]
    z_emb = (up - stats["embedding_mean"]) / stats["embedding_std"]

    def standard(x: torch.Tensor, date: str) -> torch.Tensor:
        mean = torch.tensor(stats[f"{date}_band_mean"], dtype=x.dtype, device=x.device)
        std = torch.tensor(stats[f"{date}_band_std"], dtype=x.dtype, device=x.device)
        return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)

    zb, za = standard(before.float(), "before"), standard(after.float(), "after")
    anomalies = anomaly_term(before.float(), after.float(), stats)
    z_anomaly = (anomalies - stats["anomaly_mean"]) / stats["anomaly_std"]
    terms = [z_pix[:, None], z_emb[:, None], z_anomaly[:, None]]
    image = torch.cat([zb, za, after_residuals(zb, za, stats), *terms], dim=1)
    return levels, image


def score(
    model, before: torch.Tensor, after: torch.Tensor, m: Modality, stats: dict
) -> torch.Tensor:
    """Band 1 of the output for two dates [N, C, H, W] -> [N, H, W]: the zero-shot score, or
    when ``stats`` names a head, its change logit standardised over the scene (z, like the
    zero-shot score: a probability's scale differs from city to city, and pooled over the OSCD
    cities z(logit) ranked change better, AP 0.24 against 0.18; docs/EVALUATION.md)."""
    name = stats.get("head")
    if name is not None:
        head = model.heads[name]
        levels, image = head_inputs(
            model, before, after, m, stats, model.heads.info[name]["layers"]
        )
        with torch.autocast(image.device.type, enabled=False):
            logits = _gaussian(head([v.float() for v in levels], image.float()), HEAD_SMOOTH_PX)
        return (logits[:, 0] - stats.get("head_mean", 0.0)) / stats.get("head_std", 1.0)
    pixels = pixel_term(before.float(), after.float(), stats)
    anomalies = anomaly_term(before.float(), after.float(), stats)
    embeddings, _, _ = embedding_term(model, before, after, m, stats)
    return combine(pixels, anomalies, embeddings.float(), stats)


# ------------------------------------------------------------------ calibration on a sample
def calibrate(
    model,
    pair: xr.DataArray,
    tile: int,
    threshold: float | str | None,
    head: str | None = None,
    samples: int | None = None,
    sample: np.ndarray | None = None,
) -> dict:
    """The figures the score needs, from up to ``samples`` tiles spread over the scene
    (default: HEAD_SAMPLE_TILES for a head, else SAMPLE_TILES; fewer when ``tile`` is larger
    than the model's image, about as many pixels): each date's band means and deviations,
    the dates' band covariances, AFTER's least-squares fit from BEFORE (``residual_fit``, for a
    change head's image; a 14 x 13 solve for Sentinel-2, so the zero-shot score computes it
    too rather than keep two calibrations), each date's mean embedding, the three terms' means
    and deviations, and the mask's threshold: ``"auto"`` the measured default of the score
    (``protocol.CHANGE_THRESHOLDS``), ``"otsu"`` Otsu's threshold of the sample's scores.
    ``head``: the change head that scores (None: the zero-shot score). ``sample``: the pair's
    ``sample_tiles``, when already read."""
    pm = raster_modality(pair)
    count = pm.num_bands // 2
    m = _date_modality(pm)
    p = model.config.patch_size
    x = sample_tiles(model, pair, tile, head, samples) if sample is None else sample
    th, tw = x.shape[-2:]
    valid = np.isfinite(x).all(axis=1)  # [T, th, tw]
    if valid.sum() < 16:
        raise RasterError(
            "BEFORE and AFTER have almost no pixel with data in both dates where they were "
            "sampled (one date is nodata there, or they barely overlap)",
            "give two rasters of the same place with data in both",
        )
    values = x.transpose(1, 0, 2, 3)[:, valid]  # [2C, pixels]
    mean, std = values.mean(axis=1), values.std(axis=1)
    std = np.where(std > 0, std, 1.0)
    bands = pixel_bands(m)
    groups = anomaly_bands(m)
    grouped = [  # each date's sample pixels in the anomaly term's bands, [G, pixels]
        np.stack([date[g].mean(axis=0) for g in groups])
        for date in (values[:count], values[count:])
    ]
    stats: dict[str, Any] = {
        "pixel_bands": bands,
        "before_mean": mean[:count][bands].tolist(),
        "before_std": std[:count][bands].tolist(),
        "after_mean": mean[count:][bands].tolist(),
        "after_std": std[count:][bands].tolist(),
        "before_band_mean": mean[:count].tolist(),
        "before_band_std": std[:count].tolist(),
        "after_band_mean": mean[count:].tolist(),
        "after_band_std": std[count:].tolist(),
        "anomaly_bands": groups,
        "before_anomaly_mean": grouped[0].mean(axis=1).tolist(),
        "after_anomaly_mean": grouped[1].mean(axis=1).tolist(),
        "anomaly_matrix": anomaly_matrix(*grouped),
        "head": head,
    }
    standardised = (values - mean[:, None]) / std[:, None]
    fit = residual_fit(standardised[:count], standardised[count:])
    stats["residual_matrix"], stats["residual_std"] = fit
    filled = np.where(np.isfinite(x), x, mean[None, :, None, None]).astype(np.float32)
    t = torch.from_numpy(filled)
    with torch.inference_mode():
        pixels = pixel_term(t[:, :count], t[:, count:], stats).numpy()
        anomalies = anomaly_term(t[:, :count], t[:, count:], stats).numpy()
        tb, ta = _over_sample(
            lambda b, a: torch.stack(embedding_term(model, b, a, m, None)[1:]),
            t,
            count,
            p,
            dim=1,
        )
        patch_valid = torch.from_numpy(valid).float()
        patch_valid = F.avg_pool2d(patch_valid[:, None], p)[:, 0].flatten(1) > 0.5  # [T, L]
        stats["before_embedding"] = tb[patch_valid].mean(0).tolist()
        stats["after_embedding"] = ta[patch_valid].mean(0).tolist()
        emb = token_distance(tb, ta, stats).reshape(len(t), th // p, tw // p)
    up = to_pixels(emb, p).numpy()
    for name, term in (("pixel", pixels), ("anomaly", anomalies), ("embedding", up)):
        stats[f"{name}_mean"] = float(term[valid].mean())
        stats[f"{name}_std"] = max(float(term[valid].std()), MIN_TERM_STD)
    if head is not None or threshold == "otsu":  # the sample's scores, computed once
        with torch.inference_mode():
            sample = _over_sample(lambda b, a: score(model, b, a, m, stats), t, count, p)
        sample = sample.float().numpy()  # a head's raw logits: no head_mean in stats yet
        if head is not None:
            stats["head_mean"] = float(sample[valid].mean())
            stats["head_std"] = float(sample[valid].std()) or 1.0
            sample = (sample - stats["head_mean"]) / stats["head_std"]
    if threshold == "otsu":
        stats["threshold"] = otsu(sample[valid])
    elif threshold == "auto":
        stats["threshold"] = change_threshold(head is not None)
    elif threshold is not None:
        stats["threshold"] = float(threshold)
    if threshold is not None:  # how it was chosen, for the advice on a too wide mask
        stats["threshold_from"] = threshold if threshold in SCENE_THRESHOLDS else "value"
    return stats


def sample_tiles(
    model, pair: xr.DataArray, tile: int, head: str | None = None, samples: int | None = None
) -> np.ndarray:
    """Up to ``samples`` tiles of ``tile`` px spread over the pair [T, 2C, h, w] (default:
    HEAD_SAMPLE_TILES for a head, else SAMPLE_TILES; fewer when ``tile`` is larger than the
    model's image, about as many pixels, but at least MIN_SAMPLE_TILES)."""
    samples = samples or (HEAD_SAMPLE_TILES if head is not None else SAMPLE_TILES)
    H, W = pair.sizes["y"], pair.sizes["x"]
    p = model.config.patch_size
    th, tw = min(tile, H // p * p), min(tile, W // p * p)
    image = model.config.img_size**2
    samples = min(samples, max(MIN_SAMPLE_TILES, round(samples * image / (th * tw))))
    side = max(1, math.isqrt(samples))
    ys = np.unique(np.linspace(0, H - th, side).round().astype(int))
    xs = np.unique(np.linspace(0, W - tw, side).round().astype(int))
    return np.stack(
        [pair.isel(y=slice(y, y + th), x=slice(x, x + tw)).values for y in ys for x in xs]
    )


def date_shift(x: np.ndarray, m: Modality) -> Shift | None:
    """AFTER's offset from BEFORE (``registration.phase_shift``) over the sample's tiles ``x``
    [T, 2C, h, w] that have data in both dates over at least half their pixels, in the anomaly
    term's band groups (``m``: one date's modality); None when no tile does."""
    count, groups = m.num_bands, anomaly_bands(m)
    full = np.isfinite(x).all(axis=1).mean(axis=(1, 2)) >= 0.5
    if not full.any():
        return None

    def stack(date: np.ndarray) -> np.ndarray:  # [T * G, h, w]
        return np.concatenate([date[full][:, g].mean(axis=1) for g in groups])

    return phase_shift(stack(x[:, :count]), stack(x[:, count:]))


def _over_sample(fn, t: torch.Tensor, count: int, patch: int, dim: int = 0) -> torch.Tensor:
    """``fn(before, after)`` over the sample ``t`` ([T, 2C, h, w], dates of ``count`` bands),
    the engine's BATCH_TOKENS tokens of both dates at a time (16 tiles of the model's size),
    so a larger sample or tile costs no more peak memory than the engine's batches."""
    tokens = 2 * (t.shape[-2] // patch) * (t.shape[-1] // patch)
    chunks = t.split(max(1, BATCH_TOKENS // tokens))
    return torch.cat([fn(c[:, :count], c[:, count:]) for c in chunks], dim=dim)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that best splits ``values`` into two classes (Otsu 1979)."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(counts)
    w1 = w0[-1] - w0
    m0 = np.cumsum(counts * centres) / np.maximum(w0, 1)
    m1 = (np.sum(counts * centres) - np.cumsum(counts * centres)) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between[:-1])) + 1])


def _date_modality(pair: Modality) -> Modality:
    count = pair.num_bands // 2
    return replace(
        pair,
        bands=tuple(b.removeprefix("before_") for b in pair.bands[:count]),
        wavelengths=pair.wavelengths[:count],
        mean=pair.mean[:count],
        std=pair.std[:count],
        extra={k: v for k, v in pair.extra.items() if k != CHANGE_ATTR},
    )


# ------------------------------------------------------------------ the engine's task
@register
class Change(Task):
    """The zero-shot change score of two dates (the pair from ``open_pair``, calibrated by
    ``calibrate``), per pixel; band 2 is the 0/1 mask when a threshold was given."""

    name = "change"

    def __init__(self, model, modality: Modality, settings: EngineSettings):
        if CHANGE_ATTR not in modality.extra:
            raise BadInput(
                "the change task runs on two dates calibrated by ofa_explore.change()",
                "call ofa_explore.change(before, after)",
            )
        self.stats = modality.extra[CHANGE_ATTR]
        self.date = _date_modality(modality)
        super().__init__(model, self.date, settings)
        self.threshold = self.stats.get("threshold")

    @property
    def per_pixel(self) -> bool:
        return True

    @property
    def blend(self) -> bool:
        """A head's score blends tiles: its token maps see only their tile, and the cropped
        centres showed as squares on the map (the zero-shot score keeps them: its cost goal)."""
        return self.stats.get("head") is not None

    def bands(self) -> list[str]:
        return ["change_score"] + (["change_mask"] if self.threshold is not None else [])

    def forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        count = self.date.num_bands
        before, after = x[:, :count], x[:, count:]
        return score(self.model, before, after, self.date, self.stats)[:, None].cpu().numpy()

    def cells(self, block: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            return block
        return np.concatenate([block, (block >= self.threshold).astype(block.dtype)])

    def start(self, grid) -> None:
        super().start(grid)
        self.counts = np.zeros(2, dtype=np.int64)  # valid pixels, changed pixels
        self.changed_m2 = 0.0

    def observe(self, block: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        changed = block[1] > 0.5 if self.threshold is not None else np.zeros_like(valid)
        changed &= valid
        self.counts += (int(valid.sum()), int(changed.sum()))
        if self.grid.row_m2 is not None:  # a pixel's area differs by row in degrees
            self.changed_m2 += masked_area_m2(changed, self.grid.row_m2[row : row + len(changed)])

    def tags(self) -> dict[str, str]:
        head = self.stats.get("head")
        tags = {
            "ofa_change_score": f"z(change logit of head {head!r}, Gaussian {HEAD_SMOOTH_PX:g} px)"
            if head is not None
            else f"z(pixels) + {ANOMALY_WEIGHT:g} * z(anomaly) + "
            f"{EMBEDDING_WEIGHT:g} * z(embeddings)"
        }
        if head is not None:  # the score's kind, for a style that fits it
            tags[CHANGE_HEAD_TAG] = head
        if self.threshold is not None:
            tags[CHANGE_THRESHOLD_TAG] = f"{self.threshold:.6g}"
        if self.stats.get("aligned") is not None:  # the file says AFTER was moved, and how
            rows, cols = self.stats["aligned"]
            tags["ofa_after_aligned"] = (
                f"AFTER read {rows:+.2f} rows, {cols:+.2f} columns off its georeferencing, "
                "where its features lie (phase correlation)"
            )
        return tags

    def finish(self, sink, path: Path | None) -> dict[str, Any]:
        pixels, changed = (int(v) for v in self.counts)
        checks: dict[str, float] = {"valid_pixels": pixels}
        notes, cautions = [], []
        if self.stats.get("shift") is not None:
            shift = Shift(*self.stats["shift"])
            checks.update(
                shift_rows=shift.rows,
                shift_cols=shift.cols,
                shift_pixels=shift.pixels,
                shift_coherence=shift.coherence,
            )
            said = misregistration(shift, self.grid.transform, self.stats)
            if self.stats.get("aligned") is not None:
                rows, cols = self.stats["aligned"]
                checks.update(aligned_rows=rows, aligned_cols=cols)
                moved = Shift(-rows, -cols, shift.coherence)
                said = (
                    f"AFTER was moved {moved.pixels:.1f} px onto BEFORE's features "
                    f"({directions(moved, self.grid.transform)}; GDAL, bilinear); then {said}"
                )
            (cautions if shift_matters(shift) else notes).append(said)
        if self.threshold is not None:
            share = changed / max(pixels, 1)
            checks.update(threshold=self.threshold, changed_pixels=changed, changed_share=share)
            area = f"{changed} px"
            if self.grid.row_m2 is not None:
                hectares = self.changed_m2 / 1e4
                checks["changed_hectares"] = hectares
                area = f"{hectares:.2f} ha ({changed} px)"
            notes.append(
                f"changed: {area}, {share:.2%} of the pixels with data in both dates "
                f"(score >= {self.threshold:.3g})"
            )
            if share >= WIDESPREAD_CHANGE:
                head = self.stats.get("head") is not None
                otsu = self.stats.get("threshold_from") == "otsu"
                cautions.append(widespread(share, self.threshold, head, otsu))
        return {
            "checks": checks,
            "notes": notes,
            "warnings": cautions,
            "head": self.stats.get("head"),
        }


def widespread(share: float, threshold: float, head: bool, otsu: bool = False) -> str:
    """The warning for a mask that marks WIDESPREAD_CHANGE or more of the scene at
    ``threshold`` (of a trained ``head``'s score, or the zero-shot score's; ``otsu``: Otsu's
    split chose it), with the threshold to try instead."""
    why = (
        "Otsu's split looks for two classes of some size, and marks far more than changed "
        "where change is a small part of the scene"
        if otsu
        else f"the threshold {threshold:.3g} is low for this score"
    )
    return (
        f"the mask marks {share:.0%} of the scene as changed; change between two dates is "
        f"rarely that wide (0.7-3.8% of each labelled OSCD city): {why}. Use a threshold of "
        f"{change_threshold(head):g} (the measured default, 'auto') or higher, unless most of "
        "the place did change"
    )


def shift_matters(shift: Shift) -> bool:
    """Whether AFTER's measured offset from BEFORE is large enough to show edges as change
    (MISREGISTERED_PX) and measured on enough shared detail to be believed (MIN_COHERENCE)."""
    return shift.pixels >= MISREGISTERED_PX and shift.coherence >= MIN_COHERENCE


def directions(shift: Shift, transform) -> str:
    """A shift in compass directions on a north-up grid ("1.4 px south, 0.4 px east"), else
    in rows and columns."""
    if transform is not None and transform.b == 0 and transform.d == 0 and transform.e < 0:
        return (
            f"{abs(shift.rows):.1f} px {'south' if shift.rows > 0 else 'north'}, "
            f"{abs(shift.cols):.1f} px {'east' if shift.cols > 0 else 'west'}"
        )
    return f"{shift.rows:+.1f} rows, {shift.cols:+.1f} columns"


def misregistration(shift: Shift, transform, stats: dict) -> str:
    """What the dates' measured offset means, in words (compass directions on a north-up grid,
    else rows and columns), and what to do when it matters: left by alignment (another
    distortion than a move), or alignment was off (``stats["align"]``)."""
    if shift.coherence < MIN_COHERENCE:
        return (
            "the dates' offset could not be measured: they share too little detail "
            f"(phase correlation, coherence {shift.coherence:.2f})"
        )
    if not shift_matters(shift):
        return f"the dates line up within {shift.pixels:.1f} px (phase correlation)"
    if stats.get("aligned") is not None:
        fix = (
            "AFTER was moved onto BEFORE's features, yet the dates still differ by more than a "
            "move (a rotation, scale or terrain?): co-register AFTER onto BEFORE (e.g. with "
            "AROSICS, or GDAL and ground control points) and run again"
        )
    elif not stats.get("align", True):
        fix = "leave alignment on (the default), or co-register AFTER onto BEFORE and run again"
    else:  # no CRS to warp in
        fix = (
            "give both dates a CRS so AFTER can be moved onto BEFORE's features, or co-register "
            "them"
        )
    return (
        f"AFTER's features lie {shift.pixels:.1f} px from BEFORE's ({directions(shift, transform)}"
        f"; phase correlation): from {MISREGISTERED_PX:g} px, edges show as change. "
        + fix[:1].upper()
        + fix[1:]
    )


# ------------------------------------------------------------------ the public function
def change(
    before: str | Path,
    after: str | Path,
    output: str | Path | None = None,
    *,
    model=None,  # an OFANet, a function that loads one, or None: the shipped model
    threshold: float | str | None = None,
    polygons: str | Path | None = None,
    head: str | None = None,
    modality: str | Modality | None = None,
    settings: EngineSettings | None = None,
    overwrite: bool = False,
    align: bool = True,
    progress=None,
    cancel=None,
) -> PredictionResult:
    """The change between two dates on BEFORE's grid: ``result.data`` (in memory, a
    georeferenced DataArray) or ``output`` (a COG): band 1 the zero-shot score (see the
    module's docstring), band 2 a 0/1 mask when ``threshold`` is given: a score, "auto" (3 for
    the zero-shot score, 2.5 for a head's: ``protocol.CHANGE_THRESHOLDS``) or "otsu" (Otsu's
    split of the scene's scores, which marks far more than changed on the OSCD cities).
    ``polygons`` (a .gpkg, needs a threshold) gets the changed areas as polygons.

    ``head``: the model's change head that scores (band 1 is then its standardised logit); by
    default its first change head for the sensor, if it has one; ``"zero-shot"``: none.

    ``align``: AFTER whose features lie MISREGISTERED_PX or more off BEFORE's (measured by phase
    correlation, ``result.checks["shift_pixels"]``) is warped onto them before scoring; False
    reads AFTER as its georeferencing puts it and warns instead."""
    from .pretrained import load_model

    if threshold not in (None, *SCENE_THRESHOLDS) and not isinstance(threshold, (int, float)):
        raise BadInput(f"threshold {threshold!r}", "give {threshold} a number, 'auto' or 'otsu'")
    check_output(output, [str(before), str(after)], overwrite, Change)  # before any work
    gpkg = _check_polygons(polygons, threshold, overwrite)
    settings = settings or EngineSettings()
    if model is None or not isinstance(model, torch.nn.Module):  # None, or what loads one
        model = load_model(None) if model is None else model()
    tile = settings.tile or model.config.img_size
    pair, stats = calibrated_pair(
        model, before, after, modality, tile, threshold, head=head, align=align
    )
    pm = raster_modality(pair)
    pair.attrs[MODALITY_ATTR] = replace(pm, extra={**pm.extra, CHANGE_ATTR: stats}).to_dict()
    result = predict_raster(
        model,
        pair,
        "change",
        output,
        settings=replace(settings, quicklook=False),
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
    )
    if gpkg is not None:
        try:
            count = write_polygons(result, gpkg)
        except BaseException:
            if result.path is not None:
                result.path.unlink(missing_ok=True)
            raise
        result.notes.append(f"wrote {count} changed area(s) to {gpkg}")
    return result


def calibrated_pair(
    model,
    before: str | Path,
    after: str | Path,
    modality: str | Modality | None,
    tile: int,
    threshold: float | str | None,
    head: str | None = None,
    samples: int | None = None,
    align: bool = True,
) -> tuple[xr.DataArray, dict]:
    """The pair (``open_pair``) and its calibration (``calibrate``; ``head`` as ``change()``
    takes it). With ``align``, AFTER found MISREGISTERED_PX or more off BEFORE is warped again
    from where its features lie, and calibrated again: its ``shift`` is then what is left,
    ``aligned`` the move."""
    dates = open_dates(before, after, modality)
    pair = pair_of(*dates, Path(after))
    m = _date_modality(raster_modality(pair))
    name = change_head(model, head, m)
    sample = sample_tiles(model, pair, tile, name, samples)
    shift = date_shift(sample, m)
    aligned = None
    if align and shift and shift_matters(shift) and pair.rio.crs is not None:
        aligned = [shift.rows, shift.cols]
        pair = pair_of(*dates, Path(after), offset=(shift.rows, shift.cols))
        sample = sample_tiles(model, pair, tile, name, samples)
        shift = date_shift(sample, m)  # what is left
    stats = calibrate(model.eval(), pair, tile, threshold, name, samples, sample)
    stats.update(shift=None if shift is None else list(shift), aligned=aligned, align=align)
    return pair, stats


def change_head(model, head: str | None, m: Modality) -> str | None:
    """The change head to score with: the one named, else the model's first change head for
    this sensor; None for the zero-shot score (``head="zero-shot"``, or no change head)."""
    if head == "zero-shot":
        return None
    has = [n for n, i in model.heads.info.items() if i["kind"] == "change"]
    if head is None and not has:
        return None
    name = model.heads.select(head, "change", m)
    if model.heads.info[name]["kind"] != "change":
        raise BadInput(
            f"head {name!r} is a {model.heads.info[name]['kind']} head, not a change head",
            "name a change head with {head}, or 'zero-shot'",
        )
    return name


def _check_polygons(polygons, threshold, overwrite: bool) -> Path | None:
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
        from .errors import OutputExists

        raise OutputExists(f"{path} exists", "pass {overwrite} to replace it")
    _vector_writer()
    return check_writable(path)


def _vector_writer():
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
    pyogrio, shapely = _vector_writer()
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
