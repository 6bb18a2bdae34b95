"""Benchmark: `ofa train-head --task change` on the 8 labelled OSCD cities of the shared data,
the whole command in a fresh process (issue 26's goal: under 10 minutes on a 2-core CPU), with
its peak memory, then with the 4 unlabelled cities added (self-training); and, in the same
run, `ofa change` with the trained head (3 members, the default) against a head of one member
(`--members 1`) and the zero-shot score on one city, for what the head costs at inference.

    python bench/bench_change_head.py [--threads 2]

The pairs CSV is written to a temporary folder with absolute paths; the change maps are read
from the shared data, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))


def oscd_pairs() -> list[tuple[Path, Path, Path | None]]:
    """(before, after, change map or None) for the OSCD cities of the shared data."""
    manifest = json.loads((SHARED / "change" / "manifest.json").read_text())
    found = []
    for item in manifest["items"]:
        paths = sorted(SHARED / "change" / f["path"] for f in item["files"])
        if "oscd" in str(paths[0]):  # <city>_<date1>, <city>_<date2>[, <city>_change]
            found.append((paths[0], paths[1], paths[2] if len(paths) > 2 else None))
    return found


def timed(argv: list[str], threads: int) -> tuple[float, float]:
    """Seconds and peak memory (GiB) of a fresh `ofa` process."""
    env = os.environ | {"OFA_EXPLORE_THREADS": str(threads)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "ofa_explore", *argv], check=True, env=env)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
    return seconds, peak


def main(threads: int) -> None:
    found = oscd_pairs()
    pairs = [p for p in found if p[2] is not None]
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "pairs.csv"
        csv.write_text("before,after,mask\n" + "".join(f"{b},{a},{m}\n" for b, a, m in pairs))
        head = Path(tmp) / "change.safetensors"
        train, peak = timed(
            ["train-head", "--task", "change", "--data", str(csv), "-o", str(head), "-q"], threads
        )
        rows = "".join(f"{b},{a},{m or ''}\n" for b, a, m in found)  # unlabelled: no mask
        (Path(tmp) / "self.csv").write_text("before,after,mask\n" + rows)
        argv = ["train-head", "--task", "change", "--data", str(Path(tmp) / "self.csv")]
        self_trained, self_peak = timed([*argv, "-o", str(Path(tmp) / "s.st"), "-q"], threads)
        one = Path(tmp) / "one.safetensors"
        argv = ["train-head", "--task", "change", "--data", str(csv), "-o", str(one), "-q"]
        timed([*argv, "--members", "1"], threads)
        before, after, _ = pairs[-1]
        common = [
            "change",
            str(before),
            str(after),
            "--device",
            "cpu",
            "-q",
            "--checkpoint",
            str(head),
        ]
        with_head, _ = timed([*common, "-o", str(Path(tmp) / "h.tif")], threads)
        one_head, _ = timed(
            [*common, "-o", str(Path(tmp) / "o.tif"), "--checkpoint", str(one)], threads
        )
        zero, _ = timed([*common, "-o", str(Path(tmp) / "z.tif"), "--head", "zero-shot"], threads)
    print(
        f"train-head --task change, {len(pairs)} OSCD cities, {threads} thread(s): "
        f"{train:.0f} s ({train / 60:.1f} min), peak {peak:.2f} GiB"
    )
    print(
        f"the same with the {len(found) - len(pairs)} unlabelled cities (self-training): "
        f"{self_trained:.0f} s ({self_trained / 60:.1f} min), peak {self_peak:.2f} GiB"
    )
    print(
        f"ofa change on {before.parent.name} (whole command): head {with_head:.1f} s, "
        f"one member {one_head:.1f} s, zero-shot {zero:.1f} s ({with_head / zero:.2f}x, "
        f"{one_head / zero:.2f}x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    main(parser.parse_args().threads)
