"""Pre-training configuration: YAML in, validated models out (pydantic); a wrong key or type is
named in one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..checks import check_mask_ratio
from ..errors import BadInput, NotFound


class ConfigError(BadInput):
    """The configuration is invalid; the message names the key and what is allowed."""


class _Section(BaseModel):
    """A part of the config: unknown keys refused, values of the declared type only (an int
    where a number is asked for is fine; a string, or a bool for an int, is not)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)


class ModelConfig(_Section):
    size: str = "tiny"
    patch_size: int = 8
    img_size: int = 64
    modalities: list[str] = Field(default_factory=list)  # default: those of the data sources
    wavelength_embed: bool = False
    norm_pix_loss: bool = False
    arch: dict[str, int] = Field(default_factory=dict)  # e.g. {depth: 6}


class SourceConfig(_Section):
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
    paths: list[str] = Field(default_factory=list)
    manifest: str | None = None
    stack_folders: bool = False
    band_files: str = "*.tif"  # which files of a stacked folder are bands
    bands: list[str] = Field(default_factory=list)
    embedding: Literal["own", "wavelength"] = "own"
    band_subsets: float = 0.0
    chip_size: int | None = None  # default: model.img_size (e.g. 32 for 32-px tiles)
    weight: float = 1.0  # mixing weight: how often a batch comes from this source
    batch_size: int | None = None  # default: train.batch_size
    val_fraction: float = 0.1  # share held out for validation
    # files | rows (the bottom rows of each raster) | auto: files if there are several
    split: Literal["auto", "files", "rows"] = "auto"
    # the files of one folder are one place at several dates on one grid: the two views of a
    # chip are the same window at two dates (time as a view), the bottom rows held out
    time_pairs: bool = False
    # an npz of this source's regions written by ``ofa_explore.pretraining.packed`` (read with
    # numpy alone, for a machine without GDAL), in place of paths
    packed: str | None = None

    @model_validator(mode="after")
    def _check(self) -> SourceConfig:
        where = f"source '{self.modality}'"
        if self.packed and (self.paths or self.manifest):
            raise ValueError(f"{where}: packed replaces paths and manifest; give one of them")
        if self.time_pairs and self.stack_folders:
            raise ValueError(
                f"{where}: time_pairs reads one file per date; it cannot be used with stack_folders"
            )
        if self.modality == "auto" and self.embedding != "wavelength":
            raise ValueError(
                f"{where}: a modality read from the files has no embedding of its "
                "own; add 'embedding: wavelength'"
            )
        if not 0 <= self.band_subsets <= 1:
            raise ValueError(
                f"{where}: band_subsets is a share of steps in [0, 1], got {self.band_subsets}"
            )
        if self.chip_size is not None and self.chip_size <= 0:
            raise ValueError(f"{where}: chip_size must be positive, got {self.chip_size}")
        return self


class ObjectiveConfig(_Section):
    """What pre-training minimises: MAE's masked reconstruction of every view, plus, when
    ``contrastive`` > 0, that weight times an InfoNCE loss between two augmented, masked views
    of each chip (mean-pooled encoder tokens through a small projector; the other chips of the
    batch on the same rank are the negatives), plus, when ``hog`` > 0, that weight times the
    distance between the HOG descriptors of the hidden patches' reconstruction and the image's."""

    contrastive: float = 0.0
    temperature: float = 0.2
    projection_dim: int = 128
    hidden_dim: int = 512
    hog: float = 0.0  # weight of the hidden patches' HOG loss (objective.hog_loss); 0: none

    @model_validator(mode="after")
    def _check(self) -> ObjectiveConfig:
        if self.contrastive < 0:
            raise ValueError(
                f"objective.contrastive is a loss weight >= 0 (0: MAE only), got {self.contrastive}"
            )
        if self.hog < 0:
            raise ValueError(f"objective.hog is a loss weight >= 0 (0: none), got {self.hog}")
        if self.temperature <= 0:
            raise ValueError(f"objective.temperature must be positive, got {self.temperature}")
        for key in ("projection_dim", "hidden_dim"):
            if getattr(self, key) <= 0:
                raise ValueError(f"objective.{key} must be positive, got {getattr(self, key)}")
        return self

    @property
    def views(self) -> int:
        return 2 if self.contrastive > 0 else 1


class AugmentConfig(_Section):
    """Spectral augmentation of every view, drawn per chip: a global gain, per-band gains and
    offsets (offsets as a share of the band's mean; SAR gains act in dB), and bands replaced by
    their mean. Without it a contrastive task is solved from colour alone."""

    gain: float = 0.0
    band_gain: float = 0.0
    band_offset: float = 0.0
    band_dropout: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        for key in ("gain", "band_gain", "band_offset", "band_dropout"):
            if not 0 <= getattr(self, key) < 1:
                raise ValueError(f"augment.{key} must be in [0, 1), got {getattr(self, key)}")
        return self


class OptimConfig(_Section):
    lr: float = 1.5e-4
    weight_decay: float = 0.05
    betas: list[float] = Field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr: float = 1.0e-6


class TrainConfig(_Section):
    data: list[SourceConfig]
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    objective: ObjectiveConfig = Field(default_factory=ObjectiveConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    steps: int = 1000
    batch_size: int = 16
    mask_ratio: float = 0.75
    # window area / image area, drawn per chip; a YAML list [min, max]
    crop_scale: tuple[float, float] = Field((1.0, 1.0), strict=False)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = (
        "fp32"  # fp16: CUDA; auto: see precision.py
    )
    attention: Literal["auto", "fused", "math"] = "auto"  # auto: math for bf16 on a CPU, else fused
    grad_clip: float | None = 1.0
    checkpoint_every: int = 200
    keep_last: int = 3
    log_every: int = 10  # TensorBoard and progress-bar updates; log.csv gets every step
    val_every: int = 0  # 0: only at the end
    val_batches: int = 8
    num_workers: int = 0
    output_dir: str = "runs/ofa"
    seed: int = 0
    # start from these weights instead of random ones ("shipped": the packaged model), with a
    # fresh optimiser and schedule: more steps for a trained model without starting over
    init_from: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        check_mask_ratio(self.mask_ratio)
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 4:
            raise ValueError(
                f"crop_scale must be [min, max] with 0 < min <= max <= 4, got "
                f"{list(self.crop_scale)}"
            )
        for key in ("steps", "batch_size", "checkpoint_every", "keep_last", "log_every"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{key} must be positive, got {getattr(self, key)}")
        if not self.data:
            raise ValueError("data: list at least one source (modality and paths)")
        own = self.model.modalities or [s.modality for s in self.data if s.embedding == "own"]
        for s in self.data:
            uses_wavelengths = s.embedding == "wavelength" or s.band_subsets > 0
            if uses_wavelengths and not self.model.wavelength_embed:
                raise ValueError(
                    f"source '{s.modality}' uses the wavelength-conditioned "
                    "embedding (embedding: wavelength or band_subsets > 0); set "
                    "model.wavelength_embed: true"
                )
            if s.embedding == "wavelength" and s.modality in own:
                raise ValueError(
                    f"source '{s.modality}': embedding: wavelength, but the model "
                    f"gives '{s.modality}' an embedding of its own; drop it from "
                    "model.modalities or use embedding: own"
                )
            size = s.chip_size or self.model.img_size
            if size % self.model.patch_size:
                raise ValueError(
                    f"source '{s.modality}': chip_size {size} must be a multiple "
                    f"of model.patch_size {self.model.patch_size}"
                )
        return self


def load_config(source: str | Path | dict[str, Any], **overrides: Any) -> TrainConfig:
    """A validated ``TrainConfig`` from a YAML file or a dict; ``overrides`` replace top-level
    keys."""
    name = str(source) if not isinstance(source, dict) else "config"
    if isinstance(source, dict):
        raw = source
    else:
        path = Path(source)
        if not path.is_file():
            raise NotFound(f"config not found: {path}", "check the path of {config}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: the top level must be a mapping, got {type(raw).__name__}")
    raw = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        problem, fix = _first_problem(err)
        raise ConfigError(f"{name}: {problem}", fix) from None


def config_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The config as plain data (what a checkpoint records)."""
    return cfg.model_dump()


# What a value of a declared type is called in a message.
_KINDS = {
    "int_type": "int",
    "int_parsing": "int",
    "int_from_float": "int",
    "bool_type": "bool",
    "string_type": "str",
    "float_type": "a number",
    "float_parsing": "a number",
    "list_type": "a list",
    "tuple_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def _first_problem(err: ValidationError) -> tuple[str, str]:
    """The first error of a validation as (problem, fix), in the words of the config file."""
    e = err.errors(include_url=False)[0]
    key = _key(e["loc"])
    kind = e["type"]
    if kind == "extra_forbidden":
        known = ", ".join(_section_at(e["loc"][:-1]).model_fields)
        return f"unknown key '{key}'", f"known keys here: {known}"
    if kind == "missing":
        return f"missing key '{key}'", ""
    if kind == "value_error":  # one of the validators above: its message says it all
        return str(e["ctx"]["error"]), ""
    if kind == "literal_error":
        expected = e["ctx"]["expected"].replace("'", "")
        return f"{key} must be {expected}, got {e['input']!r}", ""
    if kind in _KINDS:
        return f"'{key or 'top level'}' must be {_KINDS[kind]}, got {e['input']!r}", ""
    return f"'{key}': {e['msg'][0].lower()}{e['msg'][1:]}, got {e['input']!r}", ""


def _key(loc: tuple) -> str:
    """('data', 0, 'modality') -> 'data[0].modality'."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _section_at(loc: tuple) -> type[BaseModel]:
    """The config section a location leads to (for the list of keys allowed there)."""
    section: type[BaseModel] = TrainConfig
    for part in loc:
        if isinstance(part, int):
            continue
        annotation = section.model_fields[part].annotation
        inner = getattr(annotation, "__args__", None)
        section = inner[0] if inner else annotation
    return section
