"""Pre-training configuration: YAML in, validated dataclasses out; a wrong key is named."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


@dataclass
class ModelConfig:
    size: str = "tiny"
    patch_size: int = 8
    img_size: int = 64
    modalities: list[str] = field(default_factory=list)  # default: those of the data sources
    wavelength_embed: bool = False
    norm_pix_loss: bool = False
    arch: dict[str, int] = field(default_factory=dict)  # e.g. {depth: 6}


EMBEDDINGS = ("own", "wavelength")


@dataclass
class SourceConfig:
    """Rasters of one modality: ``paths`` are globs (of files, or of folders holding one
    single-band file per band when ``stack_folders``), or ``manifest`` a CSV with a ``path`` column.

    ``modality: auto`` takes the modality from the files (their band wavelength tags);
    ``bands`` names the modality's bands the files hold, in file order, when they hold fewer.
    ``embedding: wavelength`` sends the source through the wavelength-conditioned patch
    embedding instead of a patch embedding of its own; ``band_subsets`` is the share of steps
    whose (second) view keeps a random subset of the bands and goes through that path too, so
    that the model learns band sets no sensor gave it.
    """

    modality: str
    paths: list[str] = field(default_factory=list)
    manifest: str | None = None
    stack_folders: bool = False
    band_files: str = "*.tif"  # which files of a stacked folder are bands
    bands: list[str] = field(default_factory=list)
    embedding: str = "own"
    band_subsets: float = 0.0
    chip_size: int | None = None  # default: model.img_size (e.g. 32 for 32-px tiles)
    weight: float = 1.0  # mixing weight: how often a batch comes from this source
    batch_size: int | None = None  # default: train.batch_size
    val_fraction: float = 0.1  # share held out for validation
    split: str = "auto"  # files | rows (bottom rows of each raster) | auto: files if several

    def __post_init__(self) -> None:
        where = f"source '{self.modality}'"
        if self.embedding not in EMBEDDINGS:
            raise ConfigError(f"{where}: embedding must be own or wavelength, got "
                              f"{self.embedding!r}")
        if self.modality == "auto" and self.embedding != "wavelength":
            raise ConfigError(f"{where}: a modality read from the files has no embedding of its "
                              "own; add 'embedding: wavelength'")
        if not 0 <= self.band_subsets <= 1:
            raise ConfigError(f"{where}: band_subsets is a share of steps in [0, 1], got "
                              f"{self.band_subsets}")
        if self.chip_size is not None and self.chip_size <= 0:
            raise ConfigError(f"{where}: chip_size must be positive, got {self.chip_size}")


@dataclass
class ObjectiveConfig:
    """What pre-training minimises: MAE's masked reconstruction of every view, plus, when
    ``contrastive`` > 0, that weight times an InfoNCE loss between two augmented, masked views
    of each chip (mean-pooled encoder tokens through a small projector; the other chips of the
    batch on the same rank are the negatives)."""

    contrastive: float = 0.0
    temperature: float = 0.2
    projection_dim: int = 128
    hidden_dim: int = 512

    def __post_init__(self) -> None:
        if self.contrastive < 0:
            raise ConfigError(f"objective.contrastive is a loss weight >= 0 (0: MAE only), got "
                              f"{self.contrastive}")
        if self.temperature <= 0:
            raise ConfigError(f"objective.temperature must be positive, got {self.temperature}")
        for key in ("projection_dim", "hidden_dim"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"objective.{key} must be positive, got {getattr(self, key)}")

    @property
    def views(self) -> int:
        return 2 if self.contrastive > 0 else 1


@dataclass
class AugmentConfig:
    """Spectral augmentation of every view, drawn per chip: a global gain, per-band gains and
    offsets (offsets as a share of the band's mean; SAR gains act in dB), and bands replaced by
    their mean. Without it a contrastive task is solved from colour alone."""

    gain: float = 0.0
    band_gain: float = 0.0
    band_offset: float = 0.0
    band_dropout: float = 0.0

    def __post_init__(self) -> None:
        for key in ("gain", "band_gain", "band_offset", "band_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"augment.{key} must be in [0, 1), got {getattr(self, key)}")


@dataclass
class OptimConfig:
    lr: float = 1.5e-4
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr: float = 1.0e-6


@dataclass
class TrainConfig:
    data: list[SourceConfig]
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    steps: int = 1000
    batch_size: int = 16
    mask_ratio: float = 0.75
    crop_scale: tuple[float, float] = (1.0, 1.0)  # window area / image area, drawn per chip
    precision: str = "fp32"  # fp32 | bf16 | fp16 (fp16 only on CUDA)
    attention: str = "auto"  # fused | math | auto: math for bf16 on a CPU, else fused
    grad_clip: float | None = 1.0
    checkpoint_every: int = 200
    keep_last: int = 3
    log_every: int = 10  # TensorBoard and progress-bar updates; log.csv gets every step
    val_every: int = 0  # 0: only at the end
    val_batches: int = 8
    num_workers: int = 0
    output_dir: str = "runs/ofa"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise ConfigError(f"precision must be fp32, bf16 or fp16, got {self.precision!r}")
        if self.attention not in ("auto", "fused", "math"):
            raise ConfigError(f"attention must be auto, fused or math, got {self.attention!r}")
        if not 0 <= self.mask_ratio < 1:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        lo, hi = self.crop_scale = tuple(float(v) for v in self.crop_scale)
        if not 0 < lo <= hi <= 4:
            raise ConfigError(f"crop_scale must be [min, max] with 0 < min <= max <= 4, got "
                              f"{list(self.crop_scale)}")
        for key in ("steps", "batch_size", "checkpoint_every", "keep_last", "log_every"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be positive, got {getattr(self, key)}")
        if not self.data:
            raise ConfigError("data: list at least one source (modality and paths)")
        own = self.model.modalities or [s.modality for s in self.data if s.embedding == "own"]
        for s in self.data:
            uses_wavelengths = s.embedding == "wavelength" or s.band_subsets > 0
            if uses_wavelengths and not self.model.wavelength_embed:
                raise ConfigError(f"source '{s.modality}' uses the wavelength-conditioned "
                                  "embedding (embedding: wavelength or band_subsets > 0); set "
                                  "model.wavelength_embed: true")
            if s.embedding == "wavelength" and s.modality in own:
                raise ConfigError(f"source '{s.modality}': embedding: wavelength, but the model "
                                  f"gives '{s.modality}' an embedding of its own; drop it from "
                                  "model.modalities or use embedding: own")
            size = s.chip_size or self.model.img_size
            if size % self.model.patch_size:
                raise ConfigError(f"source '{s.modality}': chip_size {size} must be a multiple "
                                  f"of model.patch_size {self.model.patch_size}")


def load_config(source: str | Path | dict[str, Any], **overrides: Any) -> TrainConfig:
    """A validated ``TrainConfig`` from a YAML file or a dict; ``overrides`` replace top-level keys."""
    name = str(source) if not isinstance(source, dict) else "config"
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return _build(TrainConfig, raw, name, "")
    except ConfigError as err:
        raise ConfigError(f"{name}: {err}") from None


def _build(cls, raw: Any, name: str, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"'{prefix or 'top level'}' must be a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key '{prefix}{unknown[0]}'; known keys here: "
                          f"{', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in raw.items():
        values[key] = _convert(hints[key], value, f"{prefix}{key}", name)
    try:
        return cls(**values)
    except TypeError as err:
        missing = str(err).split("argument")[-1].strip(": '")
        raise ConfigError(f"missing key '{prefix}{missing}'") from None


def _convert(hint, value, key: str, name: str):
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, name, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"'{key}' must be a list, got {value!r}")
        return [_convert(args[0], v, f"{key}[{i}]", name) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"'{key}' must be a mapping, got {value!r}")
        return dict(value)
    if origin is typing.Union or str(origin) == "types.UnionType":
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        return _convert(hint, value, key, name)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and not (isinstance(value, hint) and
                                         not (hint is int and isinstance(value, bool))):
        raise ConfigError(f"'{key}' must be {hint.__name__}, got {value!r}")
    if hint is float:
        raise ConfigError(f"'{key}' must be a number, got {value!r}")
    return value
