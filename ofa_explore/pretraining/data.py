"""Multi-modal chips for pre-training, drawn on the fly from rasters of registered modalities.

The batch of a step is a pure function of (seed, step, rank): one modality per step (the same on
every rank, chosen by the mixing weights), random windows (of a random area, resized to the
chip size, when ``crop_scale`` asks for it: MAE's random-resized crop) with flips, rotations and
spectral augmentation, chips with too much nodata skipped. With two views (the contrastive
objective) both are crops of one window, augmented independently (for a source of
``time_pairs``, of that window at two dates); on a share of steps the second
keeps a random subset of the bands, for the wavelength-conditioned path. Resuming at step N
therefore reproduces batch N exactly, with no sampler state to save, and every rank draws
different chips.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..errors import BadInput, NotFound
from ..modalities import Modality, get_modality
from ..scale import to_model_units
from .config import AugmentConfig, SourceConfig, TrainConfig

IN_MEMORY_BYTES = 512 * 2**20  # rasters up to this size are read once and kept
MIN_VALID = 0.5  # share of valid pixels a chip needs
TRIES = 20


@dataclass
class Region:
    """A raster and the rows of it a split may draw from."""

    raster: xr.DataArray | np.ndarray
    rows: tuple[int, int]
    nodata: float | None
    conversion: dict
    dates: list[Region] = field(default_factory=list)  # the same place at other dates


@dataclass
class View:
    """One view of a step's chips: the modality record the model is given (a band subset goes
    through the wavelength-conditioned embedding) and the chips [B, C, H, W] in sensor units."""

    modality: Modality
    x: torch.Tensor


class ModalitySource:
    """The rasters of one source, split into train and validation regions."""

    def __init__(self, cfg: SourceConfig, default_batch: int, default_size: int, base: Path):
        self.cfg = cfg
        self.batch_size = cfg.batch_size or default_batch
        self.chip_size = cfg.chip_size or default_size
        if cfg.packed:  # numpy only: no GDAL where the source was packed for
            from .packed import read_packed

            path = Path(cfg.packed) if Path(cfg.packed).is_absolute() else base / cfg.packed
            if not path.is_file():
                raise NotFound(f"source '{cfg.modality}': no packed file {path}", "pack it again")
            self.modality, self.train, self.val = read_packed(path)
            return
        from ..io import open_raster, raster_modality  # GDAL: only where rasters are read

        items = _expand(cfg, base)
        if cfg.time_pairs:
            places: dict[Path, list] = {}
            for item in items:
                places.setdefault(Path(item).parent, []).append(item)
            alone = [str(place) for place, files in places.items() if len(files) < 2]
            if alone:
                raise BadInput(
                    f"source '{cfg.modality}': time_pairs needs two or more dates of each "
                    f"place, but {alone[0]} holds one file",
                    "put each place's dates in a folder of their own",
                )
        if not items:
            raise NotFound(
                f"source '{cfg.modality}': no rasters match {cfg.paths or cfg.manifest}",
                "check the paths in {config}",
            )
        given = None if cfg.modality == "auto" else get_modality(cfg.modality)
        if given is not None and cfg.bands:
            given = given.select(
                cfg.bands, name=given.name if list(cfg.bands) == list(given.bands) else None
            )
        rasters = []
        for item in items:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # missing CRS is fine for chips
                rasters.append(open_raster(item, modality=given))
        self.modality: Modality = given or raster_modality(rasters[0])
        for da in rasters[1:]:
            if raster_modality(da).wavelengths != self.modality.wavelengths:
                raise BadInput(
                    f"source '{cfg.modality}': {da.attrs.get('source')} has other "
                    "bands than the first file",
                    "give such files a source each",
                )
        if cfg.time_pairs:  # one region per place, its other dates beside it, bottom rows held out
            self.train, self.val = [], []
            start = 0
            for files in places.values():
                dates = rasters[start : start + len(files)]
                start += len(files)
                train, val = _split(dates, cfg.val_fraction, False, self.modality.nodata)
                self.train.append(_with_dates(train))
                if val:
                    self.val.append(_with_dates(val))
            return
        by_files = cfg.split == "files" or (cfg.split == "auto" and len(rasters) > 1)
        self.train, self.val = _split(rasters, cfg.val_fraction, by_files, self.modality.nodata)

    def regions(self, split: str) -> list[Region]:
        return self.train if split == "train" else self.val


class ChipSampler:
    """Batches for training or validation, as a function of the step (and rank)."""

    def __init__(
        self,
        sources: list[ModalitySource],
        seed: int,
        split: str = "train",
        crop_scale: tuple[float, float] = (1.0, 1.0),
        views: int = 1,
        augment: AugmentConfig | None = None,
    ):
        self.sources = [s for s in sources if s.regions(split)]
        if not self.sources:
            raise BadInput(f"no rasters left for the {split} split", "lower val_fraction")
        self.seed, self.split = seed, split
        self.crop_scale, self.views = crop_scale, views
        self.augment = augment or AugmentConfig()
        weights = np.array([s.cfg.weight for s in self.sources], dtype=float)
        self.weights = weights / weights.sum()

    def source_for(self, step: int) -> ModalitySource:
        rng = np.random.default_rng([self.seed, step, 0])
        return self.sources[rng.choice(len(self.sources), p=self.weights)]

    def chips(self, source: ModalitySource, step: int, rank: int = 0) -> torch.Tensor:
        """A batch of ``source`` for this step and rank: [B, C, size, size], all bands."""
        rng = np.random.default_rng([self.seed, step, 1, rank])
        return torch.from_numpy(
            np.stack([self._views(source, rng, 1)[0] for _ in range(source.batch_size)])
        )

    def views_for(self, step: int, rank: int = 0) -> tuple[str, list[View]]:
        """The step's source name and its views (one, or two of the same windows)."""
        source = self.source_for(step)
        m = source.modality
        rng = np.random.default_rng([self.seed, step, 1, rank])
        chips = [self._views(source, rng, self.views) for _ in range(source.batch_size)]
        views = [
            View(m, torch.from_numpy(np.stack([c[i] for c in chips]))) for i in range(self.views)
        ]
        subset = self._band_subset(source, step)
        if subset is not None:  # the last view, through the wavelength-conditioned path
            last = views[-1]
            views[-1] = View(
                m.select([m.bands[i] for i in subset], name=f"{m.name}_subset"),
                last.x[:, subset].contiguous(),
            )
        return m.name, views

    def _band_subset(self, source: ModalitySource, step: int) -> list[int] | None:
        """Band indices kept on this step (the same on every rank), or None for all bands."""
        rng = np.random.default_rng([self.seed, step, 2])
        c = source.modality.num_bands
        if c < 2 or rng.random() >= source.cfg.band_subsets:
            return None
        k = int(rng.integers(min(3, c - 1), c)) if c > 2 else 1
        return sorted(rng.choice(c, size=k, replace=False).tolist())

    def _views(
        self, source: ModalitySource, rng: np.random.Generator, count: int
    ) -> list[np.ndarray]:
        """``count`` augmented crops of one random window of ``source``: each [C, size, size]."""
        m = source.modality
        mean = np.asarray(m.mean, dtype=np.float32)[:, None, None]
        regions = source.regions(self.split)
        size = source.chip_size
        side = max(4, round(size * float(np.sqrt(self.crop_scale[1]))))
        for _ in range(TRIES):
            region = regions[rng.integers(len(regions))]
            r0, r1 = region.rows
            width = region.raster.shape[-1]
            y = rng.integers(r0, max(r0, r1 - side) + 1)
            x = rng.integers(0, max(0, width - side) + 1)
            # two views of a place with several dates: the same window at two of them
            dates = (
                [region.dates[i] for i in rng.choice(len(region.dates), 2, replace=False)]
                if region.dates and count > 1
                else [region]
            )
            blocks, valid = [], np.ones((min(side, r1 - y), min(side, width - x)), bool)
            for date in dates:
                block = _read(date.raster, y, y + valid.shape[0], x, x + valid.shape[1])
                values = to_model_units(block, date.conversion)
                valid &= np.isfinite(values).all(axis=0)
                if date.nodata is not None:
                    valid &= ~(block == date.nodata).any(axis=0)
                blocks.append(values)
            if valid.sum() / side**2 < MIN_VALID:
                continue
            windows = []
            for values in blocks:
                window = np.broadcast_to(mean, (m.num_bands, side, side)).copy()
                h, w = values.shape[1:]
                window[:, :h, :w] = np.where(valid, values, mean)
                windows.append(window)
            return [self._view(windows[i % len(windows)], m, size, rng) for i in range(count)]
        raise BadInput(
            f"source '{m.name}': no chip with {MIN_VALID:.0%} valid pixels in {TRIES} tries",
            "check the rasters' nodata value",
        )

    def _view(
        self, window: np.ndarray, m: Modality, size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """A random-resized crop of ``window`` (area share in ``crop_scale``), flipped, rotated
        and spectrally augmented."""
        lo, hi = self.crop_scale
        side = window.shape[-1]
        crop = (
            side
            if lo == hi
            else max(4, min(side, round(side * float(np.sqrt(rng.uniform(lo, hi) / hi)))))
        )
        y, x = rng.integers(side - crop + 1), rng.integers(side - crop + 1)
        chip = window[:, y : y + crop, x : x + crop]
        if crop != size:
            chip = _resize(chip, size)
        chip = np.rot90(chip, k=rng.integers(4), axes=(1, 2))
        if rng.random() < 0.5:
            chip = chip[:, :, ::-1]
        return _augment(np.ascontiguousarray(chip, dtype=np.float32), m, self.augment, rng)


def _augment(
    chip: np.ndarray, m: Modality, a: AugmentConfig, rng: np.random.Generator
) -> np.ndarray:
    """Spectral augmentation of one chip in sensor units (no-op when every share is 0)."""
    if not (a.gain or a.band_gain or a.band_offset or a.band_dropout):
        return chip
    c = chip.shape[0]
    mean = np.asarray(m.mean, dtype=np.float32)
    gain = (1 + rng.uniform(-a.gain, a.gain)) * (1 + rng.uniform(-a.band_gain, a.band_gain, c))
    offset = rng.uniform(-a.band_offset, a.band_offset, c)
    if m.kind == "sar":  # backscatter in dB: a gain is an offset
        shift = 10 * np.log10(gain) + offset * np.asarray(m.std)
        chip = chip + shift.astype(np.float32)[:, None, None]
    else:
        chip = (
            chip * gain.astype(np.float32)[:, None, None]
            + (offset * mean).astype(np.float32)[:, None, None]
        )
    dropped = rng.random(c) < a.band_dropout
    if dropped.all():
        dropped[rng.integers(c)] = False
    chip[dropped] = mean[dropped, None, None]
    return chip


def _resize(chip: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(chip))[None]
    return torch.nn.functional.interpolate(
        t, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )[0].numpy()


class StepBatches(torch.utils.data.Dataset):
    """Index = step; what a DataLoader (with workers) fetches ahead of the training loop."""

    def __init__(self, sampler: ChipSampler, rank: int, steps: int):
        self.sampler, self.rank, self.steps = sampler, rank, steps

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[int, str, list[View]]:
        name, views = self.sampler.views_for(step, self.rank)
        return step, name, views


def build_sources(cfg: TrainConfig, base: Path) -> list[ModalitySource]:
    return [ModalitySource(s, cfg.batch_size, cfg.model.img_size, base) for s in cfg.data]


def _expand(cfg: SourceConfig, base: Path) -> list:
    """Rasters of a source: files, or lists of single-band files (one folder each)."""
    patterns = list(cfg.paths)
    if cfg.manifest:
        manifest = (
            base / cfg.manifest if not Path(cfg.manifest).is_absolute() else Path(cfg.manifest)
        )
        with open(manifest) as f:
            patterns += [str(manifest.parent / row["path"]) for row in csv.DictReader(f)]
    items = []
    for pattern in patterns:
        pattern = os.path.expandvars(pattern)
        full = pattern if Path(pattern).is_absolute() else str(base / pattern)
        for match in sorted(glob.glob(full)):
            if cfg.stack_folders and Path(match).is_dir():
                items.append(sorted(glob.glob(str(Path(match) / cfg.band_files))))
            elif Path(match).is_file():
                items.append(match)
    return items


def _split(
    rasters: list[xr.DataArray], val_fraction: float, by_files: bool, nodata: float | None = None
) -> tuple[list[Region], list[Region]]:
    """Whole rasters held out (every k-th), or the bottom rows of each raster. ``nodata``: the
    sensor's fill value, for files that do not declare theirs."""
    from ..io import CONVERSION_ATTR

    def region(da, rows):
        data = da.values if da.nbytes <= IN_MEMORY_BYTES else da
        fill = da.rio.nodata if da.rio.nodata is not None else nodata
        return Region(data, rows, fill, da.attrs.get(CONVERSION_ATTR, {"kind": "none"}))

    if val_fraction <= 0:
        return [region(da, (0, da.sizes["y"])) for da in rasters], []
    if by_files and len(rasters) > 1:
        every = max(2, round(1 / val_fraction))
        train = [
            region(da, (0, da.sizes["y"])) for i, da in enumerate(rasters) if i % every != every - 1
        ]
        val = [
            region(da, (0, da.sizes["y"])) for i, da in enumerate(rasters) if i % every == every - 1
        ]
        return train, val
    cuts = [int(da.sizes["y"] * (1 - val_fraction)) for da in rasters]
    return (
        [region(da, (0, cut)) for da, cut in zip(rasters, cuts)],
        [region(da, (cut, da.sizes["y"])) for da, cut in zip(rasters, cuts)],
    )


def _with_dates(regions: list[Region]) -> Region:
    """The first date's region, holding every date (rows: those every date has in this split,
    so a held-out row of one date is never a training row of another)."""
    rows = (max(r.rows[0] for r in regions), min(r.rows[1] for r in regions))
    width = min(r.raster.shape[-1] for r in regions)
    dates = [dataclasses.replace(r, rows=rows) for r in regions]
    for d in dates:
        d.raster = (
            d.raster[..., :width]
            if isinstance(d.raster, np.ndarray)
            else d.raster.isel(x=slice(0, width))
        )
    return dataclasses.replace(dates[0], dates=dates)


def _read(raster, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    if isinstance(raster, np.ndarray):
        return raster[:, y0:y1, x0:x1]
    return raster.isel(y=slice(y0, y1), x=slice(x0, x1)).values
