"""Benchmark: inference in fp32 against ``--precision auto`` (bf16 where the device computes it
natively), side by side on the same real raster, with how close the results stay.

Raster: the full Sentinel-2 L1C scene of notebooks/data/s2_chesapeake (1933 x 1947 px, 13 band
files stacked on the 10 m grid); model: the shipped checkpoint; batches of the engine's default
(32 tiles here) and of 8 tiles, the default before. Each setting runs twice, the faster run
counts (this machine is shared).

    python bench/bench_precision.py
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch

from ofa_explore import load_pretrained, set_threads
from ofa_explore.engine import predict_raster
from ofa_explore.io import open_raster
from ofa_explore.precision import resolve_precision

ROOT = Path(__file__).resolve().parents[1]


def best_of(runs: int, **kwargs):
    results = [predict_raster(**kwargs) for _ in range(runs)]
    return min(results, key=lambda r: r.seconds)


def main() -> None:
    set_threads()  # a shell: OFA_EXPLORE_THREADS, else the cores free for this process
    model = load_pretrained()
    scene = open_raster(sorted((ROOT / "notebooks" / "data" / "s2_chesapeake").glob("B*.tif")))
    auto = resolve_precision("auto", torch.device("cpu"))
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; auto = {auto}"
    )
    for task in ("embed", "classify"):
        runs = {
            (precision, batch): best_of(
                2, model=model, raster=scene, task=task, precision=precision, batch_size=batch
            )
            for precision in ("fp32", "auto")
            for batch in (8, None)
        }
        fp32, fast = runs["fp32", None], runs["auto", None]
        a, b = fp32.data.values, fast.data.values
        if task == "embed":
            cosine = (a * b).sum(0) / (np.linalg.norm(a, axis=0) * np.linalg.norm(b, axis=0))
            close = f"cosine per patch: min {np.nanmin(cosine):.4f}, mean {np.nanmean(cosine):.5f}"
        else:
            close = f"class cells equal: {(a == b).mean():.2%}"
        print(
            f"{task:<9} {fp32.tiles} tiles: fp32 {fp32.seconds:6.2f} s, auto ({fast.precision}) "
            f"{fast.seconds:6.2f} s, speed-up {fp32.seconds / fast.seconds:.2f}x (goal >= 1.5); "
            f"{close}"
        )
        print(
            f"{'':<9} batch of 8 tiles instead of the default 32: fp32 "
            f"{runs['fp32', 8].seconds:6.2f} s, auto {runs['auto', 8].seconds:6.2f} s; the "
            f"default's gain {runs['fp32', 8].seconds / fp32.seconds:.2f}x and "
            f"{runs['auto', 8].seconds / fast.seconds:.2f}x"
        )


if __name__ == "__main__":
    main()
