"""Benchmark: `ofa train-head --task change` on the 8 labelled OSCD cities of the shared data,
the whole command in a fresh process (issue 26's goal: under 10 minutes on a 2-core CPU), with
its peak memory, then with the 4 unlabelled cities added (self-training); and, in the same
run, `ofa change` with the trained head (3 members, the default) against a head of one member
(`--members 1`) and the zero-shot score on one city, for what the head costs at inference.

    python bench/bench_change_head.py [--threads 2]
    python bench/bench_change_head.py --scene 3000

``--scene PX`` instead times a head of one member on a large scene labelled in one corner: a
city's two dates mirrored out to PX x PX px, its change map in the top-left corner and 255
elsewhere; then with a large unlabelled pair added (another city mirrored so), for what
self-training costs on a whole scene.

The pairs CSV is written to a temporary folder with absolute paths; the change maps are read
from the shared data, never copied.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import cast

import numpy as np
import rasterio
from rasterio.windows import Window

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
    child = subprocess.Popen([sys.executable, "-m", "ofa_explore", *argv], env=env)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    return time.perf_counter() - t, usage.ru_maxrss / 2**20


def mirrored(src: Path, dst: Path, side: int) -> None:
    """``src`` mirrored out to side x side px (reflected copies, as numpy's 'symmetric' pad),
    written a strip at a time, tiled and deflated."""
    with rasterio.open(src) as f:
        data, profile = f.read(), f.profile
    count, height, width = data.shape
    rows = np.arange(side) % (2 * height)
    rows = np.where(rows < height, rows, 2 * height - 1 - rows)
    cols = np.arange(side) % (2 * width)
    cols = np.where(cols < width, cols, 2 * width - 1 - cols)
    profile.update(
        height=side, width=side, tiled=True, blockxsize=256, blockysize=256, compress="deflate"
    )
    with rasterio.open(dst, "w", **profile) as out:
        for top in range(0, side, 256):
            strip = data[:, rows[top : top + 256]][:, :, cols]
            out.write(strip, window=Window(0, top, side, strip.shape[1]))


def corner_mask(src: Path, dst: Path, side: int) -> None:
    """``src``'s labels in the top-left corner of a side x side px mask, 255 elsewhere."""
    with rasterio.open(src) as f:
        labels, profile = f.read(1), f.profile
    mask = np.full((side, side), 255, np.uint8)
    mask[: labels.shape[0], : labels.shape[1]] = labels
    profile.update(height=side, width=side, dtype="uint8", nodata=None, compress="deflate")
    with rasterio.open(dst, "w", **profile) as out:
        out.write(mask, 1)


def scene(side: int, threads: int) -> None:
    """A head of one member on a large scene labelled in one corner, then with a large
    unlabelled pair added."""
    found = oscd_pairs()
    labelled = next(p for p in found if p[2] is not None and "abudhabi" in p[0].name)
    unlabelled = next(p for p in found if p[2] is None)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = []
        for i, path in enumerate([*labelled[:2], *unlabelled[:2]]):
            paths.append(folder / f"{i}_{path.name}")
            mirrored(path, paths[-1], side)
        corner_mask(cast(Path, labelled[2]), folder / "mask.tif", side)
        one = folder / "one.csv"
        one.write_text(f"before,after,mask\n{paths[0]},{paths[1]},{folder / 'mask.tif'}\n")
        both = folder / "both.csv"
        both.write_text(one.read_text() + f"{paths[2]},{paths[3]},\n")
        argv = ["train-head", "--task", "change", "--members", "1", "-q", "-o"]
        times = [
            timed([*argv, str(folder / f"{i}.st"), "--data", str(csv)], threads)
            for i, csv in enumerate((one, both))
        ]
    (t1, p1), (t2, p2) = times
    print(
        f"train-head --task change --members 1, {side} x {side} px pairs ({threads} "
        f"thread(s)): labelled in one corner {t1:.0f} s, peak {p1:.2f} GiB; with an "
        f"unlabelled pair of that size {t2:.0f} s, peak {p2:.2f} GiB"
    )


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
    parser.add_argument("--scene", type=int, metavar="PX", help="time a large scene instead")
    args = parser.parse_args()
    if args.scene:
        scene(args.scene, args.threads)
    else:
        main(args.threads)
