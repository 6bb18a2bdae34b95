"""Benchmark: tiled inference end to end versus the bare model, and memory versus raster size.

    python bench/bench_inference.py [--size 10000] [--small 1000]

Builds large rasters by tiling a real NAIP RGBN scene from ../shared/data, then prints
(1) predict_raster "embed" to a COG versus the bare model forward over the same number of tiles
(goal: ratio >= 0.8, i.e. at most 25% overhead) and (2) peak RSS of a full run on the large
versus the small raster, each in a fresh process (goal: ratio <= 1.3).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCENE = SHARED / "naip" / "m_4709963_se_14_1_20200831.tif"


def build_raster(path: Path, size: int) -> Path:
    """A size x size RGBN GeoTIFF made of copies of the real scene, written in strips."""
    if path.exists():
        return path
    with rasterio.open(SCENE) as src:
        scene, profile = src.read(), src.profile
    scene[scene == 0] = 1  # keep it all valid: the benchmark measures the engine, not nodata
    profile.update(
        width=size,
        height=size,
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    h, w = scene.shape[1:]
    with rasterio.open(path, "w", **profile) as dst:
        for y in range(0, size, 512):
            rows = min(512, size - y)
            ys = np.arange(y, y + rows) % h
            strip = scene[:, ys][:, :, np.arange(size) % w]
            dst.write(strip, window=Window(0, y, size, rows))
    return path


def make_model():
    from ofa_explore import OFANet

    torch.manual_seed(0)
    return OFANet("tiny", modalities=["rgbn"], img_size=224, patch_size=16).eval()


def run_engine(raster: Path, out: Path) -> dict:
    """One end-to-end run (called in a fresh process for the memory figure)."""
    from ofa_explore.engine import predict_raster
    from ofa_explore.threads import set_threads

    set_threads()  # a shell: OFA_EXPLORE_THREADS, else the cores free for this process
    model = make_model()
    t0 = time.perf_counter()
    result = predict_raster(model, raster, "embed", out, overwrite=True, batch_size=8)
    return dict(
        seconds=time.perf_counter() - t0,
        tiles=result.tiles,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def bare_forward(tiles: int, batch_size: int = 8) -> float:
    """The model alone on the same number of 224 x 224 tiles, no I/O."""
    from ofa_explore import get_modality

    model, m = make_model(), get_modality("rgbn")
    x = torch.tensor(m.mean).view(1, -1, 1, 1) + torch.randn(batch_size, 4, 224, 224) * 30
    t0 = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, tiles, batch_size):
            model.forward_features(x[: min(batch_size, tiles - start)], m)
    return time.perf_counter() - t0


def in_fresh_process(module: str, function: str, *args: str | int | bool | Path) -> dict:
    """``bench/<module>.<function>(*args)`` in a fresh Python, so its peak memory is its own
    (paths arrive as strings); returns the dict it returns."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from {module} import {function}; "
        f"print(json.dumps({function}(*json.loads(sys.argv[1]))))"
    )
    plain = json.dumps([str(a) if isinstance(a, Path) else a for a in args])
    res = subprocess.run(
        [sys.executable, "-c", code, plain], capture_output=True, text=True, check=True
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def in_subprocess(raster: Path, out: Path) -> dict:
    return in_fresh_process("bench_inference", "run_engine", raster, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ofa-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    big = build_raster(args.workdir / f"naip_{args.size}.tif", args.size)
    small = build_raster(args.workdir / f"naip_{args.small}.tif", args.small)

    small_run = in_subprocess(small, args.workdir / "small_emb.tif")
    big_run = in_subprocess(big, args.workdir / "big_emb.tif")
    bare = bare_forward(big_run["tiles"])
    speed_ratio = bare / big_run["seconds"]
    mem_ratio = big_run["peak_rss_mb"] / small_run["peak_rss_mb"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
        f"device cpu; model OFANet-tiny patch 16, tile 224"
    )
    print(
        f"end-to-end predict_raster embed {args.size}x{args.size}: {big_run['tiles']} tiles in "
        f"{big_run['seconds']:.1f} s ({big_run['tiles'] / big_run['seconds']:.1f} tiles/s)"
    )
    print(
        f"bare model forward, same tiles:           {bare:.1f} s "
        f"({big_run['tiles'] / bare:.1f} tiles/s)"
    )
    print(f"throughput ratio engine/bare: {speed_ratio:.2f} (goal >= 0.8)")
    print(
        f"peak RSS {args.size}^2: {big_run['peak_rss_mb']:.0f} MB, {args.small}^2: "
        f"{small_run['peak_rss_mb']:.0f} MB, ratio {mem_ratio:.2f} (goal <= 1.3)"
    )


if __name__ == "__main__":
    main()
