"""The small dialog of "Classify layer" / "Embed layer": it only gathers parameters."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel,
                                 QSpinBox)

from . import runner

AUTO = "auto"
DEVICES = ("auto", "cpu", "cuda", "mps")


class OfaDialog(QDialog):
    def __init__(self, task: str, layer=None, parent=None):
        super().__init__(parent)
        self.task = task
        self.setWindowTitle("OFA Explore: " + ("Classify layer" if task == "classify"
                                               else "Embed layer"))
        form = QFormLayout(self)
        self.layer = QgsMapLayerComboBox()
        self.layer.setFilters(QgsMapLayerProxyModel.RasterLayer)
        if layer is not None:
            self.layer.setLayer(layer)
        form.addRow("Raster layer", self.layer)
        self.modality = QComboBox()
        form.addRow("Modality", self.modality)
        self.checkpoint = QgsFileWidget()
        self.checkpoint.setFilter("ofa_explore checkpoints (*.safetensors)")
        form.addRow("Checkpoint", self.checkpoint)
        form.addRow("", QLabel("empty: the shipped model (EuroSAT land cover for Sentinel-2)"))
        self.head = QComboBox()
        if task == "classify":
            form.addRow("Head", self.head)
        self.tile = QSpinBox()
        self.tile.setRange(0, 8192)
        self.tile.setSingleStep(64)
        self.tile.setSpecialValueText("model's image size")
        form.addRow("Tile size (px)", self.tile)
        self.device = QComboBox()
        self.device.addItems(DEVICES)
        form.addRow("Device", self.device)
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter("GeoTIFF (*.tif)")
        form.addRow("Output", self.output)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.layer.layerChanged.connect(self.refresh)
        self.checkpoint.fileChanged.connect(self.refresh)
        self.refresh()

    def refresh(self, *_) -> None:
        """Fill modality and head lists from the model, suggest an output path."""
        layer = self.layer.currentLayer()
        source = layer.source() if layer is not None else ""
        detected = runner.detect(source) if source else None
        self.modality.clear()
        self.modality.addItem(f"{AUTO} (detected: {detected or 'unknown'})", "")
        self.head.clear()
        self.head.addItem("default for the modality", "")
        try:
            modalities, heads = runner.model_choices(self.checkpoint.filePath() or None)
        except Exception as err:  # noqa: BLE001 - shown in the dialog; OK then reports it
            self.head.addItem(f"(checkpoint unreadable: {err})", "")
            modalities, heads = [], []
        for name in modalities:
            self.modality.addItem(name, name)
        for name in heads:
            self.head.addItem(name, name)
        if source:
            self.output.setFilePath(runner.default_output(source, self.task, _project_folder()))

    def parameters(self) -> dict:
        """``runner.run`` keywords."""
        layer = self.layer.currentLayer()
        return {"source": layer.source() if layer is not None else "", "task": self.task,
                "output": self.output.filePath(), "modality": self.modality.currentData() or None,
                "checkpoint": self.checkpoint.filePath() or None,
                "head": self.head.currentData() or None if self.task == "classify" else None,
                "tile": self.tile.value() or None, "device": self.device.currentText()}


def _project_folder() -> str | None:
    home = QgsProject.instance().homePath()
    return home if home and Path(home).is_dir() else None
