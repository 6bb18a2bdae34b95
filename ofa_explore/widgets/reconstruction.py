"""Masked reconstruction explorer: hide patches, see the model fill them in, for any modality
the model embeds (its own embedding or the wavelength-conditioned one)."""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import torch

from ..errors import BadInput
from ..inputs import require_embedding
from ..metrics import hidden_mse, visible_mean_baseline
from ..model import OFANet
from ..threads import ensure_threads
from ..visualize import composite, stretch_limits, to_uint8
from .display import colormap_picture, png, read_scene

COMPOSITE = -1  # band selector value for the natural-colour / SAR composite
NOT_HIDDEN = 128  # the error panel's grey for the patches the model saw


class ReconstructionExplorer(widgets.VBox):
    def __init__(self, model: OFANet, source, modality: str | None = None, size: int | None = None):
        ensure_threads()  # a shell: the default thread count unless one was chosen
        self.model = model.eval()
        pixels, self.modality, self.raster = read_scene(source, modality)
        require_embedding(model, self.modality)
        self.x = torch.from_numpy(
            centre_chip(pixels, size or model.config.img_size, model.config.patch_size)
        )[None]
        m = self.modality
        self.mask_ratio = widgets.FloatSlider(
            value=0.75,
            min=0.0,
            max=0.95,
            step=0.05,
            description="Mask ratio",
            continuous_update=False,
        )
        self.seed = widgets.IntText(value=0, description="Seed")
        self.grid = widgets.Checkbox(value=True, description="patch grid")
        self.band = widgets.Dropdown(
            options=[("composite", COMPOSITE)] + [(b, i) for i, b in enumerate(m.bands)],
            value=COMPOSITE,
            description="Band",
        )
        self.panels = {
            name: widgets.Image(format="png", layout=widgets.Layout(width="200px"))
            for name in ("input", "masked", "reconstruction", "error")
        }
        self.loss = widgets.HTML()
        for control in (self.mask_ratio, self.seed, self.grid, self.band):
            control.observe(lambda _: self.update(), names="value")
        titles = widgets.HBox(
            [widgets.HTML(f"<div style='width:200px'><b>{n}</b></div>") for n in self.panels]
        )
        super().__init__(
            [
                widgets.HBox([self.mask_ratio, self.seed]),
                widgets.HBox([self.band, self.grid]),
                titles,
                widgets.HBox(list(self.panels.values())),
                self.loss,
            ]
        )
        self.update()

    def update(self) -> dict[str, float]:
        """Reconstruct with the current settings, redraw the panels; returns the scores."""
        m = self.modality
        recon, mask = self.model.reconstruct(
            self.x, m, mask_ratio=self.mask_ratio.value, seed=self.seed.value
        )
        x, r, hidden = self.x[0].numpy(), recon[0].numpy(), mask[0, 0].numpy().astype(bool)
        std = np.asarray(m.std, np.float32)[:, None, None]
        if self.band.value == COMPOSITE:
            view_in, view_out = composite(x, m), composite(r, m)
            error = np.abs((r - x) / std).mean(0)
        else:
            view_in, view_out = x[[self.band.value] * 3], r[[self.band.value] * 3]
            error = np.abs((r - x) / std)[self.band.value]
        limits = stretch_limits(view_in)
        pictures = {
            "input": to_uint8(view_in, limits),
            "reconstruction": to_uint8(view_out, limits),
        }
        masked = pictures["input"].copy()
        masked[hidden] = 128
        pictures["masked"] = masked
        pictures["error"] = colormap_picture(
            np.where(hidden, error, np.nan), "magma", 0, max(float(np.nanmax(error)), 1e-6)
        )[..., :3]
        pictures["error"][~hidden] = NOT_HIDDEN  # grey: not scored, unlike black (no error)
        scale = max(1, 200 // x.shape[-1])
        for name, picture in pictures.items():
            if self.grid.value:
                picture = with_grid(picture, self.model.config.patch_size)
            self.panels[name].value = png(picture, scale)
        scores = {
            "model": hidden_mse(self.x, recon, mask, m) if hidden.any() else 0.0,
            "baseline": (
                hidden_mse(self.x, visible_mean_baseline(self.x, mask), mask, m)
                if hidden.any() and not hidden.all()
                else 0.0
            ),
        }
        self.loss.value = (
            f"hidden-pixel MSE (bands in std units): <b>{scores['model']:.3f}</b>"
            f" &nbsp; trivial baseline (mean of visible): {scores['baseline']:.3f}"
            f" &nbsp; ({int(hidden.mean() * 100)}% hidden, {m.name})"
        )
        return scores


def centre_chip(pixels: np.ndarray, size: int, patch: int) -> np.ndarray:
    """The centre ``size`` x ``size`` window (smaller scenes: their largest patch multiple)."""
    _, H, W = pixels.shape
    side = min(size, H - H % patch, W - W % patch)
    if side < patch:
        raise BadInput(
            f"the scene is {H}x{W} px, smaller than one {patch}-px patch", "choose a larger scene"
        )
    y, x = (H - side) // 2, (W - side) // 2
    return np.ascontiguousarray(pixels[:, y : y + side, x : x + side], dtype=np.float32)


def with_grid(picture: np.ndarray, patch: int) -> np.ndarray:
    out = picture.copy()
    out[::patch, :, :3] = 255
    out[:, ::patch, :3] = 255
    return out
