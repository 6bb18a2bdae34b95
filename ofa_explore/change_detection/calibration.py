"""Calibration on a sample: the band statistics, covariances, mean embeddings and each
term's mean and deviation (and a head's logits') from tiles spread over the scene, so the
engine can then score tile by tile with memory flat in the raster's size."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr

from ..engine import BATCH_TOKENS
from ..io import RasterError, raster_modality
from ..modalities import Modality
from ..protocol import SCENE_THRESHOLDS, change_threshold
from ..registration import Shift, phase_shift
from .terms import (
    MIN_TERM_STD,
    anomaly_bands,
    anomaly_matrix,
    anomaly_term,
    embedding_layer,
    embedding_term,
    pixel_bands,
    pixel_term,
    pixel_weights,
    residual_fit,
    score,
    to_pixels,
    token_distance,
)

SAMPLE_TILES = 16  # tiles read and embedded to calibrate the zero-shot score
# ... and a change head's inputs and logits, in training and at prediction: leave-one-city-out
# pooled AP 0.278 / 0.285 / 0.275 (seeds 0-2) against 0.244 / 0.252 / 0.243 with 16 tiles;
# the sample is embedded in the engine's batches (_over_sample), so the peak memory stays theirs
HEAD_SAMPLE_TILES = 64
# a --tile larger than the model's image reads fewer sample tiles, about as many pixels in all,
# but at least this many, spread over the scene: 1000 px dates at --tile 512 took 3.3 GB above
# the model and 54 s before (an embed 0.2 GB, 8 s), 0.6 GB and 25 s with 4 (bench/RESULTS.md)
MIN_SAMPLE_TILES = 4
# ... and no more than hold this many times the scene's pixels: past that, more tiles on the
# grid read the same pixels again (a 360 x 395 px city: 64 tiles of 224 px, 22 times its
# pixels, for a model of DOFA's image size)
SAMPLE_COVER = 2
CHANGE_ATTR = "change"  # the calibration, in the pair modality's ``extra``


def calibrate(
    model,
    pair: xr.DataArray,
    tile: int,
    threshold: float | str | None,
    head: str | None = None,
    samples: int | None = None,
    sample: np.ndarray | None = None,
    for_head: bool = False,
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
    ``sample_tiles``, when already read. ``for_head``: the inputs of a change head in training,
    whose embedding term reads the last block as ``head`` does (``embedding_layer``)."""
    pm = raster_modality(pair)
    count = pm.num_bands // 2
    m = date_modality(pm)
    p = model.config.patch_size
    x = sample_tiles(model, pair, tile, head, samples) if sample is None else sample
    layer = embedding_layer(model, head=head is not None or for_head)
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
        "pixel_weights": pixel_weights(m),
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
        "embedding_layer": layer,
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
            lambda b, a: torch.stack(embedding_term(model, b, a, m, None, layer)[1:]),
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
            logits = _over_sample(lambda b, a: score(model, b, a, m, stats), t, count, p)
        scores = logits.float().numpy()  # a head's raw logits: no head_mean in stats yet
        if head is not None:
            stats["head_mean"] = float(scores[valid].mean())
            stats["head_std"] = float(scores[valid].std()) or 1.0
            scores = (scores - stats["head_mean"]) / stats["head_std"]
    if threshold == "otsu":
        stats["threshold"] = otsu(scores[valid])
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
    model's image, about as many pixels, or when they would hold more than SAMPLE_COVER times
    the scene's pixels; but at least MIN_SAMPLE_TILES)."""
    samples = samples or (HEAD_SAMPLE_TILES if head is not None else SAMPLE_TILES)
    H, W = pair.sizes["y"], pair.sizes["x"]
    p = model.config.patch_size
    th, tw = min(tile, H // p * p), min(tile, W // p * p)
    image = model.config.img_size**2
    fits = math.ceil(SAMPLE_COVER * H * W / (th * tw))
    samples = min(samples, max(MIN_SAMPLE_TILES, min(round(samples * image / (th * tw)), fits)))
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


def date_modality(pair: Modality) -> Modality:
    """One date's modality from the pair's (its first half of the bands, without the
    calibration): what the model embeds each date as."""
    count = pair.num_bands // 2
    return replace(
        pair,
        bands=tuple(b.removeprefix("before_") for b in pair.bands[:count]),
        wavelengths=pair.wavelengths[:count],
        mean=pair.mean[:count],
        std=pair.std[:count],
        extra={k: v for k, v in pair.extra.items() if k != CHANGE_ATTR},
    )
