"""Benchmark: four scenes one after another in one process against the same four scenes on a
2-worker Dask LocalCluster, side by side in one run, with the files compared.

Scenes: the two shared Sentinel-2 L1C scenes (Chesapeake 1933 x 1947 px, Brandenburg 1536 x
768 px, 13 band files each stacked on the 10 m grid), each written twice under another name;
model: the shipped checkpoint; task: embed. The serial run uses this process's default threads;
each worker gets half the cores. The cluster's figure is given with and without its start-up.

    python bench/bench_scenes.py
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from distributed import Client, LocalCluster

from ofa_explore.io import open_raster
from ofa_explore.scenes import predict_scenes
from ofa_explore.threads import set_threads

SHARED = Path(
    os.environ.get("OFA_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def make_scenes(folder: Path) -> list[Path]:
    scenes = []
    for name in ("chesapeake", "brandenburg_20170216"):
        first = folder / f"{name}_a.tif"
        open_raster(sorted((SHARED / "s2_scenes" / name).glob("B*.tif"))).rio.to_raster(
            first, tiled=True, compress="deflate"
        )
        second = folder / f"{name}_b.tif"
        shutil.copy(first, second)
        scenes += [first, second]
    return scenes


def _pixels(path: Path) -> int:
    with rasterio.open(path) as src:
        return src.width * src.height


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def main() -> None:
    threads = set_threads()  # a shell: OFA_EXPLORE_THREADS, else the cores free for this process
    with tempfile.TemporaryDirectory(prefix="ofa-bench-scenes-") as tmp:
        tmp = Path(tmp)
        scenes = make_scenes(tmp)
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
            f"{torch.__version__}, serial: {threads} threads; 4 scenes, "
            f"{sum(_pixels(s) for s in scenes) / 1e6:.1f} Mpx in all"
        )
        t0 = time.perf_counter()
        serial = predict_scenes(scenes, "embed", tmp / "serial")
        t_serial = time.perf_counter() - t0

        t0 = time.perf_counter()
        dask = predict_scenes(scenes, "embed", tmp / "dask", cluster="local", workers=2)
        t_dask = time.perf_counter() - t0
        t0 = time.perf_counter()
        with (
            LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
            Client(cluster),
        ):
            t_start = time.perf_counter() - t0  # the cluster's own start-up, for reference
        same = all(
            np.array_equal(_read(a.output), _read(b.output), equal_nan=True)
            for a, b in zip(serial, dask)
        )
        print(f"serial, one process:     {t_serial:6.1f} s")
        print(
            f"LocalCluster, 2 workers: {t_dask:6.1f} s in all; of that, starting a bare "
            f"2-worker cluster takes {t_start:.1f} s"
        )
        print(
            f"ratio serial / cluster: {t_serial / t_dask:.2f}x (without start-up "
            f"{t_serial / (t_dask - t_start):.2f}x); files identical: {same}"
        )


if __name__ == "__main__":
    main()
