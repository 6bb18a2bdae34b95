"""Benchmark a change: run the same benchmark script of two source trees, alternating, and
compare their wall times side by side in one run (so both see the same machine load).

    git worktree add /tmp/before <commit>
    python bench/compare_trees.py --before /tmp/before --rounds 3 -- bench_precision.py

Each tree runs its own copy of ``bench/<script>`` with its own package first on ``sys.path``;
the script's last lines are kept, so its own figures can be read beside the times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_once(tree: Path, script: str, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(tree / "bench" / script), *args],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - t0, "\n".join(done.stdout.strip().splitlines()[-6:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout of the old tree")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("script", help="a script in bench/ of both trees")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    a = parser.parse_args()
    times: dict[str, list[float]] = {"before": [], "after": []}
    for r in range(a.rounds):
        for name, tree in (("before", a.before), ("after", a.after)):
            seconds, tail = run_once(tree.resolve(), a.script, a.args)
            times[name].append(seconds)
            print(f"round {r + 1} {name}: {seconds:.1f} s\n  " + tail.replace("\n", "\n  "))
    before, after = (statistics.median(times[k]) for k in ("before", "after"))
    print(
        f"{a.script}: median before {before:.1f} s, after {after:.1f} s, "
        f"after/before {after / before:.3f} ({a.rounds} rounds, alternating)"
    )


if __name__ == "__main__":
    main()
