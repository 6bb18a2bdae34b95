"""Drives the real QGIS desktop as a user would (run by ``qgis --code drive.py`` from
tests/test_qgis_desktop.py): click Classify layer on a EuroSAT chip, then Embed layer on a NAIP
scene, OK in each dialog, wait for the layers; a heartbeat timer measures the longest stall of
QGIS's main thread from opening each dialog to its result. With OFA_DESKTOP_RESULTS (the folder
to choose when the saved one no longer works), OFA_DESKTOP_NAIP and OFA_DESKTOP_BIG, three more
steps: Classify on NAIP (no head fits: the dialog must say so, OK disabled, Cancel), and a
Classify of a big mosaic cancelled once it runs. A change step (OFA_DESKTOP_STEPS) opens its two
dates, Before first, and clicks Raster > OFA Explore > Change between two layers… with the
changed areas' polygons ticked. Writes ``report.json`` and screenshots into OFA_DESKTOP_OUT,
then quits QGIS.
"""

import ctypes
import glob
import json
import os
import sys
import time
import traceback

import qgis.utils
from qgis.core import QgsProject, QgsSettings
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication

OUT = os.environ["OFA_DESKTOP_OUT"]
if os.environ.get("OFA_DESKTOP_STEPS"):  # [[task, path, layer name, result layer name], ...]
    # change: [["change", [before, after], [before name, after name], result layer name]]
    STEPS = json.loads(os.environ["OFA_DESKTOP_STEPS"])  # bench/bench_qgis.py
else:
    STEPS = [
        ("classify", os.environ["OFA_DESKTOP_CHIP"], "EuroSAT chip", "EuroSAT chip classes"),
        ("classify", os.environ["OFA_DESKTOP_NAIP"], "NAIP scene", None, "refused"),
        (
            "embed",
            os.environ["OFA_DESKTOP_NAIP"],
            "NAIP scene",
            "NAIP scene embedding (PCA colours)",
        ),
        ("classify", os.environ["OFA_DESKTOP_BIG"], "Big mosaic", None, "cancel"),
    ]
RESULTS = os.environ.get("OFA_DESKTOP_RESULTS")  # chosen in the dialog when the saved one broke
report = {"steps": [], "errors": []}
iface = qgis.utils.iface


def mapped(name: str) -> bool:
    with open("/proc/self/maps") as maps:
        return name in maps.read()


class Heartbeat:
    """A 20 ms timer on the main thread; ``gap`` is the longest time between two ticks."""

    def __init__(self):
        self.last, self.gap = time.monotonic(), 0.0
        self.timer = QTimer()
        self.timer.setInterval(20)
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def reset(self):
        self.last, self.gap = time.monotonic(), 0.0

    def tick(self):
        now = time.monotonic()
        self.gap = max(self.gap, now - self.last)
        self.last = now


def worker_pid():
    """The plugin's warm engine worker's process id (None: none running)."""
    workers = sys.modules.get("ofa_explore_qgis.workers")
    worker = workers and workers.current()
    return worker.proc.pid if worker and worker.alive() else None


def bar_messages():
    return [item.text() for item in iface.messageBar().items()]


def fail(message):
    report["errors"].append(message)
    finish()


def finish():
    report["torch_in_qgis"] = "torch" in sys.modules
    report["ofa_explore_in_qgis"] = "ofa_explore" in sys.modules
    report["mesa_llvm_loaded"] = mapped("libLLVM")
    report["platform"] = QApplication.platformName()
    report["messages"] = bar_messages()
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    QTimer.singleShot(100, quit_qgis)


def quit_qgis():
    """Project > Exit QGIS, as a user leaves it (nothing to save: the test made no edits)."""
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().setDirty(False)
    iface.actionExit().trigger()


def guarded(function):
    def run(*args):
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - reported to the test, QGIS keeps running
            fail(traceback.format_exc())

    return run


@guarded
def start():
    # QGIS's own question when layers in NAD83 and WGS84 meet: not what this test is about
    QgsSettings().setValue("/projections/promptWhenMultipleTransformsExist", False, QgsSettings.App)
    report["mesa_llvm_before"] = mapped("libLLVM")
    if not report["mesa_llvm_before"]:  # the state that crashed QGIS: Mesa's LLVM in the process
        for lib in sorted(glob.glob("/usr/lib/*/libLLVM*.so*")):
            ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)
            report["mesa_llvm_forced"] = lib
            break
    plugin = qgis.utils.plugins.get("ofa_explore_qgis")
    if plugin is None:
        return fail(f"plugin not loaded; plugins: {list(qgis.utils.plugins)}")
    global PLUGIN, BEAT
    PLUGIN, BEAT = plugin, Heartbeat()
    step(0)


@guarded
def step(index):
    if index == len(STEPS):
        return finish()
    task, path, name, result_name, *expect = STEPS[index]
    paths, names = (path, name) if isinstance(path, list) else ([path], [name])
    for path, name in zip(paths, names):  # change: Before, then After (on top, active)
        layer = QgsProject.instance().mapLayersByName(name)
        layer = layer[0] if layer else iface.addRasterLayer(path, name)
        if layer is None or not layer.isValid():
            return fail(f"cannot open {path}")
    iface.setActiveLayer(layer)
    action = getattr(PLUGIN, f"{task}_action")
    button = iface.pluginToolBar().widgetForAction(action)
    if button is None:
        return fail(f"no toolbar button for {action.text()}")
    name = " to ".join(names)  # what the result's message starts with
    record = {"task": task, "layer": name, "worker_before": worker_pid(), "t0": time.monotonic()}
    record["expect"] = expect[0] if expect else "result"
    report["steps"].append(record)
    delay = int(os.environ.get("OFA_DESKTOP_OK_AFTER_MS", "300"))  # a user reading the dialog
    QTimer.singleShot(delay, lambda: press_ok(record, 0))
    BEAT.reset()
    if task == "change":  # from the menu, as the issue says; returns when the dialog closes
        menu_action(action.text()).trigger()
    else:
        QTest.mouseClick(button, Qt.LeftButton)  # returns when the modal dialog closes
    record["dialog_closed"] = time.monotonic() - record["t0"]
    if record["expect"] == "refused":
        return QTimer.singleShot(0, lambda: step(index + 1))
    if record["expect"] == "cancel":
        return cancel_when_running(record, index)
    wait_for(result_name, record, index)


@guarded
def press_ok(record, tries):
    dialog = QApplication.activeModalWidget()
    if dialog is None or dialog.objectName() != "ofa_explore_dialog":
        if tries > 100:
            return fail("the dialog did not open")
        return QTimer.singleShot(100, lambda: press_ok(record, tries + 1))
    record["dialog_open_s"] = time.monotonic() - record["t0"]
    record["folder_notice"] = dialog.folder_notice
    if RESULTS and dialog.folder_notice:  # the saved folder broke: choose one, as a user would
        dialog.folder.setFilePath(RESULTS)
    record["dialog_problem"] = dialog.problem()
    ok = dialog.buttons.button(dialog.buttons.Ok)
    record["ok_enabled"] = ok.isEnabled()
    record["heads"] = [
        [dialog.head.itemText(i), dialog.head.model().item(i).isEnabled()]
        for i in range(dialog.head.count())
    ]
    if record["task"] == "change":
        record["pair"] = [dialog.layer.currentLayer().name(), dialog.after.currentLayer().name()]
        box = dialog.polygons  # "Also outline the changed areas": a click on its tick box
        QTest.mouseClick(box, Qt.LeftButton, Qt.NoModifier, QPoint(8, box.height() // 2))
        record["polygons"] = dialog.polygons.isChecked()
    suffix = {"refused": "_refused", "cancel": "_cancel"}.get(record["expect"], "")
    dialog.grab().save(os.path.join(OUT, f"{record['task']}{suffix}_dialog.png"))
    record["ok_s"] = time.monotonic() - record["t0"]
    if record["expect"] == "refused":
        return QTest.mouseClick(dialog.buttons.button(dialog.buttons.Cancel), Qt.LeftButton)
    QTest.mouseClick(ok, Qt.LeftButton)


def menu_action(text):
    """The action called ``text`` under Raster > OFA Explore, as a user finds it."""
    menu = next(a.menu() for a in iface.rasterMenu().actions() if a.text() == "OFA Explore")
    return next(a for a in menu.actions() if a.text() == text)


def watch_task(record):
    """What the running task shows in QGIS's task bar: its description and progress."""
    for task in PLUGIN.tasks:
        seen = [task.description(), round(task.progress(), 1)]
        if not record.setdefault("task_bar", []) or record["task_bar"][-1] != seen:
            record["task_bar"].append(seen)


def cancel_when_running(record, index, deadline=120):
    """Cancels the job once its progress moves (the user's click on the task's cancel), then
    waits for QGIS's and the plugin's words about it."""
    watch_task(record)
    if PLUGIN.tasks and PLUGIN.tasks[0].progress() > 0:
        record["cancelled_at"] = PLUGIN.tasks[0].progress()
        PLUGIN.tasks[0].cancel()
        return QTimer.singleShot(100, lambda: after_cancel(record, index, time.monotonic()))
    if time.monotonic() - record["t0"] > deadline:
        return fail(f"the job to cancel never ran; messages: {bar_messages()}")
    QTimer.singleShot(50, lambda: cancel_when_running(record, index, deadline))


@guarded
def after_cancel(record, index, since):
    if PLUGIN.tasks or time.monotonic() - since < 2.0:  # QGIS's own notice comes after
        return QTimer.singleShot(100, lambda: after_cancel(record, index, since))
    record["messages_after_cancel"] = bar_messages()
    record["layers_after_cancel"] = [
        lyr.name() for lyr in QgsProject.instance().mapLayers().values()
    ]
    iface.mainWindow().grab().save(os.path.join(OUT, "cancelled.png"))
    step(index + 1)


def wait_for(result_name, record, index, deadline=240):
    watch_task(record)
    names = [lyr.name() for lyr in QgsProject.instance().mapLayers().values()]
    if result_name in names:
        record["seconds"] = time.monotonic() - record["t0"]
        record["max_stall_s"] = BEAT.gap
        record["worker_after"] = worker_pid()
        record["messages"] = bar_messages()
        record["top_layer"] = QgsProject.instance().layerTreeRoot().children()[0].name()
        record["layers"] = [n.name() for n in QgsProject.instance().layerTreeRoot().children()]
        result = QgsProject.instance().mapLayersByName(result_name)[0]
        iface.setActiveLayer(result)
        iface.zoomToActiveLayer()
        QTimer.singleShot(2500, lambda: shot(record, index))
        return
    if time.monotonic() - record["t0"] > deadline or (not PLUGIN.tasks and record.get("ran")):
        return fail(f"{result_name} did not appear; layers: {names}; messages: {bar_messages()}")
    record["ran"] = record.get("ran") or bool(PLUGIN.tasks)
    QTimer.singleShot(100, lambda: wait_for(result_name, record, index, deadline))


@guarded
def shot(record, index):
    iface.mainWindow().grab().save(os.path.join(OUT, f"{record['task']}_result.png"))
    open_details(record)
    step(index + 1)


def open_details(record):
    """Clicks Details on the result's message, as a user would, and keeps what it shows."""
    from qgis.PyQt.QtWidgets import QPushButton

    name = record["layer"]
    item = next((i for i in iface.messageBar().items() if i.text().startswith(name)), None)
    button = item and next(
        (b for b in item.findChildren(QPushButton) if b.text() == "Details"), None
    )
    if button is None:
        record["details"] = None
        return
    QTest.mouseClick(button, Qt.LeftButton)
    box = PLUGIN.details
    record["details"] = box.text()
    box.grab().save(os.path.join(OUT, f"{record['task']}_details.png"))
    box.close()


def watchdog():
    """Whatever blocks (a modal window nobody expected), the test gets a picture and a report."""
    from qgis.PyQt.QtGui import QGuiApplication

    QGuiApplication.primaryScreen().grabWindow(0).save(os.path.join(OUT, "watchdog.png"))
    top = [w.windowTitle() for w in QApplication.topLevelWidgets() if w.isVisible()]
    report["errors"].append(f"watchdog: still running; visible windows: {top}")
    finish()
    QTimer.singleShot(3000, lambda: os._exit(3))


QTimer.singleShot(int(os.environ.get("OFA_DESKTOP_WATCHDOG_S", "240")) * 1000, watchdog)
QTimer.singleShot(1500, start)
