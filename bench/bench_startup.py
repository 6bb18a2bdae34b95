"""Benchmark: small jobs and whole commands as a user runs them, each in a fresh process (issue 28).

    python bench/bench_startup.py [--runs 5] [--embed-runs 2] [--size 3072] [--threads 2]

(1) ``ofa classify`` of one 64 x 64 Sentinel-2 chip (the shipped sample) with the shipped model,
start to exit, ``--runs`` times (goal: median <= 2.5 s on the 2-core machine); the shell's own
thread choice, as a user gets it; beside it ``python -c "import torch"``, the floor.
``--imports N``: instead, what the imports of that command cost, by package (``python -X
importtime``, each module's own time added to its top-level package; median of N runs).
(2) ``ofa embed`` of a ``--size`` px NAIP RGBN mosaic (a real scene tiled, as bench_inference.py
builds it) with ``--precision fp32`` and ``--precision auto``, the whole command, alternating,
``--embed-runs`` each, with ``OFA_EXPLORE_THREADS=--threads`` so that both run alike (goal: auto
at least 1.5x faster than fp32). The outputs' pixel hashes let two trees be compared
(bench/compare_trees.py runs this script of both).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inference import build_raster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHIP = ROOT / "ofa_explore" / "data" / "samples" / "eurosat_forest.tif"


def timed(command: list[str], env: dict[str, str], own: list[float] | None = None) -> float:
    """Wall seconds of a command; ``own`` gets the engine's own seconds that ``ofa`` reports."""
    t0 = time.perf_counter()
    done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    found = re.search(r" in ([0-9.]+) s on ", done.stdout)
    if own is not None and found:
        own.append(float(found.group(1)))
    return seconds


def ofa(*args: str) -> list[str]:
    return [sys.executable, "-m", "ofa_explore.cli", *args]


def pixels_hash(path: Path) -> str:
    with rasterio.open(path) as src:
        return hashlib.sha256(np.ascontiguousarray(src.read()).tobytes()).hexdigest()[:12]


def import_table(runs: int, env: dict[str, str], out: Path) -> None:
    """Seconds of import per top-level package in ``ofa classify`` of one chip, median of runs."""
    per_run: list[dict[str, float]] = []
    for i in range(runs):
        command = ofa("classify", str(CHIP), "-o", str(out / f"i{i}.tif"))
        command[1:1] = ["-X", "importtime"]
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        costs: dict[str, float] = {}
        for row in done.stderr.splitlines():
            if row.startswith("import time:") and "|" in row and "self [us]" not in row:
                own, _, name = (part.strip() for part in row[len("import time:") :].split("|"))
                top = name.split(".")[0]
                costs[top] = costs.get(top, 0.0) + int(own) / 1e6
        per_run.append(costs)
    names = {n for costs in per_run for n in costs}
    medians = {n: statistics.median(c.get(n, 0.0) for c in per_run) for n in names}
    total = statistics.median(sum(c.values()) for c in per_run)
    for name, seconds in sorted(medians.items(), key=lambda item: -item[1])[:12]:
        print(f"  {name:24s} {seconds:6.3f} s")
    print(f"  {'all imports':24s} {total:6.3f} s")


def _median(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} s" if times else "?"


def line(name: str, times: list[float]) -> str:
    runs = " ".join(f"{t:.2f}" for t in times)
    return f"{name}: median {statistics.median(times):.2f} s  ({runs})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="cold classify runs")
    parser.add_argument("--embed-runs", type=int, default=2, help="runs of each embed precision")
    parser.add_argument("--size", type=int, default=3072, help="mosaic side, px (0: no embed)")
    parser.add_argument("--threads", default="2", help="OFA_EXPLORE_THREADS for the embeds")
    parser.add_argument("--imports", type=int, default=0, help="import costs, median of N")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ofa-bench")
    a = parser.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OFA_EXPLORE_THREADS")
    }
    print(f"load {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, {sys.executable}")
    if a.imports:
        out = Path(tempfile.mkdtemp(dir=a.workdir))
        import_table(a.imports, env, out)
        shutil.rmtree(out)
        return

    torch_times = [timed([sys.executable, "-c", "import torch"], env) for _ in range(a.runs)]
    out = Path(tempfile.mkdtemp(dir=a.workdir))
    classify = []
    for i in range(a.runs):
        classify.append(timed(ofa("classify", str(CHIP), "-o", str(out / f"c{i}.tif")), env))
    lines = [
        line("python -c 'import torch'", torch_times),
        line("ofa classify, one chip", classify),
    ]

    if a.size:
        mosaic = build_raster(a.workdir / f"naip_{a.size}.tif", a.size)
        embeds: dict[str, list[float]] = {"fp32": [], "auto": []}
        own: dict[str, list[float]] = {"fp32": [], "auto": []}
        hashes = {}
        env_embed = env | {"OFA_EXPLORE_THREADS": a.threads}
        for i in range(a.embed_runs):
            for precision in embeds:
                target = out / f"e_{precision}_{i}.tif"
                command = ofa("embed", str(mosaic), "-o", str(target), "--precision", precision)
                embeds[precision].append(timed(command, env_embed, own[precision]))
                hashes[precision] = pixels_hash(target)
                for written in out.glob(f"{target.stem}*"):  # the cube is ~100 MB
                    written.unlink()
        whole, engine = (
            statistics.median(t["fp32"]) / statistics.median(t["auto"]) for t in (embeds, own)
        )
        lines += [
            line(f"ofa embed {a.size} px, fp32", embeds["fp32"])
            + f", engine {_median(own['fp32'])}",
            line(f"ofa embed {a.size} px, auto", embeds["auto"])
            + f", engine {_median(own['auto'])}",
            f"auto vs fp32: {whole:.2f}x faster for the whole command, {engine:.2f}x in the engine "
            f"(threads {a.threads}); output pixels fp32 {hashes['fp32']}, auto {hashes['auto']}",
        ]
    shutil.rmtree(out)
    print(f"load now {os.getloadavg()[0]:.2f}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
