"""Set up engine… in real (headless) QGIS: the dialog opens on the engine that works, else on a
new environment from the wheel that comes in the plugin's zip; offline, OK ends in a message that
says what could not be fetched and how to go on, and leaves no folder behind; a cancel leaves
none either; Processing's Sensor lists follow the engine.

The engine is the Python in ``OFA_EXPLORE_PYTHON`` (see tests/qgis/test_plugin.py). Offline is
pip's own: an index nobody answers on (127.0.0.1:9) and no configuration files. The wheel's
successful install into a venv: tests/test_qgis_engine.py.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsSettings
from test_plugin import details, messages, wait  # the bar as the user reads it; a task's end

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel():
    """The package's wheel in the staged plugin's wheels/ folder, as the zip carries it."""
    import ofa_explore_qgis
    from ofa_explore_qgis import install

    spec = importlib.util.spec_from_file_location(
        "build_qgis_plugin", ROOT / "scripts" / "build_qgis_plugin.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    folder = Path(ofa_explore_qgis.__file__).parent / build.WHEELS
    assert folder == install.WHEELS
    yield build.build_wheel(folder)
    shutil.rmtree(folder)  # the staged plugin as the other tests know it


@pytest.fixture()
def engine_python(monkeypatch, tmp_path) -> str:
    """The test engine's Python, found only where the plugin's settings name it (as after a
    setup): not through OFA_EXPLORE_PYTHON nor an `ofa` on PATH. User data lands in tmp_path."""
    python = os.environ["OFA_EXPLORE_PYTHON"]
    monkeypatch.delenv("OFA_EXPLORE_PYTHON")
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/bin", "/bin"]))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    return python


@pytest.fixture()
def plugin(qgis_iface, qgis_new_project, qgis_processing, engine_python, wheel):
    """The plugin started with no engine set (QGIS's first start after installing the zip)."""
    from ofa_explore_qgis import classFactory

    QgsSettings().remove("ofa_explore")
    p = classFactory(qgis_iface)
    p.initGui()
    qgis_iface.messageBar().clear_messages()
    qgis_iface.messageBar().clearWidgets()  # messages with buttons (Details, Set up engine…)
    yield p
    p.unload()
    QgsSettings().remove("ofa_explore")
    assert "torch" not in sys.modules and "ofa_explore" not in sys.modules


def offline(monkeypatch) -> None:
    """pip as on a computer without a connection: its index does not answer, and this
    machine's pip configuration (local indexes, find-links) is not read."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")  # pip's own retries, shortened (default: 5)
    for name in ("PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)


def choose(monkeypatch, **fields):
    """Set up engine… accepted as a user would: ``fields`` set, OK only while it is enabled."""
    from ofa_explore_qgis.setup_dialog import SetupDialog

    def exec_(self):
        for name, value in fields.items():
            widget = getattr(self, name)
            if name in ("create", "existing"):
                widget.setChecked(value)
            elif name == "package":
                widget.setText(value)
            elif name == "torch":
                widget.setCurrentIndex(widget.findData(value))
            else:
                widget.setFilePath(str(value))
        assert self.problem() is None, self.problem()
        assert self.buttons.button(self.buttons.Ok).isEnabled()
        return 1

    monkeypatch.setattr(SetupDialog, "exec_", exec_)


def keep_description(task) -> list[str]:
    """The task's description when it ends (QGIS deletes the task right after)."""
    seen: list[str] = []
    done = task.on_done
    task.on_done = lambda t, ok: (seen.append(t.description()), done(t, ok))
    return seen


def sensor_options() -> list[str]:
    algorithm = QgsApplication.processingRegistry().algorithmById("ofa_explore:classify_raster")
    return algorithm.parameterDefinition("SENSOR").options()


def test_setup_opens_on_a_new_engine_from_the_zips_wheel_then_on_the_engine_set(
    plugin, qgis_iface, monkeypatch, engine_python, wheel, tmp_path
):
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.setup_dialog import SetupDialog

    dialog = SetupDialog()
    assert dialog.create.isChecked() and not dialog.existing.isChecked()
    assert dialog.package.text() == str(wheel) and wheel.name.startswith("ofa_explore-")
    folder = tmp_path / "data" / "ofa-explore" / "engine"
    assert Path(dialog.folder.filePath()) == folder and dialog.problem() is None
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("mine")  # a folder that holds files is never used
    dialog.folder.setFilePath(str(tmp_path))
    assert "already holds files" in dialog.problem_label.text()
    assert not dialog.buttons.button(dialog.buttons.Ok).isEnabled()
    dialog.folder.setFilePath(str(folder))
    dialog.accept()  # OK checks again
    assert dialog.isVisible() is False and dialog.result() == 0
    assert "already holds files" in dialog.problem_label.text()
    assert Path(SetupDialog().folder.filePath()) == folder.with_name("engine-2")
    dialog.package.setText(str(tmp_path / "ofa_explore-9.9-py3-none-any.whl"))
    dialog.folder.setFilePath(str(tmp_path / "new"))
    assert "does not exist" in dialog.problem_label.text()
    dialog.existing.setChecked(True)
    dialog.python.setFilePath(str(tmp_path / "nowhere" / "python"))
    assert "does not exist" in dialog.problem() and "Python" in dialog.problem()

    assert sensor_options() == ["auto"]  # no engine yet: Processing knows no sensor
    choose(monkeypatch, existing=True, python=engine_python)
    plugin.setup_action.trigger()
    assert "The engine is ready" in messages(qgis_iface, "Success")
    assert {"s2_l1c", "landsat_etm", "rgbn"} <= set(sensor_options())  # without a restart

    reopened = SetupDialog()  # the engine that works is what OK keeps
    assert reopened.existing.isChecked() and not reopened.create.isChecked()
    assert reopened.python.filePath() == settings.value("python")
    assert reopened.problem() is None
    settings.set_value("python", str(tmp_path / "gone" / "python"))  # a set engine that broke
    assert SetupDialog().create.isChecked()


def test_setup_offline_says_pytorch_could_not_be_fetched_and_leaves_nothing(
    plugin, qgis_iface, qgis_app, monkeypatch, engine_python, tmp_path
):
    """The default choices (new environment, CPU PyTorch, the zip's wheel), no connection: a
    message in the user's words with the way forward; the previous engine stays set."""
    from ofa_explore_qgis import settings

    settings.set_value("python", engine_python)  # an engine that works, set earlier
    before = settings.value("python")
    folder = tmp_path / "engine"
    offline(monkeypatch)
    choose(monkeypatch, create=True, folder=folder)
    task = plugin.open_setup()
    described = keep_description(task)
    progress: list[float] = []
    task.progressChanged.connect(progress.append)
    t0 = time.monotonic()
    wait(plugin, qgis_app)
    short = messages(qgis_iface, "Critical")
    assert short.startswith("OFA Explore:PyTorch could not be downloaded"), short
    text = details(plugin, qgis_iface, "could not be downloaded")  # the whole message
    assert "Use the Python of an existing environment" in text and "internet" in text
    for pip_words in ("ERROR", "Retrying", "Traceback", "Looking in indexes", "127.0.0.1"):
        assert pip_words not in text, text
    assert not folder.exists()  # no half-made engine left
    assert progress and progress == sorted(progress)
    # what QGIS's own "Task failed: ..." shows (after a few seconds' run) says why, too
    assert described == ["OFA Explore: setting up the engine: PyTorch could not be downloaded"]
    assert settings.value("python") == before and settings.current_engine().python
    assert time.monotonic() - t0 < 120


def test_cancelled_setup_removes_its_folder(
    plugin, qgis_iface, qgis_app, monkeypatch, engine_python, tmp_path
):
    folder = tmp_path / "engine"
    offline(monkeypatch)
    choose(monkeypatch, create=True, folder=folder, torch="cuda")
    task = plugin.open_setup()
    t0 = time.monotonic()
    while not folder.exists() and time.monotonic() - t0 < 60:  # the venv is being made
        qgis_app.processEvents()
        time.sleep(0.02)
    assert folder.exists()
    described = keep_description(task)
    task.cancel()
    wait(plugin, qgis_app)
    assert "Engine setup cancelled" in messages(qgis_iface, "Info")
    assert described == ["OFA Explore: setting up the engine: cancelled, nothing was left"]
    assert not messages(qgis_iface, "Critical")
    assert not folder.exists()
