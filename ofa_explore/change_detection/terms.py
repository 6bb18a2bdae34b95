"""The change score's terms (pixels, anomalous change, embeddings), the head's inputs and the
score of a batch of tile pairs: what ``calibrate`` measures once and every tile then reads.
The package's docstring says what each term is and how it was chosen."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..modalities import Modality

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
# how much of the pixel term each range of PIXEL_BANDS_UM makes, shared equally by its bands
# (a sensor without bands in one range: the other's alone). The visible bands rank urban change
# best, so they count more: on the 8 OSCD cities and Nanjing, the visible range's share 0.6
# (Sentinel-2's 5 bands alike, the choice until 2026-12-07) / 0.75 / 0.8 / 0.86: pooled AP 0.228
# / 0.234 / 0.236 / 0.237, cities above abs(B04) 7 / 7 / 8 / 8 (bercy 0.130 / 0.144 / 0.150 /
# 0.155 against 0.147), Nanjing 0.830 / 0.821 / 0.818 / 0.813 (best band baseline 0.787), its
# sub-scenes above their best band baseline 7 / 7 / 7 / 5 of 9 (docs/EVALUATION.md)
PIXEL_RANGE_SHARES = (0.8, 0.2)
ABSORPTION_UM = ((1.8, 1.95),)
# the anomaly term reads at most this many bands of each range of PIXEL_BANDS_UM, an imaging
# spectrometer's neighbouring bands averaged: EnMAP's 129 there as 2 x 4 instead of a 258 x 258
# covariance (a 256 x 256 px pair, 1 thread: 4.0-4.3 s instead of 5.1 s); multispectral bands
# stay apart
ANOMALY_BANDS = 4
# the zero-shot score's embedding term compares the token maps after this share of the
# encoder's blocks (6 of the shipped model's 8), not after the last: on the 8 labelled OSCD
# cities and Nanjing it ranks change about as well (pooled AP 0.227 against 0.228, Nanjing 0.830
# against 0.831; after 4 blocks 0.225 / 0.828, after 2 0.223 / 0.828; docs/EVALUATION.md) for a
# quarter less of the backbone's work on both dates (bench/RESULTS.md). A change head reads the last
# block's, as it was trained (``embedding_layer``)
EMBEDDING_DEPTH = 0.75
# z() divides by no less: the terms are unitless, and their deviation over 17 real pairs of the
# shared data (12 OSCD cities, Nanjing, NAIP, Landsat composites) was at least 0.08 (the embedding
# term's), 0.25 (pixel), 0.43 (anomaly), 0.26 (a residual band); in sub-scenes of 300-400 px,
# 0.096. Between two copies of one date the terms are rounding alone, which z over the floor
# makes the score: over 1e-3, bf16's 5.7 in the anomaly term (now float32) marked 88% of an
# EnMAP tile as changed; 0.02 leaves rounding of up to 0.05 (reduced precision on a GPU) below
# any threshold
MIN_TERM_STD = 0.02


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


def pixel_weights(m: Modality) -> list[float]:
    """The weight of each band of ``pixel_bands`` in the pixel term (summing to 1): each range
    of PIXEL_BANDS_UM its share of PIXEL_RANGE_SHARES, split equally among its bands; alike
    where ``pixel_bands`` takes all bands (SAR, or none in the ranges)."""
    bands = pixel_bands(m)
    if m.kind == "sar" or not any(
        low <= m.wavelengths[i] <= high for i in bands for low, high in PIXEL_BANDS_UM
    ):
        return [1 / len(bands)] * len(bands)
    ranges = [  # the range of each band
        next(r for r, (low, high) in enumerate(PIXEL_BANDS_UM) if low <= m.wavelengths[i] <= high)
        for i in bands
    ]
    counts = [ranges.count(r) for r in range(len(PIXEL_BANDS_UM))]
    total = sum(share for share, n in zip(PIXEL_RANGE_SHARES, counts) if n)
    return [PIXEL_RANGE_SHARES[r] / counts[r] / total for r in ranges]


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
    """[N, C, H, W] twice -> [N, H, W]: the absolute difference of the dates' own standardised
    bands of ``pixel_bands``, their mean weighted by ``pixel_weights``, averaged over a
    PIXEL_BOX window."""
    bands = stats["pixel_bands"]
    zb = standardised(before[:, bands], stats, "before")
    za = standardised(after[:, bands], stats, "after")
    weights = torch.tensor(stats["pixel_weights"], dtype=za.dtype, device=za.device)
    with torch.autocast(za.device.type, enabled=False):  # float32, as calibrated
        difference = torch.einsum("nchw,c->nhw", (za - zb).abs().float(), weights.float())
    return _box(difference[:, None])[:, 0]


def standardised(x: torch.Tensor, stats: dict[str, Any], key: str) -> torch.Tensor:
    """[N, C, H, W] less ``stats[key + "_mean"]`` over ``stats[key + "_std"]``, per band."""
    mean = torch.tensor(stats[f"{key}_mean"], dtype=x.dtype, device=x.device)
    std = torch.tensor(stats[f"{key}_std"], dtype=x.dtype, device=x.device)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


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

    # float32 throughout: within 1e-4 of float64 on OSCD and Nanjing. Under bf16 autocast the
    # bands' grouping rounded each date apart, and the quadratic form of two near-identical
    # dates (an EnMAP tile and its copy in reflectance) made that a term of 5.7 where it is 0
    with torch.autocast(before.device.type, enabled=False):
        z = torch.cat([centred(before.float(), "before"), centred(after.float(), "after")], dim=1)
        q = torch.tensor(stats["anomaly_matrix"], dtype=z.dtype, device=z.device)
        flat = z.flatten(2)  # [N, 2C', H*W]
        quadratic = ((q @ flat) * flat).sum(1)
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


def embedding_layer(model, head: bool) -> int:
    """The encoder block (0-based) whose token maps the embedding term compares: the last for
    a change head (as trained), else the one after EMBEDDING_DEPTH of the blocks."""
    depth = model.config.depth
    return depth - 1 if head else max(round(EMBEDDING_DEPTH * depth), 1) - 1


def date_tokens(model, x: torch.Tensor, m: Modality, layer: int) -> torch.Tensor:
    """One date's patch tokens [N, L, D] after encoder block ``layer`` (through the final
    norm, as the model's embeddings are), from [N, C, H, W] in model units."""
    if layer == model.config.depth - 1:
        return model.forward_features(x, m)[:, 1:]
    (maps,) = token_maps(model, x, m, [layer])
    return maps.flatten(2).transpose(1, 2)


def token_maps(model, x: torch.Tensor, m: Modality, layers: list[int]) -> list[torch.Tensor]:
    """One date's token maps [N, D, h, w] after each encoder block of ``layers``, from
    [N, C, H, W] in model units."""
    from ..inputs import prepare

    xn, m = prepare(x, m, model.modalities, model.config.patch_size)
    return model.forward_intermediates(xn, m, layers)


def embedding_term(
    model,
    before: torch.Tensor,
    after: torch.Tensor,
    m: Modality,
    stats: dict[str, Any] | None,
    layer: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """1 - cosine of the dates' patch embeddings after encoder block ``layer``, each date's
    mean embedding (``stats``) subtracted: [N, h, w] per patch, with the raw tokens of each date
    ([N, L, D]) for calibration."""
    n, _, height, width = before.shape
    # one date per pass: the engine's batch of tokens, not twice it (bench/RESULTS.md: 5% faster)
    tb, ta = (date_tokens(model, x, m, layer).float() for x in (before, after))
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
    z_pix, z_anomaly, z_emb = z_terms(pixels, anomalies, embeddings, stats)
    return z_pix + ANOMALY_WEIGHT * z_anomaly + EMBEDDING_WEIGHT * z_emb


def z_terms(
    pixels: torch.Tensor, anomalies: torch.Tensor, embeddings: torch.Tensor, stats: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The three terms [N, H, W] (the embeddings' per patch, upsampled to pixels) each
    standardised over the scene by the calibrated ``stats``."""
    up = to_pixels(embeddings, pixels.shape[-1] // embeddings.shape[-1])
    return (
        (pixels - stats["pixel_mean"]) / stats["pixel_std"],
        (anomalies - stats["anomaly_mean"]) / stats["anomaly_std"],
        (up - stats["embedding_mean"]) / stats["embedding_std"],
    )


def head_inputs(
    model, before: torch.Tensor, after: torch.Tensor, m: Modality, stats: dict, layers: list[int]
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """What a ChangeHead reads of two dates [N, C, H, W] (model units, calibrated ``stats``):
    per block of ``layers``, |before - after| and the mean of the token maps; and the image of
    both dates' bands standardised per date, AFTER's residuals from BEFORE
    (``after_residuals``) and the zero-shot score's three terms, z-scored ([N, 3C + 3, H, W],
    ``heads.CHANGE_IMAGE``)."""
    last = stats["embedding_layer"]  # the last block's (``embedding_layer``)
    wanted = sorted(set(layers) | {last})
    # one date per pass, as embedding_term
    mb, ma = (dict(zip(wanted, token_maps(model, x, m, wanted))) for x in (before, after))
    levels = []
    for layer in layers:
        tb, ta = mb[layer].float(), ma[layer].float()
        levels += [(tb - ta).abs(), (tb + ta) / 2]
    n, _, h, w = mb[last].shape
    tb, ta = (x[last].float().flatten(2).transpose(1, 2) for x in (mb, ma))
    distance = token_distance(tb, ta, stats).reshape(n, h, w)
    before, after = before.float(), after.float()
    pixels, anomalies = pixel_term(before, after, stats), anomaly_term(before, after, stats)
    z_pix, z_anomaly, z_emb = z_terms(pixels, anomalies, distance, stats)
    zb, za = standardised(before, stats, "before_band"), standardised(after, stats, "after_band")
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
    embeddings, _, _ = embedding_term(model, before, after, m, stats, stats["embedding_layer"])
    return combine(pixels, anomalies, embeddings.float(), stats)
