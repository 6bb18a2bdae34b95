"""Drives Set up engine… in the real QGIS desktop as a user would (run by ``qgis --code
setup_drive.py`` from tests/test_qgis_setup_desktop.py), on a computer without a connection to
the package index: Raster > OFA Explore > Set up engine…, OK on the defaults (a new environment
from the zip's wheel), wait for the message; then Set up engine… again with "Use the Python of
an existing environment" and the engine's Python (OFA_DESKTOP_ENGINE); then open it a third
time and cancel. Writes ``report.json`` and screenshots into OFA_DESKTOP_OUT, then quits QGIS.
"""

import json
import os
import time
import traceback

import qgis.utils
from qgis.core import QgsApplication, QgsProject
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication

OUT = os.environ["OFA_DESKTOP_OUT"]
ENGINE = os.environ["OFA_DESKTOP_ENGINE"]
report = {"errors": [], "steps": {}}
iface = qgis.utils.iface
PLUGIN = None


def bar_messages():
    return [item.text() for item in iface.messageBar().items()]


def details_of(needle):
    """Clicks Details on the bar message that says ``needle``, as a user would: the whole text."""
    from qgis.PyQt.QtWidgets import QPushButton

    for item in iface.messageBar().items():
        if needle in item.text():
            for button in item.findChildren(QPushButton):
                if button.text() == "Details":
                    button.click()
                    return PLUGIN.details.text()
    return None


def sensors():
    algorithm = QgsApplication.processingRegistry().algorithmById("ofa_explore:classify_raster")
    return algorithm.parameterDefinition("SENSOR").options() if algorithm else None


def fail(message):
    report["errors"].append(message)
    finish()


def finish():
    report["messages"] = bar_messages()
    report["platform"] = QApplication.platformName()
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    for task in PLUGIN.tasks if PLUGIN else []:  # a setup the test did not expect
        task.cancel()
    QTimer.singleShot(100, quit_qgis)


def quit_qgis(tries=0):
    """Project > Exit QGIS once no task runs (QGIS would ask whether to cancel it)."""
    if QgsApplication.taskManager().countActiveTasks() and tries < 100:
        return QTimer.singleShot(100, lambda: quit_qgis(tries + 1))
    QgsProject.instance().setDirty(False)
    iface.actionExit().trigger()


def guarded(function):
    def run(*args):
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - reported to the test, QGIS keeps running
            fail(traceback.format_exc())

    return run


def setup_action():
    """Set up engine… in the Raster menu, where the user finds it."""
    for menu_action in iface.rasterMenu().actions():
        if menu_action.menu() and menu_action.text().replace("&", "") == "OFA Explore":
            for action in menu_action.menu().actions():
                if action.text() == "Set up engine…":
                    return action
    return None


def open_setup(name, in_dialog):
    """Opens Set up engine… from the menu; ``in_dialog(dialog, record)`` acts in it (modal)."""
    record = report["steps"][name] = {"t0": time.monotonic()}
    QTimer.singleShot(300, lambda: act(name, in_dialog, record, 0))
    action = setup_action()
    if action is None:
        return fail("no Set up engine… in the Raster menu")
    iface.messageBar().clearWidgets()
    action.trigger()  # returns when the modal dialog closes
    return record


@guarded
def act(name, in_dialog, record, tries):
    dialog = QApplication.activeModalWidget()
    if dialog is None or dialog.objectName() != "ofa_explore_setup_dialog":
        if tries > 100:
            return fail("Set up engine… did not open")
        return QTimer.singleShot(100, lambda: act(name, in_dialog, record, tries + 1))
    record.update(
        create=dialog.create.isChecked(),
        existing=dialog.existing.isChecked(),
        folder=dialog.folder.filePath(),
        package=dialog.package.text(),
        python=dialog.python.filePath(),
    )
    dialog.grab().save(os.path.join(OUT, f"setup_{name}.png"))
    in_dialog(dialog, record)


def press(dialog, which):
    QTest.mouseClick(dialog.buttons.button(which), Qt.LeftButton)


@guarded
def start():
    global PLUGIN
    PLUGIN = qgis.utils.plugins.get("ofa_explore_qgis")
    if PLUGIN is None:
        return fail(f"plugin not loaded; plugins: {list(qgis.utils.plugins)}")
    report["startup_messages"] = bar_messages()
    report["sensors_before"] = sensors()

    def ok_on_the_defaults(dialog, record):
        record["problem"] = dialog.problem()
        press(dialog, dialog.buttons.Ok)

    record = open_setup("offline", ok_on_the_defaults)
    record["progress"] = []
    wait_offline(record)


@guarded
def wait_offline(record, deadline=180):
    task = next(iter(PLUGIN.tasks), None)
    if task is not None:
        seen = (round(task.progress()), task.description())
        if not record["progress"] or record["progress"][-1] != list(seen):
            record["progress"].append(list(seen))
        if time.monotonic() - record["t0"] > deadline:
            return fail(f"the setup did not end; messages: {bar_messages()}")
        return QTimer.singleShot(100, lambda: wait_offline(record, deadline))
    record["seconds"] = time.monotonic() - record["t0"]
    QTimer.singleShot(1000, lambda: look_at_the_message(record))  # QGIS's "Task failed" too


@guarded
def look_at_the_message(record):
    record["messages"] = bar_messages()
    record["folder_left"] = os.path.exists(record["folder"])
    record["details"] = details_of("could not be downloaded")
    iface.mainWindow().grab().save(os.path.join(OUT, "setup_offline_message.png"))
    QTimer.singleShot(200, use_existing)


@guarded
def use_existing():
    def choose_existing(dialog, record):
        dialog.existing.click()
        dialog.python.lineEdit().setText(ENGINE)  # typed or pasted into the Python field
        record["problem"] = dialog.problem()
        press(dialog, dialog.buttons.Ok)

    record = open_setup("existing", choose_existing)
    record["messages"] = bar_messages()
    record["sensors_after"] = sensors()

    def look_and_cancel(dialog, record):
        record["problem"] = dialog.problem()
        press(dialog, dialog.buttons.Cancel)

    open_setup("reopened", look_and_cancel)
    finish()


def watchdog():
    from qgis.PyQt.QtGui import QGuiApplication

    QGuiApplication.primaryScreen().grabWindow(0).save(os.path.join(OUT, "watchdog.png"))
    top = [w.windowTitle() for w in QApplication.topLevelWidgets() if w.isVisible()]
    report["errors"].append(f"watchdog: still running; visible windows: {top}")
    finish()
    QTimer.singleShot(3000, lambda: os._exit(3))


QTimer.singleShot(int(os.environ.get("OFA_DESKTOP_WATCHDOG_S", "240")) * 1000, watchdog)
QTimer.singleShot(1500, start)
