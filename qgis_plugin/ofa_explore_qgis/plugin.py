"""Toolbar and menu actions; they open the dialog, start a task and show its result."""

from __future__ import annotations

import os

from qgis.core import Qgis, QgsApplication, QgsMapLayerType
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from . import runner
from .dialog import OfaDialog
from .task import OfaTask

MENU = "OFA Explore"
ICON = os.path.join(os.path.dirname(__file__), "icon.png")


class OfaExplorePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.actions: list[QAction] = []
        self.provider = None
        self.tasks: list[OfaTask] = []  # keep running tasks referenced

    # ------------------------------------------------------------ QGIS hooks
    def initProcessing(self) -> None:  # noqa: N802
        from .provider import OfaProvider

        self.provider = OfaProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        self.classify_action = self._action("Classify layer", lambda: self.open_dialog("classify"))
        self.embed_action = self._action("Embed layer", lambda: self.open_dialog("embed"))

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # ------------------------------------------------------------ actions
    def open_dialog(self, task: str) -> OfaTask | None:
        """Check the setup and the layer, ask for parameters, start the task."""
        try:
            runner.check_package()
        except runner.PluginSetupError as err:
            self._message(str(err), Qgis.Critical)
            return None
        layer = self.iface.activeLayer()
        if layer is None or layer.type() != QgsMapLayerType.RasterLayer:
            self._message("select a raster layer in the Layers panel first (vector layers "
                          "cannot be classified)", Qgis.Warning)
            return None
        dialog = OfaDialog(task, layer, self.iface.mainWindow())
        if not dialog.exec_():
            return None
        return self.start(dialog.parameters(), dialog.layer.currentLayer().name())

    def start(self, params: dict, layer_name: str) -> OfaTask:
        verb = "Classifying" if params["task"] == "classify" else "Embedding"
        task = OfaTask(f"OFA Explore: {verb} {layer_name}", params,
                       lambda t, ok: self._finished(t, ok, layer_name))
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def _finished(self, task: OfaTask, ok: bool, layer_name: str) -> None:
        from .style import add_result_layer

        self.tasks = [t for t in self.tasks if t is not task]
        if ok:
            suffix = "classes" if task.info["classes"] else "embedding"
            try:
                add_result_layer(task.info, f"{layer_name} ({suffix})")
            except RuntimeError as err:
                self._message(str(err), Qgis.Critical)
                return
            self._message(f"wrote {task.info['path']} ({task.info['tiles']} tiles, "
                          f"{task.info['seconds']} s on {task.info['device']})", Qgis.Success)
        elif task.error:
            self._message(task.error, Qgis.Critical)
        else:
            self._message("cancelled; nothing was written", Qgis.Info)

    # ------------------------------------------------------------ helpers
    def _action(self, text: str, callback) -> QAction:
        action = QAction(QIcon(ICON), text, self.iface.mainWindow())
        action.setObjectName("ofa_explore_" + text.lower().replace(" ", "_"))
        action.triggered.connect(callback)
        self.iface.addToolBarIcon(action)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
        return action

    def _message(self, text: str, level) -> None:
        self.iface.messageBar().pushMessage("OFA Explore", text, level=level, duration=0)
