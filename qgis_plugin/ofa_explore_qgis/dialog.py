"""The dialog of Classify / Embed / Reconstruct layer and Change between two layers: it gathers
and checks parameters from files only (GDAL for the bands, the model file's header for sensors
and heads), so it opens at once; the work itself runs in the engine's process."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsCoordinateTransform, QgsCsException, QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
)

from . import engine, layers, settings
from ._shared import protocol

DEVICES = {
    "auto": "Automatic (GPU when there is one)",
    "cpu": "CPU",
    "cuda": "NVIDIA GPU (CUDA)",
    "mps": "Apple GPU (MPS)",
}
HEAD_KINDS = {"classify": ("scene", "segmentation"), "change": ("change",)}  # heads it offers
ZERO_SHOT = "the zero-shot score (pixels, how unusually they changed, embeddings; no training)"
ZERO_SHOT_HEAD = "zero-shot"  # `ofa change --head zero-shot`: no head even if the model has one
NO_HEAD = (None, ZERO_SHOT_HEAD)  # the head list's data where the zero-shot score is chosen
NOT_ON_DISK = (
    "This layer is not a raster file on this computer (a web, database or remote layer): save "
    "it as a GeoTIFF first (Export > Save As…)."
)


class OfaDialog(QDialog):
    """One layer and a task; for change, ``layer`` is BEFORE and ``after`` the later date."""

    def __init__(self, task: str, runner: engine.Engine, layer=None, parent=None, after=None):
        super().__init__(parent)
        self.task, self.runner = task, runner
        self.registry = runner.sensors()
        self.model: engine.ModelInfo | None = None
        self.bands: list[layers.Band] = []
        self.after_bands: dict[str, list[layers.Band]] = {}  # by source: read once, not per check
        self.setWindowTitle("OFA Explore: " + protocol.task(task).title.rstrip("…"))
        self.setObjectName("ofa_explore_dialog")
        form = QFormLayout(self)
        self.layer = raster_box(layer)
        self.after = raster_box(after)
        if task == "change":
            form.addRow("Before", self.layer)
            form.addRow("After", self.after)
        else:
            form.addRow("Raster layer", self.layer)
        self.band_list = QListWidget(self)
        self.band_list.setMaximumHeight(120)
        self.band_list.setDragDropMode(QAbstractItemView.InternalMove)  # the order fed in
        self.band_list.setToolTip("Tick the bands to use; drag them into the sensor's order.")
        if task == "change":  # the engine reads every band of both dates
            self.band_list.hide()
        else:
            form.addRow("Bands (drag to reorder)", self.band_list)
        self.sensor = QComboBox()
        form.addRow("Sensor", self.sensor)
        self.model_choice = QComboBox()
        self.model_choice.addItem("The model that comes with ofa-explore", "")
        for record in runner.published():
            self.model_choice.addItem(
                f"{record['description']} [{record['name']}]: downloaded once", record["name"]
            )
        form.addRow("Model", self.model_choice)
        self.checkpoint = QgsFileWidget()
        self.checkpoint.setFilter("OFA Explore models (*.safetensors)")
        form.addRow("or a model file", self.checkpoint)
        self.head = QComboBox()
        if task in HEAD_KINDS:
            form.addRow("Classes from" if task == "classify" else "Score from", self.head)
        self.device = QComboBox()
        for key, label in DEVICES.items():
            self.device.addItem(label, key)
        form.addRow("Run on", self.device)
        self.tile = QSpinBox()
        self.tile.setRange(0, 8192)
        self.tile.setSingleStep(64)
        self.tile.setSpecialValueText("the model's image size")
        form.addRow("Tile size (px)", self.tile)
        self.folder = QgsFileWidget()
        self.folder.setStorageMode(QgsFileWidget.GetDirectory)
        folder, self.folder_notice = settings.output_folder()  # a saved folder may be gone
        self.folder.setFilePath(str(folder or ""))
        form.addRow("Output folder", self.folder)
        if self.folder_notice:
            notice = QLabel(self.folder_notice)
            notice.setWordWrap(True)
            form.addRow(notice)
        self.add_cube = QCheckBox("Also add the embedding cube (one band per feature)")
        if task == "embed":
            form.addRow("", self.add_cube)
        self.threshold = QDoubleSpinBox()
        self.threshold.setRange(-1000.0, 1000.0)
        self.threshold.setSuffix(" standard deviations of the scene's scores")
        self.threshold_default = protocol.change_threshold(head=False)  # follows the head
        self.threshold.setValue(self.threshold_default)
        self.threshold.setToolTip(
            "Pixels whose score is at least this are changed: drawn, counted and outlined. "
            "Scores are in standard deviations of the scene's own scores; the value set for "
            "you is the one measured best on labelled cities: "
            f"{protocol.change_threshold(head=False):g} for the zero-shot score, "
            f"{protocol.change_threshold(head=True):g} for a trained change head."
        )
        self.polygons = QCheckBox("Also outline the changed areas as polygons")
        self.align = QCheckBox(protocol.ALIGN_LABEL)
        self.align.setChecked(True)
        self.align.setToolTip(protocol.ALIGN_HELP)
        if task == "change":
            form.addRow("Threshold", self.threshold)
            form.addRow("", self.polygons)
            form.addRow("", self.align)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: #b00020")
        form.addRow(self.status)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.layer.layerChanged.connect(self.refresh_layer)
        self.after.layerChanged.connect(self.validate)
        self.checkpoint.fileChanged.connect(self.refresh_model)
        self.model_choice.currentIndexChanged.connect(self.refresh_model)
        self.band_list.itemChanged.connect(self.refresh_sensors)
        self.band_list.model().rowsMoved.connect(self.refresh_sensors)
        self.sensor.currentIndexChanged.connect(self.validate)
        self.head.currentIndexChanged.connect(self.validate)
        self.head.currentIndexChanged.connect(self.refresh_threshold)
        self.folder.fileChanged.connect(self.validate)
        self.refresh_model()
        self.refresh_layer()

    # ------------------------------------------------------------ filling the fields
    def refresh_model(self, *_) -> None:
        """Sensors and heads from the chosen model file's header (published weights: every
        sensor by wavelength, no heads)."""
        published = {r["name"]: r for r in self.runner.published()}
        try:
            if self.checkpoint.filePath() or not self.model_choice.currentData():
                self.model = engine.read_model_info(
                    self.checkpoint.filePath() or self.runner.shipped_checkpoint
                )
            else:
                self.model = engine.published_model_info(published[self.model_choice.currentData()])
            self.status.setText("")
        except engine.EngineError as err:
            self.model = None
            self.status.setText(str(err))
        self.head.clear()
        for name, info in self.model.heads.items() if self.model else []:
            if info.get("kind") in HEAD_KINDS.get(self.task, ()):
                self.head.addItem(self.head_label(name, info), name)
        if self.task == "change":  # the engine's default when the model has no change head
            self.head.addItem(ZERO_SHOT, ZERO_SHOT_HEAD if self.head.count() else None)
        self.refresh_sensors()

    def refresh_layer(self, *_) -> None:
        """The band list of the chosen layer, all bands ticked in file order."""
        layer = self.layer.currentLayer()
        self.band_list.blockSignals(True)
        self.band_list.clear()
        try:
            self.bands = layers.layer_bands(layer.source()) if layer else []
        except engine.EngineError:
            self.bands = []
        others = layers.other_layers(self.registry, self.bands)
        for band in self.bands:
            text = f"{band.number}: {band.name}"
            if band.wavelength_um:
                text += f" ({band.wavelength_um:.3f} µm)"
            if band.bad:
                text += " - flagged bad in the file"
            if band.alpha:
                text += " - the alpha band (transparency), not imagery"
            if band.number in others:
                text += " - none of the sensor's bands that the others are"
            item = QListWidgetItem(text)
            item.setData(Qt.UserRole, band.number)
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            unticked = band.bad or band.alpha or band.number in others
            item.setCheckState(Qt.Unchecked if unticked else Qt.Checked)
            self.band_list.addItem(item)
        self.band_list.blockSignals(False)
        self.refresh_sensors()

    def refresh_sensors(self, *_) -> None:
        """The sensors the model accepts; keeps the current choice when it is still offered."""
        previous = self.sensor.currentData()
        self.sensor.blockSignals(True)
        self.sensor.clear()
        if self.model is not None:
            for choice in layers.sensor_choices(
                self.model, self.registry, self.selected_bands(), len(self.bands)
            ):
                self.sensor.addItem(choice.label, choice)
        for i in range(self.sensor.count()):
            if previous is not None and self.sensor.itemData(i).modality == previous.modality:
                self.sensor.setCurrentIndex(i)
        self.sensor.blockSignals(False)
        self.validate()

    def selected_bands(self) -> list[layers.Band]:
        """The ticked bands in the order of the list (the order the model reads them in)."""
        by_number = {b.number: b for b in self.bands}
        return [
            by_number[self.band_list.item(i).data(Qt.UserRole)]
            for i in range(self.band_list.count())
            if self.band_list.item(i).checkState() == Qt.Checked
        ]

    def refresh_heads(self) -> None:
        """Heads that cannot read the layer as the chosen sensor are greyed out with the
        reason; the choice moves to one that fits."""
        choice = self.sensor.currentData()
        sensor = (
            layers.read_as(choice, self.selected_bands(), self.registry, len(self.bands))
            if choice
            else None
        )
        items = self.head.model()
        self.head.blockSignals(True)
        for i in range(self.head.count()):
            name = self.head.itemData(i)
            if name in NO_HEAD:  # the zero-shot score: any sensor
                continue
            info = self.model.heads[name] if self.model else {}
            why = layers.head_problem(info, sensor, self.registry)
            self.head.setItemText(i, self.head_label(name, info) + (f": {why}" if why else ""))
            items.item(i).setEnabled(why is None)
            self.head.setItemData(i, why, Qt.ToolTipRole)
        if self.head.currentIndex() >= 0 and not self.head_fits():
            fitting = [i for i in range(self.head.count()) if items.item(i).isEnabled()]
            if fitting:
                self.head.setCurrentIndex(fitting[0])
        self.head.blockSignals(False)
        self.refresh_threshold()  # the choice may have moved with the signals blocked

    def refresh_threshold(self, *_) -> None:
        """The measured threshold of the chosen score (a head's scores are spread differently
        from the zero-shot score's); a value the user typed stays."""
        default = protocol.change_threshold(head=self.head.currentData() not in NO_HEAD)
        if self.threshold.value() == self.threshold_default:
            self.threshold.setValue(default)
        self.threshold_default = default

    def head_label(self, name: str, info: dict) -> str:
        """What the head gives and the sensor it was trained on, as the list shows it."""
        trained = info.get("modality")
        on = layers.sensor_name(self.registry, trained) if trained else "any sensor"
        if info.get("kind") == "change":
            return f"{name} (trained change head, {on})"
        return f"{name} ({len(info.get('classes', []))} classes, {on})"

    def head_fits(self) -> bool:
        """Whether the chosen head can classify the layer as it will be read."""
        i = self.head.currentIndex()
        return i >= 0 and self.head.model().item(i).isEnabled()

    # ------------------------------------------------------------ checking and answering
    def problem(self) -> str | None:
        """Why the dialog cannot run yet, in a sentence; None when it can."""
        layer = self.layer.currentLayer()
        if layer is None:
            return "Choose the Before layer." if self.task == "change" else "Choose a raster layer."
        if protocol.local_file(layer.source()) is None:
            return NOT_ON_DISK
        if self.task == "change" and (pair := self.pair_problem()):
            return pair
        if self.model is None:
            return self.status.text() or "The model file cannot be read."
        if self.task == "classify" and self.head.count() == 0:
            return (
                "This model has no classification head (published weights have none): "
                "choose another model, or train a head with `ofa train-head` in the engine's "
                "environment. Embed layer works with any model."
            )
        if not self.folder.filePath():
            return "Choose an Output folder."
        folder_problem = engine.folder_problem(Path(self.folder.filePath()))
        if folder_problem:
            return folder_problem
        if self.sensor.currentData() is None:
            return "Choose the sensor."
        selection = layers.check_selection(
            self.sensor.currentData(), self.selected_bands(), self.registry, len(self.bands)
        )
        if selection or self.task not in HEAD_KINDS or self.head_fits():
            return selection
        reasons = "; ".join(
            f"{self.head.itemData(i)} was {self.head.itemData(i, Qt.ToolTipRole)}"
            for i in range(self.head.count())
        )
        kind = "classification" if self.task == "classify" else "change"
        return (
            f"No {kind} head of this model fits this layer ({reasons}). Choose the "
            "Sensor and bands it was trained on, another model, or train a head for this "
            "sensor with `ofa train-head` in the engine's environment."
        )

    def pair_problem(self) -> str | None:
        """Why Before and After cannot be compared, in a sentence; None when they can."""
        before, after = self.layer.currentLayer(), self.after.currentLayer()
        if after is None:
            return "Choose the After layer: the later date of the same place."
        if protocol.local_file(after.source()) is None:
            return NOT_ON_DISK
        if Path(after.source()).resolve() == Path(before.source()).resolve():
            return "Before and After are the same layer: choose the later date's layer as After."
        before_count = imagery_bands(self.bands, self.registry)
        after_count = self.after_imagery_bands(after)
        if after_count is not None and after_count != before_count:
            sensor = self.before_sensor(before_count)
            level = sensor and protocol.other_level(self.registry, sensor, after_count)
            if sensor and level:  # one instrument, two processing levels: L1C and L2A
                ours, theirs = protocol.sensor_label(sensor), protocol.sensor_label(level)
                return (
                    f"Before is {ours} ({protocol.count(before_count, 'band')} of imagery) and "
                    f"After has {after_count}, as {theirs} has: the two dates must be of the same "
                    f"processing level. Choose two {ours} layers or two {theirs} layers."
                )
            return (
                f"Before has {protocol.count(before_count, 'band')} of imagery and After "
                f"{after_count}: the two dates must come from the same sensor, with the same "
                "bands."
            )
        if not overlap(before, after):
            return "Before and After do not overlap: choose two layers of the same place."
        return None

    def before_sensor(self, band_count: int) -> dict | None:
        """Before's sensor record: the one chosen, else the one read by default from as many
        bands (the engine's choice); None when that is not one sensor."""
        choice = self.sensor.currentData()
        named = choice.modality if choice is not None else None
        if named is None:
            found = protocol.sensor_candidates(self.registry, band_count)
            named = found[0] if len(found) == 1 else None
        return next((r for r in self.registry if r["name"] == named), None)

    def after_imagery_bands(self, after) -> int | None:
        """After's bands of imagery (``imagery_bands``); None when GDAL cannot read the file."""
        source = after.source()
        if source not in self.after_bands:
            try:
                self.after_bands[source] = layers.layer_bands(source)
            except engine.EngineError:
                return None
        return imagery_bands(self.after_bands[source], self.registry)

    def validate(self, *_) -> None:
        if self.task in HEAD_KINDS:
            self.refresh_heads()
        problem = self.problem()
        self.status.setText(problem or "")
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(problem is None)

    def result_name(self) -> str:
        """What the result is called: the layer's name, or "<before> to <after>"."""
        name = self.layer.currentLayer().name()
        return f"{name} to {self.after.currentLayer().name()}" if self.task == "change" else name

    def job(self) -> engine.Job:
        folder = Path(self.folder.filePath())
        settings.set_value("output_folder", str(folder))
        output = protocol.layer_output(folder, self.result_name(), self.task)
        job = engine.Job(
            task=self.task,
            source=self.layer.currentLayer().source(),
            output=str(output),
            modality=self.sensor.currentData().modality,
            checkpoint=self.checkpoint.filePath() or self.model_choice.currentData() or None,
            head=self.head.currentData(),
            device=self.device.currentData(),
            tile=self.tile.value() or None,
        )
        if self.task == "change":
            job.after = self.after.currentLayer().source()
            job.threshold = f"{self.threshold.value():g}"
            job.align = self.align.isChecked()
            if self.polygons.isChecked():
                job.polygons = str(protocol.companion_path(output, ".gpkg"))
        else:
            bands = [b.number for b in self.selected_bands()]
            job.bands = [] if bands == [b.number for b in self.bands] else bands
        return job


def imagery_bands(bands: list[layers.Band], registry: list[dict]) -> int:
    """How many of a layer's bands are imagery, as the engine reads either date: all but its
    alpha band and the layers it names as none of a sensor's bands whose others it holds (so
    an RGBA orthophoto compares with an RGB one, an Earth Engine export with its bands)."""
    others = layers.other_layers(registry, bands)
    return sum(not band.alpha and band.number not in others for band in bands)


def raster_box(layer=None) -> QgsMapLayerComboBox:
    """A picker of the project's raster layers, on ``layer``."""
    box = QgsMapLayerComboBox()
    box.setFilters(QgsMapLayerProxyModel.RasterLayer)
    if layer is not None:
        box.setLayer(layer)
    return box


def overlap(a, b) -> bool:
    """Whether two layers' extents meet (``b``'s brought into ``a``'s CRS)."""
    extent = b.extent()
    if a.crs().isValid() and b.crs().isValid() and a.crs() != b.crs():
        try:
            transform = QgsCoordinateTransform(b.crs(), a.crs(), QgsProject.instance())
            extent = transform.transformBoundingBox(extent)
        except QgsCsException:
            return False
    return extent.intersects(a.extent())
