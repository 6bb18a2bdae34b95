"""Turning multi-band imagery into pictures people can read: composites, stretches, panels."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from .modalities import Modality

# Display targets for a natural-colour composite: red, green, blue (µm).
RGB_WAVELENGTHS_UM = (0.665, 0.56, 0.49)


def composite(image: np.ndarray, modality: Modality) -> np.ndarray:
    """[C, H, W] in sensor units -> [3, H, W] float: natural colour for optical sensors (bands
    nearest red, green, blue), (VV, VH, VV - VH) for dual-polarisation SAR in dB."""
    image = np.asarray(image, dtype=np.float32)
    if modality.kind == "sar":
        a, b = image[0], image[1 % image.shape[0]]
        return np.stack([a, b, a - b])
    return image[rgb_band_indices(modality)]


def rgb_band_indices(modality: Modality) -> list[int]:
    """The bands nearest red, green and blue (the first bands for SAR)."""
    if modality.kind == "sar":
        return [0, 1 % modality.num_bands, 0]
    waves = np.asarray(modality.wavelengths)
    return [int(np.argmin(np.abs(waves - w))) for w in RGB_WAVELENGTHS_UM]


def stretch_limits(rgb: np.ndarray, percentiles: tuple[float, float] = (2, 98)) -> np.ndarray:
    """Per-channel [low, high] from percentiles of finite values: [3, 2]."""
    flat = rgb.reshape(rgb.shape[0], -1)
    limits = []
    for channel in flat:
        finite = channel[np.isfinite(channel)]
        lo, hi = np.percentile(finite, percentiles) if finite.size else (0.0, 1.0)
        limits.append((lo, hi if hi > lo else lo + 1.0))
    return np.asarray(limits)


def to_uint8(rgb: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """[3, H, W] -> [H, W, 3] uint8 with the given per-channel limits; NaN shows black."""
    lo, hi = limits[:, 0, None, None], limits[:, 1, None, None]
    scaled = np.clip((rgb - lo) / (hi - lo), 0, 1)
    return (np.nan_to_num(scaled) * 255).round().astype(np.uint8).transpose(1, 2, 0)


def reconstruction_panel(
    image: np.ndarray,
    reconstruction: np.ndarray,
    mask: np.ndarray,
    modality: Modality,
    title: str = "",
    scale: int = 3,
) -> Image.Image:
    """Input | masked input | reconstruction side by side, all with the input's stretch.

    image, reconstruction: [C, H, W]; mask: [H, W], 1 = hidden.
    """
    rgb_in = composite(image, modality)
    limits = stretch_limits(rgb_in)
    tiles = [to_uint8(rgb_in, limits)]
    masked = tiles[0].copy()
    masked[mask.astype(bool)] = 128
    tiles += [masked, to_uint8(composite(reconstruction, modality), limits)]
    h, w = tiles[0].shape[:2]
    pad, header = 6, 32 if title else 18  # the title on a line of its own, above the labels
    canvas = Image.new("RGB", (3 * w * scale + 4 * pad, h * scale + header + 2 * pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 3), title, fill="black")
    for i, (tile, label) in enumerate(zip(tiles, ("input", "masked input", "reconstruction"))):
        x = pad + i * (w * scale + pad)
        canvas.paste(
            Image.fromarray(tile).resize((w * scale, h * scale), Image.NEAREST), (x, header + pad)
        )
        draw.text((x, header - 15), label, fill="black")
    return canvas


def png_bytes(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
