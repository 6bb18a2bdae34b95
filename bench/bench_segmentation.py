"""Benchmark: a segmentation head's class map with blended tiles (the default) against cropped
tile centres (the engine before 2026-12-06), time and peak memory at two raster sizes.

    python bench/bench_segmentation.py [--size 4000] [--small 1000] [--threads 2]

The shipped backbone with an untrained two-class segmentation head for RGBN (timing does not
depend on what the head learnt), on the real NAIP scene of bench_inference.py tiled up to
``--size``. Each run is a fresh process (peak RSS); blended and cropped alternate.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from bench_inference import build_raster, in_fresh_process  # bench/


def run(raster: Path, out: Path, blend: bool, threads: int) -> dict:
    """One ``classify`` run to a file (called in a fresh process)."""
    import torch

    from ofa_explore.engine import predict_raster
    from ofa_explore.engine.tasks import Classify
    from ofa_explore.pretrained import load_pretrained

    torch.set_num_threads(threads)
    if not blend:  # the engine before 2026-12-06: each tile's cropped centre
        Classify.blend = property(lambda self: False)  # type: ignore[method-assign,assignment]
    model = load_pretrained()
    torch.manual_seed(0)
    model.heads.add("trees", ["background", "tree"], kind="segmentation", modality="rgbn")
    model.eval()
    t0 = time.perf_counter()
    result = predict_raster(model, raster, "classify", out, overwrite=True, head="trees")
    return dict(
        seconds=time.perf_counter() - t0,
        tiles=result.tiles,
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4000)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ofa-bench")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} CPU cores, {args.threads} threads; a 2-class segmentation head")
    runs: dict[tuple[int, bool], dict] = {}
    for size in (args.small, args.size):
        raster = build_raster(args.workdir / f"naip_{size}.tif", size)
        for blend in (False, True):
            r = in_fresh_process(
                "bench_segmentation", "run", raster, args.workdir / "seg.tif", blend, args.threads
            )
            runs[size, blend] = r
            label = "blended" if blend else "cropped"
            print(
                f"{size} x {size} px, {label}: {r['tiles']} tiles in {r['seconds']:.1f} s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    for size in (args.small, args.size):
        ratio = runs[size, True]["seconds"] / runs[size, False]["seconds"]
        print(f"{size} px: blended / cropped time {ratio:.2f}x")
    for blend in (False, True):
        memory = runs[args.size, blend]["peak_rss_mb"] / runs[args.small, blend]["peak_rss_mb"]
        label = "blended" if blend else "cropped"
        print(f"{label}: peak RSS {args.size} px / {args.small} px {memory:.2f}x (flat: ~1)")


if __name__ == "__main__":
    main()
