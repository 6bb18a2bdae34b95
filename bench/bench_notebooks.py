"""Benchmark: wall time of each workshop notebook, run top to bottom headless (kernel start
included), while other programs keep CPU cores busy, as on a participant's laptop (goal < 60 s),
and the kernel's peak memory (resident set), to size a JupyterHub's memory per user (Linux, macOS).

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


PEAK_RSS = (  # a last cell: the kernel's peak resident memory in MB (ru_maxrss: KB on Linux)
    "import resource, sys\n"
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "print(peak / (2**20 if sys.platform == 'darwin' else 2**10))"
)


def run_notebook(path: Path, save: Path | None = None) -> tuple[float, float]:
    """(seconds, the kernel's peak memory in MB) to run ``path`` in a fresh kernel, in a copy of
    the notebooks folder; the memory cell runs after the timed notebook. ``save``: a folder to
    write the executed notebook to (what a teacher compares a participant's screen with)."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "data").symlink_to(ROOT / "notebooks" / "data", target_is_directory=True)
        client = NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp}}
        )
        t0 = time.perf_counter()  # the kernel's start included
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            seconds = time.perf_counter() - t0
            nb.cells.append(nbformat.v4.new_code_cell(PEAK_RSS))
            client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
        peak_mb = float(nb.cells.pop().outputs[0]["text"])
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, save / path.name)
    return seconds, peak_mb


def competing_load(processes: int) -> list[subprocess.Popen]:
    """CPU-bound processes that run until killed (a pure-Python busy loop each)."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=int, default=1, help="competing CPU-bound processes (1)")
    parser.add_argument("--save", type=Path, help="write the executed notebooks to this folder")
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
            seconds, peak_mb = run_notebook(path, args.save)
            worst = max(worst, seconds)
            print(
                f"{path.name:<34} {seconds:6.1f} s  (goal < {GOAL_S} s; "
                f"ratio {seconds / GOAL_S:.2f})  kernel peak {peak_mb:,.0f} MB",
                flush=True,
            )
    finally:
        for p in load:
            p.kill()
            p.wait()
    print(f"slowest / goal: {worst / GOAL_S:.2f} ({'met' if worst < GOAL_S else 'NOT met'})")


if __name__ == "__main__":
    main()
