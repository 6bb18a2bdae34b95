"""Benchmark: this engine against the tiled inference a user would write with TorchGeo, and
against TerraTorch's ``tiled_inference``, on the same raster, model and tile layout.

Raster: a SIZE x SIZE px, 13-band uint16 Sentinel-2 L1C GeoTIFF at 10 m made of copies of the
shared Chesapeake scene (cached under --workdir). Model: the shipped checkpoint (patch 8). Output:
the D = 192 embedding cube at patch resolution as a GeoTIFF. Pipelines, each in a fresh process
with the same torch thread count, timed from opening the raster to the finished file (model
loading excluded), peak RSS of the process tree (sampled every 0.1 s) and of the process itself:

1. ``predict_raster(model, path, "embed", output)`` with precision fp32 and auto (it also writes
   its PCA colour view and converts to a COG);
2. TorchGeo as its docs show: a ``RasterDataset`` subclass, ``GridGeoSampler``, ``DataLoader``
   with ``stack_samples``, the model per batch, each chip's centre stitched into a raster-sized
   array, written with rasterio (compressed as the engine's COG);
3. TerraTorch's ``tiled_inference`` over the whole raster in memory (run with the python of a
   separate venv, see ``TERRATORCH_SETUP``; skipped with the reason when it is missing or the
   run would not fit in memory).

    python bench/bench_peer.py [--size 8192] [--tile 64] [--overlap 16] [--batch 32] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from glob import glob
from pathlib import Path

import numpy as np
import psutil
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCENE = SHARED / "s2_scenes" / "chesapeake"
WORKDIR = Path("/tmp/peerbench")
TT_PYTHON = WORKDIR / "tt-venv" / "bin" / "python"
TERRATORCH_SETUP = f"""python3.11 -m venv {WORKDIR}/tt-venv && {WORKDIR}/tt-venv/bin/pip install \\
  torch==2.14.1 torchvision==0.29.1 terratorch==1.2.11 timm safetensors pillow rasterio \\
  rioxarray xarray tqdm pyyaml psutil   # ofa_explore itself comes in through PYTHONPATH"""
BANDS = (
    "B01",
    "B02",
    "B03",
    "B04",
    "B05",
    "B06",
    "B07",
    "B08",
    "B09",
    "B10",
    "B11",
    "B12",
    "B8A",
)  # s2_l1c band order (ofa_explore/data/modalities.json)
# DataLoader workers for TorchGeo: 0, the DataLoader's and TorchGeo's datamodules' default. On 2
# cores, workers would compete with torch's compute threads for the same cores.
WORKERS = 0


# ---------------------------------------------------------------- the raster
def build_mosaic(path: Path, size: int) -> Path:
    """A size x size 13-band uint16 GeoTIFF of copies of the Chesapeake scene, 256-px blocks."""
    if path.exists():
        return path
    from ofa_explore.io import open_raster

    scene = open_raster(sorted(glob(str(SCENE / "B*.tif"))))
    pixels, h, w = scene.values, scene.sizes["y"], scene.sizes["x"]
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=len(BANDS),
        dtype="uint16",
        crs=scene.rio.crs,
        transform=scene.rio.transform(),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )
    tmp = path.with_suffix(".partial.tif")
    with rasterio.open(tmp, "w", **profile) as dst:
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
        for y in range(0, size, 256):
            rows = np.arange(y, min(y + 256, size)) % h
            strip = pixels[:, rows][:, :, np.arange(size) % w]
            dst.write(strip, window=Window(0, y, size, len(rows)))
    tmp.rename(path)
    return path


def write_embeddings(path: Path, cube: np.ndarray, transform, crs) -> None:
    """The [D, h, w] cube as a tiled GeoTIFF, compressed as the engine's COG is (ZSTD level 1,
    float predictor), so the file formats cost about the same."""
    profile = dict(
        driver="GTiff",
        width=cube.shape[2],
        height=cube.shape[1],
        count=cube.shape[0],
        dtype="float32",
        nodata=float("nan"),
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="zstd",
        zstd_level=1,
        predictor=3,
        BIGTIFF="IF_SAFER",
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(cube)


# ---------------------------------------------------------------- the pipelines (child processes)
_RSS = {"start": 0, "peak": 0}  # bytes, see mark_start and _watch_rss


def rss_mib() -> float:
    """This process's peak RSS so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mark_start() -> float:
    """The timed part begins: RSS growth is counted from here. Returns the start time."""
    _RSS["start"] = _RSS["peak"] = psutil.Process().memory_info().rss
    return time.perf_counter()


def _watch_rss() -> None:
    me = psutil.Process()
    while True:
        _RSS["peak"] = max(_RSS["peak"], me.memory_info().rss)
        time.sleep(0.05)


def run_engine(
    raster: Path, out: Path, tile: int, overlap: int, batch: int, precision: str
) -> dict:
    from ofa_explore import load_pretrained
    from ofa_explore.engine import predict_raster

    model = load_pretrained()
    start, t0 = rss_mib(), mark_start()
    result = predict_raster(
        model,
        raster,
        "embed",
        out,
        tile=tile,
        overlap=overlap,
        batch_size=batch,
        precision=precision,
        overwrite=True,
    )
    return dict(seconds=time.perf_counter() - t0, tiles=result.tiles, start_rss_mib=start)


def run_torchgeo(raster: Path, out: Path, tile: int, overlap: int, batch: int) -> dict:
    import torch
    from rasterio.transform import from_origin
    from torch.utils.data import DataLoader
    from torchgeo.datasets import RasterDataset, stack_samples
    from torchgeo.samplers import GridGeoSampler

    from ofa_explore import get_modality, load_pretrained

    class Mosaic(RasterDataset):  # one multi-band file, as in TorchGeo's custom-dataset tutorial
        filename_glob = "*.tif"
        is_image = True
        separate_files = False
        all_bands = BANDS

    model, m = load_pretrained().eval(), get_modality("s2_l1c")
    p = model.config.patch_size
    start, t0 = rss_mib(), mark_start()
    dataset = Mosaic(paths=[raster])  # values stay in DN: the model normalises internally
    sampler = GridGeoSampler(dataset, size=tile, stride=tile - overlap)
    loader = DataLoader(
        dataset, batch_size=batch, sampler=sampler, collate_fn=stack_samples, num_workers=WORKERS
    )
    x, y, _ = dataset.bounds
    res = dataset.res[0]
    H, W = round((y.stop - y.start) / res), round((x.stop - x.start) / res)
    cube = np.full((model.config.embed_dim, math.ceil(H / p), math.ceil(W / p)), np.nan, np.float32)
    keep = (overlap // 2) // p  # patches of context cropped from each side of a chip
    n = tile // p
    chips = 0
    with torch.inference_mode():
        for sample in loader:
            tokens = model.forward_features(sample["image"], m)[:, 1:]  # [B, L, D]
            emb = tokens.transpose(1, 2).reshape(len(tokens), -1, n, n).numpy()
            for e, (xs, ys, _) in zip(emb, sample["bounds"]):
                row = round((y.stop - ys.stop) / res) // p  # chip origin on the patch grid;
                col = round((xs.start - x.start) / res) // p  # may lie outside the raster
                r0 = 0 if row <= 0 else keep  # at the raster's edges the chip keeps its border
                c0 = 0 if col <= 0 else keep
                r1 = n if row + n >= cube.shape[1] else n - keep
                c1 = n if col + n >= cube.shape[2] else n - keep
                r0, c0 = max(r0, -row), max(c0, -col)
                r1, c1 = min(r1, cube.shape[1] - row), min(c1, cube.shape[2] - col)
                cube[:, row + r0 : row + r1, col + c0 : col + c1] = e[:, r0:r1, c0:c1]
            chips += len(emb)
    transform = from_origin(x.start, y.stop, res * p, res * p)
    write_embeddings(out, cube, transform, dataset.crs)
    return dict(
        seconds=time.perf_counter() - t0,
        tiles=chips,
        start_rss_mib=start,
        cube_mib=cube.nbytes / 2**20,
        uncovered=int(np.isnan(cube[0]).sum()),
    )


def run_terratorch(raster: Path, out: Path, tile: int, overlap: int, batch: int) -> dict:
    import importlib.metadata

    import torch

    precision = torch.get_float32_matmul_precision()
    from terratorch.tasks.tiled_inference import tiled_inference

    from ofa_explore import get_modality, load_pretrained

    # importing terratorch sets float32 matmul precision to "medium" (its Clay backbone module
    # does, at import), i.e. bf16 matmuls on a CPU with AMX: undone, so that fp32 means fp32
    imported = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)

    model, m = load_pretrained().eval(), get_modality("s2_l1c")
    p = model.config.patch_size
    chips = 0

    def forward(x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings repeated to every pixel: tiled_inference wants per-pixel outputs."""
        nonlocal chips
        chips += len(x)
        g = x.shape[-1] // p
        tokens = model.forward_features(x, m)[:, 1:]
        emb = tokens.transpose(1, 2).reshape(len(x), -1, g, g)
        return torch.nn.functional.interpolate(emb, scale_factor=p, mode="nearest")

    start, t0 = rss_mib(), mark_start()
    with rasterio.open(raster) as src:
        image = torch.from_numpy(src.read().astype(np.float32))[None]  # [1, C, H, W], DN
        transform, crs = src.transform * src.transform.scale(p), src.crs
    # delta = the centre kept, as the engine keeps it: chips then meet without overlap
    pixels = tiled_inference(
        forward,
        image,
        crop=tile,
        stride=tile - overlap,
        delta=(overlap // 2) // p * p,
        batch_size=batch,
    )
    cube = pixels[0, :, ::p, ::p].numpy()  # every pixel of a patch holds its embedding
    del pixels
    write_embeddings(out, np.ascontiguousarray(cube), transform, crs)
    return dict(
        seconds=time.perf_counter() - t0,
        tiles=chips,
        start_rss_mib=start,
        version=importlib.metadata.version("terratorch"),
        patch=p,
        matmul_after_import=imported,
    )


def child(spec: dict) -> None:
    from ofa_explore.threads import set_threads

    set_threads(spec.pop("threads"))
    kind = spec.pop("kind")
    args = [
        Path(spec.pop("raster")),
        Path(spec.pop("out")),
        spec.pop("tile"),
        spec.pop("overlap"),
        spec.pop("batch"),
    ]
    run = {"engine": run_engine, "torchgeo": run_torchgeo, "terratorch": run_terratorch}[kind]
    threading.Thread(target=_watch_rss, daemon=True).start()
    result = run(*args, **spec)
    result["self_rss_mib"] = rss_mib()
    result["growth_mib"] = (_RSS["peak"] - _RSS["start"]) / 2**20
    print(json.dumps(result))


# ---------------------------------------------------------------- measuring (parent)
def measure(python: Path | str, spec: dict) -> dict:
    """Run one pipeline in a fresh process; its result plus the peak RSS of its process tree."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # the TerraTorch venv finds ofa_explore too
    proc = subprocess.Popen(
        [str(python), __file__, "--child", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak, parent = 0, psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            procs = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(q.memory_info().rss for q in procs))
        except psutil.Error:
            pass
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{spec['kind']} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_mib"] = max(peak / 2**20, result["self_rss_mib"])
    return result


def best_of(repeats: int, python: Path | str, spec: dict) -> dict:
    runs = [measure(python, spec) for _ in range(repeats)]
    return min(runs, key=lambda r: r["seconds"])


def cosine(a_path: Path, b_path: Path, border: int) -> tuple[float, float, float, float]:
    """Cosine per patch between two embedding rasters (read in strips): min and mean inside a
    border of ``border`` patches, and over the whole raster."""
    inner, whole = [], []
    with rasterio.open(a_path) as a, rasterio.open(b_path) as b:
        for top in range(0, a.height, 64):
            window = Window(0, top, a.width, min(64, a.height - top))
            u, v = a.read(window=window), b.read(window=window)
            c = (u * v).sum(0) / (np.linalg.norm(u, axis=0) * np.linalg.norm(v, axis=0))
            whole.append(c.ravel())
            rows = np.arange(top, top + c.shape[0])
            keep = (rows >= border) & (rows < a.height - border)
            inner.append(c[keep][:, border : a.width - border].ravel())
    inner, whole = np.concatenate(inner), np.concatenate(whole)
    return np.nanmin(inner), np.nanmean(inner), np.nanmin(whole), np.nanmean(whole)


def terratorch_blocker(size: int, tile: int, overlap: int) -> str | None:
    """Why the TerraTorch pipeline cannot run here, or None."""
    probe = "import terratorch.tasks.tiled_inference"
    if not TT_PYTHON.exists():
        return f"no TerraTorch venv at {TT_PYTHON}; make it with:\n{TERRATORCH_SETUP}"
    res = subprocess.run([str(TT_PYTHON), "-c", probe], capture_output=True, text=True)
    if res.returncode:
        return f"`import terratorch` fails in {TT_PYTHON}: {res.stderr.strip().splitlines()[-1]}"
    # tiled_inference keeps every chip's per-pixel output until the end, then fills a float32
    # raster-sized accumulator and divides it by the weights (a second one); plus the input
    # twice (read, padded) and ~1.5 GiB of imports and model (measured: within 1% at 1024 px)
    stride, d = tile - overlap, 192
    chips = (math.ceil((size + overlap - tile) / stride) + 1) ** 2
    need = (chips * d * tile**2 + 2 * d * (size + overlap) ** 2 + 2 * 13 * size**2) * 4
    need += 1.5 * 2**30
    available = psutil.virtual_memory().available
    if need > 0.8 * available:
        return (
            f"tiled_inference would need ~{need / 2**30:.0f} GiB here (every chip's "
            f"{d}-band per-pixel output kept, plus two {d}-band float32 rasters), "
            f"{available / 2**30:.0f} GiB available"
        )
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--tile", type=int, default=64)
    parser.add_argument("--overlap", type=int, default=16)
    parser.add_argument(
        "--batch",
        type=int,
        default=32,
        help="tiles per batch in every pipeline (default: the engine's own "
        "default for this model, 2048 patches' worth)",
    )
    parser.add_argument("--repeats", type=int, default=1, help="runs per pipeline, best counts")
    parser.add_argument("--workdir", type=Path, default=WORKDIR)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(json.loads(args.child))
    if args.size % args.tile:
        parser.error(f"--size must be a multiple of --tile {args.tile}")

    import torch

    from ofa_explore import load_pretrained
    from ofa_explore.engine import predict_raster
    from ofa_explore.precision import resolve_precision
    from ofa_explore.threads import default_threads

    args.workdir.mkdir(parents=True, exist_ok=True)
    raster = build_mosaic(args.workdir / f"s2_mosaic_{args.size}.tif", args.size)
    threads = default_threads()
    base = dict(
        raster=str(raster), tile=args.tile, overlap=args.overlap, batch=args.batch, threads=threads
    )
    out = {
        name: args.workdir / f"emb_{name}_{args.size}.tif"
        for name in ("fp32", "auto", "torchgeo", "terratorch")
    }
    runs = {}
    runs["engine fp32"] = best_of(
        args.repeats,
        sys.executable,
        base | dict(kind="engine", out=str(out["fp32"]), precision="fp32"),
    )
    runs["engine auto"] = best_of(
        args.repeats,
        sys.executable,
        base | dict(kind="engine", out=str(out["auto"]), precision="auto"),
    )
    runs[f"torchgeo (workers={WORKERS})"] = best_of(
        args.repeats, sys.executable, base | dict(kind="torchgeo", out=str(out["torchgeo"]))
    )
    blocker = terratorch_blocker(args.size, args.tile, args.overlap)
    if blocker is None:
        runs["terratorch tiled_inf."] = best_of(
            args.repeats, TT_PYTHON, base | dict(kind="terratorch", out=str(out["terratorch"]))
        )

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    auto = resolve_precision("auto", torch.device("cpu"))
    print(
        f"machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {threads} torch "
        f"threads in every pipeline; auto = {auto}"
    )
    print(
        f"raster: {args.size} x {args.size} px, 13 bands uint16 ({raster}); tile {args.tile}, "
        f"overlap {args.overlap}, batch {args.batch}; chips: "
        + ", ".join(f"{name} {r['tiles']}" for name, r in runs.items())
    )
    mpix = args.size**2 / 1e6
    print(
        f"{'pipeline':<24}{'seconds':>9}{'MPix/s':>9}{'peak RSS MiB':>14}{'before':>8}{'growth':>8}"
    )
    for name, r in runs.items():
        print(
            f"{name:<24}{r['seconds']:>9.1f}{mpix / r['seconds']:>9.2f}{r['rss_mib']:>14.0f}"
            f"{r['start_rss_mib']:>8.0f}{r['growth_mib']:>8.0f}"
        )
    print(
        "(before: peak RSS of imports and model loading, before the timed part; growth: RSS "
        "during the timed part above RSS at its start, sampled every 0.05 s)"
    )
    peers = [name for name in runs if not name.startswith("engine")]
    for peer in peers:
        for mine in ("engine fp32", "engine auto"):
            speed = runs[peer]["seconds"] / runs[mine]["seconds"]
            memory = runs[mine]["rss_mib"] / runs[peer]["rss_mib"]
            print(
                f"{mine} / {peer}: throughput {speed:.2f}x (goal >= 1.5), peak RSS "
                f"{memory:.2f}x (goal <= 0.5)"
            )
    if blocker:
        print(f"TerraTorch's tiled_inference was not run: {blocker}")
    tg, stride = runs[f"torchgeo (workers={WORKERS})"], args.tile - args.overlap
    overhang = math.ceil((args.size - args.tile) / stride) * stride + args.tile - args.size
    print(
        f"TorchGeo: stitch array {tg['cube_mib']:.0f} MiB, {tg['uncovered']} cells left "
        f"uncovered; GridGeoSampler lays chips from the raster's bottom-left corner (the engine "
        f"from the top-left, so chips and each patch's context differ) and its last chips "
        f"overhang the top and right edges by {overhang} px, read as zeros"
    )
    if "terratorch tiled_inf." in runs:
        tt = runs["terratorch tiled_inf."]
        print(
            f"TerraTorch {tt['version']}: each patch's embedding "
            f"repeated to its {tt['patch']} x {tt['patch']} pixels (tiled_inference stitches "
            f"per-pixel maps), one pixel per patch written; raster edges reflect-padded; "
            f"`import terratorch` set torch's float32 matmul precision to "
            f"'{tt['matmul_after_import']}' (bf16 matmuls on an AMX CPU), reset for the run"
        )

    border = args.tile // 8
    pairs = [("auto", "engine fp32 vs auto"), ("torchgeo", "engine fp32 vs torchgeo")]
    if "terratorch tiled_inf." in runs:
        pairs.append(("terratorch", "engine fp32 vs terratorch"))
    for key, label in pairs:
        lo, mean, lo_all, mean_all = cosine(out["fp32"], out[key], border)
        print(
            f"{label}: cosine per patch, interior min {lo:.6f} mean {mean:.6f}; whole raster "
            f"min {lo_all:.6f} mean {mean_all:.6f}"
        )

    # Same computation? With overlap 0 both layouts coincide: the embeddings must match.
    crop = args.workdir / "crop_512.tif"
    with rasterio.open(raster) as src:
        profile = src.profile | dict(
            width=512, height=512, transform=src.window_transform(Window(0, 0, 512, 512))
        )
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=Window(0, 0, 512, 512)))
    model = load_pretrained()
    predict_raster(
        model,
        crop,
        "embed",
        args.workdir / "crop_engine.tif",
        tile=args.tile,
        overlap=0,
        overwrite=True,
    )
    run_torchgeo(crop, args.workdir / "crop_torchgeo.tif", args.tile, 0, args.batch)
    lo, mean, _, _ = cosine(args.workdir / "crop_engine.tif", args.workdir / "crop_torchgeo.tif", 0)
    print(
        f"same layout check (512 px crop, overlap 0): engine vs torchgeo cosine per patch min "
        f"{lo:.6f}, mean {mean:.6f}"
    )


if __name__ == "__main__":
    main()
