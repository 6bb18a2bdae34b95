"""Toolbar and menu actions: they check the engine, open the dialog, start a task in the
engine's process and show its result. Nothing here imports torch or ofa_explore."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMapLayerType
from qgis.PyQt.QtWidgets import QAction, QPushButton

from . import engine, settings, workers
from ._shared import protocol
from .dialog import OfaDialog
from .provider import OfaProvider
from .resources import icon
from .setup_dialog import SetupDialog, SetupTask
from .task import EngineTask, log

MENU = "OFA Explore"


class OfaExplorePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.actions: list[QAction] = []
        self.provider = None
        self.tasks: list = []  # running tasks stay referenced until they finish
        self.last_dialog: OfaDialog | None = None

    # ------------------------------------------------------------ QGIS hooks
    def initProcessing(self) -> None:  # noqa: N802
        self.provider = OfaProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        for task in protocol.TASKS.values():  # self.classify_action, self.embed_action, ...
            setattr(
                self,
                f"{task.name}_action",
                self._action(
                    task.name, task.title, lambda _=False, name=task.name: self.open_dialog(name)
                ),
            )
        self.setup_action = self._action("setup", "Set up engine…", self.open_setup, toolbar=False)
        try:  # checked at start: a missing engine is said once, with the button to set it up
            settings.current_engine()
        except engine.EngineError as err:
            self._message(str(err), Qgis.Info, setup_button=True)

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        workers.shutdown()  # the warm engine ends with the plugin (and QGIS)

    # ------------------------------------------------------------ actions
    def open_dialog(self, task: str) -> EngineTask | None:
        """Check the engine and the layer, ask for parameters, start the task."""
        try:
            runner = settings.current_engine()
        except engine.EngineError as err:
            self._message(str(err), Qgis.Critical, setup_button=True)
            return None
        layer = self.iface.activeLayer()
        if layer is None or layer.type() != QgsMapLayerType.RasterLayer:
            self._message(
                "Select a raster layer in the Layers panel first (vector layers "
                "cannot be classified).",
                Qgis.Warning,
            )
            return None
        workers.warm_up(runner)  # the engine starts while the user fills in the dialog
        dialog = self.last_dialog = OfaDialog(task, runner, layer, self.iface.mainWindow())
        if not dialog.exec_():
            return None
        return self.start(
            runner, dialog.job(), dialog.layer.currentLayer(), add_cube=dialog.add_cube.isChecked()
        )

    def start(
        self, runner: engine.Engine, job: engine.Job, layer=None, add_cube: bool = False
    ) -> EngineTask:
        name = layer.name() if layer is not None else Path(job.source).stem
        task = EngineTask(
            f"OFA Explore: {protocol.task(job.task).verb} {name}",
            runner,
            job,
            lambda t, ok: self._finished(t, ok, layer, name, add_cube),
        )
        task.status.connect(lambda text: self._status(text, runner))
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        return task

    def _status(self, text: str, runner: engine.Engine) -> None:
        if text == workers.STARTING:
            warm = workers.serves(runner)
            self._message(
                "Starting the engine (a few seconds"
                + ("; once per QGIS session, the next runs start at once)." if warm else ")."),
                Qgis.Info,
                duration=8,
            )

    def open_setup(self) -> SetupTask | None:
        dialog = SetupDialog(self.iface.mainWindow())
        if not dialog.exec_():
            return None
        choice = dialog.choice()
        if "python" in choice:
            try:
                found = engine.probe(choice["python"])
            except engine.EngineError as err:
                self._message(f"{err}. " + engine.SETUP_HINT, Qgis.Critical)
                return None
            self._engine_ready(found)
            return None
        task = SetupTask(
            choice["folder"], choice["package"], choice["torch_build"], self._setup_finished
        )
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)
        self._message(
            "Setting up the engine: PyTorch and ofa-explore are being installed "
            "(see the task's progress; details in the log, tab OFA Explore).",
            Qgis.Info,
        )
        return task

    # ------------------------------------------------------------ results
    def _finished(self, task: EngineTask, ok: bool, layer, name: str, add_cube: bool) -> None:
        from .style import add_result_layers

        self.tasks = [t for t in self.tasks if t is not task]
        if ok:
            try:
                added = add_result_layers(task.info, task.job, layer, name, add_cube)
            except RuntimeError as err:
                self._message(str(err), Qgis.Critical)
                return
            info = task.info
            self._message(
                f"{added[0].name()}: {info['tiles']} tiles in {info['seconds']} s on "
                f"{info['device']} (sensor {info.get('modality')}); saved in "
                f"{os.path.dirname(info['path'])}",
                Qgis.Success,
            )
        elif task.error:
            self._message(task.error, Qgis.Critical)
        else:
            for leftover in protocol.output_files(task.job.output, task.job.task):
                leftover.unlink(missing_ok=True)
            self._message("Cancelled; nothing was written.", Qgis.Info)

    def _setup_finished(self, task: SetupTask, ok: bool) -> None:
        self.tasks = [t for t in self.tasks if t is not task]
        if ok and task.engine:
            self._engine_ready(task.engine)
        elif task.error:
            self._message(task.error, Qgis.Critical)
        else:
            self._message("Engine setup cancelled.", Qgis.Info)

    def _engine_ready(self, found: engine.Engine) -> None:
        settings.set_value("python", found.python)
        if self.provider is not None:  # Processing's Sensor lists: the new engine's sensors
            self.provider.refreshAlgorithms()
        threading.Thread(target=workers.shutdown, daemon=True).start()  # the old engine's
        log(f"engine: ofa-explore {found.version} in {found.python}")
        self._message(f"The engine is ready (ofa-explore {found.version}).", Qgis.Success)

    # ------------------------------------------------------------ helpers
    def _action(self, key: str, text: str, callback, toolbar: bool = True) -> QAction:
        action = QAction(icon(key), text, self.iface.mainWindow())
        action.setObjectName(f"ofa_explore_{key}")
        action.triggered.connect(callback)
        if toolbar:
            self.iface.addToolBarIcon(action)
        self.iface.addPluginToRasterMenu(MENU, action)
        self.actions.append(action)
        return action

    def _message(self, text: str, level, setup_button: bool = False, duration: int = 0) -> None:
        bar = self.iface.messageBar()
        if not setup_button:
            bar.pushMessage("OFA Explore", text, level=level, duration=duration)
            return
        widget = bar.createMessage("OFA Explore", text)
        button = QPushButton("Set up engine…", widget)
        button.clicked.connect(self.open_setup)
        widget.layout().addWidget(button)
        bar.pushWidget(widget, level, 0)
