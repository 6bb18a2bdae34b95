"""Multi-modal chips for MAE pre-training, drawn on the fly from rasters of registered modalities.

The batch of a step is a pure function of (seed, step, rank): one modality per step (the same on
every rank, chosen by the mixing weights), random windows (of a random area, resized to the
image size, when ``crop_scale`` asks for it: MAE's random-resized crop) with flips and rotations,
chips with too much nodata skipped. Resuming at step N therefore reproduces batch N exactly, with no sampler state
to save, and every rank draws different chips.
"""

from __future__ import annotations

import csv
import glob
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ofa_explore.io import CONVERSION_ATTR, open_raster, to_model_units
from ofa_explore.modalities import Modality, get_modality

from .config import SourceConfig, TrainConfig

IN_MEMORY_BYTES = 64 * 2**20  # rasters up to this size are read once and kept
MIN_VALID = 0.5  # share of valid pixels a chip needs
TRIES = 20


@dataclass
class Region:
    """A raster and the rows of it a split may draw from."""

    raster: xr.DataArray | np.ndarray
    rows: tuple[int, int]
    nodata: float | None
    conversion: dict


class ModalitySource:
    """The rasters of one source, split into train and validation regions."""

    def __init__(self, cfg: SourceConfig, default_batch: int, base: Path):
        self.cfg = cfg
        self.modality: Modality = get_modality(cfg.modality)
        self.batch_size = cfg.batch_size or default_batch
        items = _expand(cfg, base)
        if not items:
            raise FileNotFoundError(f"source '{cfg.modality}': no rasters match {cfg.paths or cfg.manifest}")
        rasters = []
        for item in items:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # missing CRS is fine for chips
                rasters.append(open_raster(item, modality=self.modality))
        if cfg.split not in ("auto", "files", "rows"):
            raise ValueError(f"source '{cfg.modality}': split must be auto, files or rows")
        by_files = cfg.split == "files" or (cfg.split == "auto" and len(rasters) > 1)
        self.train, self.val = _split(rasters, cfg.val_fraction, by_files)

    def regions(self, split: str) -> list[Region]:
        return self.train if split == "train" else self.val


class ChipSampler:
    """Batches for training or validation, as a function of the step (and rank)."""

    def __init__(self, sources: list[ModalitySource], img_size: int, seed: int,
                 split: str = "train", crop_scale: tuple[float, float] = (1.0, 1.0)):
        self.sources = [s for s in sources if s.regions(split)]
        if not self.sources:
            raise ValueError(f"no rasters left for the {split} split; lower val_fraction")
        self.img_size, self.seed, self.split = img_size, seed, split
        self.crop_scale = crop_scale
        weights = np.array([s.cfg.weight for s in self.sources], dtype=float)
        self.weights = weights / weights.sum()

    def source_for(self, step: int) -> ModalitySource:
        rng = np.random.default_rng([self.seed, step, 0])
        return self.sources[rng.choice(len(self.sources), p=self.weights)]

    def batch(self, step: int, rank: int = 0) -> tuple[str, torch.Tensor]:
        source = self.source_for(step)
        return source.modality.name, self.chips(source, step, rank)

    def chips(self, source: ModalitySource, step: int, rank: int = 0) -> torch.Tensor:
        """A batch of ``source`` for this step and rank: [B, C, img_size, img_size]."""
        rng = np.random.default_rng([self.seed, step, 1, rank])
        return torch.from_numpy(np.stack([self._chip(source, rng)
                                          for _ in range(source.batch_size)]))

    def _chip(self, source: ModalitySource, rng: np.random.Generator) -> np.ndarray:
        m = source.modality
        mean = np.asarray(m.mean, dtype=np.float32)[:, None, None]
        regions = source.regions(self.split)
        for _ in range(TRIES):
            region = regions[rng.integers(len(regions))]
            size = self._window_side(rng)
            r0, r1 = region.rows
            width = region.raster.shape[-1]
            y = rng.integers(r0, max(r0, r1 - size) + 1)
            x = rng.integers(0, max(0, width - size) + 1)
            block = _read(region.raster, y, min(y + size, r1), x, min(x + size, width))
            values = to_model_units(block, region.conversion)
            valid = np.isfinite(values).all(axis=0)
            if region.nodata is not None:
                valid &= ~(block == region.nodata).any(axis=0)
            if valid.sum() / size**2 < MIN_VALID:
                continue
            chip = np.broadcast_to(mean, (m.num_bands, size, size)).copy()
            h, w = values.shape[1:]
            chip[:, :h, :w] = np.where(valid, values, mean)
            if size != self.img_size:
                chip = _resize(chip, self.img_size)
            chip = np.rot90(chip, k=rng.integers(4), axes=(1, 2))
            if rng.random() < 0.5:
                chip = chip[:, :, ::-1]
            return np.ascontiguousarray(chip, dtype=np.float32)
        raise ValueError(f"source '{m.name}': no chip with {MIN_VALID:.0%} valid pixels in {TRIES} "
                         "tries; check nodata")


    def _window_side(self, rng: np.random.Generator) -> int:
        lo, hi = self.crop_scale
        if lo == hi == 1.0:
            return self.img_size
        return max(4, round(self.img_size * float(np.sqrt(rng.uniform(lo, hi)))))


def _resize(chip: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(chip))[None]
    return torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                           antialias=True, align_corners=False)[0].numpy()


class StepBatches(torch.utils.data.Dataset):
    """Index = step; what a DataLoader (with workers) fetches ahead of the training loop."""

    def __init__(self, sampler: ChipSampler, rank: int, steps: int):
        self.sampler, self.rank, self.steps = sampler, rank, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[int, str, torch.Tensor]:
        name, x = self.sampler.batch(step, self.rank)
        return step, name, x


def build_sources(cfg: TrainConfig, base: Path) -> list[ModalitySource]:
    return [ModalitySource(s, cfg.batch_size, base) for s in cfg.data]


def _expand(cfg: SourceConfig, base: Path) -> list:
    """Rasters of a source: files, or lists of single-band files (one folder each)."""
    patterns = list(cfg.paths)
    if cfg.manifest:
        manifest = base / cfg.manifest if not Path(cfg.manifest).is_absolute() else Path(cfg.manifest)
        with open(manifest) as f:
            patterns += [str(manifest.parent / row["path"]) for row in csv.DictReader(f)]
    items = []
    for pattern in patterns:
        pattern = os.path.expandvars(pattern)
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        for match in sorted(glob.glob(full)):
            if cfg.stack_folders and Path(match).is_dir():
                items.append(sorted(glob.glob(str(Path(match) / "*.tif"))))
            elif Path(match).is_file():
                items.append(match)
    return items


def _split(rasters: list[xr.DataArray], val_fraction: float,
           by_files: bool) -> tuple[list[Region], list[Region]]:
    """Whole rasters held out (every k-th), or the bottom rows of each raster."""
    def region(da, rows):
        data = da.values if da.nbytes <= IN_MEMORY_BYTES else da
        return Region(data, rows, da.rio.nodata, da.attrs.get(CONVERSION_ATTR, {"kind": "none"}))

    if val_fraction <= 0:
        return [region(da, (0, da.sizes["y"])) for da in rasters], []
    if by_files and len(rasters) > 1:
        every = max(2, round(1 / val_fraction))
        train = [region(da, (0, da.sizes["y"])) for i, da in enumerate(rasters) if i % every != every - 1]
        val = [region(da, (0, da.sizes["y"])) for i, da in enumerate(rasters) if i % every == every - 1]
        return train, val
    cuts = [int(da.sizes["y"] * (1 - val_fraction)) for da in rasters]
    return ([region(da, (0, cut)) for da, cut in zip(rasters, cuts)],
            [region(da, (cut, da.sizes["y"])) for da, cut in zip(rasters, cuts)])


def _read(raster, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    if isinstance(raster, np.ndarray):
        return raster[:, y0:y1, x0:x1]
    return raster.isel(y=slice(y0, y1), x=slice(x0, x1)).values
