"""Benchmark: wall time of each workshop notebook, run top to bottom headless (goal < 3 min each).

    python bench/bench_notebooks.py
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
GOAL_S = 180


def main() -> None:
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    worst = 0.0
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": tmp}}).execute()
            seconds = time.perf_counter() - t0
        worst = max(worst, seconds)
        print(f"{path.name:<34} {seconds:6.1f} s  (goal < {GOAL_S} s; ratio {seconds / GOAL_S:.2f})")
    print(f"slowest / goal: {worst / GOAL_S:.2f} ({'met' if worst < GOAL_S else 'NOT met'})")


if __name__ == "__main__":
    main()
