"""Benchmark: CPU thread counts on an idle and on a busy machine, side by side in one run.

Two workloads, each in a fresh process: 100 steps of notebook 05's tiny pre-training, and the
tiled classification of notebook 04's Sentinel-2 scene. Thread settings: torch's own default
(one per core), the package's default (``auto``: the cores free for this process) and 1. The
busy machine has one CPU-bound process competing for the cores.

    python bench/bench_threads.py
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PRETRAIN = """
import tempfile
from ofa_explore.demo import SAMPLES, sample_path
from ofa_explore.pretraining.config import load_config
from ofa_explore.pretraining.train import train
sources = {}
for filename, modality in SAMPLES.items():
    sources.setdefault(modality, []).append(str(sample_path(filename)))
config = load_config({
    "model": {"size": "tiny", "patch_size": 8, "img_size": 32, "arch": {"depth": 4}},
    "data": [{"modality": m, "paths": p, "val_fraction": 0.2} for m, p in sources.items()],
    "optim": {"lr": 1e-3, "warmup_steps": 20}, "steps": 100, "batch_size": 16,
    "mask_ratio": 0.75, "checkpoint_every": 100, "log_every": 25,
    "output_dir": tempfile.mkdtemp(), "seed": 0})
train(config, quiet=True)
"""
CLASSIFY = f"""
from pathlib import Path
from ofa_explore import load_pretrained
from ofa_explore.engine import predict_raster
bands = sorted(Path({str(ROOT / "notebooks" / "data" / "s2_chesapeake")!r}).glob("B*.tif"))
predict_raster(load_pretrained(), bands, "classify")
"""
WORKLOADS = {"pre-training, 100 steps": PRETRAIN, "classify the S2 scene": CLASSIFY}


def timed(code: str, threads: str) -> tuple[float, str]:
    """Seconds the workload takes in a new process (after imports), and the threads it used."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OFA_EXPLORE_THREADS")
    }
    if threads != "auto":
        env["OFA_EXPLORE_THREADS"] = threads
    # the script is the shell: it chooses the threads (OFA_EXPLORE_THREADS, else the cores free)
    script = (
        "import time, torch, ofa_explore, ofa_explore.pretraining.train\n"
        "t0 = time.perf_counter()\nofa_explore.set_threads()\n"
        + code
        + "\nprint(time.perf_counter() - t0, torch.get_num_threads())"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return float(out[-2]), out[-1]


def main() -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{platform.processor() or platform.machine()}, {cores} cores")
    settings = [str(cores), "auto", "1"]
    print(
        f"{'workload':<26}{'machine':<10}"
        + "".join(f"{'torch default (' + s + ')' if s == str(cores) else s:>22}" for s in settings)
        + f"{'default/auto':>14}"
    )
    for load in (0, 1):
        burners = [
            subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)
        ]
        time.sleep(1)
        try:
            for name, code in WORKLOADS.items():
                figures = {s: timed(code, s) for s in settings}
                cells = "".join(f"{f'{t:.1f} s ({n} thr)':>22}" for t, n in figures.values())
                ratio = figures[str(cores)][0] / figures["auto"][0]
                print(
                    f"{name:<26}{'busy' if load else 'idle':<10}{cells}{ratio:>13.2f}x", flush=True
                )
        finally:
            for p in burners:
                p.kill()
                p.wait()


if __name__ == "__main__":
    main()
