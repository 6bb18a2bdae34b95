"""Toolbar and menu actions: they check the engine, open the dialog, start a task in the
engine's process and show its result. Nothing here imports torch or ofa_explore."""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsMapLayerType, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import QAction, QMessageBox, QPushButton

from . import engine, layers, settings, workers
from ._shared import protocol
from .dialog import OfaDialog
from .provider import OfaProvider
from .resources import icon
from .setup_dialog import SetupDialog, SetupTask
from .task import EngineTask, log

MENU = "OFA Explore"  # under QGIS's Raster menu: Raster > OFA Explore
SHORT = 160  # longer messages show their start in the bar and all of it under Details


class OfaExplorePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.actions: list[QAction] = []
        self.provider = None
        self.tasks: list = []  # running tasks stay referenced until they finish
        self.last_dialog: OfaDialog | None = None
        self.details: QMessageBox | None = None  # the last Details window opened

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
        title = protocol.task(task).title.rstrip("…")
        layer, after = self.iface.activeLayer(), None
        if task == "change":
            layer, after = change_pair(layer, rasters())
            if after is None:
                self._message(
                    f"{title} compares two raster layers of the same place, and the project "
                    "has fewer: add both dates first.",
                    Qgis.Warning,
                )
                return None
        elif layer is None or layer.type() != QgsMapLayerType.RasterLayer:
            what = f"{layer.name()} is not a raster layer" if layer else "no layer is selected"
            self._message(
                f"{title} works on a raster layer, and {what}: select one "
                "in the Layers panel first.",
                Qgis.Warning,
            )
            return None
        workers.warm_up(runner)  # the engine starts while the user fills in the dialog
        try:
            dialog = self.last_dialog = OfaDialog(
                task, runner, layer, self.iface.mainWindow(), after=after
            )
        except Exception as err:  # noqa: BLE001 - a message, never QGIS's "Python error"
            log(traceback.format_exc(), Qgis.Critical)
            self._message(
                f"The {title} dialog could not open: check the engine "
                "with Raster > OFA Explore > Set up engine… (the details are in the log, tab "
                f"OFA Explore: {err})",
                Qgis.Critical,
            )
            return None
        if dialog.folder_notice:
            self._message(dialog.folder_notice, Qgis.Warning)
        if not dialog.exec_():
            return None
        return self.start(
            runner,
            dialog.job(),
            dialog.layer.currentLayer(),
            add_cube=dialog.add_cube.isChecked(),
            name=dialog.result_name(),
        )

    def start(
        self,
        runner: engine.Engine,
        job: engine.Job,
        layer=None,
        add_cube: bool = False,
        name: str | None = None,
    ) -> EngineTask:
        """Runs ``job`` as a task; its result is added as ``name`` (default: the layer's, or
        the input files')."""
        name = name or (
            layer.name() if layer is not None else " to ".join(Path(s).stem for s in job.sources())
        )
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
            short, details = summary(task.info, added[0].name(), task.runner.sensors())
            log(details)
            level = Qgis.Warning if task.info.get("warnings") else Qgis.Success
            self._message(short, level, details=details)
        elif task.error:
            self._message(task.error, Qgis.Critical)
        else:
            for leftover in protocol.output_files(task.job.output, task.job.task):
                leftover.unlink(missing_ok=True)
            self._message(cancelled_text(task.job, name), Qgis.Info)

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

    def _message(
        self,
        text: str,
        level,
        setup_button: bool = False,
        duration: int = 0,
        details: str | None = None,
    ) -> None:
        """A message in the bar; a long one shows its start there and the whole text (or
        ``details``) under a Details button, so that nothing is cut off."""
        bar = self.iface.messageBar()
        if details is None and len(text) > SHORT:
            cut = text.rfind(" ", SHORT // 2, SHORT)  # at a word, unless a long path is there
            details, text = text, text[: cut if cut > 0 else SHORT] + " …"
        if not setup_button and details is None:
            bar.pushMessage("OFA Explore", text, level=level, duration=duration)
            return
        widget = bar.createMessage("OFA Explore", text)
        if details is not None:
            button = QPushButton("Details", widget)
            button.clicked.connect(lambda: self._show_details(details))
            widget.layout().addWidget(button)
        if setup_button:
            button = QPushButton("Set up engine…", widget)
            button.clicked.connect(self.open_setup)
            widget.layout().addWidget(button)
        bar.pushWidget(widget, level, duration)

    def _show_details(self, text: str) -> None:
        box = self.details = QMessageBox(self.iface.mainWindow())
        box.setWindowTitle("OFA Explore")
        box.setTextFormat(Qt.PlainText)
        box.setText(text)
        if "\n" in text:  # a table: its columns line up
            box.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        box.show()


def summary(info: dict, layer_name: str, registry: list[dict]) -> tuple[str, str]:
    """What a run found, for the message bar (one line that fits it, about 100 characters)
    and its Details: the classes with their shares, or the changed area and its share (areas
    and the file under Details), the sensor the layer was read as, the precision, the tiles and
    time."""
    sensor = layers.sensor_name(registry, info.get("modality") or "?")
    tiles = protocol.count(int(info.get("tiles") or 0), "tile")
    found = sorted(
        (a for a in info.get("areas") or [] if a.get("pixels")), key=lambda a: -a["share"]
    )
    classes = ", ".join(f"{a['class']} {a['share']:.0%}" for a in found[:3])
    changed = changed_text(info.get("checks") or {})
    short = (
        f"{layer_name}: "
        + (f"{classes}{', …' if len(found) > 3 else ''}; " if found else "")
        + (f"{changed}; " if changed else "")
        + f"{sensor}, {info.get('precision')}, {tiles} in {info.get('seconds')} s"
    )
    if info.get("warnings"):  # the values do not fit the sensor, no CRS...: worth a look
        short += f"; {protocol.count(len(info['warnings']), 'warning')} under Details"
    details = [
        layer_name,
        f"Read as {sensor} ({info.get('modality')}), {info.get('precision')} on "
        f"{info.get('device')}, {tiles} in {info.get('seconds')} s",
        f"File: {info.get('path')}",
    ]
    if info.get("pca_path"):
        details.append(f"Colour view: {info['pca_path']}")
    details += [f"Note: {n}" for n in info.get("notes") or []]
    details += [f"Warning: {w}" for w in info.get("warnings") or []]
    if found:  # last: the table's columns line up in the Details window's fixed font
        details += ["", f"Classes found ({info.get('head')}), largest first:"]
        details.append(protocol.class_table(found))
    return short, "\n".join(details)


def changed_text(checks: dict) -> str | None:
    """A change result's changed area and its share of the pixels with data in both dates
    ("12.5 ha changed (1.1%)"; pixels where the layer has no CRS); None for other results."""
    if "changed_share" not in checks:
        return None
    if "changed_hectares" in checks:
        area = f"{checks['changed_hectares']:,.1f} ha"
    else:
        area = f"{int(checks['changed_pixels']):,} px"
    return f"{area} changed ({checks['changed_share']:.1%})"


def rasters() -> list:
    """The project's raster layers, as the Layers panel lists them (top first)."""
    order = QgsProject.instance().layerTreeRoot().layerOrder()
    return [lyr for lyr in order if lyr.type() == QgsMapLayerType.RasterLayer]


def change_pair(active, layers: list) -> tuple:
    """The (BEFORE, AFTER) the change dialog opens with: the active raster layer (else the top
    one) and the nearest other with as many bands; the lower of the two in the Layers panel,
    added first, is BEFORE. (None, None) with fewer than two raster layers."""
    if len(layers) < 2:
        return None, None
    ids = [lyr.id() for lyr in layers]
    at = ids.index(active.id()) if active is not None and active.id() in ids else 0
    others = sorted((i for i in range(len(layers)) if i != at), key=lambda i: abs(i - at))
    same = [i for i in others if layers[i].bandCount() == layers[at].bandCount()]
    upper, lower = sorted((at, (same or others)[0]))
    return layers[lower], layers[upper]


def cancelled_text(job: engine.Job, name: str) -> str:
    return f"{protocol.task(job.task).verb} {name} was cancelled; nothing was written."
