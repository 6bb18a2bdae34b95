"""Embedding map: the scene and its embedding PCA colour view on a map; a click shows how
similar every other patch is to the clicked one (cosine similarity of the embeddings)."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets
import numpy as np

from ..areas import cell_areas_m2, raster_row_areas_m2
from ..engine import predict_raster
from ..model import OFANet
from ..threads import ensure_threads
from .display import (
    COLORMAPS,
    colorbar_html,
    colormap_picture,
    cosine_similarity,
    data_url,
    latlon_bounds,
    latlon_to_cell,
    on_display_grid,
    png,
    read_scene,
    rgb_picture,
)
from .maps import PIXELATED_CSS, overlay, scene_map, write_geotiff


class EmbeddingMap(widgets.VBox):
    """``engine``: how the engine runs, as for ``predict_raster``: ``settings=EngineSettings(...)``
    and/or single fields (``precision="auto"``)."""

    def __init__(
        self,
        model: OFANet,
        source,
        modality: str | None = None,
        basemap: bool | None = None,
        **engine,
    ):
        ensure_threads()  # a shell: the default thread count unless one was chosen
        pixels, self.modality, self.raster = read_scene(source, modality)
        self.progress = widgets.IntProgress(description="Embedding", min=0, max=1)
        self.status = widgets.HTML()
        super().__init__([self.progress, self.status])  # visible while the engine runs

        def step(done: int, total: int) -> None:
            self.progress.max, self.progress.value = total, done

        result = predict_raster(model, self.raster, "embed", progress=step, **engine)
        self.embeddings = result.data.values  # [D, h, w], NaN = nodata
        self.cell = model.config.patch_size
        rows_m2 = raster_row_areas_m2(self.raster)  # None: no CRS with areas, patches only
        self.cell_m2 = (
            None if rows_m2 is None else cell_areas_m2(rows_m2, self.raster.sizes["x"], self.cell)
        )
        self.bounds = latlon_bounds(self.raster)
        self.map, self.scene = scene_map(
            self.raster, rgb_picture(pixels, self.modality), basemap=basemap
        )
        pca = np.transpose(result.pca.values, (1, 2, 0))
        alpha = np.where((pca == 0).all(-1), 0, 255).astype(np.uint8)[..., None]
        self.pca = overlay(
            self._on_scene(np.concatenate([pca, alpha], -1)), self.bounds, "embedding PCA", 0.8
        )
        self.similarity_layer = overlay(
            np.zeros((1, 1, 4), np.uint8), self.bounds, "similarity", 0.8
        )
        self.map.add(self.pca)
        self.map.add(self.similarity_layer)
        self.similarity: np.ndarray | None = None
        self.selected: tuple[int, int] | None = None
        self._clicked = False
        self.threshold = widgets.FloatSlider(
            value=0.5, min=-1, max=1, step=0.05, description="Threshold", continuous_update=False
        )
        self.opacity = widgets.FloatSlider(
            value=0.8, min=0, max=1, step=0.05, description="Opacity"
        )
        self.colormap = widgets.Dropdown(options=COLORMAPS, value="magma", description="Colours")
        self.show_pca = widgets.Checkbox(value=True, description="embedding PCA")
        self.folder = widgets.Text(value="ofa-export", description="Export to")
        self.export_button = widgets.Button(description="Export GeoTIFFs", icon="download")
        for control in (self.threshold, self.colormap):
            control.observe(lambda _: self.draw(), names="value")
        self.opacity.observe(
            lambda c: setattr(self.similarity_layer, "opacity", c["new"]), names="value"
        )
        self.show_pca.observe(lambda c: setattr(self.pca, "opacity", 0.8 * c["new"]), names="value")
        self.export_button.on_click(lambda _: self._export_clicked())
        self.map.on_interaction(self._on_map)
        self.colorbar = widgets.HTML()
        self.status.value = (
            "Click the map: patches like the clicked one light up "
            f"({result.tiles} tiles embedded in {result.seconds} s on "
            f"{result.device})."
        )
        self.children = [
            widgets.HTML(PIXELATED_CSS),
            self.map,
            self.colorbar,
            widgets.HBox([self.threshold, self.opacity]),
            widgets.HBox([self.colormap, self.show_pca]),
            widgets.HBox([self.folder, self.export_button]),
            self.status,
        ]

    def similarity_at(self, lat: float, lon: float) -> np.ndarray | None:
        """[h, w] cosine similarity of every patch to the one under (lat, lon), None outside the
        scene or on nodata; the map is left as it is (a search from code, for a report)."""
        cell = latlon_to_cell(self.raster, lat, lon, self.cell)
        if cell is None or not np.isfinite(self.embeddings[:, cell[0], cell[1]]).all():
            return None
        return cosine_similarity(self.embeddings, *cell)

    def select(self, lat: float, lon: float) -> bool:
        """Similarity to the patch under (lat, lon), drawn on the map; False when outside the
        scene or nodata."""
        similarity = self.similarity_at(lat, lon)
        if similarity is None:
            self.status.value = "That point is outside the scene (or nodata)."
            return False
        self.selected = latlon_to_cell(self.raster, lat, lon, self.cell)
        self.similarity = similarity
        self.draw()
        return True

    def draw(self) -> None:
        """Redraw the similarity overlay, its colour bar and the status line."""
        if self.similarity is None:
            return
        threshold = self.threshold.value
        picture = colormap_picture(
            self.similarity, self.colormap.value, -1.0, 1.0, threshold=threshold
        )
        self.similarity_layer.url = data_url(png(self._on_scene(picture)))
        self.colorbar.value = colorbar_html(
            self.colormap.value, -1, 1, "cosine similarity", threshold
        )
        alike = self.similarity >= threshold
        above, valid = int(alike.sum()), int(np.isfinite(self.similarity).sum())
        area = "" if self.cell_m2 is None else f" ({self.cell_m2[alike].sum() / 1e4:,.1f} ha)"
        row, col = self.selected
        self.status.value = (
            f"Patch row {row}, column {col}: {above} of {valid} patches{area} "
            f"at or above {threshold:.2f}"
        )

    def _on_scene(self, picture: np.ndarray) -> np.ndarray:
        return on_display_grid(picture, self.cell, self.raster)

    def export(self, folder: str | Path) -> list[Path]:
        """Embeddings (D bands) and, after a click, the similarity map, as GeoTIFFs."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [folder / "embeddings.tif"]
        write_geotiff(
            self.embeddings,
            self.raster,
            written[0],
            [f"emb_{i:03d}" for i in range(len(self.embeddings))],
            self.cell,
        )
        if self.similarity is not None:
            written.append(folder / "similarity.tif")
            write_geotiff(
                self.similarity[None], self.raster, written[1], ["cosine_similarity"], self.cell
            )
        return written

    def _export_clicked(self) -> None:
        """The button: export, and say where to (from code, the returned paths say it)."""
        written = self.export(self.folder.value)
        self.status.value = "wrote " + ", ".join(str(p) for p in written)

    def _on_map(self, **event) -> None:
        if event.get("type") == "click":
            if self.select(*event["coordinates"]) and not self._clicked:
                self._clicked = True
                self.show_pca.value = False  # first click: the scene under the similarity
