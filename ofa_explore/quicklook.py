"""Quicklooks: a small PNG of a run's output, beside it (``OUT.png`` for ``OUT.tif``), so a
command-line user sees at a glance whether a result makes sense.

embed        the PCA colour view (``OUT_pca.tif``); nodata transparent
reconstruct  the input next to the reconstruction: the same display bands (nearest red, green,
             blue; VV, VH, VV - VH for SAR; the first three, or one grey band, otherwise) and
             the same 2-98 % stretch, computed on the input, for both
classify     the class map in its colour table, with a legend of the classes present and their
             share of the classified area
change       BEFORE and AFTER in the same display bands and the same stretch (computed on both
             dates together, so a date that is brighter or hazier looks it), and the change on
             AFTER in grey: transparent below the mask's threshold (the default one without a
             mask), then yellow to dark red as QGIS draws it (``protocol.change_ramp``)

Everything is read decimated from the written files (GDAL uses their overviews) or row by row
from the input, so a huge raster costs a few hundred rows of reading, never the whole of it in
memory. Drawn with Pillow (a dependency); written through ``fileio.atomic_output``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .fileio import atomic_output
from .modalities import Modality
from .protocol import CHANGE_COLORS, change_ramp, quicklook_path
from .visualize import RGB_WAVELENGTHS_UM, stretch_limits, to_uint8

if TYPE_CHECKING:
    import xarray as xr

    from .engine.settings import PredictionResult

SIDE = 384  # pixels on the long side of a map (embed, classify)
PANEL = 384  # pixels on the long side of each reconstruct panel (two side by side)
READ_VALUES = 2**22  # values per band read at once from the input or the reconstruction
# rows of the two dates read at once: a 2000 px Sentinel-2 AFTER in Web Mercator, warped by
# GDAL (a WarpedVRT), was drawn in 4.4 s in windows of 32 rows, 5.1-6.9 s in one of all rows
WARP_ROWS = 32
VISIBLE_UM = 0.2  # a band within this of green (0.56 µm) makes a sensor's colours natural
PAD = 8
SWATCH = 14
BACKGROUND = (255, 255, 255, 255)
INK = (0, 0, 0, 255)

Drawer = Callable[["PredictionResult", "xr.DataArray | None", "float | None"], Image.Image]


def write_quicklook(
    result: PredictionResult,
    source: xr.DataArray | str | Path | None = None,
    mask_ratio: float | None = None,
) -> Path:
    """Draw the quicklook of a run's written output and save it as ``<stem>.png`` beside it.

    ``source`` (the input, a DataArray from ``io.open_raster`` or a path) is needed for a
    reconstruction; ``mask_ratio`` only labels it."""
    if result.path is None:
        raise ValueError("a quicklook is drawn from an output file; this result is in memory")
    picture = draw(result, source, mask_ratio)
    target = quicklook_path(result.path)
    with atomic_output(target, suffix=".tmp.png") as tmp:
        picture.save(tmp, format="PNG")
    return target


def draw(
    result: PredictionResult,
    source: xr.DataArray | str | Path | None = None,
    mask_ratio: float | None = None,
) -> Image.Image:
    """The quicklook of a run's written output as an RGBA picture."""
    try:
        drawer = DRAWERS[result.task]
    except KeyError:
        raise ValueError(f"no quicklook for the task {result.task!r}") from None
    if isinstance(source, (str, Path)):
        from .io import open_raster

        return drawer(result, open_raster(source), mask_ratio)
    return drawer(result, source, mask_ratio)


# ---------------------------------------------------------------- embed
def _embed(result: PredictionResult, source, mask_ratio) -> Image.Image:
    import rasterio
    from rasterio.enums import Resampling

    if result.pca_path is None:
        raise ValueError("the embedding has no PCA colour view to draw")
    with rasterio.open(result.pca_path) as src:
        h, w = fit(src.height, src.width, SIDE)
        rgb = src.read([1, 2, 3], out_shape=(3, h, w), resampling=Resampling.nearest)
    valid = (rgb != 0).any(axis=0)  # 0 in every band: nodata (tasks._project)
    return enlarge(rgba(rgb.transpose(1, 2, 0), valid), SIDE)


# ---------------------------------------------------------------- reconstruct
def _reconstruct(result: PredictionResult, source, mask_ratio) -> Image.Image:
    import rasterio
    from rasterio.windows import Window

    from .io import CONVERSION_ATTR, raster_modality
    from .scale import to_model_units

    if source is None:
        raise ValueError("the reconstruct quicklook needs the input raster")
    m = raster_modality(source)
    needed, compose = display_bands(m)
    with rasterio.open(result.path) as src:
        H, W = src.height, src.width
        if (source.sizes["y"], source.sizes["x"]) != (H, W):
            raise ValueError("the reconstruction's grid is not the input's")
        h, w = fit(H, W, PANEL)
        rows, cols = picks(H, h), picks(W, w)
        indexes = [i + 1 for i in needed]
        out = sampled(
            lambda y0, y1: src.read(indexes, window=Window(0, y0, W, y1 - y0)), rows, cols, W
        ).astype(np.float32)
    raw = sampled(lambda y0, y1: source.isel(band=needed, y=slice(y0, y1)).values, rows, cols, W)
    inp = to_model_units(raw, source.attrs.get(CONVERSION_ATTR, {"kind": "none"}))
    nodata = source.rio.nodata
    if nodata is not None and not np.isnan(nodata):
        inp = np.where((raw == nodata).any(axis=0), np.float32("nan"), inp)
    shown_in, shown_out = compose(inp), compose(out)
    limits = stretch_limits(shown_in)  # the input's stretch, for both
    panels = [
        enlarge(rgba(to_uint8(shown, limits), np.isfinite(shown).all(axis=0)), PANEL)
        for shown in (shown_in, shown_out)
    ]
    hidden = f", {mask_ratio:.0%} of patches hidden" if mask_ratio else ""
    return side_by_side(panels, ["input", f"reconstruction{hidden}"])


def display_bands(m: Modality) -> tuple[list[int], Callable[[np.ndarray], np.ndarray]]:
    """The bands to read of a modality (their indices) and how they make three display channels
    ([len(bands), h, w] -> [3, h, w]): VV, VH and VV - VH for SAR; the bands nearest red, green
    and blue for a sensor with visible bands; else the first three, or one band as grey."""
    if m.kind == "sar" and m.num_bands >= 2:
        return [0, 1], lambda v: np.stack([v[0], v[1], v[0] - v[1]])
    waves = np.asarray(m.wavelengths, dtype=float)
    if m.num_bands >= 3 and np.abs(waves - RGB_WAVELENGTHS_UM[1]).min() <= VISIBLE_UM:
        chosen = [int(np.argmin(np.abs(waves - w))) for w in RGB_WAVELENGTHS_UM]
    elif m.num_bands >= 3:
        chosen = [0, 1, 2]
    else:
        chosen = [0, 0, 0]
    needed = sorted(set(chosen))
    where = [needed.index(i) for i in chosen]
    return needed, lambda v: v[where]


def side_by_side(panels: list[Image.Image], labels: list[str]) -> Image.Image:
    """Panels in a row, each with its label above it, on white."""
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    widths = [max(p.width, int(probe.textlength(t, font=font))) for p, t in zip(panels, labels)]
    header = _line_height() + PAD
    height = max(p.height for p in panels)
    canvas = Image.new("RGBA", (sum(widths) + PAD * (len(panels) + 1), height + header + PAD))
    canvas.paste(BACKGROUND, (0, 0, *canvas.size))
    ink = ImageDraw.Draw(canvas)
    x = PAD
    for panel, label, width in zip(panels, labels, widths):
        ink.text((x, PAD // 2), label, fill=INK, font=font)
        canvas.paste(panel, (x, header))
        x += width + PAD
    return canvas


# ---------------------------------------------------------------- change
def _change(result: PredictionResult, source, mask_ratio) -> Image.Image:
    import rasterio
    from rasterio.windows import Window

    from .change_detection.calibration import date_modality
    from .io import raster_modality

    if source is None:
        raise ValueError("the change quicklook needs the two dates")
    date = date_modality(raster_modality(source))  # the pair: BEFORE's bands, then AFTER's
    needed, compose = display_bands(date)
    with rasterio.open(result.path) as src:
        H, W = src.height, src.width
        h, w = fit(H, W, PANEL)
        rows, cols = picks(H, h), picks(W, w)
        score = sampled(
            lambda y0, y1: src.read([1], window=Window(0, y0, W, y1 - y0)), rows, cols, W
        )[0]
        threshold, span = change_ramp(src.tags())
    # in model units, NaN nodata; each date's bands asked for alone: the pair reads only them
    before, after = (
        compose(_pixels(source, [first + i for i in needed], rows, cols))
        for first in (0, date.num_bands)
    )
    limits = stretch_limits(np.concatenate([before, after], axis=-1))  # one stretch for both
    shown = [to_uint8(d, limits) for d in (before, after)]
    panels = [
        enlarge(rgba(s, np.isfinite(d).all(axis=0)), PANEL) for s, d in zip(shown, (before, after))
    ]
    grey = shown[1].mean(axis=-1, keepdims=True) * 0.6 + 0.4 * 255  # AFTER, pale
    changed = score >= threshold  # NaN (nodata) is not
    picture = np.where(changed[..., None], ramp_colors(score, threshold, span), grey)
    panels.append(enlarge(rgba(picture.round(), np.isfinite(score)), PANEL))
    share = result.checks.get("changed_share")
    if share is None:  # no mask: the share of the drawn pixels above the default threshold
        valid = np.isfinite(score)
        share = float(changed[valid].mean()) if valid.any() else 0.0
    labels = ["BEFORE", "AFTER", f"score >= {threshold:.3g}: {_percent(share)} of the pixels"]
    return side_by_side(panels, labels)


def _pixels(da: xr.DataArray, bands: list[int], rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The pixels at ``rows`` x ``cols`` of some bands of a lazily read DataArray."""
    return sampled(
        lambda y0, y1: da.isel(band=bands, y=slice(y0, y1)).values,
        rows,
        cols,
        da.sizes["x"],
        most_rows=WARP_ROWS,
    )


def ramp_colors(values: np.ndarray, start: float, span: float) -> np.ndarray:
    """[h, w] scores -> [h, w, 3] colours of the change ramp: CHANGE_COLORS spread evenly from
    ``start`` to ``start + span``, interpolated between them, the last beyond."""
    stops = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in CHANGE_COLORS], float)
    at = np.linspace(start, start + span, len(stops))
    filled = np.nan_to_num(values, nan=start)
    return np.stack([np.interp(filled, at, stops[:, i]) for i in range(3)], axis=-1)


# ---------------------------------------------------------------- classify
def _classify(result: PredictionResult, source, mask_ratio) -> Image.Image:
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(result.path) as src:
        h, w = fit(src.height, src.width, SIDE)
        classes = src.read(1, out_shape=(h, w), resampling=Resampling.nearest)
        try:
            colormap = src.colormap(1)
        except ValueError:  # no colour table: grey levels
            colormap = {i: (i, i, i, 255) for i in range(256)}
        names = [n for n in src.tags().get("class_names", "").split(",") if n]
        nodata = src.nodata
    table = np.zeros((256, 4), dtype=np.uint8)
    for value, color in colormap.items():
        table[value] = color
    valid = np.ones(classes.shape, dtype=bool) if nodata is None else classes != int(nodata)
    colors = table[classes]
    colors[..., 3] = np.where(valid, 255, 0)
    picture = enlarge(Image.fromarray(colors, "RGBA"), SIDE)
    legend = [
        (names[i] if i < len(names) else f"class {i}", share, tuple(int(c) for c in table[i]))
        for i, share in _shares(result, names, classes[valid])
    ]
    return with_legend(picture, legend)


def _shares(
    result: PredictionResult, names: list[str], seen: np.ndarray
) -> list[tuple[int, float]]:
    """(class index, share of the classified area) of the classes present, largest first: from
    the run's exact pixel counts where it has them, else from the decimated map."""
    if result.class_areas and all(r["class"] in names for r in result.class_areas):
        return [
            (names.index(r["class"]), float(r["share"])) for r in result.class_areas if r["pixels"]
        ]
    counts = np.bincount(seen.ravel(), minlength=256)
    total = max(int(counts.sum()), 1)
    present = sorted(np.flatnonzero(counts), key=lambda i: -counts[i])
    return [(int(i), counts[i] / total) for i in present]


def with_legend(picture: Image.Image, entries: list[tuple[str, float, tuple]]) -> Image.Image:
    """A map with a legend on its right: a colour swatch, the class name and its share."""
    font = _font()
    line = max(_line_height(), SWATCH) + 4
    texts = [f"{name}  {_percent(share)}" for name, share, _ in entries]
    title = "classes (share of area)"
    probe = ImageDraw.Draw(Image.new("RGBA", (1, 1)))
    text_width = max(int(probe.textlength(t, font=font)) for t in [title, *texts])
    legend_width = SWATCH + PAD + text_width
    height = max(picture.height, PAD + line * (len(entries) + 1))
    canvas = Image.new("RGBA", (picture.width + 3 * PAD + legend_width, height))
    canvas.paste(BACKGROUND, (0, 0, *canvas.size))
    canvas.paste(picture, (0, 0))
    ink = ImageDraw.Draw(canvas)
    x = picture.width + 2 * PAD
    ink.text((x, PAD // 2), title, fill=INK, font=font)
    for n, (text, (_, _, color)) in enumerate(zip(texts, entries), start=1):
        y = PAD // 2 + n * line
        ink.rectangle((x, y, x + SWATCH - 1, y + SWATCH - 1), fill=color[:3], outline=INK)
        ink.text((x + SWATCH + PAD, y), text, fill=INK, font=font)
    return canvas


def _percent(share: float) -> str:
    return "<0.1 %" if 0 < share < 0.001 else f"{100 * share:.1f} %"


# ---------------------------------------------------------------- reading and drawing parts
def fit(height: int, width: int, side: int) -> tuple[int, int]:
    """A raster's size shrunk (never grown) to ``side`` pixels on its long side, same aspect."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def picks(n: int, m: int) -> np.ndarray:
    """``m`` evenly spread indices of ``n`` (each the centre of its share): nearest neighbour."""
    return ((np.arange(m) + 0.5) * n / m).astype(np.int64)


def sampled(
    read: Callable[[int, int], np.ndarray],
    rows: np.ndarray,
    cols: np.ndarray,
    width: int,
    most_rows: int | None = None,
) -> np.ndarray:
    """The pixels at ``rows`` x ``cols`` of a raster read by ``read(y0, y1)`` -> [C, y1 - y0,
    width]: runs of rows together while they span at most ``READ_VALUES`` values a band (and
    ``most_rows`` rows), else one row at a time, so memory stays small whatever the raster's
    size."""
    per_read = min(max(1, READ_VALUES // max(1, width)), most_rows or READ_VALUES)
    parts, i = [], 0
    while i < len(rows):
        j = i + 1
        while j < len(rows) and rows[j] - rows[i] < per_read:
            j += 1
        block = np.asarray(read(int(rows[i]), int(rows[j - 1]) + 1))
        parts.append(block[:, rows[i:j] - rows[i]][:, :, cols])
        i = j
    return np.concatenate(parts, axis=1)


def rgba(rgb: np.ndarray, valid: np.ndarray) -> Image.Image:
    """[h, w, 3] uint8 and [h, w] validity -> an RGBA picture, invalid pixels transparent."""
    alpha = np.where(valid, 255, 0).astype(np.uint8)[..., None]
    return Image.fromarray(np.concatenate([rgb.astype(np.uint8), alpha], axis=-1), "RGBA")


def enlarge(picture: Image.Image, side: int) -> Image.Image:
    """A small picture blown up by a whole factor (nearest) towards ``side`` on its long side,
    so that a 64-pixel chip or an 8 x 8 embedding is visible."""
    factor = max(1, side // max(picture.size))
    if factor == 1:
        return picture
    nearest = getattr(Image, "Resampling", Image).NEAREST  # Pillow < 9.1: Image.NEAREST
    return picture.resize((picture.width * factor, picture.height * factor), nearest)


@functools.cache
def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=13)  # Pillow >= 10.1 with FreeType
    except (TypeError, OSError):
        return ImageFont.load_default()


def _line_height() -> int:
    left, top, right, bottom = _font().getbbox("Ag%")
    return int(bottom) + 2


DRAWERS: dict[str, Drawer] = {
    "embed": _embed,
    "reconstruct": _reconstruct,
    "classify": _classify,
    "change": _change,
}
