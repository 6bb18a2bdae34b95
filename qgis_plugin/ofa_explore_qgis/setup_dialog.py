"""Set up engine…: make an environment with the ofa-explore wheel that comes in the plugin's zip
(venv + pip, in a QgsTask: install.run_setup), or point the plugin at the Python of one that
exists. With an engine set, the dialog opens on that engine, so OK keeps what works."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from qgis.core import QgsTask
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import pyqtSignal, pyqtSlot
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QRadioButton,
)

from . import engine, install, settings
from .task import log


class SetupDialog(QDialog):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWindowTitle("OFA Explore: Set up engine")
        self.setObjectName("ofa_explore_setup_dialog")
        form = QFormLayout(self)
        form.addRow(
            QLabel(
                "The engine (PyTorch and ofa-explore) runs in its own Python "
                "environment, apart from QGIS's Python."
            )
        )
        self.create = QRadioButton("Create a new environment")
        form.addRow(self.create)
        self.folder = QgsFileWidget()
        self.folder.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder.setFilePath(str(install.default_engine_folder()))
        form.addRow("Folder", self.folder)
        self.torch = QComboBox()
        for key, label in install.TORCH_BUILDS.items():
            self.torch.addItem(label, key)
        form.addRow("PyTorch for", self.torch)
        wheel = install.bundled_wheel()
        self.package = QLineEdit(str(wheel) if wheel else "")
        self.package.setToolTip(
            "the ofa-explore wheel that comes with the plugin (its own version); or a wheel "
            "file, a folder with ofa-explore's sources, or a pip requirement"
        )
        form.addRow("ofa-explore from", self.package)
        self.existing = QRadioButton(install.EXISTING)
        form.addRow(self.existing)
        self.python = QgsFileWidget()
        form.addRow("Python", self.python)
        self.problem_label = QLabel()
        self.problem_label.setWordWrap(True)
        self.problem_label.setStyleSheet("color: #b00020")
        form.addRow(self.problem_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)
        self.python.setFilePath(settings.value("python"))
        # the engine set here before, if it works, is what OK keeps; else a new one is made
        (self.existing if engine_is_set() else self.create).setChecked(True)
        for signal in (
            self.create.toggled,
            self.folder.fileChanged,
            self.package.textChanged,
            self.python.fileChanged,
        ):
            signal.connect(self.update_problem)
        self.update_problem()

    def problem(self) -> str | None:
        """What keeps OK from working (None: nothing); the quick checks only, from files."""
        if self.existing.isChecked():
            python = self.python.filePath().strip()
            if not python:
                return "Choose the Python of an environment where ofa-explore is installed."
            if not Path(python).is_file():
                return f"{python} does not exist: choose the environment's Python file."
            return None
        return install.folder_problem(
            Path(self.folder.filePath()) if self.folder.filePath().strip() else None
        ) or install.package_problem(self.package.text())

    def update_problem(self, *_) -> None:
        problem = self.problem()
        self.problem_label.setText(problem or "")
        self.problem_label.setVisible(bool(problem))
        self.buttons.button(QDialogButtonBox.Ok).setEnabled(problem is None)

    def accept(self) -> None:
        """OK checks again: the folder may have filled while the dialog was open."""
        self.update_problem()
        if self.problem() is None:
            super().accept()

    def choice(self) -> dict:
        """{"python": path} to use as is, or {"folder", "package", "torch_build"} to create."""
        if self.existing.isChecked():
            return {"python": self.python.filePath()}
        return {
            "folder": Path(self.folder.filePath()),
            "package": self.package.text().strip(),
            "torch_build": self.torch.currentData(),
        }


def engine_is_set() -> bool:
    """The settings name an engine and it works (not one found through OFA_EXPLORE_PYTHON or
    an `ofa` on PATH: those need no setup)."""
    try:
        return bool(settings.value("python")) and settings.current_engine().origin == "settings"
    except engine.EngineError:
        return False


class SetupTask(QgsTask):
    """Creates the engine environment (install.run_setup) with pip's progress; on success
    ``self.engine`` is the probed engine, else ``self.error`` says why (None: cancelled), and
    the folder is gone again."""

    status = pyqtSignal(str)

    def __init__(
        self,
        folder: Path,
        package: str,
        torch_build: str,
        on_done: Callable[[SetupTask, bool], None],
    ):
        super().__init__("OFA Explore: setting up the engine", QgsTask.CanCancel)
        self.title = self.description()
        self.folder, self.package, self.torch_build = folder, package, torch_build
        self.on_done = on_done
        self.engine: engine.Engine | None = None
        self.error: str | None = None
        self.status.connect(self._show_status)  # emitted in the task's thread, shown in QGIS's

    def run(self) -> bool:
        try:
            self.engine = install.run_setup(
                self.folder,
                self.package,
                self.torch_build,
                progress=self._progress,
                cancelled=self.isCanceled,
                log=log,
            )
            return True
        except engine.Cancelled:
            return False
        except engine.EngineError as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - shown in the message bar, never a crash
            self.error = f"{type(err).__name__}: {err}"
        return False

    def _progress(self, percent: float, what: str) -> None:
        self.setProgress(max(self.progress(), percent))  # the bar only moves forward
        self.status.emit(what)

    @pyqtSlot(str)
    def _show_status(self, text: str) -> None:
        self.setDescription(f"{self.title} ({text}…)" if text else self.title)

    def finished(self, ok: bool) -> None:
        if not ok:  # QGIS's own "Task failed: <description>" comes first: it says why, briefly
            why = self.error.split(":")[0] if self.error else "cancelled, nothing was left"
            self.setDescription(f"{self.title}: {why}")
        self.on_done(self, ok)
