"""What the engine can compute over a raster: one ``Task`` subclass per task, one registration.

A task says everything that differs between tasks: its name, the bands, dtype and nodata of its
output, whether the output is per pixel or per patch, the forward pass on a batch of prepared
tiles (model units, invalid pixels filled), what it watches while cells are written, and what it
reports at the end (extra outputs, class areas). The engine (``run.py``) and the sinks only ask
the task; they never test a task's name. All calls into the model are made here.

Adding a task (change detection, say) is one subclass and one ``register(...)`` call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from .. import protocol
from ..areas import cell_areas_m2, class_area_table
from ..errors import BadInput
from ..heads import classify, default_colors, segment
from ..inputs import require_embedding
from ..modalities import Modality
from ..model import set_fused_attention
from .settings import EngineSettings

if TYPE_CHECKING:
    from ..model import OFANet
    from .sinks import Sink
    from .tiles import Grid

PCA_SAMPLE = 20000  # embedding vectors kept (spread over all tiles) to fit the PCA colour view
CLASS_NODATA = 255
BARELY = 0.9  # reconstruct: a hidden-pixel error above 90 % of the baseline's earns a warning

TASKS: dict[str, type[Task]] = {}  # name -> class, in the order registered


def register(cls: type[Task]) -> type[Task]:
    """Make a task known to the engine by its ``name``. The shells (``ofa <task>``, the QGIS
    menu) offer the tasks that ``protocol.TASKS`` also names, with their words and file names."""
    TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise BadInput(f"task must be one of {', '.join(TASKS)}, got {name!r}") from None


class Task:
    """One task bound to a model, the input's modality and the settings of one run."""

    name: ClassVar[str]
    options: ClassVar[tuple[str, ...]] = ()  # EngineSettings fields only this task reads
    dtype: ClassVar[str] = "float32"
    nodata: ClassVar[float | int] = float("nan")

    def __init__(self, model: OFANet, modality: Modality, settings: EngineSettings):
        require_embedding(model, modality)
        self.model, self.modality, self.settings = model, modality, settings

    @classmethod
    def outputs(cls, path: Path) -> list[Path]:
        """Every file a run writes for the output ``path``: the output first, then extras."""
        known = cls.name in protocol.TASKS  # the protocol names companions (embed's _pca)
        return protocol.output_files(path, cls.name) if known else [path]

    # -------------------------------------------------------------- the model's facts
    @property
    def patch(self) -> int:
        return self.model.config.patch_size

    @property
    def default_tile(self) -> int:
        return self.model.config.img_size

    @property
    def per_pixel(self) -> bool:
        """Whether the output has the input's pixels; else one cell per patch."""
        return False

    @property
    def blend(self) -> bool:
        """Whether tiles overlap by half and each pixel averages every tile that covers it
        (``engine.blend``) instead of taking one tile's centre: for a per-pixel output that
        depends on the tile's context, which otherwise steps at every centre's edge."""
        return False

    @property
    def resolution(self) -> int:
        """Output cell side, in input pixels."""
        return 1 if self.per_pixel else self.patch

    def bands(self) -> list[str]:
        raise NotImplementedError

    def to(self, device: torch.device) -> None:
        self.model = self.model.to(device).eval()

    @contextlib.contextmanager
    def attention(self, fused: bool) -> Iterator[None]:
        """The model with (or without) the fused attention kernel; every attention layer is
        left as it was found afterwards."""
        was = {m: m.fused_attn for m in self.model.modules() if hasattr(m, "fused_attn")}
        set_fused_attention(self.model, fused)
        try:
            yield
        finally:
            for m, value in was.items():
                m.fused_attn = value

    # -------------------------------------------------------------- per batch and per cell
    def forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        """[N, C, th, tw] prepared tiles -> [N, K, h, w] float32 values per output cell."""
        raise NotImplementedError

    def cells(self, block: np.ndarray) -> np.ndarray:
        """The forward pass's values of a block of cells -> the values stored (same shape but
        for the first axis: the output's bands)."""
        return block

    def start(self, grid: Grid) -> None:
        """Called once the grid is known, before the first tile."""
        self.grid = grid

    def observe(self, block: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        """Sees each block of stored cells (valid: [h, w]) at output cell ``row``, ``col``."""

    # -------------------------------------------------------------- outputs and report
    def tags(self) -> dict[str, str]:
        """Metadata tags of the output file."""
        return {}

    def attrs(self) -> dict[str, Any]:
        """Attributes of the in-memory output."""
        return {}

    def colormap(self) -> dict[int, tuple[int, int, int, int]] | None:
        return None

    def finish(self, sink: Sink, path: Path | None) -> dict[str, Any]:
        """Extra outputs written through ``sink`` before it closes, and the PredictionResult
        fields this task reports (by name)."""
        return {}


@register
class Embed(Task):
    name = "embed"

    def bands(self) -> list[str]:
        return [f"emb_{i:03d}" for i in range(self.model.config.embed_dim)]

    def forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        gh, gw = x.shape[2] // self.patch, x.shape[3] // self.patch
        tokens = self.model.forward_features(x, self.modality)[:, 1:]
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, gh, gw).float().cpu().numpy()

    def start(self, grid: Grid) -> None:
        super().start(grid)
        self.per_tile = max(1, PCA_SAMPLE // grid.tiles)
        self.samples: list[np.ndarray] = []
        self.rng = np.random.default_rng(0)

    def observe(self, block: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        if valid.any():  # a few valid vectors of every tile, to fit the colour view
            vectors = block[:, valid].T
            pick = self.rng.choice(len(vectors), min(self.per_tile, len(vectors)), replace=False)
            self.samples.append(vectors[pick])

    def finish(self, sink: Sink, path: Path | None) -> dict[str, Any]:
        """The 3-band uint8 colour view: first principal components, stretched."""
        pca_path = self.outputs(path)[1] if path else None
        mean, comps, lo, hi = self._fit()
        pca = sink.derive(
            pca_path,
            lambda block: _project(block, mean, comps, lo, hi),
            ["pc1", "pc2", "pc3"],
            "uint8",
            0,
        )
        return {"pca_path": pca_path, "pca": pca}

    def _fit(self):
        count = len(self.bands())
        sample = np.concatenate(self.samples) if self.samples else np.zeros((0, count))
        if len(sample) < 3:
            mean, comps = np.zeros(count), np.eye(count)[:3]
            lo, hi = -np.ones(3), np.ones(3)
        else:
            mean = sample.mean(axis=0)
            centred = sample - mean
            _, vectors = np.linalg.eigh(centred.T @ centred)  # D x D: cheap whatever the sample
            comps = vectors[:, ::-1][:, :3].T
            proj = (sample - mean) @ comps.T
            lo, hi = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
        return mean, comps, lo, np.where(hi > lo, hi, lo + 1)


def _project(block: np.ndarray, mean, comps, lo, hi) -> np.ndarray:
    c, h, w = block.shape
    vectors = block.reshape(c, -1).T
    ok = np.isfinite(vectors).all(axis=1)
    proj = (np.nan_to_num(vectors) - mean) @ comps.T
    scaled = np.clip((proj - lo) / (hi - lo) * 254 + 1, 1, 255).round()
    scaled[~ok] = 0  # 0 = nodata in the colour view
    return scaled.T.reshape(comps.shape[0], h, w).astype(np.uint8)


@register
class Reconstruct(Task):
    """Hides patches and predicts them back. Knowing what it hid, it checks itself: the
    hidden pixels' error against the trivial baseline (each hidden pixel = the band means of
    its tile's visible pixels), over the valid pixels of every tile's centre."""

    name = "reconstruct"
    options = ("mask_ratio", "seed")

    @property
    def per_pixel(self) -> bool:
        return True

    @property
    def checked(self) -> bool:
        return self.settings.mask_ratio > 0

    def bands(self) -> list[str]:
        return list(self.modality.bands)

    def forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        """[N, C, H, W] -> the reconstruction, then (when patches are hidden) three planes for
        the self-check: hidden (1/0), the model's and the baseline's squared error per pixel
        (normalised units, mean over bands)."""
        ratio = self.settings.mask_ratio
        image, mask = self.model.reconstruct(
            x, self.modality, mask_ratio=ratio, seed=seed, keep_visible=ratio > 0
        )
        if not self.checked:
            return image.float().cpu().numpy()
        x, image, mask = x.float(), image.float(), mask.float()
        std = torch.tensor(self.modality.std, device=x.device).view(1, -1, 1, 1)
        visible = 1 - mask
        seen = visible.sum(dim=(2, 3), keepdim=True).clamp(min=1)
        baseline = (x * visible).sum(dim=(2, 3), keepdim=True) / seen
        model_err = (((image - x) / std) ** 2).mean(dim=1, keepdim=True)
        baseline_err = (((baseline - x) / std) ** 2).mean(dim=1, keepdim=True)
        return torch.cat([image, mask, model_err, baseline_err], dim=1).cpu().numpy()

    def cells(self, block: np.ndarray) -> np.ndarray:
        count = self.modality.num_bands
        self.planes = block[count:]  # the self-check's, for observe() right after
        return block[:count]

    def start(self, grid: Grid) -> None:
        super().start(grid)
        self.sums = np.zeros(3)  # hidden pixels, model's squared error, baseline's

    def observe(self, block: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        if not self.checked:
            return
        hidden, model_err, baseline_err = self.planes
        counted = valid & (hidden > 0.5)
        self.sums += (counted.sum(), model_err[counted].sum(), baseline_err[counted].sum())

    def finish(self, sink: Sink, path: Path | None) -> dict[str, Any]:
        pixels, model_sum, baseline_sum = self.sums
        if not pixels:
            return {}
        model, baseline = model_sum / pixels, baseline_sum / pixels
        checks = {"hidden_mse": model, "baseline_mse": baseline, "hidden_pixels": pixels}
        sink.add_tags({f"ofa_{k}": f"{v:.6g}" for k, v in checks.items()})
        figures = f"hidden-pixel error {model:.3g} against {baseline:.3g}"
        said = f"{figures} for the trivial baseline (the visible pixels' band means)"
        cautions = []
        if model >= baseline:
            cautions.append(
                f"the model fills the hidden patches no better than the trivial baseline "
                f"({figures}); it does not know this imagery well, so treat its outputs with care"
            )
        elif model > BARELY * baseline:
            cautions.append(
                f"the model fills the hidden patches only slightly better than the trivial "
                f"baseline ({figures}, {1 - model / baseline:.0%} lower); it knows this imagery "
                "little, so treat its outputs with care"
            )
        return {"checks": checks, "notes": [said], "warnings": cautions}


@register
class Classify(Task):
    name = "classify"
    options = ("head",)
    dtype = "uint8"
    nodata = CLASS_NODATA

    def __init__(self, model: OFANet, modality: Modality, settings: EngineSettings):
        super().__init__(model, modality, settings)
        self.head = model.heads.select(settings.head, None, modality)
        info = model.heads.info[self.head]
        self.classes: list[str] = list(info["classes"])
        self.colors: list[str] | None = info.get("colors")
        self.segmentation = info["kind"] == "segmentation"

    @property
    def per_pixel(self) -> bool:
        return self.segmentation

    @property
    def blend(self) -> bool:
        """A segmentation head's class probabilities blend tiles before the class is picked:
        with cropped centres a tree-crown head's map of the NEON tile changed class 3.4 times
        as often across their edges as elsewhere, a grid on the class map (README)."""
        return self.segmentation

    def bands(self) -> list[str]:
        return ["class"]

    def forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        if self.segmentation:
            probs = segment(self.model, x, self.modality, head=self.head).softmax(1)
            return probs.float().cpu().numpy()
        gh, gw = x.shape[2] // self.patch, x.shape[3] // self.patch
        probs = classify(self.model, x, self.modality, head=self.head).softmax(-1)
        return probs[:, :, None, None].expand(-1, -1, gh, gw).float().cpu().numpy()

    def cells(self, block: np.ndarray) -> np.ndarray:
        return block.argmax(axis=0)[None].astype(np.uint8)  # class probabilities -> index

    def start(self, grid: Grid) -> None:
        super().start(grid)
        self.pixels = np.zeros(len(self.classes), dtype=np.int64)
        self.cell_m2, self.m2 = None, None  # without a CRS that has areas: pixels only
        if grid.row_m2 is not None:
            self.cell_m2 = cell_areas_m2(grid.row_m2, grid.width, grid.res)
            self.m2 = np.zeros(len(self.classes))

    def observe(self, block: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        """Counts the input pixels and area of each class: a cell cut by the raster's edge
        counts only its pixels inside."""
        g, classes = self.grid, block[0]
        rows = np.minimum(g.res, g.height - (row + np.arange(classes.shape[0])) * g.res)
        cols = np.minimum(g.res, g.width - (col + np.arange(classes.shape[1])) * g.res)
        pixels = np.outer(rows, cols)
        self.pixels += np.bincount(
            classes[valid], weights=pixels[valid], minlength=len(self.pixels)
        ).astype(np.int64)
        if self.m2 is not None and self.cell_m2 is not None:
            h, w = classes.shape
            m2 = self.cell_m2[row : row + h, col : col + w]
            self.m2 += np.bincount(classes[valid], weights=m2[valid], minlength=len(self.m2))

    def tags(self) -> dict[str, str]:
        return {
            "class_names": ",".join(self.classes),
            **{f"class_{i}": n for i, n in enumerate(self.classes)},
        }

    def attrs(self) -> dict[str, Any]:
        return {"class_names": self.classes}

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        colors = self.colors or default_colors(len(self.classes))
        cmap = {i: _rgb(c) for i, c in enumerate(colors)}
        cmap[CLASS_NODATA] = (0, 0, 0, 0)
        return cmap

    def finish(self, sink: Sink, path: Path | None) -> dict[str, Any]:
        areas = class_area_table(self.classes, self.pixels, self.m2)
        return {
            "class_names": self.classes,
            "head": self.head,
            "class_colors": self.colors,
            "class_areas": areas,
        }


def _rgb(color: str) -> tuple[int, int, int, int]:
    color = color.lstrip("#")
    red, green, blue = (int(color[i : i + 2], 16) for i in (0, 2, 4))
    return red, green, blue, 255
