"""Set up engine…: make an environment with ofa-explore (venv + pip, in a QgsTask), or point
the plugin at the Python of one that exists."""

from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
)

from . import install, settings

REPOSITORY = "ofa-explore @ git+https://github.com/ofa-explore/ofa-explore"


class SetupDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("OFA Explore: Set up engine")
        form = QFormLayout(self)
        form.addRow(
            QLabel(
                "The engine (PyTorch and ofa-explore) runs in its own Python "
                "environment, apart from QGIS's Python."
            )
        )
        self.create = QRadioButton("Create a new environment")
        self.create.setChecked(True)
        form.addRow(self.create)
        self.folder = QgsFileWidget()
        self.folder.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder.setFilePath(str(install.default_engine_folder()))
        form.addRow("Folder", self.folder)
        self.torch = QComboBox()
        for key, label in install.TORCH_BUILDS.items():
            self.torch.addItem(label, key)
        form.addRow("PyTorch for", self.torch)
        self.package = QLineEdit(REPOSITORY)
        self.package.setToolTip(
            "a folder with ofa-explore's sources, a wheel file, or a pip requirement"
        )
        form.addRow("ofa-explore from", self.package)
        self.existing = QRadioButton("Use the Python of an existing environment")
        form.addRow(self.existing)
        self.python = QgsFileWidget()
        self.python.setFilePath(settings.value("python"))
        form.addRow("Python", self.python)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def choice(self) -> dict:
        """{"python": path} to use as is, or {"folder", "package", "torch_build"} to create."""
        if self.existing.isChecked():
            return {"python": self.python.filePath()}
        return {
            "folder": Path(self.folder.filePath()),
            "package": self.package.text().strip(),
            "torch_build": self.torch.currentData(),
        }
