"""What a run is told (``EngineSettings``) and what it gives back (``PredictionResult``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..checks import check_mask_ratio, check_precision
from ..errors import BadInput

if TYPE_CHECKING:
    import xarray as xr


class Cancelled(RuntimeError):
    """The caller's cancel flag was raised; nothing was written."""


@dataclass(frozen=True)
class EngineSettings:
    """How the engine runs, whatever raster it runs on: the one record the CLI, the widgets, the
    QGIS worker (through the CLI) and Dask workers pass, so every caller means the same thing."""

    tile: int | None = None  # pixels, a multiple of the patch size; None: the model's image size
    overlap: int | None = None  # pixels of context shared by neighbours; None: a quarter tile
    # (half a tile for a task that blends its tiles, Task.blend)
    batch_size: int | None = None  # tiles per forward pass (None: BATCH_TOKENS tokens' worth;
    # halved on GPU out-of-memory)
    device: str = "auto"  # "auto" (CUDA, MPS, CPU), "cpu", "cuda", "cuda:1", "mps"
    precision: str = "fp32"  # "fp32", "bf16", "fp16" (CUDA) or "auto", see resolve_precision
    head: str | None = None  # classify: the checkpoint's head (None: its first for the modality)
    mask_ratio: float = 0.75  # reconstruct: share of patches hidden (0: none)
    seed: int = 0  # reconstruct: the mask's seed
    quicklook: bool = False  # with an output file: also write a small PNG beside it to look at

    def __post_init__(self) -> None:
        if self.batch_size is not None and self.batch_size < 1:
            raise BadInput(
                f"batch size {self.batch_size}", "give at least 1 tile per batch with {batch_size}"
            )
        check_precision(self.precision)
        check_mask_ratio(self.mask_ratio)
        if self.overlap is not None and self.overlap < 0:
            raise BadInput(f"overlap {self.overlap}", "give {overlap} 0 or more pixels")


@dataclass(kw_only=True)
class PredictionResult:
    """What ``predict_raster`` produced: files (``path``, ``pca_path``) or in-memory ``data``.

    At patch resolution (embeddings, scene-head class maps) the output grid is the input's
    rounded out to whole patches: the last column and row of cells may reach up to patch - 1
    pixels past the input's right and bottom edges. ``input_bounds`` (also the files'
    ``input_bounds`` tag) records the input's own extent; cells cut by it still count only their
    pixels inside in ``class_areas``.
    """

    task: str
    data: xr.DataArray | None
    path: Path | None
    tiles: int
    seconds: float
    device: str
    pca_path: Path | None = None  # embed: the colour view beside ``path``
    pca: xr.DataArray | None = None  # embed, in memory: the colour view
    class_names: list[str] | None = None
    head: str | None = None  # the head that classified, or scored change (None: zero-shot)
    class_colors: list[str] | None = None
    precision: str = "fp32"  # as resolved ("auto" -> what ran)
    modality: str | None = None  # the input's, as detected or given
    input_bounds: tuple[float, float, float, float] | None = None  # left, bottom, right, top
    # classify: per class (largest first) pixels, hectares (None where the CRS is not in
    # metres) and share of the classified area
    class_areas: list[dict] | None = None
    quicklook: Path | None = None  # the PNG beside ``path`` (settings.quicklook)
    # what the run decided on its own (e.g. the value scale it read the input in), one sentence
    # each; the CLI prints them with the result and the output file records them
    notes: list[str] = field(default_factory=list)
    # what the run checked and found wanting (e.g. a reconstruction no better than the trivial
    # baseline): the CLI prints each as a warning
    warnings: list[str] = field(default_factory=list)
    # figures of the run's self-checks, by name (reconstruct: hidden-pixel errors)
    checks: dict[str, float] = field(default_factory=dict)
