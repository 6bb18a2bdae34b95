"""Sources packed for a machine without GDAL: windows of a config's rasters, one npz per source.

A GPU lease has torch but not rasterio, and what travels to it is a few tens of MiB. ``pack``
reads the sources of a config here, draws whole regions (tiles of the larger ones) at random
until the source's share of a byte budget is spent (shares follow the mixing weights; what a
small source leaves goes to the others), and writes one npz per source and a config whose
sources name them (``packed:``). ``read_packed`` gives back the modality and the training and
validation regions with numpy alone, so the sampler draws from them as from the rasters.
"""

from __future__ import annotations

import json
import os
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..modalities import Modality
from .config import TrainConfig, config_dict
from .data import ModalitySource, Region, _read, build_sources

FORMAT = "ofa_explore.packed_source/1"
TILE = 128  # regions larger than this are cut into tiles of this side (the last ones longer)
VAL_SHARE = 0.1  # of a source's bytes, for its validation regions


@dataclass
class PackedSource:
    """What one source became: its file, the regions kept of those it had, and the bytes."""

    modality: str
    path: Path
    regions: tuple[int, int]  # (kept, available)
    nbytes: int


def pack(
    cfg: TrainConfig, base: Path, out: Path, budget_bytes: int, seed: int = 0
) -> tuple[TrainConfig, list[PackedSource]]:
    """Pack the sources of ``cfg`` (paths read from ``base``) into ``out`` within
    ``budget_bytes`` of compressed npz; returns the config that reads them (paths relative to
    ``base`` when ``out`` is inside it) and what each source became."""
    out.mkdir(parents=True, exist_ok=True)
    sources = build_sources(cfg, base)
    tiles = [(_tiles(src.train), _tiles(src.val)) for src in sources]
    sizes = [sum(_nbytes(t) for t in train + val) for train, val in tiles]
    weights = [s.weight for s in cfg.data]
    # small sources first (by size per weight): what they leave of their share goes to the rest
    order = sorted(range(len(sources)), key=lambda i: sizes[i] / max(weights[i], 1e-9))
    left, left_weight = budget_bytes, sum(weights)
    packed: dict[int, PackedSource] = {}
    for i in order:
        share = left * weights[i] / left_weight if left_weight > 0 else 0
        name = f"source_{i:02d}_{cfg.data[i].modality}.npz"
        packed[i] = _write(out / name, sources[i], *tiles[i], int(share), seed + i)
        left -= packed[i].nbytes
        left_weight -= weights[i]
    data = []
    for i, s in enumerate(cfg.data):
        path = packed[i].path.resolve()
        where = os.path.relpath(path, base) if path.is_relative_to(base.resolve()) else path
        fields = s.model_dump()
        fields.update(paths=[], manifest=None, stack_folders=False, bands=[], packed=str(where))
        data.append(fields)
    raw = config_dict(cfg)
    raw["data"] = data
    return TrainConfig.model_validate(raw), [packed[i] for i in range(len(sources))]


def read_packed(path: Path) -> tuple[Modality, list[Region], list[Region]]:
    """The modality and the (training, validation) regions of a packed source."""
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(str(npz["meta"]))
        if meta.get("format") != FORMAT:
            raise BadInput(
                f"{path} is not a packed source of this version ({meta.get('format')})",
                "pack the config again",
            )
        split: dict[str, list[Region]] = {"train": [], "val": []}
        for k, r in enumerate(meta["regions"]):
            dates = [
                Region(npz[f"r{k}_d{j}"], (0, r["rows"]), r["nodata"], r["conversion"])
                for j in range(r["dates"])
            ]
            region = Region(dates[0].raster, dates[0].rows, r["nodata"], r["conversion"])
            if len(dates) > 1:
                region.dates = dates
            split[r["split"]].append(region)
    return Modality.from_dict(meta["modality"]), split["train"], split["val"]


def _tiles(regions: list[Region]) -> list[tuple[Region, int, int, int, int]]:
    """(region, y0, y1, x0, x1) windows covering each region's rows: the whole region when
    it fits in a tile, else a grid of tiles whose last row and column take the remainder."""
    out = []
    for r in regions:
        y_start, y_end = r.rows
        width = r.raster.shape[-1]
        ys = _cuts(y_start, y_end)
        xs = _cuts(0, width)
        out += [(r, y0, y1, x0, x1) for y0, y1 in ys for x0, x1 in xs]
    return out


def _cuts(start: int, end: int) -> list[tuple[int, int]]:
    n = max(1, (end - start) // TILE)
    edges = [start + k * TILE for k in range(n)] + [end]
    return list(zip(edges[:-1], edges[1:]))


def _nbytes(tile: tuple[Region, int, int, int, int]) -> int:
    r, y0, y1, x0, x1 = tile
    per_date = r.raster.shape[0] * (y1 - y0) * (x1 - x0) * r.raster.dtype.itemsize
    return per_date * max(1, len(r.dates))


def _write(
    path: Path,
    source: ModalitySource,
    train: list,
    val: list,
    budget: int,
    seed: int,
) -> PackedSource:
    """Tiles drawn at random (validation ones up to ``VAL_SHARE`` of the budget) until the
    budget is spent, compressed into one npz; written beside and renamed into place."""
    rng = random.Random(seed)
    train, val = rng.sample(train, len(train)), rng.sample(val, len(val))
    regions: list[dict] = []
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as zf:
        raw = 0  # bytes before compression, for the ratio that predicts a tile's size
        for split, pool, limit in (("val", val, budget * VAL_SHARE), ("train", train, budget)):
            for n, tile in enumerate(pool):
                ratio = f.tell() / raw if raw else 1.0
                if n and f.tell() + ratio * _nbytes(tile) > limit:
                    continue  # one region at least, however small the budget; a smaller may fit
                raw += _nbytes(tile)
                region, y0, y1, x0, x1 = tile
                k = len(regions)
                for j, date in enumerate(region.dates or [region]):
                    with zf.open(f"r{k}_d{j}.npy", "w", force_zip64=True) as member:
                        window = np.ascontiguousarray(_read(date.raster, y0, y1, x0, x1))
                        np.lib.format.write_array(member, window, allow_pickle=False)
                regions.append(
                    dict(
                        split=split,
                        rows=y1 - y0,
                        dates=max(1, len(region.dates)),
                        nodata=None if region.nodata is None else float(region.nodata),
                        conversion=region.conversion,
                    )
                )
        meta = dict(format=FORMAT, modality=source.modality.to_dict(), regions=regions)
        with zf.open("meta.npy", "w") as member:
            np.lib.format.write_array(member, np.array(json.dumps(meta)), allow_pickle=False)
    os.replace(tmp, path)
    available = len(train) + len(val)
    return PackedSource(source.cfg.modality, path, (len(regions), available), path.stat().st_size)
