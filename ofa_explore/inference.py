"""Inference over rasters of any size: embeddings, masked reconstructions, class maps.

A reader thread cuts the raster into overlapping tiles aligned to the patch grid and hands them
over through a bounded queue; the model runs on batches of tiles; each tile contributes only its
centre (the overlap is context, then cropped away), which is written straight to a tiled GeoTIFF.
No accumulator spans the raster, so memory stays flat whatever its size. The finished file is
converted to a Cloud-Optimised GeoTIFF and renamed into place, so nothing is ever half-written.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import queue
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import rasterio
import rasterio.io
import rasterio.shutil
import torch
import xarray as xr
from affine import Affine
from rasterio.windows import Window

from .areas import class_area_table, pixel_area_m2
from .fileio import publish
from .io import CONVERSION_ATTR, RasterError, open_raster, raster_modality, to_model_units
from .modalities import Modality
from .heads import classify, segment
from .inputs import require_embedding
from .model import OFANet, set_fused_attention
from .precision import PRECISIONS, autocast_for, fused_attention_for, resolve_precision

TASKS = ("embed", "reconstruct", "classify")
TIF_SUFFIXES = (".tif", ".tiff")  # what an output file may be called
PCA_SAMPLE = 20000  # embedding vectors kept (spread over all tiles) to fit the PCA colour view
CLASS_NODATA = 255
GDAL_CACHE_BYTES = 64 * 2**20  # GDAL block cache while reading/writing; its default grows with RAM
CUBE_BLOCK = 64  # block side of the embedding cube: 64 x 64 x D floats, 3 MB for D = 192
READ_VALUES = 4 * 2**20  # values per read window: 16 MB in float32, whatever the raster's width
BATCH_TOKENS = 2048  # default batch: 32 tiles of 64 px with 8-px patches; measured 1.2x (fp32)
# to 1.3x (bf16) the throughput of 8 tiles on a 2-core CPU, see bench/RESULTS.md
CUBE_MIN_BANDS = 33  # outputs with this many bands are treated as the embedding cube, see _FileSink
DEFAULT_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                  "#7f7f7f", "#bcbd22", "#17becf"]


class Cancelled(RuntimeError):
    """The caller's cancel flag was raised; nothing was written."""


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs, whatever raster it runs on: the one record the CLI, the widgets, the
    QGIS worker (through the CLI) and Dask workers pass, so every caller means the same thing."""

    tile: int | None = None  # pixels, a multiple of the patch size; None: the model's image size
    overlap: int | None = None  # pixels of context shared by neighbours; None: a quarter tile
    batch_size: int | None = None  # tiles per forward pass (None: BATCH_TOKENS tokens' worth;
    # halved on GPU out-of-memory)
    device: str = "auto"  # "auto" (CUDA, MPS, CPU), "cpu", "cuda", "cuda:1", "mps"
    precision: str = "fp32"  # "fp32", "bf16", "fp16" (CUDA) or "auto", see resolve_precision
    head: str | None = None  # classify: the checkpoint's head (None: its first for the modality)
    mask_ratio: float = 0.75  # reconstruct: share of patches hidden (0: none)
    seed: int = 0  # reconstruct: the mask's seed

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch size {self.batch_size}: give at least 1 tile per batch")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask ratio {self.mask_ratio}: give a share from 0 up to, not "
                             "including, 1 (0.75 hides three patches in four)")
        if self.overlap is not None and self.overlap < 0:
            raise ValueError(f"overlap {self.overlap}: give 0 or more pixels")


@dataclass
class PredictionResult:
    """What ``predict_raster`` produced: files (``path``, ``pca_path``) or in-memory ``data``.

    At patch resolution (embeddings, scene-head class maps) the output grid is the input's
    rounded out to whole patches: the last column and row of cells may reach up to patch - 1
    pixels past the input's right and bottom edges. ``input_bounds`` (also the files'
    ``input_bounds`` tag) records the input's own extent; cells cut by it still count only their
    pixels inside in ``class_areas``.
    """

    task: str
    data: xr.DataArray | None
    path: Path | None
    pca_path: Path | None
    pca: xr.DataArray | None
    class_names: list[str] | None
    tiles: int
    seconds: float
    device: str
    head: str | None = None  # the head that classified
    class_colors: list[str] | None = None
    precision: str = "fp32"  # as resolved ("auto" -> what ran)
    modality: str | None = None  # the input's, as detected or given
    input_bounds: tuple[float, float, float, float] | None = None  # left, bottom, right, top
    # classify: per class (largest first) pixels, hectares (None where the CRS is not in
    # metres) and share of the classified area
    class_areas: list[dict] | None = None


@dataclass
class _Tile:
    index: int
    y0: int  # window origin in the patch-padded raster, pixels
    x0: int
    core: tuple[int, int, int, int]  # y_start, y_stop, x_start, x_stop of its centre, pixels
    pixels: np.ndarray | None = None  # [C, th, tw], model units, invalid filled with the mean
    valid: np.ndarray | None = None  # [th, tw] bool
    inside: tuple[int, int] = (0, 0)  # rows, columns of the tile that lie inside the raster


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA, then Apple MPS, then CPU."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def predict_raster(
    model: OFANet,
    raster: str | Path | xr.DataArray | list,
    task: str,
    output: str | Path | None = None,
    *,
    settings: EngineSettings | None = None,
    modality: str | Modality | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], bool] | threading.Event | None = None,
    **changes,
) -> PredictionResult:
    """Run ``task`` ("embed" | "reconstruct" | "classify") over a raster of any size.

    ``output`` (a .tif path) gets Cloud-Optimised GeoTIFFs with the input's CRS and extent:
    embeddings [D bands] at patch resolution plus ``*_pca.tif``, a 3-band colour view; a
    reconstruction in the input's bands; or class indices (uint8, 255 = nodata) with class names
    and a colour table: per patch from a scene head (each tile's label), per pixel from a
    segmentation head. Without ``output`` the result comes back in memory.

    ``settings`` (an ``EngineSettings``) says how to run: tile, overlap, batch size, device,
    precision, head, mask ratio, seed; keyword arguments named like its fields change single
    ones (``predict_raster(model, path, "embed", precision="auto")``). ``progress(done, total)``
    is called per batch; ``cancel`` (an Event or a callable) stops the work and removes anything
    written.
    """
    settings = replace(settings or EngineSettings(), **changes)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # GDAL's cache bounded, whatever the size
        return _predict(model, raster, task, output, settings, modality, overwrite, progress,
                        cancel)


@dataclass
class _Run:
    """What one call fixes for all its batches."""

    model: OFANet
    m: Modality
    task: str
    settings: EngineSettings
    dev: torch.device
    head: str | None
    res: int  # output cell size, in input pixels
    batch_size: int  # halved from the settings' on GPU out-of-memory


def _predict(model, raster, task, output, settings: EngineSettings, modality, overwrite,
             progress, cancel) -> PredictionResult:
    t0 = time.perf_counter()
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    da = raster if isinstance(raster, xr.DataArray) else open_raster(raster, modality)
    m = raster_modality(da)
    out_path = _check_output(output, da.attrs.get("source"), overwrite, task)
    head_name, classes = _check_model(model, m, task, settings.head)
    p = model.config.patch_size
    H, W = da.sizes["y"], da.sizes["x"]
    if H < p or W < p:
        raise RasterError(f"the raster is {H}x{W} pixels, smaller than one {p}x{p} patch; the "
                          f"model needs at least {p} pixels on each side")
    tile, margin = _tiling(model, settings.tile, settings.overlap)
    Hp, Wp = math.ceil(H / p) * p, math.ceil(W / p) * p
    th, tw = min(tile, Hp), min(tile, Wp)
    tiles = list(_layout(Hp, Wp, th, tw, margin))
    dev = pick_device(settings.device)
    precision = resolve_precision(settings.precision, dev)
    model = model.to(dev).eval()

    per_pixel = task == "reconstruct" or (
        task == "classify" and model.heads.info[head_name]["kind"] == "segmentation")
    batch_size = settings.batch_size or max(1, BATCH_TOKENS // ((th // p) * (tw // p)))
    run = _Run(model, m, task, settings, dev, head_name, 1 if per_pixel else p, batch_size)
    res = run.res
    out_h, out_w = math.ceil(H / res), math.ceil(W / res)
    bands = (list(m.bands) if task == "reconstruct" else
             [f"emb_{i:03d}" for i in range(model.config.embed_dim)] if task == "embed" else
             ["class"])
    dtype = "uint8" if task == "classify" else "float32"
    nodata = CLASS_NODATA if task == "classify" else float("nan")
    transform = da.rio.transform() @ Affine.scale(res)
    bounds = tuple(float(v) for v in da.rio.bounds())
    sink = (_FileSink(out_path, len(bands), out_h, out_w, dtype, nodata, transform, da.rio.crs,
                      bands, bounds)
            if out_path else _MemorySink(len(bands), out_h, out_w, dtype, nodata))
    if task == "embed":
        sink.sample_per_tile = max(1, PCA_SAMPLE // len(tiles))
    if task == "classify":
        sink.count_classes(len(classes), H, W, res)
    is_cancelled = (cancel.is_set if isinstance(cancel, threading.Event) else cancel) or (lambda: False)
    reader = _TileReader(da, m, tiles, th, tw, queue_size=2 * batch_size)
    done = 0
    fused = [block.attn.fused_attn for block in model.blocks]
    set_fused_attention(model, fused_attention_for(precision, dev))
    try:
        batch: list[_Tile] = []
        for t in itertools.chain(reader, [None]):  # None: flush the last, partial batch
            if t is not None:
                batch.append(t)
            if not batch or (t is not None and len(batch) < run.batch_size):
                continue
            with autocast_for(precision, dev):
                _run_batch(run, batch, sink)
            done += len(batch)
            batch = []
            if progress:
                progress(done, len(tiles))
            if is_cancelled():
                raise Cancelled("cancelled by the caller; nothing was written")
        pca_path = pca = None
        if task == "embed":
            pca_path = _pca_path(out_path) if out_path else None
            pca = sink.write_pca(pca_path)
        if task == "classify":
            sink.set_classes(classes, model.heads.info[head_name].get("colors"))
        data = sink.finish()
    except BaseException:
        reader.stop()
        sink.abort()
        raise
    finally:
        for block, was in zip(model.blocks, fused):
            block.attn.fused_attn = was
    if data is not None:
        data = _georeferenced(data, transform, da.rio.crs, bands, nodata)
        data.attrs["input_bounds"] = bounds
        if pca is not None:
            pca = _georeferenced(pca, transform, da.rio.crs, ["pc1", "pc2", "pc3"], 0)
        if classes:
            data.attrs["class_names"] = classes
    colors = model.heads.info[head_name]["colors"] if head_name else None
    areas = (class_area_table(classes, sink.class_pixels, pixel_area_m2(da))
             if task == "classify" else None)
    return PredictionResult(task, data, out_path, pca_path, pca, classes, len(tiles),
                            round(time.perf_counter() - t0, 2), str(dev), head_name, colors,
                            precision, m.name, bounds, areas)


# ---------------------------------------------------------------- checks and layout
def _check_output(output, source, overwrite: bool, task: str) -> Path | None:
    if output is None:
        return None
    out = Path(output)
    if out.suffix.lower() not in TIF_SUFFIXES:
        raise ValueError(f"output {out} must be a GeoTIFF path ending in .tif")
    sources = source if isinstance(source, (list, tuple)) else [source] if source else []
    for src in sources:
        if Path(src).resolve() == out.resolve():
            raise ValueError(f"output {out} is the input raster; choose another path, the input "
                             "is never overwritten")
    targets = [out] + ([_pca_path(out)] if task == "embed" else [])
    for target in targets:
        if target.exists() and not overwrite:
            raise FileExistsError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to "
                                  "replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"output folder {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise PermissionError(f"output folder {parent} is not writable; choose another -o")
    return out


def _check_model(model: OFANet, m: Modality, task: str, head: str | None):
    require_embedding(model, m)
    if task != "classify":
        return None, None
    name = model.heads.select(head, None, m)
    return name, list(model.heads.info[name]["classes"])


def _tiling(model: OFANet, tile: int | None, overlap: int | None) -> tuple[int, int]:
    p = model.config.patch_size
    tile = tile or model.config.img_size
    if tile % p or tile <= 0:
        raise ValueError(f"tile {tile} must be a positive multiple of the patch size {p}")
    overlap = tile // 4 if overlap is None else overlap
    margin = (overlap // 2) // p * p  # context cropped from each side of a tile
    if tile - 2 * margin < p:
        raise ValueError(f"overlap {overlap} leaves no centre in a {tile}-pixel tile; use a "
                         "smaller overlap")
    return tile, margin


def _layout(Hp: int, Wp: int, th: int, tw: int, margin: int) -> Iterator[_Tile]:
    """Windows on the patch grid whose centres tile the raster exactly once."""
    def axis(size: int, t: int):
        stride = t - 2 * margin if t < size else size
        for start in range(0, size, stride):
            w0 = min(max(start - margin, 0), size - t)
            yield w0, start, min(start + stride, size)
    index = 0
    for y0, ys, ye in axis(Hp, th):
        for x0, xs, xe in axis(Wp, tw):
            yield _Tile(index, y0, x0, (ys, ye, xs, xe))
            index += 1


# ---------------------------------------------------------------- reading
class _TileReader:
    """Reads tiles in a thread into a bounded queue, so I/O overlaps compute and at most
    ``queue_size`` tiles wait in memory. Neighbouring tiles of a row are read as one window
    (up to READ_VALUES values): one GDAL read and one unit conversion instead of one per tile,
    and the overlap between them is read once."""

    _END = object()

    def __init__(self, da: xr.DataArray, m: Modality, tiles: list[_Tile], th: int, tw: int,
                 queue_size: int):
        self.da, self.m, self.tiles, self.th, self.tw = da, m, tiles, th, tw
        self.conversion = da.attrs.get(CONVERSION_ATTR, {"kind": "none"})
        self.nodata = da.rio.nodata
        self.mean = np.asarray(m.mean, dtype=np.float32)[:, None, None]
        self.queue: queue.Queue = queue.Queue(maxsize=max(2, queue_size))
        self.stopped = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for group in self._groups():
                if self.stopped.is_set():
                    return
                for t in self._read(group):
                    self._put(t)
        except BaseException as err:  # surfaced in the consumer thread
            self.error = err
        self._put(self._END)

    def _groups(self) -> Iterator[list[_Tile]]:
        """Runs of consecutive tiles of one row, each read as one window."""
        per_tile = self.da.sizes["band"] * self.th * self.tw
        most = max(1, READ_VALUES // per_tile)
        group: list[_Tile] = []
        for t in self.tiles:
            if group and (t.y0 != group[0].y0 or len(group) == most):
                yield group
                group = []
            group.append(t)
        if group:
            yield group

    def _put(self, item) -> None:
        while not self.stopped.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _read(self, group: list[_Tile]) -> Iterator[_Tile]:
        H, W = self.da.sizes["y"], self.da.sizes["x"]
        y0, x0 = group[0].y0, group[0].x0
        y1, x1 = min(y0 + self.th, H), min(group[-1].x0 + self.tw, W)
        try:
            block = self.da.isel(y=slice(y0, y1), x=slice(x0, x1)).values
        except rasterio.errors.RasterioIOError as err:
            raise RasterError(f"reading pixels {x0}..{x1}, {y0}..{y1} failed: the raster is "
                              f"corrupt or truncated ({str(err).splitlines()[0][:200]})") from None
        valid = np.ones(block.shape[1:], dtype=bool)
        if self.nodata is not None and not (isinstance(self.nodata, float) and math.isnan(self.nodata)):
            valid &= ~(block == self.nodata).any(axis=0)
        values = to_model_units(block, self.conversion)
        if values.dtype.kind == "f" and not np.isfinite(values.sum()):  # integers are finite
            valid &= np.isfinite(values).all(axis=0)
        for t in group:
            left = t.x0 - x0
            yield self._cut(t, values[:, :, left:left + self.tw], valid[:, left:left + self.tw])

    def _cut(self, t: _Tile, values: np.ndarray, valid: np.ndarray) -> _Tile:
        h, w = values.shape[1:]
        t.inside = (h, w)
        if (h, w) == (self.th, self.tw) and valid.all():  # the common case: nothing to fill
            t.pixels, t.valid = np.ascontiguousarray(values), valid
            return t
        pixels = np.broadcast_to(self.mean, (values.shape[0], self.th, self.tw)).copy()
        mask = np.zeros((self.th, self.tw), dtype=bool)
        pixels[:, :h, :w] = np.where(valid, values, self.mean)
        mask[:h, :w] = valid
        t.pixels, t.valid = pixels, mask
        return t

    def __iter__(self) -> Iterator[_Tile]:
        while True:
            item = self.queue.get()
            if item is self._END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self) -> None:
        self.stopped.set()


# ---------------------------------------------------------------- model
def _run_batch(run: _Run, batch: list[_Tile], sink: _Sink) -> None:
    """Run the model on a batch (halving it on GPU out-of-memory) and write each tile's centre."""
    runnable = [t for t in batch if t.valid.any()]
    outputs = {}
    if runnable:
        x = torch.from_numpy(np.stack([t.pixels for t in runnable]))
        result = _forward_adaptive(run, x, run.settings.seed + runnable[0].index)
        outputs = {t.index: r for t, r in zip(runnable, result)}
    for t in batch:
        sink.write(t, outputs.get(t.index), run.res)
        t.pixels = t.valid = None  # the layout keeps the tile records; not their pixels


def _forward_adaptive(run: _Run, x: torch.Tensor, seed: int) -> np.ndarray:
    try:
        with torch.inference_mode():
            return _forward(run, x.to(run.dev), seed)
    except torch.OutOfMemoryError:
        if x.shape[0] == 1:
            raise RuntimeError("out of GPU memory even for one tile; use a smaller --tile or "
                               "--device cpu") from None
        if run.dev.type == "cuda":
            torch.cuda.empty_cache()
        half = x.shape[0] // 2
        run.batch_size = max(1, min(run.batch_size, half))  # from now on
        first = _forward_adaptive(run, x[:half], seed)
        return np.concatenate([first, _forward_adaptive(run, x[half:], seed + half)])


def _forward(run: _Run, x: torch.Tensor, seed: int) -> np.ndarray:
    model, m, head = run.model, run.m, run.head
    p = model.config.patch_size
    gh, gw = x.shape[2] // p, x.shape[3] // p
    if run.task == "embed":
        tokens = model.forward_features(x, m)[:, 1:]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, gh, gw).float().cpu().numpy()
    if run.task == "reconstruct":
        mask_ratio = run.settings.mask_ratio
        image, _ = model.reconstruct(x, m, mask_ratio=mask_ratio, seed=seed,
                                     keep_visible=mask_ratio > 0)
        return image.float().cpu().numpy()
    if model.heads.info[head]["kind"] == "segmentation":
        return segment(model, x, m, head=head).softmax(1).float().cpu().numpy()
    probs = classify(model, x, m, head=head).softmax(-1)
    return probs[:, :, None, None].expand(-1, -1, gh, gw).float().cpu().numpy()


# ---------------------------------------------------------------- writing
class _Sink:
    """Receives each tile's centre, cut to the output grid, with invalid cells set to nodata.
    For embeddings it also keeps a few valid vectors of every tile to fit the PCA colour view."""

    sample_per_tile = 0
    class_pixels: np.ndarray | None = None  # classify: input pixels per class, see count_classes

    def __init__(self, count, height, width, dtype, nodata):
        self.count, self.height, self.width = count, height, width
        self.dtype, self.nodata = np.dtype(dtype), nodata
        self.samples: list[np.ndarray] = []
        self.rng = np.random.default_rng(0)

    def count_classes(self, classes: int, H: int, W: int, res: int) -> None:
        """Count the input pixels of each class as cells arrive: a cell cut by the raster's
        edge counts only its pixels inside (H x W input pixels, cells of res x res)."""
        self.class_pixels = np.zeros(classes, dtype=np.int64)
        self.size, self.cell = (H, W), res

    def write(self, t: _Tile, result: np.ndarray | None, res: int) -> None:
        ys, ye, xs, xe = t.core
        oy0, oy1 = ys // res, min(math.ceil(ye / res), self.height)
        ox0, ox1 = xs // res, min(math.ceil(xe / res), self.width)
        if oy1 <= oy0 or ox1 <= ox0:
            return
        ly0, lx0 = (ys - t.y0) // res, (xs - t.x0) // res
        shape = (oy1 - oy0, ox1 - ox0)
        valid = _valid_cells(t.valid, res, t.inside)[ly0:ly0 + shape[0], lx0:lx0 + shape[1]]
        if result is None:
            block = np.full((self.count, *shape), self.nodata, dtype=self.dtype)
        else:
            block = result[:, ly0:ly0 + shape[0], lx0:lx0 + shape[1]]
            if self.dtype == np.uint8:  # class probabilities -> index
                block = block.argmax(axis=0)[None].astype(np.uint8)
            block = np.where(valid, block, self.dtype.type(self.nodata)).astype(self.dtype)
            if self.class_pixels is not None:
                self._count(block[0], valid, oy0, ox0)
            if self.sample_per_tile and valid.any():
                vectors = block[:, valid].T
                pick = self.rng.choice(len(vectors), min(self.sample_per_tile, len(vectors)),
                                       replace=False)
                self.samples.append(vectors[pick])
        self._store(Window(ox0, oy0, shape[1], shape[0]), block)

    def _count(self, classes: np.ndarray, valid: np.ndarray, oy0: int, ox0: int) -> None:
        (H, W), res = self.size, self.cell
        rows = np.minimum(res, H - (oy0 + np.arange(classes.shape[0])) * res)
        cols = np.minimum(res, W - (ox0 + np.arange(classes.shape[1])) * res)
        pixels = np.outer(rows, cols)
        self.class_pixels += np.bincount(classes[valid], weights=pixels[valid],
                                         minlength=len(self.class_pixels)).astype(np.int64)

    def write_pca(self, path: Path | None) -> np.ndarray | None:
        """3-band uint8 colour view of the embeddings: first principal components, stretched."""
        sample = np.concatenate(self.samples) if self.samples else np.zeros((0, self.count))
        if len(sample) < 3:
            mean, comps = np.zeros(self.count), np.eye(self.count)[:3]
            lo, hi = -np.ones(3), np.ones(3)
        else:
            mean = sample.mean(axis=0)
            centred = sample - mean
            _, vectors = np.linalg.eigh(centred.T @ centred)  # D x D: cheap whatever the sample
            comps = vectors[:, ::-1][:, :3].T
            proj = (sample - mean) @ comps.T
            lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
        return self._pca(path, mean, comps, lo, np.where(hi > lo, hi, lo + 1))

    @staticmethod
    def _project(block: np.ndarray, mean, comps, lo, hi) -> np.ndarray:
        c, h, w = block.shape
        vectors = block.reshape(c, -1).T
        ok = np.isfinite(vectors).all(axis=1)
        proj = (np.nan_to_num(vectors) - mean) @ comps.T
        scaled = np.clip((proj - lo) / (hi - lo) * 254 + 1, 1, 255).round()
        scaled[~ok] = 0  # 0 = nodata in the colour view
        return scaled.T.reshape(comps.shape[0], h, w).astype(np.uint8)


class _MemorySink(_Sink):
    def __init__(self, count, height, width, dtype, nodata):
        super().__init__(count, height, width, dtype, nodata)
        self.array = np.full((count, height, width), nodata, dtype=dtype)

    def _store(self, window: Window, block: np.ndarray) -> None:
        self.array[:, window.row_off:window.row_off + window.height,
                   window.col_off:window.col_off + window.width] = block

    def _pca(self, path, mean, comps, lo, hi):
        self.pca_array = self._project(self.array, mean, comps, lo, hi)
        return self.pca_array

    def set_classes(self, classes, colors) -> None:
        pass

    def finish(self) -> np.ndarray:
        return self.array

    def abort(self) -> None:
        pass


class _FileSink(_Sink):
    """A tiled GeoTIFF beside the target, written window by window, converted to a COG and
    renamed into place.

    The full-D embedding cube uses 64-pixel blocks and no overviews: GDAL buffers a row of blocks
    of every band (in its cache while writing, in the COG conversion), so small blocks keep that
    memory small, and averaged embeddings make no useful overview.
    """

    def __init__(self, path: Path, count, height, width, dtype, nodata, transform, crs, bands,
                 input_bounds: tuple[float, float, float, float]):
        super().__init__(count, height, width, dtype, nodata)
        self.path = path
        self.temps: list[Path] = []
        self.cube = count >= CUBE_MIN_BANDS
        # few bands: the temporary file stays uncompressed, cheap to write and read back
        self.profile = dict(driver="GTiff", count=count, height=height, width=width, dtype=dtype,
                            nodata=nodata, transform=transform, crs=crs, tiled=True,
                            blockxsize=256, blockysize=256, BIGTIFF="IF_SAFER")
        if self.cube:  # small blocks: a row of D-band blocks must fit GDAL's cache
            self.profile.update(compress=_compression(), predictor=3 if dtype == "float32" else 1,
                                blockxsize=CUBE_BLOCK, blockysize=CUBE_BLOCK, zstd_level=1, zlevel=1)
        self.tmp = self._temp(path)
        self.dst = rasterio.open(self.tmp, "w", **self.profile)
        for i, name in enumerate(bands, start=1):
            self.dst.set_band_description(i, name)
        self.dst.update_tags(input_bounds=",".join(f"{v:.6f}" for v in input_bounds))
        self.finals: list[tuple[Path, Path]] = []
        self.strip: np.ndarray | None = None  # rows of the cube not yet written, see _store
        self.strip_top = 0

    def _temp(self, path: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp.tif", dir=path.parent)
        os.close(fd)
        self.temps.append(Path(name))
        return Path(name)

    def _store(self, window: Window, block: np.ndarray) -> None:
        if not self.cube:
            self.dst.write(block, window=window)
            return
        # The cube: GDAL's cost is per band and per call, and a compressed block written twice
        # is stored twice; so rows of tiles are gathered and only whole rows of blocks written.
        top, height = window.row_off, window.height
        if self.strip is None:
            self.strip_top, self.strip = top, self._nodata_rows(height)
        if top + height > self.strip_top + self.strip.shape[1]:  # a new row of tiles begins:
            self._flush(upto=top)  # every row above it is complete
            missing = top + height - self.strip_top - self.strip.shape[1]
            self.strip = np.concatenate([self.strip, self._nodata_rows(missing)], axis=1)
        r0 = top - self.strip_top
        self.strip[:, r0:r0 + height, window.col_off:window.col_off + window.width] = block

    def _nodata_rows(self, rows: int) -> np.ndarray:
        return np.full((self.count, rows, self.width), self.nodata, self.dtype)

    def _flush(self, upto: int | None = None) -> None:
        """Write the buffered rows above ``upto`` in whole rows of blocks (all rows if None)."""
        if self.strip is None:
            return
        rows = (self.strip.shape[1] if upto is None
                else (upto - self.strip_top) // CUBE_BLOCK * CUBE_BLOCK)
        if rows > 0:
            self.dst.write(self.strip[:, :rows], window=Window(0, self.strip_top, self.width, rows))
            self.strip, self.strip_top = self.strip[:, rows:].copy(), self.strip_top + rows

    def _pca(self, path: Path, mean, comps, lo, hi):
        self._flush()
        tmp = self._temp(path)
        profile = self.profile | dict(count=3, dtype="uint8", nodata=0, compress=None,
                                      predictor=1)
        self.dst.close()
        with rasterio.open(self.tmp) as src, rasterio.open(tmp, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                dst.write(self._project(src.read(window=window), mean, comps, lo, hi),
                          window=window)
            for i in range(3):
                dst.set_band_description(i + 1, f"pc{i + 1}")
        self.finals.append((tmp, path))
        return None

    def set_classes(self, classes: list[str], colors: list[str] | None) -> None:
        colors = colors or [DEFAULT_COLORS[i % len(DEFAULT_COLORS)] for i in range(len(classes))]
        cmap = {i: _rgb(c) for i, c in enumerate(colors)}
        cmap[CLASS_NODATA] = (0, 0, 0, 0)
        self.dst.write_colormap(1, cmap)
        self.dst.update_tags(class_names=",".join(classes), **{f"class_{i}": n for i, n in enumerate(classes)})

    def finish(self) -> None:
        if not self.dst.closed:
            self._flush()
            self.dst.close()
        for tmp, final in [(self.tmp, self.path)] + self.finals:
            cog = self._temp(final)
            cube = tmp == self.tmp and self.cube
            _write_cog(tmp, cog, blocksize=CUBE_BLOCK if cube else 256,
                       overviews="NONE" if cube else "AUTO")
            publish(cog, final)
        self._cleanup()
        return None

    def abort(self) -> None:
        if not self.dst.closed:
            self.dst.close()
        self._cleanup()

    def _cleanup(self) -> None:
        for tmp in self.temps:
            tmp.unlink(missing_ok=True)
            Path(str(tmp) + ".aux.xml").unlink(missing_ok=True)


def _write_cog(src: Path, dst: Path, blocksize: int, overviews: str) -> None:
    rasterio.shutil.copy(src, dst, driver="COG", compress=_compression(), blocksize=blocksize,
                         overviews=overviews, level=1, num_threads="ALL_CPUS",
                         BIGTIFF="IF_SAFER")


@functools.lru_cache(maxsize=None)
def _compression() -> str:
    """ZSTD (as small as DEFLATE, faster) where this GDAL has it, else DEFLATE."""
    try:
        with warnings.catch_warnings(), rasterio.io.MemoryFile() as memory:
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with memory.open(driver="GTiff", width=1, height=1, count=1, dtype="uint8",
                             compress="ZSTD") as probe:
                probe.write(np.zeros((1, 1, 1), np.uint8))
        return "ZSTD"
    except rasterio.errors.RasterioError:
        return "DEFLATE"


def _valid_cells(valid: np.ndarray, res: int, inside: tuple[int, int]) -> np.ndarray:
    """Pixel validity -> output cell validity: a patch counts when most of its pixels inside the
    raster are valid, so the patches cut by the raster's right and bottom edges are kept."""
    if res == 1:
        return valid
    h, w = valid.shape[0] // res, valid.shape[1] // res
    within = np.zeros_like(valid)
    within[:inside[0], :inside[1]] = True

    def per_cell(a: np.ndarray) -> np.ndarray:
        return a[:h * res, :w * res].reshape(h, res, w, res).sum(axis=(1, 3))

    count = per_cell(within)
    return (count > 0) & (2 * per_cell(valid & within) > count)


def _pca_path(path: Path) -> Path:
    return path.with_name(path.stem + "_pca" + path.suffix)


def _rgb(color: str) -> tuple[int, int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4)) + (255,)


def _georeferenced(array: np.ndarray, transform: Affine, crs, bands: list[str], nodata) -> xr.DataArray:
    h, w = array.shape[1:]
    xs = transform.c + transform.a * (np.arange(w) + 0.5)
    ys = transform.f + transform.e * (np.arange(h) + 0.5)
    da = xr.DataArray(array, dims=("band", "y", "x"), coords={"band": bands, "y": ys, "x": xs})
    da = da.rio.write_transform(transform)
    if crs is not None:
        da = da.rio.write_crs(crs)
    return da.rio.write_nodata(nodata, encoded=False)
