"""Change map: two dates of one place with a swipe between them, the change score above a
threshold on top, and a click that reports the score there and the area above the threshold."""

from __future__ import annotations

import html
from dataclasses import replace
from pathlib import Path

import ipyleaflet
import ipywidgets as widgets
import numpy as np
import xarray as xr

from ..areas import masked_area_m2, raster_row_areas_m2
from ..change_detection import change
from ..change_detection.polygons import write_polygons
from ..change_detection.task import widespread
from ..engine import EngineSettings
from ..model import OFANet
from ..protocol import WIDESPREAD_CHANGE, change_span
from ..threads import ensure_threads
from .display import (
    colorbar_html,
    colormap_picture,
    data_url,
    latlon_bounds,
    latlon_to_cell,
    on_display_grid,
    png,
    read_scene,
    rgb_picture,
    shown_path,
)
from .maps import PIXELATED_CSS, offline_map, overlay, write_geotiff

# light yellow just above the threshold, dark red where the score is highest
COLORMAP = "YlOrRd"
# each date in a pane of its own, under the change layer (Leaflet's overlay pane is at 400):
# the swipe clips a picture's whole pane
DATE_PANES = {"before": {"zIndex": 390}, "after": {"zIndex": 390}}


class ChangeMap(widgets.VBox):
    """``before`` and ``after``: two rasters of one place and sensor (AFTER is warped onto
    BEFORE's grid); ``threshold``: the score, in standard deviations of the scene's scores,
    from which a pixel counts as changed (default: 3 for the zero-shot score, 2.5 for a
    trained change head's, ``protocol.CHANGE_THRESHOLDS``); ``head``: as for ``change()`` (by
    default the model's first change head for the sensor, if any). ``engine``: how the engine
    runs, as for ``predict_raster``: ``settings=EngineSettings(...)`` and/or single fields."""

    def __init__(
        self,
        model: OFANet,
        before: str | Path | xr.DataArray,
        after: str | Path | xr.DataArray,
        threshold: float | None = None,
        head: str | None = None,
        modality: str | None = None,
        basemap: bool | None = None,
        **engine,
    ):
        ensure_threads()  # a shell: the default thread count unless one was chosen
        self.progress = widgets.IntProgress(description="Comparing", min=0, max=1)
        self.status = widgets.HTML()
        super().__init__([self.progress, self.status])  # visible while the engine runs

        def step(done: int, total: int) -> None:
            self.progress.max, self.progress.value = total, done

        settings = replace(engine.pop("settings", None) or EngineSettings(), **engine)
        self.result = change(
            before,
            after,
            model=model,
            threshold="auto" if threshold is None else threshold,
            head=head,
            modality=modality,
            settings=settings,
            progress=step,
        )
        assert self.result.data is not None  # no output file: the result is in memory
        self.data = self.result.data  # on BEFORE's grid
        self.score = self.data.values[0]  # [H, W], NaN = nodata in either date
        self.valid = np.isfinite(self.score)
        self.row_m2 = raster_row_areas_m2(self.data)  # None: no CRS with areas: pixels
        before_pixels, m, self.raster = read_scene(before, modality)
        after_pixels, _, after_raster = read_scene(after, modality or m.name)
        self.bounds = latlon_bounds(self.raster)

        # ---- the map: BEFORE left of the divider, AFTER right of it, the change on top
        self.map = offline_map(self.raster, basemap=basemap)
        self.map.panes = DATE_PANES
        self.before_layer = overlay(
            rgb_picture(before_pixels, m), self.bounds, "before", pane="before"
        )
        self.after_layer = overlay(
            rgb_picture(after_pixels, m), latlon_bounds(after_raster), "after", pane="after"
        )
        self.change_layer = overlay(np.zeros((1, 1, 4), np.uint8), self.bounds, "change", 0.8)
        self.map.add(self.change_layer)
        # the swipe adds the two dates to the map itself (added here too, each would be drawn
        # twice), as leafmap's split_map does
        self.swipe = ipyleaflet.SplitMapControl(
            left_layer=self.before_layer, right_layer=self.after_layer
        )
        self.map.add(self.swipe)
        self.selected: tuple[int, int] | None = None
        self.map.on_interaction(self._on_map)

        # ---- the controls
        top = max(1.0, float(np.ceil(np.nanmax(self.score)))) if self.valid.any() else 1.0
        self.threshold = widgets.FloatSlider(
            value=min(self.result.checks["threshold"], top),
            min=0,
            max=top,
            step=0.1,
            description="Threshold",
            continuous_update=False,
        )
        self.opacity = widgets.FloatSlider(
            value=0.8, min=0, max=1, step=0.05, description="Opacity"
        )
        self.folder = widgets.Text(value="ofa-export", description="Export to")
        self.export_button = widgets.Button(description="Export", icon="download")
        self.threshold.observe(lambda _: self.draw(), names="value")
        self.opacity.observe(
            lambda c: setattr(self.change_layer, "opacity", c["new"]), names="value"
        )
        self.export_button.on_click(lambda _: self._export_clicked())
        self.colorbar = widgets.HTML()
        self.dates = widgets.HTML(
            f"<b>◀ before</b> {shown_path(before)} &nbsp;|&nbsp; "
            f"{shown_path(after)} <b>after ▶</b> &nbsp; (drag the divider)"
        )
        # what the run found worth saying beside the map: AFTER moved onto BEFORE's features,
        # values that do not fit the sensor, dates left off each other
        said = [n for n in self.result.notes if n.startswith("AFTER was moved")]
        said += [f"⚠ {w}" for w in self.result.warnings]
        self.said = widgets.HTML("<br>".join(html.escape(line) for line in said))
        self.children = [
            widgets.HTML(PIXELATED_CSS),
            self.dates,
            self.said,
            self.map,
            self.colorbar,
            widgets.HBox([self.threshold, self.opacity]),
            widgets.HBox([self.folder, self.export_button]),
            self.status,
        ]
        self.draw()

    # ------------------------------------------------------------------ what the widget reports
    def score_at(self, lat: float, lon: float) -> float | None:
        """The score of the pixel under (lat, lon): None outside the scene, NaN where either
        date has no data."""
        cell = latlon_to_cell(self.raster, lat, lon, 1)
        return None if cell is None else float(self.score[cell])

    def area_above(self, threshold: float | None = None) -> dict:
        """Pixels at or above ``threshold`` (the slider's by default): their count, hectares
        (None without a CRS that has areas) and share of the pixels with data in both dates."""
        t = self.threshold.value if threshold is None else threshold
        above = self.valid & (np.nan_to_num(self.score, nan=-np.inf) >= t)
        pixels = int(above.sum())
        return {
            "threshold": t,
            "pixels": pixels,
            "hectares": None if self.row_m2 is None else masked_area_m2(above, self.row_m2) / 1e4,
            "share": pixels / max(int(self.valid.sum()), 1),
        }

    def select(self, lat: float, lon: float) -> bool:
        """Report the score of the pixel under (lat, lon); False when outside the scene."""
        cell = latlon_to_cell(self.raster, lat, lon, 1)
        if cell is None:
            self.status.value = "That point is outside the scene."
            return False
        self.selected = cell
        self.draw()
        return True

    def draw(self) -> None:
        """Redraw the change layer (transparent below the threshold), its colour bar and the
        status line."""
        t = self.threshold.value
        top = t + change_span(self.result.head is not None)  # as QGIS draws it
        picture = colormap_picture(self.score, COLORMAP, t, top, threshold=t)
        self.change_layer.url = data_url(png(on_display_grid(picture, 1, self.raster)))
        self.colorbar.value = colorbar_html(COLORMAP, t, top, "change score")
        area = self.area_above()
        size = f"{area['pixels']:,} px"
        if area["hectares"] is not None:
            size = f"{area['hectares']:,.2f} ha ({size})"
        lines = [
            f"Score {t:.1f} or more: {size}, {area['share']:.2%} of the scene "
            "(pixels with data in both dates)."
        ]
        if area["share"] >= WIDESPREAD_CHANGE:  # the warning `ofa change` gives such a mask
            lines.append(f"⚠ {widespread(area['share'], t, self.result.head is not None)}")
        if self.selected is None:
            lines.insert(0, "Click the map for the change score at a point.")
        else:
            row, col = self.selected
            score = self.score[row, col]
            verdict = "no data in one of the dates"
            if np.isfinite(score):
                verdict = f"score {score:.2f}, " + (
                    "changed" if score >= t else "below the threshold"
                )
            lines.insert(0, f"Pixel row {row}, column {col}: {verdict}.")
        self.status.value = "<br>".join(lines)

    # ------------------------------------------------------------------ export
    def export(self, folder: str | Path) -> list[Path]:
        """``change.tif`` (the score and the 0/1 mask at the slider's threshold) and
        ``changes.gpkg`` (the changed areas as polygons with their area and scores), in
        ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        mask = np.where(self.valid, (self.score >= self.threshold.value).astype(np.float32), np.nan)
        bands = np.stack([self.score, mask]).astype(np.float32)
        tif, gpkg = folder / "change.tif", folder / "changes.gpkg"
        write_geotiff(bands, self.data, tif, ["change_score", "change_mask"], 1)
        data = self.data.copy(data=bands)  # band 2: the mask at the slider's threshold
        write_polygons(replace(self.result, data=data, path=None), gpkg)
        return [tif, gpkg]

    def _export_clicked(self) -> None:
        written = self.export(self.folder.value)
        self.status.value = "wrote " + ", ".join(str(p) for p in written)

    def _on_map(self, **event) -> None:
        if event.get("type") == "click":
            self.select(*event["coordinates"])
