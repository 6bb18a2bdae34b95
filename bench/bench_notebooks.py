"""Benchmark: wall time of each workshop notebook, run top to bottom headless (kernel start
included), while other programs keep CPU cores busy, as on a participant's laptop (goal < 60 s).

    python bench/bench_notebooks.py            # one competing CPU-bound process
    python bench/bench_notebooks.py --load 0   # an idle machine
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 60


def run_notebook(path: Path) -> float:
    """Seconds to run ``path`` in a fresh kernel, in a copy of the notebooks folder."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").symlink_to(ROOT / "notebooks" / "data", target_is_directory=True)
        t0 = time.perf_counter()
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}}
        ).execute()
        return time.perf_counter() - t0


def competing_load(processes: int) -> list[subprocess.Popen]:
    """CPU-bound processes that run until killed (a pure-Python busy loop each)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=1, help="competing CPU-bound processes (1)")
    parser.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    args = parser.parse_args()
    paths = [ROOT / "notebooks" / n for n in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("*.ipynb")
    )
    threads = os.environ.get("OFA_EXPLORE_THREADS") or os.environ.get("OMP_NUM_THREADS") or "auto"
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{args.load} competing CPU-bound process(es), threads: {threads}"
    )
    load = competing_load(args.load)
    try:
        worst = 0.0
        for path in paths:
            seconds = run_notebook(path)
            worst = max(worst, seconds)
            print(
                f"{path.name:<34} {seconds:6.1f} s  (goal < {GOAL_S} s; "
                f"ratio {seconds / GOAL_S:.2f})",
                flush=True,
            )
    finally:
        for p in load:
            p.kill()
            p.wait()
    print(f"slowest / goal: {worst / GOAL_S:.2f} ({'met' if worst < GOAL_S else 'NOT met'})")


if __name__ == "__main__":
    main()
