"""``predict_raster``: a task over a raster of any size, tile by tile, into a sink.

A reader thread cuts the raster into overlapping tiles aligned to the patch grid and hands them
over through a bounded queue; the model runs on batches of tiles; each tile contributes only its
centre, which goes straight to the sink (or, for a task that blends, its weighted whole to a
strip of rows, blend.py). No accumulator spans the raster, so memory stays flat whatever its
size. Which task runs is the ``Task`` object's business (tasks.py); nothing here
depends on its name.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import torch
import xarray as xr
from affine import Affine

from ..areas import raster_row_areas_m2
from ..arrays import SCENES, opened_array
from ..errors import BadInput
from ..io import NOTES_ATTR, RasterError, open_raster, raster_modality, source_tags
from ..modalities import Modality
from ..precision import autocast_for, fused_attention_for, resolve_precision
from ..protocol import quicklook_path
from ..quicklook import write_quicklook
from .blend import Blender
from .settings import Cancelled, EngineSettings, PredictionResult
from .sinks import Sink, check_output, open_sink
from .tasks import Task, get_task
from .tiles import Grid, Tile, TileReader, blend_layout, blend_tiling, layout, tiling

GDAL_CACHE_BYTES = 64 * 2**20  # GDAL block cache while reading/writing; its default grows with RAM
BATCH_TOKENS = 2048  # default batch: 32 tiles of 64 px with 8-px patches; measured 1.2x (fp32)
# to 1.3x (bf16) the throughput of 8 tiles on a 2-core CPU, see bench/RESULTS.md


def pick_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA, then Apple MPS, then CPU; a device this machine lacks, or a name that is
    no device, is a BadInput that names it (devices.check_device)."""
    from ..devices import check_device

    return check_device(device)


def predict_raster(
    model,
    raster: str | Path | xr.DataArray | xr.Dataset | list,
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
    """Run ``task`` (a name in ``TASKS``: "embed" | "reconstruct" | "classify") over a raster
    of any size.

    ``output`` (a .tif path) gets Cloud-Optimised GeoTIFFs with the input's CRS and extent:
    embeddings [D bands] at patch resolution plus ``*_pca.tif``, a 3-band colour view; a
    reconstruction in the input's bands; or class indices (uint8, 255 = nodata) with class names
    and a colour table: per patch from a scene head (each tile's label), per pixel from a
    segmentation head. Without ``output`` the result comes back in memory.

    ``settings`` (an ``EngineSettings``) says how to run: tile, overlap, batch size, device,
    precision, head, mask ratio, seed; keyword arguments named like its fields change single
    ones (``predict_raster(model, path, "embed", precision="auto")``). ``progress(done, total)``
    is called per batch; ``cancel`` (an Event or a callable) stops the work and removes anything
    written. Torch's thread count is left as the caller set it.
    """
    settings = replace(settings or EngineSettings(), **changes)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # GDAL's cache bounded, whatever the size
        return _predict(
            model,
            raster,
            task,
            output,
            settings=settings,
            modality=modality,
            overwrite=overwrite,
            progress=progress,
            cancel=cancel,
        )


def _predict(
    model,
    raster,
    name: str,
    output,
    *,
    settings: EngineSettings,
    modality,
    overwrite: bool,
    progress,
    cancel,
) -> PredictionResult:
    t0 = time.perf_counter()
    kind = get_task(name)
    if not isinstance(raster, SCENES):
        da = open_raster(raster, modality)
    elif kind.name == "change" and isinstance(raster, xr.DataArray):
        da = raster  # the pair change() built of two dates it opened and checked
    else:  # open_raster's, perhaps worked on since: read as it is now
        da = opened_array(raster, modality)
    m = raster_modality(da)
    out_path = check_output(output, da.attrs.get("source"), overwrite, kind)
    task = kind(model, m, settings)
    p = task.patch
    H, W = da.sizes["y"], da.sizes["x"]
    if H < p or W < p:
        raise RasterError(
            f"the raster is {H}x{W} pixels, smaller than one {p}x{p} patch; the "
            f"model needs at least {p} pixels on each side"
        )
    Hp, Wp = math.ceil(H / p) * p, math.ceil(W / p) * p
    if task.blend:
        tile, stride = blend_tiling(p, settings.tile or task.default_tile, settings.overlap)
        th, tw = min(tile, Hp), min(tile, Wp)
        tiles = list(blend_layout(Hp, Wp, th, tw, stride))
    else:
        tile, margin = tiling(p, settings.tile or task.default_tile, settings.overlap)
        th, tw = min(tile, Hp), min(tile, Wp)
        tiles = list(layout(Hp, Wp, th, tw, margin))
    dev = pick_device(settings.device)
    precision = resolve_precision(settings.precision, dev)
    task.to(dev)
    res = task.resolution
    grid = Grid(
        height=H,
        width=W,
        res=res,
        tiles=len(tiles),
        transform=da.rio.transform() @ Affine.scale(res),
        crs=da.rio.crs,
        bounds=_bounds(da),
        row_m2=raster_row_areas_m2(da),
        tags=source_tags(da),
    )
    task.start(grid)
    batch_size = settings.batch_size or max(1, BATCH_TOKENS // ((th // p) * (tw // p)))
    sink = open_sink(task, grid, out_path)
    blender = Blender(sink, th, tw) if task.blend else None
    runner = _Runner(
        task=task,
        sink=blender or sink,
        device=dev,
        precision=precision,
        batch_size=batch_size,
        seed=settings.seed,
    )
    is_cancelled = (cancel.is_set if isinstance(cancel, threading.Event) else cancel) or (
        lambda: False
    )
    reader = TileReader(da, m, tiles, th, tw, queue_size=2 * batch_size)
    done = 0
    try:
        with task.attention(fused_attention_for(precision, dev)):
            batch: list[Tile] = []
            for t in itertools.chain(reader, [None]):  # None: flush the last, partial batch
                if t is not None:
                    batch.append(t)
                if not batch or (t is not None and len(batch) < runner.batch_size):
                    continue
                runner.run(batch)
                done += len(batch)
                batch = []
                if progress:
                    progress(done, len(tiles))
                if is_cancelled():
                    raise Cancelled("cancelled by the caller; nothing was written")
        if blender is not None:
            blender.close()
        if not sink.cells_with_data:
            raise RasterError(
                f"no {p}x{p}-pixel patch of the raster has data in most of its pixels, so "
                "there is nothing to compute; nothing was written",
                "check the raster's nodata value, or give one with more data",
            )
        reported = task.finish(sink, out_path)
        data = sink.finish()
    except BaseException:
        reader.stop()
        sink.abort()
        raise
    result = PredictionResult(
        task=kind.name,
        data=data,
        path=out_path,
        tiles=len(tiles),
        seconds=round(time.perf_counter() - t0, 2),
        device=str(dev),
        precision=precision,
        modality=m.name,
        input_bounds=grid.bounds,
        **reported,
    )
    result.notes[:0] = da.attrs.get(NOTES_ATTR, [])  # how the input was read, then the task's
    if out_path is not None:
        _quicklook(result, da, task.outputs(out_path), settings, is_cancelled)
    return result


def _quicklook(
    result: PredictionResult,
    da: xr.DataArray,
    outputs: list[Path],
    settings: EngineSettings,
    is_cancelled: Callable[[], bool],
) -> None:
    """The quicklook PNG beside a written output (``settings.quicklook``), into
    ``result.quicklook``. A picture that cannot be drawn costs a warning, never the GeoTIFFs;
    a cancel before or while it is drawn removes everything the run wrote."""
    assert result.path is not None
    target = quicklook_path(result.path)
    if target not in outputs:  # a task the protocol does not name has no quicklook
        if settings.quicklook:
            result.notes.append(f"no quicklook: the task {result.task} has none")
        return
    if not settings.quicklook:
        if target.is_file():  # an earlier run's (its output was just overwritten): stale
            try:
                target.unlink()
            except OSError as err:
                result.warnings.append(f"{target} is an earlier run's quicklook: {err}")
        return
    try:
        if is_cancelled():
            raise Cancelled("cancelled by the caller; nothing was written")
        result.quicklook = write_quicklook(result, da, settings.mask_ratio)
    except (Cancelled, KeyboardInterrupt):
        for path in outputs:
            if not path.is_dir():
                path.unlink(missing_ok=True)
        raise
    except Exception as err:  # noqa: BLE001 - the result stands without its picture
        problem = str(err).strip().splitlines()[0] if str(err).strip() else ""
        result.warnings.append(
            f"no quicklook: {target.name} could not be written "
            f"({type(err).__name__}{': ' + problem if problem else ''}); the GeoTIFF output is "
            "complete"
        )


def _bounds(da: xr.DataArray) -> tuple[float, float, float, float]:
    left, bottom, right, top = (float(v) for v in da.rio.bounds())
    return left, bottom, right, top


class _Runner:
    """Runs the model on batches of tiles (halving them on GPU out-of-memory) and hands each
    tile's result to the sink."""

    def __init__(
        self,
        *,
        task: Task,
        sink: Sink | Blender,
        device: torch.device,
        precision: str,
        batch_size: int,
        seed: int,
    ):
        self.task, self.sink, self.device, self.precision = task, sink, device, precision
        self.batch_size = batch_size  # halved from the settings' on GPU out-of-memory
        self.seed = seed

    def run(self, batch: list[Tile]) -> None:
        runnable = [t for t in batch if t.valid is not None and t.valid.any()]
        outputs = {}
        if runnable:
            x = torch.from_numpy(np.stack([t.pixels for t in runnable]))  # type: ignore[misc]
            with autocast_for(self.precision, self.device):
                result = self._forward(x, self.seed + runnable[0].index)
            outputs = {t.index: r for t, r in zip(runnable, result)}
        for t in batch:
            self.sink.write(t, outputs.get(t.index))
            t.pixels = t.valid = None  # the layout keeps the tile records; not their pixels

    def _forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        try:
            with torch.inference_mode():
                return self.task.forward(x.to(self.device), seed)
        except torch.OutOfMemoryError:
            if x.shape[0] == 1:
                raise BadInput(
                    "out of GPU memory even for one tile", "use a smaller {tile} or {device} cpu"
                ) from None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            half = x.shape[0] // 2
            self.batch_size = max(1, min(self.batch_size, half))  # from now on
            first = self._forward(x[:half], seed)
            return np.concatenate([first, self._forward(x[half:], seed + half)])
