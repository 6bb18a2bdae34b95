"""Blended tiles (``Task.blend``): each pixel is the average of every tile that covers it,
weighted by a tent that falls from the tile's centre towards its edges.

Where a per-pixel output depends on what else its tile holds (a change head reads the
backbone's token maps of the tile), the cropped centres of ``layout`` step at each centre's
edge: a grid of squares on the map, and straight edges in polygons drawn from it. With tiles at
half a tile and these weights, the output changes smoothly from one tile to the next (on the
OSCD city valencia, a change head's mean step between neighbouring pixels across the old
centres' edges fell from 2.6 to 1.04 times the step elsewhere; docs/EVALUATION.md).

Tiles arrive row by row, so a row of pixels is complete once a tile starts below it: only a
strip of rows the raster's width is kept, and memory stays flat in the raster's height.
"""

from __future__ import annotations

import numpy as np

from .sinks import Sink
from .tiles import Tile


def tent(size: int) -> np.ndarray:
    """Weights along one side of a tile: 1 at its centre, 1 / size at its first and last pixel
    (above zero, so a pixel that one tile alone covers, at the raster's edge, keeps its value)."""
    i = np.arange(size) + 0.5
    return (np.minimum(i, size - i) / (size / 2)).astype(np.float32)


class Blender:
    """Between the runner and the sink: sums each tile's output times its weights, and writes
    the rows no later tile reaches to ``sink`` as one wide tile; ``close`` writes the rest."""

    def __init__(self, sink: Sink, th: int, tw: int):
        self.sink = sink
        self.weights = tent(th)[:, None] * tent(tw)[None, :]
        self.width = sink.grid.width
        self.top = 0  # the strip's first row, pixels
        self.total: np.ndarray | None = None  # weighted sums [bands of the task's forward, ...]
        self.weight = np.zeros((0, self.width), np.float32)
        self.written = 0  # wide tiles handed to the sink

    @property
    def cells_with_data(self) -> int:
        return self.sink.cells_with_data

    def write(self, t: Tile, result: np.ndarray | None) -> None:
        self._flush(upto=t.y0)  # tiles come row by row: no later one reaches above this one
        h, w = t.inside
        missing = t.y0 + h - self.top - self.weight.shape[0]
        if missing > 0:
            self.weight = np.concatenate([self.weight, self._rows(1, missing)[0]])
            if self.total is not None:
                more = self._rows(self.total.shape[0], missing)
                self.total = np.concatenate([self.total, more], axis=1)
        if result is None:  # no valid pixel: it adds no weight, so adds nothing
            return
        if self.total is None:  # the forward's bands (before ``Task.cells`` adds any)
            self.total = self._rows(result.shape[0], self.weight.shape[0])
        assert t.valid is not None  # filled by the reader
        weight = self.weights[:h, :w] * t.valid[:h, :w]
        r0 = t.y0 - self.top
        self.total[:, r0 : r0 + h, t.x0 : t.x0 + w] += result[:, :h, :w] * weight
        self.weight[r0 : r0 + h, t.x0 : t.x0 + w] += weight

    def close(self) -> None:
        self._flush(upto=self.top + self.weight.shape[0])

    def _rows(self, bands: int, rows: int) -> np.ndarray:
        return np.zeros((bands, rows, self.width), np.float32)

    def _flush(self, upto: int) -> None:
        rows = min(upto - self.top, self.weight.shape[0])
        if rows <= 0:
            return
        weight = self.weight[:rows]
        valid = weight > 0  # a pixel no tile had as valid stays nodata
        block = None  # no valid pixel: nodata
        if self.total is not None and valid.any():
            block = self.total[:, :rows] / np.where(valid, weight, 1.0)
        core = (self.top, self.top + rows, 0, self.width)
        wide = Tile(self.written, self.top, 0, core, valid=valid, inside=(rows, self.width))
        self.sink.write(wide, block)
        self.written += 1
        self.top += rows
        self.weight = self.weight[rows:].copy()
        if self.total is not None:
            self.total = self.total[:, rows:].copy()
