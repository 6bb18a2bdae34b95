"""Raster explorer: load imagery of any modality (a path or an upload), see what was detected,
override it, and look at it as a natural-colour / SAR composite or any three bands."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import ipywidgets as widgets

from ..detection import sensor_records
from ..errors import API_WORDS, OFAError
from ..modalities import list_modalities
from ..protocol import count, export_subsets
from ..visualize import rgb_band_indices
from .display import png, read_scene, rgb_picture, shown_path

# how this widget names what the package's messages call {modality}: its own controls
WIDGET_WORDS = {
    **API_WORDS,
    "modality": "Modality",
    "modalities": "the drop-down",
    "some_bands": "",
}


def _export_names() -> list[str]:
    """Some of a sensor's bands that files commonly hold alone (Sentinel-2's 10 m bands), by
    name: a file of them, unnamed, is read only when they are chosen (its refusal names them)."""
    return [name for name, _, _ in export_subsets(sensor_records())]


class RasterExplorer(widgets.VBox):
    def __init__(self, source=None, modality: str | None = None):
        self.path = widgets.Text(
            placeholder="path to a raster, e.g. scene.tif",
            description="Raster",
            layout=widgets.Layout(width="420px"),
        )
        self.load_button = widgets.Button(description="Load", icon="folder-open")
        self.upload = widgets.FileUpload(accept=".tif,.tiff", multiple=False, description="Upload")
        self.modality = widgets.Dropdown(
            options=[("auto", "")] + [(n, n) for n in [*list_modalities(), *_export_names()]],
            value=modality or "",
            description="Modality",
        )
        self.natural = widgets.Checkbox(value=True, description="natural colour / SAR composite")
        self.red, self.green, self.blue = (widgets.Dropdown(description=c) for c in "RGB")
        self.stretch = widgets.FloatRangeSlider(
            value=(2, 98), min=0, max=100, step=0.5, description="Stretch %"
        )
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="512px"))
        self.info = widgets.HTML()
        self.pixels = self.modality_record = self.raster = None
        self._source = None
        self._uploads: tempfile.TemporaryDirectory | None = None  # the uploaded files' copies
        self.load_button.on_click(lambda _: self.load(self._typed()))
        self.upload.observe(self._uploaded, names="value")
        self.modality.observe(
            lambda _: self._source is not None and self.load(self._source), names="value"
        )
        for control in (self.natural, self.red, self.green, self.blue, self.stretch):
            control.observe(lambda _: self.render(), names="value")
        super().__init__(
            [
                widgets.HBox([self.path, self.load_button, self.upload]),
                self.modality,
                self.natural,
                widgets.HBox([self.red, self.green, self.blue]),
                self.stretch,
                self.info,
                self.image,
            ]
        )
        if source is not None:
            self.load(source)

    def load(self, source) -> None:
        """Read the raster (decimated for display) and show it; errors are shown, not raised."""
        self._source = source
        self.path.value = shown_path(source)
        try:
            self.pixels, self.modality_record, self.raster = read_scene(
                source, self.modality.value or None
            )
        except (ValueError, OSError) as err:
            self.pixels = self.modality_record = self.raster = None
            self.image.value = b""  # no picture of the file before under this message
            self.image.layout.display = "none"
            for control in (self.red, self.green, self.blue):
                control.options = []  # nor its band names
            shown = err.render(WIDGET_WORDS) if isinstance(err, OFAError) else str(err)
            self.info.value = f"<b style='color:#b00'>{html.escape(shown)}</b>"
            return
        m = self.modality_record
        names = [(m.band_label(i), i) for i in range(m.num_bands)]
        self._loading = True
        for control, default in zip((self.red, self.green, self.blue), rgb_band_indices(m)):
            control.options, control.value = names, default
        self._loading = False
        da = self.raster
        self.render()  # the picture first, so that it is there when its caption appears
        self.info.value = (
            f"<b>{m.name}</b> ({m.description}); {count(da.sizes['band'], 'band')}, "
            f"{da.sizes['x']} x {da.sizes['y']} px, CRS {da.rio.crs}"
        )

    def render(self) -> None:
        if self.pixels is None or getattr(self, "_loading", False):
            return
        bands = None if self.natural.value else (self.red.value, self.green.value, self.blue.value)
        picture = rgb_picture(self.pixels, self.modality_record, bands, self.stretch.value)
        self.image.value = png(picture, scale=max(1, 256 // max(picture.shape[:2])))
        self.image.layout.display = None

    def _uploaded(self, change) -> None:
        files = change["new"]
        if not files:
            return
        upload = files[0]
        if self._uploads is None:  # removed with the explorer, or when the kernel ends
            self._uploads = tempfile.TemporaryDirectory(prefix="ofa_upload_")
        folder = Path(tempfile.mkdtemp(dir=self._uploads.name))  # a file uploaded twice
        path = folder / Path(upload["name"]).name
        path.write_bytes(bytes(upload["content"]))
        self.load(path)

    def close(self) -> None:
        """Close the widget and remove the copies of the files uploaded to it (the kernel's
        exit removes them too)."""
        if self._uploads is not None:
            self._uploads.cleanup()
            self._uploads = None
        super().close()

    def _typed(self):
        """What the path box asks for: the loaded file while the box still shows its name."""
        if self._source is not None and self.path.value == shown_path(self._source):
            return self._source
        return self.path.value
