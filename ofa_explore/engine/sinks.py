"""Where tile centres go: an array in memory, or an uncompressed GeoTIFF written window by window
and then compressed, once, into a Cloud-Optimised GeoTIFF that is renamed into place
(``fileio.atomic_output``), so nothing is ever half-written. A sink is configured by the task it
serves and the output grid."""

from __future__ import annotations

import functools
import logging
import math
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import rasterio.io
import rasterio.shutil
import xarray as xr
from rasterio.windows import Window

from ..errors import BadInput, OutputExists
from ..fileio import atomic_output, check_writable
from ..protocol import TIF_SUFFIXES
from .tasks import Task
from .tiles import Grid, Tile, valid_cells

CUBE_BLOCK = 64  # block side of the embedding cube: 64 x 64 x D floats, 3 MB for D = 192
CUBE_MIN_BANDS = 33  # outputs with this many bands are treated as the embedding cube


def check_output(output, source, overwrite: bool, task: type[Task]) -> Path | None:
    """The output path, checked before any work: a GeoTIFF name, not the input, not an existing
    file (unless ``overwrite``), in a writable folder."""
    if output is None:
        return None
    out = Path(output)
    if out.suffix.lower() not in TIF_SUFFIXES:
        raise BadInput(
            f"output {out} must be a GeoTIFF path ending in .tif",
            "give {output} a name ending in .tif",
        )
    sources = source if isinstance(source, (list, tuple)) else [source] if source else []
    for src in sources:
        if Path(src).resolve() == out.resolve():
            raise BadInput(
                f"output {out} is the input raster",
                "choose another {output}; the input is never overwritten",
            )
    for target in task.outputs(out):
        if target.exists() and not overwrite:
            raise OutputExists(f"{target} exists", "pass {overwrite} to replace it")
    return check_writable(out)  # its folder exists and takes a new file (tried for real)


def open_sink(task: Task, grid: Grid, path: Path | None) -> Sink:
    return FileSink(task, grid, path) if path else MemorySink(task, grid)


class Sink:
    """Receives each tile's centre, cut to the output grid, with invalid cells set to nodata;
    the task sees every block written (see ``Task.observe``)."""

    def __init__(self, task: Task, grid: Grid):
        self.task, self.grid = task, grid
        self.bands = task.bands()
        self.count, self.height, self.width = len(self.bands), grid.rows, grid.cols
        self.dtype, self.nodata = np.dtype(task.dtype), task.nodata
        self.cells_with_data = 0  # output cells written with a value, not nodata

    def write(self, t: Tile, result: np.ndarray | None) -> None:
        res = self.grid.res
        ys, ye, xs, xe = t.core
        oy0, oy1 = ys // res, min(math.ceil(ye / res), self.height)
        ox0, ox1 = xs // res, min(math.ceil(xe / res), self.width)
        if oy1 <= oy0 or ox1 <= ox0:
            return
        ly0, lx0 = (ys - t.y0) // res, (xs - t.x0) // res
        shape = (oy1 - oy0, ox1 - ox0)
        assert t.valid is not None  # filled by the reader
        valid = valid_cells(t.valid, res, t.inside)[ly0 : ly0 + shape[0], lx0 : lx0 + shape[1]]
        if result is None:
            block = np.full((self.count, *shape), self.nodata, dtype=self.dtype)
        else:
            block = self.task.cells(result[:, ly0 : ly0 + shape[0], lx0 : lx0 + shape[1]])
            block = np.where(valid, block, self.dtype.type(self.nodata)).astype(self.dtype)
            self.task.observe(block, valid, oy0, ox0)
            self.cells_with_data += int(valid.sum())
        self._store(Window(ox0, oy0, shape[1], shape[0]), block)

    def _store(self, window: Window, block: np.ndarray) -> None:
        raise NotImplementedError

    def derive(
        self,
        path: Path | None,
        project: Callable[[np.ndarray], np.ndarray],
        bands: list[str],
        dtype: str,
        nodata,
    ) -> xr.DataArray | None:
        """An extra output computed block by block from this one by ``project``
        ([count, h, w] -> [len(bands), h, w]): a file at ``path`` when the sink writes files
        (None comes back), else an array."""
        raise NotImplementedError

    def add_tags(self, tags: dict[str, str]) -> None:
        """Metadata learnt during the run (a self-check's figures), added before ``finish``."""
        raise NotImplementedError

    def finish(self) -> xr.DataArray | None:
        raise NotImplementedError

    def abort(self) -> None:
        """Removes whatever was written; called on any error or cancel."""


class MemorySink(Sink):
    def __init__(self, task: Task, grid: Grid):
        super().__init__(task, grid)
        self.array = np.full((self.count, self.height, self.width), self.nodata, self.dtype)
        self.tags = dict(grid.tags)

    def _store(self, window: Window, block: np.ndarray) -> None:
        self.array[
            :,
            window.row_off : window.row_off + window.height,
            window.col_off : window.col_off + window.width,
        ] = block

    def derive(self, path, project, bands, dtype, nodata) -> xr.DataArray:
        return georeferenced(project(self.array), self.grid, bands, nodata)

    def add_tags(self, tags: dict[str, str]) -> None:
        self.tags.update(tags)

    def finish(self) -> xr.DataArray:
        data = georeferenced(self.array, self.grid, self.bands, self.nodata)
        data.attrs["input_bounds"] = self.grid.bounds
        data.attrs.update(self.tags)
        data.attrs.update(self.task.attrs())
        return data


class FileSink(Sink):
    """A tiled, uncompressed GeoTIFF in a hidden scratch folder beside the target, written window
    by window, converted to a compressed COG and renamed into place.

    The working file stays uncompressed, so the output is compressed once, by GDAL's COG driver
    (for the embedding cube of a 3072 x 3072 px mosaic, a compressed working file cost 1.17 s of
    writing and conversion against 0.59 s, and took 94 MB of scratch space against 108 MB).
    The full-D embedding cube uses 64-pixel blocks and no overviews: GDAL buffers a row of blocks
    of every band (in its cache while writing, in the COG conversion), so small blocks keep that
    memory small, and averaged embeddings make no useful overview.
    """

    def __init__(self, task: Task, grid: Grid, path: Path):
        super().__init__(task, grid)
        self.path = path
        self.cube = self.count >= CUBE_MIN_BANDS
        self.profile = dict(  # uncompressed: cheap to write and read back, compressed once
            driver="GTiff",
            count=self.count,
            height=self.height,
            width=self.width,
            dtype=task.dtype,
            nodata=self.nodata,
            transform=grid.transform,
            crs=grid.crs,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            BIGTIFF="IF_SAFER",
        )
        if self.cube:  # small blocks: a row of D-band blocks must fit GDAL's cache
            self.profile.update(blockxsize=CUBE_BLOCK, blockysize=CUBE_BLOCK)
        self.scratch = Path(
            tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        )
        self.work = self.scratch / path.name
        self.dst = rasterio.open(self.work, "w", **self.profile)
        for i, name in enumerate(self.bands, start=1):
            self.dst.set_band_description(i, name)
        self.dst.update_tags(
            input_bounds=",".join(f"{v:.6f}" for v in grid.bounds), **grid.tags, **task.tags()
        )
        colormap = task.colormap()
        if colormap:
            self.dst.write_colormap(1, colormap)
        self.extras: list[tuple[Path, Path]] = []  # (working file, final path)
        self.strip: np.ndarray | None = None  # rows of the cube not yet written, see _store
        self.strip_top = 0

    def _store(self, window: Window, block: np.ndarray) -> None:
        if not self.cube:
            self.dst.write(block, window=window)
            return
        # The cube: GDAL's cost is per band and per call, so rows of tiles are gathered and only
        # whole rows of blocks written.
        top, height = window.row_off, window.height
        if self.strip is None:
            self.strip_top, self.strip = top, self._nodata_rows(height)
        if top + height > self.strip_top + self.strip.shape[1]:  # a new row of tiles begins:
            self._flush(upto=top)  # every row above it is complete
            missing = top + height - self.strip_top - self.strip.shape[1]
            self.strip = np.concatenate([self.strip, self._nodata_rows(missing)], axis=1)
        r0 = top - self.strip_top
        self.strip[:, r0 : r0 + height, window.col_off : window.col_off + window.width] = block

    def _nodata_rows(self, rows: int) -> np.ndarray:
        return np.full((self.count, rows, self.width), self.nodata, self.dtype)

    def _flush(self, upto: int | None = None) -> None:
        """Write the buffered rows above ``upto`` in whole rows of blocks (all rows if None)."""
        if self.strip is None:
            return
        rows = (
            self.strip.shape[1]
            if upto is None
            else (upto - self.strip_top) // CUBE_BLOCK * CUBE_BLOCK
        )
        if rows > 0:
            self.dst.write(self.strip[:, :rows], window=Window(0, self.strip_top, self.width, rows))
            self.strip, self.strip_top = self.strip[:, rows:].copy(), self.strip_top + rows

    def _close(self) -> None:
        if not self.dst.closed:
            self._flush()
            self.dst.close()

    def add_tags(self, tags: dict[str, str]) -> None:
        if self.dst.closed:
            raise RuntimeError("add_tags after the working file was closed (derive, finish)")
        self.dst.update_tags(**tags)

    def derive(self, path, project, bands, dtype, nodata) -> None:
        self._close()
        work = self.scratch / f"extra{len(self.extras)}_{path.name}"
        profile = self.profile | {"count": len(bands), "dtype": dtype, "nodata": nodata}
        with rasterio.open(self.work) as src, rasterio.open(work, "w", **profile) as dst:
            for _, window in src.block_windows(1):
                dst.write(project(src.read(window=window)), window=window)
            for i, name in enumerate(bands, start=1):
                dst.set_band_description(i, name)
        self.extras.append((work, path))

    def finish(self) -> None:
        self._close()
        try:
            for work, final in [(self.work, self.path)] + self.extras:
                cube = work == self.work and self.cube
                with atomic_output(final, suffix=".tmp.tif") as cog:
                    _write_cog(
                        work,
                        cog,
                        blocksize=CUBE_BLOCK if cube else 256,
                        overviews="NONE" if cube else "AUTO",
                    )
        finally:
            self._cleanup()

    def abort(self) -> None:
        if not self.dst.closed:
            self.dst.close()
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)


def georeferenced(array: np.ndarray, grid: Grid, bands: list[str], nodata) -> xr.DataArray:
    import rioxarray  # noqa: F401 - the .rio accessor

    h, w = array.shape[1:]
    t = grid.transform
    xs = t.c + t.a * (np.arange(w) + 0.5)
    ys = t.f + t.e * (np.arange(h) + 0.5)
    da = xr.DataArray(array, dims=("band", "y", "x"), coords={"band": bands, "y": ys, "x": xs})
    da = da.rio.write_transform(t)
    if grid.crs is not None:
        da = da.rio.write_crs(grid.crs)
    return da.rio.write_nodata(nodata, encoded=False)


def _write_cog(src: Path, dst: Path, blocksize: int, overviews: str) -> None:
    gdal_log = logging.getLogger("rasterio._env")
    small_blocks = _SmallBlocksAccepted()
    gdal_log.addFilter(small_blocks)
    try:
        rasterio.shutil.copy(
            src,
            dst,
            driver="COG",
            compress=_compression(),
            blocksize=blocksize,
            overviews=overviews,
            level=1,
            num_threads="ALL_CPUS",
            BIGTIFF="IF_SAFER",
        )
    finally:
        gdal_log.removeFilter(small_blocks)


class _SmallBlocksAccepted(logging.Filter):
    """GDAL's COG driver lists BLOCKSIZE >= 128 and warns at the cube's 64, yet writes 64-px
    blocks (tests/test_inference.py reads them back): the warning is dropped during the write."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "value for BLOCKSIZE creation option" not in record.getMessage()


@functools.cache
def _compression() -> str:
    """ZSTD (as small as DEFLATE, faster) where this GDAL has it, else DEFLATE."""
    try:
        with warnings.catch_warnings(), rasterio.io.MemoryFile() as memory:
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with memory.open(
                driver="GTiff", width=1, height=1, count=1, dtype="uint8", compress="ZSTD"
            ) as probe:
                probe.write(np.zeros((1, 1, 1), np.uint8))
        return "ZSTD"
    except rasterio.errors.RasterioError:
        return "DEFLATE"
