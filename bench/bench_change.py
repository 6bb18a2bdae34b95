"""Benchmark: `ofa change` on two 1000 x 1000 px Sentinel-2 dates against one `ofa embed` of one
date (issue 26's goal: at most 2.2x), measured side by side in one process, same settings.

    python bench/bench_change.py [--size 1000] [--threads 1] [--repeats 2] [--tile PX]
                                 [--precision fp32|auto] [--move PX] [--after-array]
                                 [--quicklook]

The dates are the real OSCD Pisa pair (../shared/data/change), mirrored out to the size asked;
with ``--move``, AFTER's georeferencing moved east, so `ofa change` warps it onto BEFORE's
features (against ``--no-align``, which reads it as it lies). With ``--after-array``, AFTER lies
in another CRS (Web Mercator) and is given as the DataArray ``open_raster`` gives, so it is warped
from its values rather than its file; the process's peak memory is printed too. With
``--quicklook``, both runs write their quicklook PNG, as `ofa embed` and `ofa change` do by default.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rioxarray
import torch
from affine import Affine
from rasterio.enums import Resampling

from ofa_explore import change
from ofa_explore.engine import EngineSettings, predict_raster
from ofa_explore.io import open_raster
from ofa_explore.pretrained import load_pretrained

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))
PAIR = [SHARED / "change" / "oscd" / "pisa" / f"pisa_{d}.tif" for d in ("20150704", "20180211")]


def grown(src_path: Path, dst: Path, size: int) -> Path:
    """The date mirrored out to size x size pixels, on the same pixel grid."""
    with rasterio.open(src_path) as src:
        data, profile = src.read(), src.profile
        descriptions = src.descriptions
    pad = ((0, 0), (0, max(0, size - data.shape[1])), (0, max(0, size - data.shape[2])))
    data = np.pad(data, pad, mode="symmetric")[:, :size, :size]
    profile.update(width=size, height=size)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = descriptions
    return dst


def moved(path: Path, pixels: float) -> Path:
    """The date georeferenced ``pixels`` further east, in place: its features then lie that far
    off the other date's, as a pair that was not co-registered."""
    with rasterio.open(path, "r+") as dst:
        dst.transform = dst.transform * Affine.translation(-pixels, 0)
    return path


def in_web_mercator(path: Path) -> Path:
    """The date warped into EPSG:3857 (GDAL through rioxarray, bilinear), beside it."""
    dst = path.with_name(f"{path.stem}_3857.tif")
    date = rioxarray.open_rasterio(path)  # its band descriptions kept (long_name)
    date.rio.reproject("EPSG:3857", resampling=Resampling.bilinear).rio.to_raster(dst)
    return dst


def main(
    size: int,
    threads: int,
    repeats: int,
    tile: int | None = None,
    precision: str = "fp32",
    move: float = 0.0,
    after_array: bool = False,
    quicklook: bool = False,
) -> None:
    torch.set_num_threads(threads)
    model = load_pretrained()
    settings = EngineSettings(device="cpu", precision=precision, tile=tile, quicklook=quicklook)
    with tempfile.TemporaryDirectory() as tmp:
        before, after = (grown(p, Path(tmp) / p.name, size) for p in PAIR)
        if move:
            after = moved(after, move)
        second = open_raster(in_web_mercator(after)) if after_array else after
        Path("/proc/self/clear_refs").write_text("5")  # Linux: the peak is the runs' own
        ready = memory_mb("VmRSS")
        times: dict[str, list[float]] = {"embed": [], "change": [], "no-align": []}
        aligned = None
        for i in range(repeats):  # alternating, so all see the same machine load
            t = time.perf_counter()
            predict_raster(model, before, "embed", Path(tmp) / f"e{i}.tif", settings=settings)
            times["embed"].append(time.perf_counter() - t)
            for kind, align in (("change", True), ("no-align", False)):
                t = time.perf_counter()
                out = Path(tmp) / f"{kind}{i}.tif"
                result = change(before, second, out, model=model, settings=settings, align=align)
                times[kind].append(time.perf_counter() - t)
                aligned = aligned or result.checks.get("aligned_rows") is not None
        peak = memory_mb("VmHWM")
    embed, chg, kept = (min(times[k]) for k in ("embed", "change", "no-align"))
    print(
        f"{size} x {size} px S2 L1C, {threads} thread(s), {precision}, tile {tile or 'default'}, "
        f"best of {repeats}: "
        f"embed one date {embed:.1f} s, change of two dates {chg:.1f} s, ratio {chg / embed:.2f}x "
        f"(goal <= 2.2x; AFTER {'moved onto BEFORE' if aligned else 'not moved'}); "
        f"--no-align {kept:.1f} s, {kept / embed:.2f}x"
        + (" (both with their quicklook)" if quicklook else "")
    )
    what = "a DataArray in EPSG:3857" if after_array else "a file on BEFORE's grid"
    print(f"AFTER {what}: peak memory of the runs {peak - ready:.0f} MB above the dates' set-up")


def memory_mb(field: str) -> float:
    """This process's resident memory (VmRSS) or its peak since it was last reset (VmHWM), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise OSError(f"no {field} in /proc/self/status")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tile", type=int, help="tile size in pixels (default: the model's)")
    parser.add_argument("--precision", default="fp32", help="fp32 or auto (ofa's default)")
    parser.add_argument(
        "--move", type=float, default=0.0, help="AFTER's georeferencing moved this many pixels"
    )
    parser.add_argument(
        "--after-array", action="store_true", help="AFTER in EPSG:3857, given as a DataArray"
    )
    parser.add_argument("--quicklook", action="store_true", help="write the quicklooks too")
    options = parser.parse_args()
    main(
        options.size,
        options.threads,
        options.repeats,
        options.tile,
        options.precision,
        options.move,
        options.after_array,
        options.quicklook,
    )
