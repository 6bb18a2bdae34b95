"""The tile layout on the patch grid and the reader that fills tiles in a thread.

Tiles overlap; each contributes only its centre (the overlap is context, cropped away), so the
centres cover the raster exactly once; or, for a task that blends (``Task.blend``), tiles every
half a tile contribute all of themselves, weighted (blend.py).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from affine import Affine

from ..errors import BadInput
from ..io import CONVERSION_ATTR, FILL_ATTR, RasterError
from ..modalities import Modality
from ..scale import to_model_units

OUTLIER_STDS = 1e4  # see TileReader.bound
READ_VALUES = 4 * 2**20  # values per read window: 16 MB in float32, whatever the raster's width


@dataclass(frozen=True)
class Grid:
    """The output's grid: cells of ``res`` x ``res`` input pixels over a ``height`` x ``width``
    pixel raster (the last row and column of cells may reach past its edges)."""

    height: int  # input pixels
    width: int
    res: int  # cell side, input pixels
    tiles: int  # how many tiles cover it
    transform: Affine  # of the cells
    crs: Any
    bounds: tuple[float, float, float, float]  # the input's own extent
    # each input pixel row's pixel area in m² (None: no CRS with areas; areas.row_areas_m2)
    row_m2: np.ndarray | None = field(compare=False)
    tags: dict[str, str] = field(default_factory=dict)  # how the input was read, for the record

    @property
    def rows(self) -> int:
        return math.ceil(self.height / self.res)

    @property
    def cols(self) -> int:
        return math.ceil(self.width / self.res)


@dataclass
class Tile:
    index: int
    y0: int  # window origin in the patch-padded raster, pixels
    x0: int
    core: tuple[int, int, int, int]  # y_start, y_stop, x_start, x_stop of its centre, pixels
    pixels: np.ndarray | None = None  # [C, th, tw], model units, filled (TileReader._cut)
    valid: np.ndarray | None = None  # [th, tw] bool
    inside: tuple[int, int] = (0, 0)  # rows, columns of the tile that lie inside the raster


def tiling(patch: int, tile: int, overlap: int | None) -> tuple[int, int]:
    """Checked tile side and the margin cropped from each side of a tile, in pixels."""
    if tile % patch or tile <= 0:
        raise BadInput(
            f"tile {tile} must be a positive multiple of the patch size {patch}",
            "give {tile} a multiple of the patch size",
        )
    overlap = tile // 4 if overlap is None else overlap
    margin = (overlap // 2) // patch * patch
    if tile - 2 * margin < patch:
        raise BadInput(
            f"overlap {overlap} leaves no centre in a {tile}-pixel tile", "use a smaller {overlap}"
        )
    return tile, margin


def layout(Hp: int, Wp: int, th: int, tw: int, margin: int) -> Iterator[Tile]:
    """Windows on the patch grid whose centres tile the raster exactly once."""

    def axis(size: int, t: int):
        stride = t - 2 * margin if t < size else size
        for start in range(0, size, stride):
            w0 = min(max(start - margin, 0), size - t)
            yield w0, start, min(start + stride, size)

    index = 0
    for y0, ys, ye in axis(Hp, th):
        for x0, xs, xe in axis(Wp, tw):
            yield Tile(index, y0, x0, (ys, ye, xs, xe))
            index += 1


def blend_tiling(patch: int, tile: int, overlap: int | None) -> tuple[int, int]:
    """Checked tile side and the stride between blended tiles (``Task.blend``), in pixels: a
    tile less ``overlap`` (None: half a tile), on the patch grid."""
    tile, _ = tiling(patch, tile, 0)
    overlap = tile // 2 if overlap is None else overlap
    if overlap >= tile:
        raise BadInput(
            f"overlap {overlap} is not smaller than the {tile}-pixel tile",
            "use a smaller {overlap}",
        )
    return tile, max(patch, (tile - overlap) // patch * patch)


def blend_layout(Hp: int, Wp: int, th: int, tw: int, stride: int) -> Iterator[Tile]:
    """Windows every ``stride`` pixels, the last of a row or column moved inside, each
    contributing all of itself to the average (its ``core`` is the whole window)."""

    def axis(size: int, t: int) -> list[int]:
        return [*range(0, size - t, stride), size - t]

    index = 0
    for y0 in axis(Hp, th):
        for x0 in axis(Wp, tw):
            yield Tile(index, y0, x0, (y0, y0 + th, x0, x0 + tw))
            index += 1


def valid_cells(valid: np.ndarray, res: int, inside: tuple[int, int]) -> np.ndarray:
    """Pixel validity -> output cell validity: a patch counts when most of its pixels inside the
    raster are valid, so the patches cut by the raster's right and bottom edges are kept."""
    if res == 1:
        return valid
    h, w = valid.shape[0] // res, valid.shape[1] // res
    within = np.zeros_like(valid)
    within[: inside[0], : inside[1]] = True

    def per_cell(a: np.ndarray) -> np.ndarray:
        return a[: h * res, : w * res].reshape(h, res, w, res).sum(axis=(1, 3))

    count = per_cell(within)
    return (count > 0) & (2 * per_cell(valid & within) > count)


class TileReader:
    """Reads tiles in a thread into a bounded queue, so I/O overlaps compute and at most
    ``queue_size`` tiles wait in memory. Neighbouring tiles of a row are read as one window
    (up to READ_VALUES values): one GDAL read and one unit conversion instead of one per tile,
    and the overlap between them is read once."""

    _END = object()

    def __init__(
        self, da: xr.DataArray, m: Modality, tiles: list[Tile], th: int, tw: int, queue_size: int
    ):
        self.da, self.m, self.tiles, self.th, self.tw = da, m, tiles, th, tw
        self.conversion = da.attrs.get(CONVERSION_ATTR, {"kind": "none"})
        self.nodata = da.rio.nodata
        self.fill = da.attrs.get(FILL_ATTR)  # invalid where every band has it
        self.mean = np.asarray(m.mean, dtype=np.float32)[:, None, None]
        # values further than this from the mean are no measurement (float nodata such as
        # -3.4e38 that the file does not declare, inf): invalid, so the model never sees them
        self.bound = OUTLIER_STDS * np.asarray(m.std, dtype=np.float32)[:, None, None]
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
        except BaseException as err:  # noqa: BLE001 - raised in the consumer thread
            self.error = err
        self._put(self._END)

    def _groups(self) -> Iterator[list[Tile]]:
        """Runs of consecutive tiles of one row, each read as one window."""
        per_tile = self.da.sizes["band"] * self.th * self.tw
        most = max(1, READ_VALUES // per_tile)
        group: list[Tile] = []
        for t in self.tiles:
            # a new row of tiles starts a group, also where two rows share their window's top
            # (the last two rows of a raster can): a group's window runs left to right
            if group and (t.y0 != group[0].y0 or t.x0 <= group[-1].x0 or len(group) == most):
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

    def _read(self, group: list[Tile]) -> Iterator[Tile]:
        H, W = self.da.sizes["y"], self.da.sizes["x"]
        y0, x0 = group[0].y0, group[0].x0
        y1, x1 = min(y0 + self.th, H), min(group[-1].x0 + self.tw, W)
        try:
            block = self.da.isel(y=slice(y0, y1), x=slice(x0, x1)).values
        except rasterio.errors.RasterioIOError as err:
            raise RasterError(
                f"reading pixels {x0}..{x1}, {y0}..{y1} failed: the raster is "
                f"corrupt or truncated ({str(err).splitlines()[0][:200]})"
            ) from None
        valid = np.ones(block.shape[1:], dtype=bool)
        if self.nodata is not None and not (
            isinstance(self.nodata, float) and math.isnan(self.nodata)
        ):
            valid &= ~(block == self.nodata).any(axis=0)
        if self.fill is not None:
            valid &= ~(block == self.fill).all(axis=0)
        values = to_model_units(block, self.conversion)
        if block.dtype.kind == "f":  # stored integers are finite and within their type's range
            with np.errstate(invalid="ignore"):  # NaN compares False: invalid
                sane = np.abs(values - self.mean) <= self.bound
            valid &= sane.all(axis=0)
        for t in group:
            left = t.x0 - x0
            yield self._cut(t, values[:, :, left : left + self.tw], valid[:, left : left + self.tw])

    def _cut(self, t: Tile, values: np.ndarray, valid: np.ndarray) -> Tile:
        """A tile's pixels, whole: invalid pixels take the mean of the tile's valid ones, and
        the part past the raster's edge mirrors the part inside, so a cell cut by the edge is
        computed from real pixels, not from padding that would make it an outlier."""
        h, w = values.shape[1:]
        t.inside = (h, w)
        if (h, w) == (self.th, self.tw) and valid.all():  # the common case: nothing to fill
            t.pixels, t.valid = np.ascontiguousarray(values), valid
            return t
        if valid.any():
            fill = values[:, valid].mean(axis=1, dtype=np.float64)[:, None, None]
            values = np.where(valid, values, fill.astype(values.dtype))
        else:
            values = np.broadcast_to(self.mean, values.shape)
        pad = ((0, 0), (0, self.th - h), (0, self.tw - w))
        mask = np.zeros((self.th, self.tw), dtype=bool)
        mask[:h, :w] = valid
        t.pixels, t.valid = np.pad(values, pad, mode="symmetric").astype(np.float32), mask
        return t

    def __iter__(self) -> Iterator[Tile]:
        while True:
            item = self.queue.get()
            if item is self._END:
                if self.error is not None:
                    raise self.error
                return
            yield item

    def stop(self) -> None:
        self.stopped.set()
