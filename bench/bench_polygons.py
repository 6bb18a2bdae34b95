"""Benchmark: `--polygons`, the changed areas written with their area and scores, against how
many areas a mask has (a low threshold on a large scene marks tens of thousands).

    python bench/bench_polygons.py [--sizes 1000 3000] [--every 150] [--memory]

The change map is synthetic so the count of areas is known: a score of Gaussian noise and a
mask of small blobs (2 x 1-2 px, one every ~150 px, or ``--every`` px) on a UTM grid of 10 m,
written as `ofa change` writes its map; then `write_polygons` from that file, as the CLI runs it.
``--memory`` also traces the peak of the memory Python and numpy allocate in it (tracemalloc:
several times slower, so its times are not comparable with a run without it). The map is made
in another process, so the peak RSS is the polygons' (and the imports').
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

from ofa_explore.change_detection.polygons import write_polygons
from ofa_explore.engine import PredictionResult


def change_map(path: Path, size: int, every: int = 150) -> Path:
    """Written a strip at a time, so making it takes little memory beside what is measured."""
    rng = np.random.default_rng(0)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=2,
        dtype="float32",
        crs="EPSG:32632",
        transform=from_origin(600_000, 5_000_000, 10, 10),
        tiled=True,
    )
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 500):
            rows = min(500, size - top)
            mask = np.zeros((rows, size), np.float32)
            seeds = rows * size // every
            r, c = rng.integers(0, rows - 1, seeds), rng.integers(0, size - 3, seeds)
            for dr in range(2):
                for dc in range(int(rng.integers(1, 3))):
                    mask[r + dr, c + dc] = 1
            window = Window(0, top, size, rows)
            dst.write(rng.normal(size=(rows, size)).astype(np.float32), 1, window=window)
            dst.write(mask, 2, window=window)
    return path


def main(sizes: list[int], memory: bool = False, every: int = 150) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            path = Path(tmp) / f"map{size}.tif"
            maker = multiprocessing.get_context("spawn").Process(  # its GDAL cache not counted
                target=change_map, args=(path, size, every)
            )
            maker.start()
            maker.join()
            result = PredictionResult(
                task="change", data=None, path=path, tiles=0, seconds=0.0, device="cpu"
            )
            if memory:
                tracemalloc.start()
            start = time.perf_counter()
            count = write_polygons(result, Path(tmp) / f"areas{size}.gpkg")
            seconds = time.perf_counter() - start
            traced = ""
            if memory:
                peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
                traced = f", its peak of Python's and numpy's memory {peak_mb:.0f} MB"
                tracemalloc.stop()
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            print(
                f"{size} x {size} px: {count} areas in {seconds:.1f} s "
                f"({1e3 * seconds / max(count, 1):.2f} ms an area){traced}, "
                f"the process's peak RSS {peak:.0f} MB"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--every", type=int, default=150, help="pixels of the map per area")
    parser.add_argument("--memory", action="store_true", help="trace memory (slower)")
    args = parser.parse_args()
    main(args.sizes, args.memory, args.every)
