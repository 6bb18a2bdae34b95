"""The QGIS plugin in real (headless) QGIS, with the engine in its own process: actions, dialog,
background task, cancel, errors in GIS words, styling, Processing, engine setup.

The engine is the Python in ``OFA_EXPLORE_PYTHON`` (tests/test_qgis_plugin.py passes the test
venv's); QGIS's own Python here has neither torch nor ofa_explore.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import (
    QgsApplication,
    QgsDistanceArea,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsTask,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import Qt

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARTIFACTS = ROOT / "test-artifacts" / "qgis"
S2_CHIP = SHARED / "eurosat" / "River" / "River_1.tif"
NAIP = SHARED / "naip" / "m_4709963_se_14_1_20180716.tif"
LANDSAT_TM = SHARED / "change" / "landsat_tm" / "nanjing" / "nanjing_20000503.tif"
ENMAP = SHARED / "enmap_potsdam" / "images" / "enmap_potsdam_tile_128_0.tif"  # bands 130-135 bad
gdal.UseExceptions()


@pytest.fixture()
def data(tmp_path):
    """A copy of the inputs in a folder of their own, to check that nothing is written there."""
    folder = tmp_path / "data"
    folder.mkdir()
    for src in (S2_CHIP, NAIP):
        (folder / src.name).write_bytes(src.read_bytes())
    return folder


@pytest.fixture()
def plugin(qgis_iface, qgis_new_project, qgis_processing, tmp_path):
    from ofa_explore_qgis import classFactory, settings

    QgsSettings().remove("ofa_explore")
    settings.set_value("output_folder", str(tmp_path / "results"))
    (tmp_path / "results").mkdir()
    p = classFactory(qgis_iface)
    p.initGui()
    qgis_iface.messageBar().clear_messages()
    qgis_iface.messageBar().clearWidgets()  # messages with buttons (Details, Set up engine…)
    yield p
    p.unload()
    QgsSettings().remove("ofa_explore")
    assert "torch" not in sys.modules and "ofa_explore" not in sys.modules


def built(maker: str, *paths: Path) -> str:
    """The path a builder of tests/rasters.py returns for these paths, run in the engine's
    Python (it needs rasterio, which QGIS's Python has not)."""
    import subprocess

    arguments = ", ".join(f"Path({str(p)!r})" for p in paths)
    code = (
        f"import sys; sys.path.insert(0, {str(ROOT / 'tests')!r}); from pathlib import Path; "
        f"from rasters import {maker}; print({maker}({arguments}))"
    )
    done = subprocess.run(
        [os.environ["OFA_EXPLORE_PYTHON"], "-c", code], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def add_layer(qgis_iface, path, name="layer"):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    return layer


def accept_dialog(monkeypatch, check=None, **fields):
    """The dialog is modal: accept it as a user would, after setting ``fields`` and running
    ``check(dialog)``; refuses (like a disabled OK button) when the dialog reports a problem."""
    from ofa_explore_qgis.dialog import OfaDialog

    def exec_(self):
        for name, value in fields.items():
            getattr(self, name).setFilePath(str(value))
        if check:
            check(self)
        assert self.problem() is None, self.problem()
        return 1

    monkeypatch.setattr(OfaDialog, "exec_", exec_)


def wait(plugin, qgis_app, timeout=180):
    t0 = time.time()
    while plugin.tasks or QgsApplication.taskManager().countActiveTasks():
        qgis_app.processEvents()
        time.sleep(0.02)
        assert time.time() - t0 < timeout, "task did not finish"
    qgis_app.processEvents()


def messages(qgis_iface, level):
    """What the message bar says at ``level``: plain messages and those with buttons."""
    from qgis.core import Qgis

    bar = qgis_iface.messageBar()
    level = getattr(Qgis, level)
    with_buttons = [f"OFA Explore:{i.text()}" for i in bar.items() if i.level() == level]
    return " | ".join(bar.get_messages(level) + with_buttons)


def details(plugin, qgis_iface, needle):
    """The whole text behind the Details button of the bar message that says ``needle``."""
    from qgis.PyQt.QtWidgets import QPushButton

    item = next(i for i in qgis_iface.messageBar().items() if needle in i.text())
    next(b for b in item.findChildren(QPushButton) if b.text() == "Details").click()
    return plugin.details.text()


def layers_named(prefix):
    return sorted(
        lyr.name()
        for lyr in QgsProject.instance().mapLayers().values()
        if lyr.name().startswith(prefix)
    )


def big_s2_scene(path: Path, tiles: int = 16) -> Path:
    """A real Sentinel-2 L1C mosaic: EuroSAT chips laid side by side (64*tiles px square)."""
    chips = sorted((SHARED / "eurosat").glob("*/*.tif"))
    rows = [
        np.concatenate(
            [
                gdal.Open(str(chips[(r * tiles + c) * 7 % len(chips)])).ReadAsArray()
                for c in range(tiles)
            ],
            axis=2,
        )
        for r in range(tiles)
    ]
    data = np.concatenate(rows, axis=1)
    ref = gdal.Open(str(chips[0]))
    dst = gdal.GetDriverByName("GTiff").Create(
        str(path), data.shape[2], data.shape[1], data.shape[0], gdal.GDT_UInt16
    )
    dst.SetGeoTransform(ref.GetGeoTransform())
    dst.SetProjection(ref.GetProjection())
    for i in range(data.shape[0]):
        dst.GetRasterBand(i + 1).WriteArray(data[i])
    dst = None
    return path


# ---------------------------------------------------------------- loading
def test_plugin_loads_with_distinct_actions_and_processing_provider(plugin):
    assert [a.text() for a in plugin.actions] == [
        "Classify layer",
        "Embed layer",
        "Reconstruct layer",
        "Change between two layers…",
        "Set up engine…",
    ]
    images = {
        a.icon().pixmap(24, 24).toImage().bits().asstring(24 * 24 * 4) for a in plugin.actions
    }
    assert len(images) == 5  # five different icons
    registry = QgsApplication.processingRegistry()
    for name in ("classify_raster", "embed_raster", "reconstruct_raster", "change"):
        algorithm = registry.algorithmById(f"ofa_explore:{name}")
        assert algorithm is not None
    sensors = registry.algorithmById("ofa_explore:classify_raster").parameterDefinition("SENSOR")
    assert sensors.options()[0] == "auto" and {"s2_l1c", "landsat_etm"} <= set(sensors.options())
    meta = (ROOT / "qgis_plugin" / "ofa_explore_qgis" / "metadata.txt").read_text()
    assert "qgisMinimumVersion=3.22" in meta and "hasProcessingProvider=yes" in meta


def test_plugin_installs_from_the_zip(qgis_iface, tmp_path, monkeypatch):
    import importlib.util
    import zipfile

    import qgis.utils

    spec = importlib.util.spec_from_file_location(
        "build", ROOT / "scripts" / "build_qgis_plugin.py"
    )
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    with zipfile.ZipFile(build.build(tmp_path / "plugin.zip")) as zf:
        zf.extractall(tmp_path / "plugins")
    for name in [m for m in sys.modules if m.startswith("ofa_explore_qgis")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "plugins")] + sys.path[1:])
    monkeypatch.setattr(qgis.utils, "iface", qgis_iface)
    monkeypatch.setattr(qgis.utils, "plugin_paths", [str(tmp_path / "plugins")])
    assert qgis.utils.loadPlugin("ofa_explore_qgis")
    assert qgis.utils.startPlugin("ofa_explore_qgis")
    try:
        plugin = qgis.utils.plugins["ofa_explore_qgis"]
        assert len(plugin.actions) == 5 and not plugin.actions[0].icon().isNull()
        assert Path(sys.modules["ofa_explore_qgis"].__file__).parent.parent == tmp_path / "plugins"
    finally:
        qgis.utils.unloadPlugin("ofa_explore_qgis")


# ---------------------------------------------------------------- the dialog
def test_dialog_reads_bands_and_model_without_the_engine(plugin, qgis_iface, data):
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    layer = add_layer(qgis_iface, data / S2_CHIP.name, "Sentinel-2 L1C scene")
    dialog = OfaDialog("classify", settings.current_engine(), layer)
    assert "torch" not in sys.modules  # read from files: no model load (the desktop test times it)
    assert dialog.band_list.count() == 13
    assert dialog.sensor.itemText(0) == "auto (looks like Sentinel-2 L1C)"
    labels = [dialog.sensor.itemText(i) for i in range(dialog.sensor.count())]
    assert any("[s2_l1c]" in t for t in labels)
    assert any("[landsat_etm, by wavelength]" in t for t in labels)  # the wavelength path
    assert dialog.head.currentData() == "eurosat_landcover"
    assert dialog.problem() is None

    for i in range(5, 13):  # keep five bands: Sentinel-2 L1C's first five, by their places
        dialog.band_list.item(i).setCheckState(Qt.Unchecked)
    looks = "Sentinel-2 L1C bands B01, B02, B03, B04, B05"
    assert dialog.sensor.itemText(0) == f"auto (looks like {looks})"
    assert f"trained on Sentinel-2 L1C; this layer looks like {looks}" in dialog.status.text()
    assert not dialog.buttons.button(dialog.buttons.Ok).isEnabled()  # the head needs all 13

    naip = OfaDialog("classify", settings.current_engine(), add_layer(qgis_iface, NAIP, "naip"))
    for i in range(1, 4):  # one band of four: no sensor has one, and four is several sensors'
        naip.band_list.item(i).setCheckState(Qt.Unchecked)
    assert "No sensor the model knows has 1 band," in naip.status.text()
    assert not naip.buttons.button(naip.buttons.Ok).isEnabled()
    s2 = next(i for i in range(naip.sensor.count()) if "[s2_l1c]" in naip.sensor.itemText(i))
    naip.sensor.setCurrentIndex(s2)
    assert "has 13 bands but 1 band is selected" in naip.status.text()
    dialog.checkpoint.setFilePath(str(data / "missing.safetensors"))
    assert "missing.safetensors does not exist" in dialog.status.text()
    dialog.checkpoint.setFilePath(str(data / S2_CHIP.name))  # not a model file
    assert "is not an OFA Explore model" in dialog.status.text()

    dialog.checkpoint.setFilePath("")
    for i in range(13):
        dialog.band_list.item(i).setCheckState(Qt.Checked)
    dialog.resize(620, dialog.sizeHint().height())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(ARTIFACTS / "dialog.png"))


# ---------------------------------------------------------------- running
def test_classify_adds_a_styled_class_map_in_the_output_folder(
    plugin, qgis_iface, qgis_app, monkeypatch, data, tmp_path
):
    source = add_layer(qgis_iface, data / S2_CHIP.name, "S2 scene")
    before = sorted(p.name for p in data.iterdir())
    accept_dialog(monkeypatch)
    for _ in range(2):
        plugin.classify_action.trigger()
        assert plugin.tasks, messages(qgis_iface, "Critical")
        wait(plugin, qgis_app)
    assert "S2 scene classes" in messages(qgis_iface, "Success"), messages(qgis_iface, "Critical")
    assert layers_named("S2 scene classes") == ["S2 scene classes", "S2 scene classes (2)"]
    layer = next(
        lyr
        for lyr in QgsProject.instance().mapLayers().values()
        if lyr.name() == "S2 scene classes"
    )
    assert layer.crs() == source.crs()
    assert layer.extent().toString(3) == source.extent().toString(3)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [c.label for c in renderer.classes()][:2] == ["AnnualCrop", "Forest"]
    assert Path(layer.source()) == tmp_path / "results" / "S2_scene_classes.tif"
    assert (tmp_path / "results" / "S2_scene_classes_2.tif").exists()
    assert gdal.Open(layer.source()).ReadAsArray().max() < 10
    assert sorted(p.name for p in data.iterdir()) == before  # nothing beside the input


def test_the_engine_stays_warm_between_runs_and_ends_with_the_plugin(
    plugin, qgis_iface, qgis_app, monkeypatch, data
):
    """The first run starts the engine's worker (and says so), the next runs reuse it, unloading
    the plugin (QGIS closing) ends it and its process group."""
    from ofa_explore_qgis import workers
    from ofa_explore_qgis.task import EngineTask

    descriptions, pids = [], []
    show_status = EngineTask._show_status

    def recorded(task, text):  # the task's thread may say it before a test could connect
        show_status(task, text)
        descriptions.append(task.description())

    monkeypatch.setattr(EngineTask, "_show_status", recorded)
    workers.shutdown()
    add_layer(qgis_iface, data / S2_CHIP.name, "S2 scene")
    accept_dialog(monkeypatch)
    for _ in range(2):
        plugin.classify_action.trigger()
        wait(plugin, qgis_app)
        pids.append(workers.current().proc.pid)
    assert "Starting the engine" in messages(qgis_iface, "Info")
    assert layers_named("S2 scene classes") == ["S2 scene classes", "S2 scene classes (2)"]
    assert pids[0] == pids[1] and workers.current().alive()
    assert any("starting the engine" in d for d in descriptions), descriptions
    proc = workers.current().proc
    plugin.unload()
    assert proc.poll() is not None and workers.current() is None
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)  # nothing of its process group is left


def test_embed_shows_the_pca_view_and_the_cube_on_request(
    plugin, qgis_iface, qgis_app, monkeypatch, data, tmp_path
):
    add_layer(qgis_iface, data / NAIP.name, "naip")
    (tmp_path / "results" / "naip_embedding.tif").write_bytes(b"the user's own file")
    accept_dialog(monkeypatch, check=lambda d: d.add_cube.setChecked(True))
    plugin.open_dialog("embed")  # as the action does; a failed check reads better here
    wait(plugin, qgis_app)
    assert "naip embedding" in messages(qgis_iface, "Success"), messages(qgis_iface, "Critical")
    layers = {lyr.name(): lyr for lyr in QgsProject.instance().mapLayers().values()}
    pca = layers["naip embedding (PCA colours)"]
    assert isinstance(pca.renderer(), QgsMultiBandColorRenderer) and pca.bandCount() == 3
    assert Path(pca.source()).name == "naip_embedding_2_pca.tif"
    assert layers["naip embedding cube"].bandCount() == 192
    assert (tmp_path / "results" / "naip_embedding.tif").read_bytes() == b"the user's own file"


def test_reconstruct_with_picked_bands_draws_like_the_input(
    plugin, qgis_iface, qgis_app, monkeypatch, data
):
    source = add_layer(qgis_iface, data / NAIP.name, "naip")
    source.setRenderer(QgsMultiBandColorRenderer(source.dataProvider(), 1, 2, 3))

    def rgb_only(dialog):  # NAIP is RGBN: keep red, green, blue and run them by wavelength
        dialog.band_list.item(3).setCheckState(Qt.Unchecked)
        names = [dialog.sensor.itemData(i).modality for i in range(dialog.sensor.count())]
        dialog.sensor.setCurrentIndex(names.index("rgb"))

    accept_dialog(monkeypatch, check=rgb_only)
    plugin.open_dialog("reconstruct")
    wait(plugin, qgis_app)
    said = messages(qgis_iface, "Success") + messages(qgis_iface, "Warning")  # a doubt: warned
    assert "naip reconstruction: Any 8-bit RGB image, " in said, messages(qgis_iface, "Critical")
    layer = next(
        lyr
        for lyr in QgsProject.instance().mapLayers().values()
        if lyr.name() == "naip reconstruction"
    )
    assert layer.bandCount() == 3
    assert isinstance(layer.renderer(), QgsMultiBandColorRenderer)
    assert (layer.renderer().redBand(), layer.renderer().blueBand()) == (1, 3)


def test_classify_a_mosaic_gives_a_multi_class_map(plugin, qgis_iface, qgis_app, tmp_path):
    from ofa_explore_qgis import settings

    scene = big_s2_scene(tmp_path / "mosaic.tif", tiles=8)  # 512 px of real EuroSAT chips
    source = add_layer(qgis_iface, scene, "mosaic")
    job = engine_job("classify", scene, tmp_path / "results" / "mosaic_classes.tif")
    plugin.start(settings.current_engine(), job, source)
    wait(plugin, qgis_app)
    layer = QgsProject.instance().mapLayersByName("mosaic classes")[0]
    assert len(np.unique(gdal.Open(layer.source()).ReadAsArray())) >= 4
    said = messages(qgis_iface, "Success")  # the three largest classes, largest first, and …
    shares = [int(share) for share in re.findall(r" (\d+)%", said)]
    assert len(shares) == 3 and shares == sorted(shares, reverse=True) and ", …; " in said, said
    table = details(plugin, qgis_iface, "mosaic classes").split("largest first:\n")[1]
    assert len(table.splitlines()) >= 4 and table.count(" ha ") == len(table.splitlines())
    _screenshot_side_by_side([source, layer], ARTIFACTS / "classified_layer.png")


def engine_job(task, source, output, **choices):
    from ofa_explore_qgis import engine

    return engine.Job(task, str(source), str(output), **choices)


def test_cancel_ends_the_worker_and_leaves_no_layer_or_file(plugin, qgis_iface, qgis_app, tmp_path):
    from ofa_explore_qgis import engine, settings

    scene = big_s2_scene(tmp_path / "big.tif", tiles=24)  # 1536 x 1536 px: many batches
    out_dir = tmp_path / "results"
    before = set(QgsProject.instance().mapLayers())
    job = engine.Job("classify", str(scene), str(out_dir / "classes.tif"))
    task = plugin.start(settings.current_engine(), job)
    said = []  # what QGIS's own "Task failed: ..." notice reads when the task ends

    def ended(task_id, status):
        if status == QgsTask.Terminated:
            said.append(QgsApplication.taskManager().task(task_id).description())

    QgsApplication.taskManager().statusChanged.connect(ended)
    t0 = time.time()
    while task.progress() <= 0 and time.time() - t0 < 90:
        qgis_app.processEvents()
        time.sleep(0.01)
    assert task.progress() > 0
    task.cancel()
    wait(plugin, qgis_app)
    assert "Classifying big was cancelled; nothing was written." in messages(qgis_iface, "Info")
    QgsApplication.taskManager().statusChanged.disconnect(ended)
    assert said == ["OFA Explore: Classifying big: cancelled, nothing was written"], said
    assert set(QgsProject.instance().mapLayers()) == before
    assert list(out_dir.iterdir()) == []  # no output, no hidden temporary file


def test_errors_speak_gis_and_name_the_fix(plugin, qgis_iface, qgis_app, monkeypatch, data):
    vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayer(vector)
    qgis_iface.setActiveLayer(vector)
    plugin.classify_action.trigger()
    assert "Classify layer works on a raster layer, and points is not" in messages(
        qgis_iface, "Warning"
    )
    assert not plugin.tasks

    plugin.embed_action.trigger()  # the verb the user pressed
    assert "Embed layer works on a raster layer" in messages(qgis_iface, "Warning")

    # the engine's own refusal (the dialog does not offer this head for NAIP), in QGIS's words
    from ofa_explore_qgis import settings

    naip = add_layer(qgis_iface, data / NAIP.name, "naip")
    job = engine_job("classify", naip.source(), data.parent / "results" / "naip_classes.tif")
    plugin.start(settings.current_engine(), job, naip)
    wait(plugin, qgis_app)
    text = details(plugin, qgis_iface, "No classification head of this model takes 'rgbn'")
    assert "train a head on 'rgbn' imagery (`ofa train-head` in the engine's environment)" in text
    assert "s2_l1c" in text and "Traceback" not in text and " --" not in text, text
    assert not layers_named("naip classes")


def test_missing_engine_offers_the_setup(plugin, qgis_iface, monkeypatch, tmp_path):
    from ofa_explore_qgis import settings
    from qgis.PyQt.QtWidgets import QPushButton

    monkeypatch.delenv("OFA_EXPLORE_PYTHON")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `ofa` on PATH either
    settings.set_value("python", str(tmp_path / "nowhere" / "python"))
    bar = qgis_iface.messageBar()
    plugin.unload()
    plugin.initGui()  # QGIS starting: the check says it once, with the button
    plugin.classify_action.trigger()  # and again on use
    items = bar.items()
    assert len(items) == 2
    for item in items:  # a long message: its start, and all of it under Details
        assert "could not be started" in item.text()
        assert [b.text() for b in item.findChildren(QPushButton)] == ["Details", "Set up engine…"]
    assert "Set up the engine with Raster > OFA Explore > Set up engine…" in details(
        plugin, qgis_iface, "could not be started"
    )
    assert not plugin.tasks


def test_setup_uses_an_existing_environment(plugin, qgis_iface, monkeypatch, tmp_path):
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.setup_dialog import SetupDialog

    python = os.environ["OFA_EXPLORE_PYTHON"]

    def exec_(self):
        self.existing.setChecked(True)
        self.python.setFilePath(python)
        return 1

    monkeypatch.setattr(SetupDialog, "exec_", exec_)
    monkeypatch.delenv("OFA_EXPLORE_PYTHON")
    plugin.setup_action.trigger()
    assert "The engine is ready" in messages(qgis_iface, "Success")
    assert settings.value("python")
    assert settings.current_engine().origin == "settings"


def test_setup_creates_an_engine_with_pip_progress(
    plugin, qgis_iface, qgis_app, monkeypatch, data, tmp_path
):
    """The whole first-run path for real: venv, PyTorch (PyPI's default build) and ofa-explore
    from this repository, about 90 s and 6 GB; then the new engine classifies a chip."""
    import shutil

    from ofa_explore_qgis import engine, install, settings
    from ofa_explore_qgis.setup_dialog import SetupDialog

    folder = tmp_path / "engine"

    def exec_(self):
        self.folder.setFilePath(str(folder))
        self.package.setText(str(ROOT))
        self.torch.setCurrentIndex(self.torch.findData("cuda"))
        return 1

    monkeypatch.setattr(SetupDialog, "exec_", exec_)
    monkeypatch.delenv("OFA_EXPLORE_PYTHON")
    try:
        task = plugin.open_setup()
        progress = []
        task.progressChanged.connect(progress.append)
        wait(plugin, qgis_app, timeout=1200)
        assert "The engine is ready" in messages(qgis_iface, "Success"), messages(
            qgis_iface, "Critical"
        )
        assert settings.value("python") == str(install.venv_python(folder))
        assert progress == sorted(progress) and progress[-1] == 100 and len(progress) >= 4
        info = engine.run(
            settings.current_engine(),
            engine.Job("classify", str(data / S2_CHIP.name), str(tmp_path / "results" / "c.tif")),
        )
        assert info["classes"][0] == "AnnualCrop"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_published_weights_by_name_in_the_dialog(
    plugin, qgis_iface, qgis_app, monkeypatch, data, tmp_path
):
    """Model: "DOFA ViT-B/16 [dofa-base-v1]". The engine fetches it once into its cache (here a
    file of the published layout that the engine's Python builds there, as a download would) and
    converts it; the dialog offers every sensor by wavelength and no heads."""
    import subprocess

    cache = tmp_path / "cache"
    monkeypatch.setenv("OFA_EXPLORE_CACHE", str(cache))  # the worker inherits it
    subprocess.run(
        [
            os.environ["OFA_EXPLORE_PYTHON"],
            "-c",
            "import sys, torch; sys.path.insert(0, 'tests'); import published_layouts as l;"
            "from pathlib import Path; from ofa_explore.weights import WEIGHTS;"
            f"c = Path({str(cache)!r}); c.mkdir();"
            "torch.save(l.dofa_v1(D=768, depth=1, extras=('fc_norm',)),"
            " c / WEIGHTS['dofa-base-v1'].filename)",
        ],
        cwd=ROOT,
        check=True,
    )
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    layer = add_layer(qgis_iface, data / NAIP.name, "naip")
    dialog = OfaDialog("classify", settings.current_engine(), layer)
    names = [dialog.model_choice.itemData(i) for i in range(dialog.model_choice.count())]
    assert names[0] == "" and "dofa-base-v1" in names and "ofa-net-base" not in names
    dialog.model_choice.setCurrentIndex(names.index("dofa-base-v1"))
    assert "no classification head" in dialog.problem()
    labels = [dialog.sensor.itemText(i) for i in range(dialog.sensor.count())]
    assert all("by wavelength" in t for t in labels[1:]) and len(labels) > 5

    def choose_dofa(d):
        d.model_choice.setCurrentIndex(names.index("dofa-base-v1"))

    accept_dialog(monkeypatch, check=choose_dofa)
    plugin.open_dialog("embed")
    wait(plugin, qgis_app)
    assert "naip embedding" in messages(qgis_iface, "Success"), messages(qgis_iface, "Critical")
    assert (cache / "dofa-base-v1.safetensors").is_file()  # converted once, kept


# ---------------------------------------------------------------- no dead ends (issue 24)
def test_a_saved_output_folder_that_stopped_working_is_replaced(
    plugin, qgis_iface, monkeypatch, data, tmp_path
):
    """Every click opens a working dialog: the saved folder that cannot be used any more is
    reported, forgotten and replaced by the default; a folder chosen in the dialog is checked."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    blocked = tmp_path / "a_file.tif"
    blocked.write_bytes(b"not a folder")
    settings.set_value("output_folder", str(blocked / "maps"))  # can never be created
    add_layer(qgis_iface, data / S2_CHIP.name, "S2 scene")
    opened = []
    monkeypatch.setattr(OfaDialog, "exec_", lambda self: opened.append(self) or 0)
    for action in (plugin.embed_action, plugin.classify_action, plugin.reconstruct_action):
        action.trigger()
    assert len(opened) == 3 and not messages(qgis_iface, "Critical")
    warning = messages(qgis_iface, "Warning")
    assert warning.count("cannot be created") == 1  # said once: the setting is gone
    text = details(plugin, qgis_iface, "cannot be created")
    assert f"The output folder {blocked / 'maps'} cannot be created" in text
    assert "The saved Output folder was reset to the default" in text
    assert settings.value("output_folder") == ""
    dialog = opened[-1]
    assert Path(dialog.folder.filePath()).name == "ofa_explore_outputs"
    assert dialog.problem() is None
    dialog.folder.setFilePath(str(blocked))
    assert dialog.status.text() == (
        f"The output folder {blocked} does not exist: choose another Output folder."
    )
    assert not dialog.buttons.button(dialog.buttons.Ok).isEnabled()


def test_a_dialog_that_cannot_open_says_why(plugin, qgis_iface, monkeypatch, tmp_path):
    """An engine whose install lost its data files: a message and the log, no Python error."""
    import dataclasses

    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    monkeypatch.setattr(OfaDialog, "exec_", lambda self: 0)  # were it to open: no hang
    runner = settings.current_engine()
    key = next(k for k, found in settings._found.items() if found is runner)
    monkeypatch.setitem(
        settings._found, key, dataclasses.replace(runner, package=tmp_path / "ofa_explore")
    )
    add_layer(qgis_iface, NAIP, "naip")
    assert plugin.open_dialog("classify") is None
    text = messages(qgis_iface, "Critical")
    assert "The Classify layer dialog could not open" in text
    assert "Raster > OFA Explore > Set up engine…" in text


def test_classify_offers_only_heads_that_fit_the_layer(plugin, qgis_iface, data):
    """The EuroSAT head needs Sentinel-2 L1C: for NAIP, Landsat TM, EnMAP and a Sentinel-2
    layer with a band left out it is greyed with the reason and OK is disabled."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    def head_state(dialog):
        item = dialog.head.model().item(0)
        return item.isEnabled(), dialog.head.itemText(0), dialog.status.text()

    runner = settings.current_engine()
    seen = {}
    for path, name in ((NAIP, "naip"), (LANDSAT_TM, "landsat"), (ENMAP, "enmap")):
        dialog = OfaDialog("classify", runner, add_layer(qgis_iface, path, name))
        seen[name] = head_state(dialog)
        assert not dialog.buttons.button(dialog.buttons.Ok).isEnabled()
    for enabled, text, status in seen.values():
        assert not enabled and "trained on Sentinel-2 L1C" in text
        assert status.startswith("No classification head of this model fits this layer")
        assert "train a head for this sensor with `ofa train-head`" in status
    assert "this layer looks like NAIP-style aerial R, G, B, NIR" in seen["naip"][1]
    assert "this layer looks like Landsat-4/5 TM" in seen["landsat"][1]
    assert "not recognised as that sensor" in seen["enmap"][1]

    dialog = OfaDialog("classify", runner, add_layer(qgis_iface, data / S2_CHIP.name, "s2"))
    assert head_state(dialog)[0] and dialog.problem() is None
    dialog.band_list.item(9).setCheckState(Qt.Unchecked)  # B10 out: 12 of L1C's 13 bands
    enabled, text, status = head_state(dialog)
    looks = "this layer looks like Sentinel-2 L1C bands B01, B02, B03, B04, B05, B06, B07, B08, "
    assert not enabled and looks + "B09, B11, B12, B8A" in text, text
    dialog.band_list.item(9).setCheckState(Qt.Checked)
    assert head_state(dialog)[0] and dialog.buttons.button(dialog.buttons.Ok).isEnabled()


def test_a_layer_of_some_sentinel2_bands_runs_as_those_bands(
    plugin, qgis_iface, qgis_app, monkeypatch, tmp_path
):
    """Sentinel-2's four 10 m bands exported alone: the dialog says which bands of which sensor
    it reads, the EuroSAT head (all 13 bands) is greyed with the reason, and Embed runs."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    path = tmp_path / "data" / "s2_10m.tif"
    path.parent.mkdir()
    gdal.Translate(str(path), str(S2_CHIP), bandList=[2, 3, 4, 8])  # EuroSAT's B02-B04, B08
    ds = gdal.Open(str(path), gdal.GA_Update)
    for i, name in enumerate(["B2", "B3", "B4", "B8"], start=1):  # as Earth Engine names them
        ds.GetRasterBand(i).SetDescription(name)
    ds = None
    layer = add_layer(qgis_iface, path, "s2 10m")
    dialog = OfaDialog("classify", settings.current_engine(), layer)
    looks = "Sentinel-2 L1C bands B02, B03, B04, B08"
    assert dialog.sensor.itemText(0) == f"auto (looks like {looks})"
    assert not dialog.head.model().item(0).isEnabled()
    assert f"this layer looks like {looks}" in dialog.head.itemText(0)

    accept_dialog(monkeypatch)
    plugin.open_dialog("embed")
    wait(plugin, qgis_app)
    assert "s2 10m embedding" in messages(qgis_iface, "Success"), messages(qgis_iface, "Critical")
    names = [lyr.name() for lyr in QgsProject.instance().mapLayers().values()]
    assert "s2 10m embedding (PCA colours)" in names


def rgba_orthophoto(path: Path, alpha: bool = True) -> Path:
    """A NEON RGB tile as drone software writes an orthophoto: R, G, B and an alpha band, 0
    over a black rim outside the flight (``alpha``), else R, G, B alone."""
    neon = gdal.Open(str(SHARED / "neon_rgb" / "OSBS_029.tif"))
    rgb = neon.ReadAsArray()
    rgb[:, :100] = 0  # the top 100 rows, outside the flight: transparent, black as GDAL fills it
    path.parent.mkdir(exist_ok=True)
    options = ["ALPHA=YES"] if alpha else []
    count = 4 if alpha else 3
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 400, 400, count, gdal.GDT_Byte, options)
    ds.SetGeoTransform(neon.GetGeoTransform())
    ds.SetProjection(neon.GetProjection())
    for i in range(3):
        ds.GetRasterBand(i + 1).WriteArray(rgb[i])
    if alpha:
        ds.GetRasterBand(4).WriteArray(np.where(rgb[0] == 0, 0, 255).astype(np.uint8))
    ds = None
    return path


def test_an_rgba_layers_alpha_band_is_not_imagery(
    plugin, qgis_iface, qgis_app, monkeypatch, tmp_path
):
    """An RGBA orthophoto (as drone software writes them): its alpha band is listed as such and
    left unticked, so the layer is read as RGB (it was NAIP's R, G, B and NIR, the alpha band
    as the near infrared), and its transparent rim is no data in the embedding."""
    from ofa_explore_qgis import layers, settings
    from ofa_explore_qgis.dialog import OfaDialog

    path = rgba_orthophoto(tmp_path / "data" / "ortho.tif")
    layer = add_layer(qgis_iface, path, "ortho")
    dialog = OfaDialog("embed", settings.current_engine(), layer)
    item = dialog.band_list.item(3)
    assert item.text() == "4: Band 4 - the alpha band (transparency), not imagery"
    assert item.checkState() == Qt.Unchecked
    assert dialog.sensor.itemText(0) == "auto (looks like Any 8-bit RGB image)"
    # NAIP's R, G, B, NIR written with GDAL's defaults: GDAL calls the NIR band alpha too, but
    # its values are no mask's: it stays ticked, a band
    naip = gdal.Open(str(NAIP))
    copy = gdal.GetDriverByName("GTiff").Create(
        str(tmp_path / "data" / "naip.tif"), naip.RasterXSize, naip.RasterYSize, 4, gdal.GDT_Byte
    )
    for i in range(1, 5):
        copy.GetRasterBand(i).WriteArray(naip.GetRasterBand(i).ReadAsArray())
    assert copy.GetRasterBand(4).GetColorInterpretation() == gdal.GCI_AlphaBand
    copy = None
    assert not any(b.alpha for b in layers.layer_bands(str(tmp_path / "data" / "naip.tif")))

    accept_dialog(monkeypatch)
    plugin.open_dialog("embed")
    wait(plugin, qgis_app)
    assert "ortho embedding" in messages(qgis_iface, "Success"), messages(qgis_iface, "Critical")
    shown = details(plugin, qgis_iface, "ortho embedding")
    assert "Read as" in shown and "(rgb)" in shown, shown
    assert "transparent (alpha 0) and 0 in every band" in shown, shown


def test_layers_inside_a_geopackage_a_zip_or_a_product_run(
    plugin, qgis_iface, qgis_app, monkeypatch, tmp_path
):
    """A raster stored in a GeoPackage (QGIS's source 'GPKG:/…/x.gpkg:table'), read from a
    zip ('/vsizip//…/x.zip/tile.tif') or a Sentinel-2 product's resolution as QGIS adds it
    from the product ('SENTINEL2_L1C:/…/MTD_MSIL1C.xml:10m:EPSG_32618', GDAL's driver) is a
    file on disk that GDAL reads: Embed runs on it. It said 'This layer is not a raster file
    on disk: save it as a GeoTIFF first'; a layer read over the network still does."""
    import zipfile

    from ofa_explore_qgis import settings
    from ofa_explore_qgis._shared import protocol
    from ofa_explore_qgis.dialog import OfaDialog

    folder = tmp_path / "data"
    folder.mkdir()
    neon = str(SHARED / "neon_rgb" / "OSBS_029.tif")
    gpkg = folder / "flights.gpkg"
    for table in ("t2019", "t2020"):
        options = ["RASTER_TABLE=" + table] + (["APPEND_SUBDATASET=YES"] if gpkg.exists() else [])
        gdal.Translate(str(gpkg), neon, format="GPKG", creationOptions=options)
    archive = folder / "tiles.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(neon, "tiles/OSBS_029.tif")
    safe = built("sentinel2_product", folder, SHARED / "s2_scenes" / "chesapeake")
    runner = settings.current_engine()
    for source, name in (
        (f"GPKG:{gpkg}:t2020", "flight 2020"),
        (f"/vsizip/{archive}/tiles/OSBS_029.tif", "tile"),
        (f"SENTINEL2_L1C:{safe}/MTD_MSIL1C.xml:10m:EPSG_32618", "S2 10 m"),
    ):
        layer = add_layer(qgis_iface, source, name)
        assert OfaDialog("embed", runner, layer).problem() is None, layer.source()
        accept_dialog(monkeypatch)
        plugin.open_dialog("embed")
        wait(plugin, qgis_app)
        said = messages(qgis_iface, "Success")
        assert f"{name} embedding" in said, said + messages(qgis_iface, "Critical")
    assert protocol.local_file("/vsicurl/https://example.com/tile.tif") is None  # elsewhere
    assert protocol.local_file(f"GPKG:{folder / 'gone.gpkg'}:t2020") is None


def test_an_enmap_product_as_delivered_runs(plugin, qgis_iface, qgis_app, monkeypatch, tmp_path):
    """An EnMAP L2A product's SPECTRAL_IMAGE.TIF added as it comes from DLR (its 224 bands carry
    no wavelengths: those are in the METADATA.XML beside it): Embed runs, the engine reading
    the wavelengths there (it said "no known sensor has 224 bands")."""
    (image,) = Path(built("enmap_product", ENMAP, tmp_path / "enmap")).glob("*-SPECTRAL_IMAGE.TIF")
    add_layer(qgis_iface, image, "EnMAP")
    accept_dialog(monkeypatch)
    plugin.open_dialog("embed")
    wait(plugin, qgis_app)
    said = messages(qgis_iface, "Success")
    assert "EnMAP embedding" in said, said + messages(qgis_iface, "Critical")
    shown = details(plugin, qgis_iface, "EnMAP embedding")
    assert "left out 6 bands 130-135: no data in any pixel" in shown, shown


def test_results_say_what_was_found(plugin, qgis_iface, qgis_app, monkeypatch, data, tmp_path):
    """The bar: classes with shares, the sensor, precision, tiles, time and file; Details: the
    class table with areas and the whole path. The newest layer is on top."""
    add_layer(qgis_iface, data / S2_CHIP.name, "S2 scene")
    accept_dialog(monkeypatch)
    plugin.classify_action.trigger()
    wait(plugin, qgis_app)
    text = messages(qgis_iface, "Success")
    assert re.search(
        r"S2 scene classes: \w+ \d+%; Sentinel-2 L1C, (fp32|bf16), 1 tile in [\d.]+ s",
        text,
    ), text + messages(qgis_iface, "Critical")
    shown = details(plugin, qgis_iface, "S2 scene classes")
    assert str(tmp_path / "results" / "S2_scene_classes.tif") in shown
    assert "Read as Sentinel-2 L1C (s2_l1c), " in shown and " on cpu, 1 tile in " in shown
    assert "Classes found (eurosat_landcover), largest first:" in shown and " ha " in shown
    top = QgsProject.instance().layerTreeRoot().children()[0]
    assert top.layer().name() == "S2 scene classes"  # above its input: the newest is seen


def test_a_result_to_doubt_says_why(plugin, qgis_iface, qgis_app, monkeypatch):
    """8-bit Landsat TM read as Landsat 7 surface reflectance (by the user's choice): the layer
    comes, and the bar warns that the values do not fit that sensor's units."""

    def reflectance(dialog):
        names = [dialog.sensor.itemData(i).modality for i in range(dialog.sensor.count())]
        dialog.sensor.setCurrentIndex(names.index("landsat_etm"))

    add_layer(qgis_iface, LANDSAT_TM, "nanjing")
    accept_dialog(monkeypatch, check=reflectance)
    plugin.open_dialog("embed")
    wait(plugin, qgis_app)
    said = messages(qgis_iface, "Warning")
    assert "nanjing embedding (PCA colours): Landsat 7 ETM+ surface reflectance, " in said, said
    assert said.endswith("; 1 warning under Details"), said
    text = details(plugin, qgis_iface, "nanjing embedding")
    assert "Warning: " in text and "smaller than the statistics of 'landsat_etm'" in text, text


def test_reconstruct_draws_the_inputs_colour_bands_though_bad_bands_are_dropped(
    plugin, qgis_iface, qgis_app, monkeypatch, tmp_path
):
    """EnMAP: bands 130-135 are flagged bad (unticked in the list; the engine leaves them out
    even when ticked): the reconstruction shows the input's bands 150, 60, 20 at 144, 60, 20."""
    source = add_layer(qgis_iface, ENMAP, "enmap")
    source.setRenderer(QgsMultiBandColorRenderer(source.dataProvider(), 150, 60, 20))
    unticked = []

    def tick_all(dialog):
        for i in range(dialog.band_list.count()):
            item = dialog.band_list.item(i)
            if item.checkState() == Qt.Unchecked:
                unticked.append(item.data(Qt.UserRole))
                item.setCheckState(Qt.Checked)

    accept_dialog(monkeypatch, check=tick_all)
    plugin.open_dialog("reconstruct")
    wait(plugin, qgis_app)
    assert unticked == [130, 131, 132, 133, 134, 135]
    layer = QgsProject.instance().mapLayersByName("enmap reconstruction")
    assert layer, messages(qgis_iface, "Critical")
    assert layer[0].bandCount() == 218
    renderer = layer[0].renderer()
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (144, 60, 20)


def test_bands_can_be_reordered(plugin, qgis_iface, data):
    """The band list is the order the model reads: moving a band changes what is sent."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog
    from qgis.PyQt.QtCore import QModelIndex

    layer = add_layer(qgis_iface, data / NAIP.name, "naip")
    dialog = OfaDialog("embed", settings.current_engine(), layer)
    assert dialog.job().bands == []  # all, in file order
    moved = dialog.band_list.model().moveRow(QModelIndex(), 2, QModelIndex(), 0)  # blue first
    assert moved
    assert [b.number for b in dialog.selected_bands()] == [3, 1, 2, 4]
    assert dialog.job().bands == [3, 1, 2, 4]


# ---------------------------------------------------------------- Processing
def test_processing_algorithms_write_the_right_outputs(plugin, data, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    out = tmp_path / "classes.tif"
    result = processing.run(
        "ofa_explore:classify_raster", {"INPUT": str(data / S2_CHIP.name), "OUTPUT": str(out)}
    )
    assert result["OUTPUT"] == str(out)
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 1 and ds.ReadAsArray().max() < 10
    assert ds.GetMetadata()["class_names"].startswith("AnnualCrop,Forest")

    view = tmp_path / "view.tif"
    sensors = plugin.provider.algorithms()[0].sensors
    result = processing.run(
        "ofa_explore:embed_raster",
        {"INPUT": str(data / S2_CHIP.name), "OUTPUT": str(view), "SENSOR": sensors.index("s2_l1c")},
    )
    assert gdal.Open(result["OUTPUT"]).RasterCount == 3  # the colour view, not the cube

    with pytest.raises(QgsProcessingException, match="Band 14 does not exist") as err:
        processing.run(
            "ofa_explore:embed_raster",
            {
                "INPUT": str(data / S2_CHIP.name),
                "BANDS": [1, 14],
                "OUTPUT": str(tmp_path / "x.tif"),
            },
        )
    assert "check Bands" in str(err.value) and "--" not in str(err.value)  # QGIS's words


def _screenshot_side_by_side(layers, path: Path, size: int = 384) -> None:
    """The input (true colour: B04, B03, B02) and the styled result, rendered by QGIS; a list
    in ``layers`` is drawn as one map (top layer first)."""
    from qgis.core import (
        QgsContrastEnhancement,
        QgsMapRendererParallelJob,
        QgsMapSettings,
        QgsRasterMinMaxOrigin,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    source = layers[0]
    source.setRenderer(QgsMultiBandColorRenderer(source.dataProvider(), 4, 3, 2))
    source.setContrastEnhancement(
        QgsContrastEnhancement.StretchToMinimumMaximum, QgsRasterMinMaxOrigin.CumulativeCut
    )
    canvas = QImage(size * len(layers) + 8 * (len(layers) - 1), size, QImage.Format_ARGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    for i, layer in enumerate(layers):
        drawn = layer if isinstance(layer, list) else [layer]
        settings = QgsMapSettings()
        settings.setLayers(drawn)
        settings.setDestinationCrs(drawn[-1].crs())
        settings.setExtent(drawn[-1].extent())
        settings.setOutputSize(QSize(size, size))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        painter.drawImage(i * (size + 8), 0, job.renderedImage())
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    assert canvas.save(str(path))


# ---------------------------------------------------------------- change between two layers
OSCD = SHARED / "change" / "oscd"


def oscd_crop(city: str, date: int, path: Path, size: int = 192, x: int = 100, y: int = 80):
    """A corner of an OSCD city's date (1 or 2: Sentinel-2 L1C, 13 bands) as its own GeoTIFF;
    the change maps (CC BY-NC-SA) are never copied."""
    source = sorted(p for p in (OSCD / city).glob(f"{city}_2*.tif"))[date - 1]
    gdal.Translate(str(path), str(source), srcWin=[x, y, size, size])
    return path


@pytest.fixture()
def pair(tmp_path):
    if not OSCD.is_dir():
        pytest.skip(f"no OSCD pairs at {OSCD}")
    folder = tmp_path / "dates"
    folder.mkdir()
    return oscd_crop("bercy", 1, folder / "b2016.tif"), oscd_crop("bercy", 2, folder / "b2017.tif")


def change_dialog(monkeypatch, **choices):
    """Accepts the change dialog with ``choices`` (threshold, polygons), keeping it."""
    seen = []

    def choose(dialog):
        if "threshold" in choices:
            dialog.threshold.setValue(choices["threshold"])
        dialog.polygons.setChecked(choices.get("polygons", False))
        seen.append(dialog)

    accept_dialog(monkeypatch, check=choose)
    return seen


def test_change_adds_the_score_transparent_below_the_threshold_and_the_outlines(
    plugin, qgis_iface, qgis_app, monkeypatch, pair, tmp_path
):
    """Before is the lower of the two layers (added first), whichever is active; the result:
    the score drawn from 3 up (transparent below), the changed areas outlined above it, the
    changed area and share in the bar, both files in the output folder."""
    from qgis.core import QgsSingleBandPseudoColorRenderer
    from qgis.PyQt.QtGui import qAlpha

    before = add_layer(qgis_iface, pair[0], "bercy 2016")
    add_layer(qgis_iface, pair[1], "bercy 2017")  # active, on top
    seen = change_dialog(monkeypatch, polygons=True)
    t0 = time.time()
    plugin.change_action.trigger()
    wait(plugin, qgis_app)
    seconds = time.time() - t0
    dialog = seen[0]
    assert (dialog.layer.currentLayer().name(), dialog.after.currentLayer().name()) == (
        "bercy 2016",
        "bercy 2017",
    )
    assert dialog.head.currentText().startswith("the zero-shot score")  # no change head shipped
    said = messages(qgis_iface, "Success")
    found = re.search(
        r"bercy 2016 to bercy 2017 change: ([\d,.]+) ha changed \(\d+\.\d%\); Sentinel-2 L1C, ",
        said,
    )  # hectares, though the OSCD grid is in degrees
    assert found, said + messages(qgis_iface, "Critical")
    top = [n.layer().name() for n in QgsProject.instance().layerTreeRoot().children()[:2]]
    assert top == ["bercy 2016 to bercy 2017 changed areas", "bercy 2016 to bercy 2017 change"]
    layer = QgsProject.instance().mapLayersByName("bercy 2016 to bercy 2017 change")[0]
    assert Path(layer.source()) == tmp_path / "results" / "bercy_2016_to_bercy_2017_change.tif"
    assert layer.crs() == before.crs() and layer.extent() == before.extent()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer) and renderer.band() == 1
    assert (renderer.classificationMin(), renderer.classificationMax()) == (3.0, 9.0)
    # transparent where the score is below 3, coloured at and above it: as QGIS draws it
    score, mask = gdal.Open(layer.source()).ReadAsArray()  # a band outliving its file crashes
    block = renderer.block(1, layer.extent(), layer.width(), layer.height())
    (low_r, low_c), (high_r, high_c) = np.argwhere(score < 1)[0], np.argwhere(score >= 3)[0]
    assert qAlpha(block.color(int(low_r), int(low_c))) == 0
    assert qAlpha(block.color(int(high_r), int(high_c))) == 255
    outlines = QgsProject.instance().mapLayersByName("bercy 2016 to bercy 2017 changed areas")[0]
    assert isinstance(outlines, QgsVectorLayer) and outlines.featureCount() > 0
    assert outlines.fields().names()[-3:] == ["hectares", "score_mean", "score_max"]
    # the areas as QGIS measures them on the WGS 84 ellipsoid, and the message bar's total
    measure = QgsDistanceArea()
    measure.setSourceCrs(outlines.crs(), QgsProject.instance().transformContext())
    measure.setEllipsoid("WGS84")
    for feature in outlines.getFeatures():
        m2 = measure.measureArea(feature.geometry())
        assert feature["hectares"] == pytest.approx(m2 / 1e4, rel=1e-4)
        assert 3 <= feature["score_mean"] <= feature["score_max"]  # its pixels' scores
    total = sum(f["hectares"] for f in outlines.getFeatures())
    assert float(found.group(1).replace(",", "")) == pytest.approx(total, abs=0.051)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == [
        "bercy_2016_to_bercy_2017_change.gpkg",
        "bercy_2016_to_bercy_2017_change.tif",
    ]
    print(f"change of {before.width()} x {before.height()} px: {seconds:.1f} s to the layers")
    _screenshot_side_by_side([before, [outlines, layer, before]], ARTIFACTS / "change_layer.png")


def test_a_change_heads_map_gets_the_ramp_of_its_score(tmp_path):
    """A trained head's score is spread less than the zero-shot score's: its map's ramp spans
    1.5 standard deviations from its threshold (the zero-shot score's 6), as the file's tags
    say which score drew it."""
    from ofa_explore_qgis._shared import protocol
    from ofa_explore_qgis.style import style_change

    spans = {}
    for tags in ({}, {protocol.CHANGE_HEAD_TAG: "urban"}):
        path = tmp_path / f"change{len(tags)}.tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(path), 8, 8, 1, gdal.GDT_Float32)
        ds.GetRasterBand(1).WriteArray(np.linspace(0, 10, 64, dtype=np.float32).reshape(8, 8))
        ds.SetMetadata(tags)  # no threshold tag: the score's default
        ds = None
        layer = QgsRasterLayer(str(path), path.stem)
        style_change(layer)
        renderer = layer.renderer()
        spans[bool(tags)] = (renderer.classificationMin(), renderer.classificationMax())
    assert spans == {False: (3.0, 9.0), True: (2.5, 4.0)}


def test_change_with_a_change_head_of_the_model(plugin, qgis_iface, pair, tmp_path):
    """A model with change heads offers them (the first chosen, passed as --head; one trained
    on another sensor greyed out), else the zero-shot score; the threshold follows the score
    chosen (3 for the zero-shot score, 2.5 for a head's) unless the user typed one."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis._shared import protocol
    from ofa_explore_qgis.dialog import OfaDialog

    runner = settings.current_engine()
    before = add_layer(qgis_iface, pair[0], "before")
    after = add_layer(qgis_iface, pair[1], "after")
    dialog = OfaDialog("change", runner, before, after=after)
    assert dialog.problem() is None and dialog.threshold.value() == 3.0
    assert [dialog.head.itemData(i) for i in range(dialog.head.count())] == [None]
    job = dialog.job()
    assert (job.threshold, job.head, job.polygons, job.bands) == ("3", None, None, [])
    assert job.arguments()[:3] == ["change", str(pair[0]), str(pair[1])]
    assert "--head" not in job.arguments() and "--no-quicklook" in job.arguments()  # QGIS draws
    assert dialog.align.isChecked() and "--no-align" not in job.arguments()
    dialog.align.setChecked(False)  # After read where its georeferencing puts it
    assert "--no-align" in dialog.job().arguments()
    dialog.align.setChecked(True)

    meta = protocol.read_checkpoint_metadata(runner.shipped_checkpoint)
    meta["heads"] = {
        **meta["heads"],
        "urban": {"kind": "change", "modality": "s2_l1c"},
        "fields": {"kind": "change", "modality": "landsat_tm_8bit"},
    }
    header = json.dumps({"__metadata__": {protocol.METADATA_KEY: json.dumps(meta)}}).encode()
    model = tmp_path / "with_change_heads.safetensors"
    model.write_bytes(len(header).to_bytes(8, "little") + header)  # the header is all it reads
    dialog.checkpoint.setFilePath(str(model))
    heads = [dialog.head.itemText(i) for i in range(dialog.head.count())]
    assert heads[0] == "urban (trained change head, Sentinel-2 L1C)", heads
    assert heads[1].startswith("fields (trained change head, Landsat-4/5 TM"), heads
    assert ": trained on Landsat-4/5 TM" in heads[1], heads
    assert not dialog.head.model().item(1).isEnabled()
    assert dialog.problem() is None
    assert heads[2].startswith("the zero-shot score"), heads  # still offered, last
    arguments = dialog.job().arguments()
    assert arguments[arguments.index("--head") + 1] == "urban"
    assert arguments[arguments.index("--checkpoint") + 1] == str(model)
    assert arguments[arguments.index("--threshold") + 1] == "2.5"
    dialog.head.setCurrentIndex(2)
    arguments = dialog.job().arguments()
    assert arguments[arguments.index("--head") + 1] == "zero-shot"
    assert arguments[arguments.index("--threshold") + 1] == "3"
    dialog.threshold.setValue(4.0)  # typed: it stays whichever score is chosen
    dialog.head.setCurrentIndex(0)
    assert dialog.job().threshold == "4"


def test_change_refuses_pairs_that_cannot_be_compared_in_gis_words(
    plugin, qgis_iface, qgis_app, monkeypatch, pair, data, tmp_path
):
    """The dialog says why, OK disabled: the same layer twice, other bands, no overlap; the
    action: fewer than two raster layers; the engine's own refusal reaches the bar in one line."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    runner = settings.current_engine()
    before = add_layer(qgis_iface, pair[0], "before")
    opened = []
    monkeypatch.setattr(OfaDialog, "exec_", lambda self: opened.append(self) or 0)
    plugin.change_action.trigger()
    assert not opened
    assert "Change between two layers compares two raster layers of the same place, and the " in (
        messages(qgis_iface, "Warning")
    )

    def problem(after):
        dialog = OfaDialog("change", runner, before, after=after)
        assert not dialog.buttons.button(dialog.buttons.Ok).isEnabled()
        return dialog.status.text()

    twice = add_layer(qgis_iface, pair[0], "before again")
    assert problem(twice) == (
        "Before and After are the same layer: choose the later date's layer as After."
    )
    landsat = add_layer(qgis_iface, LANDSAT_TM, "nanjing")
    assert problem(landsat) == (
        "Before has 13 bands of imagery and After 6: the two dates must come from the same "
        "sensor, with the same bands."
    )
    from osgeo import gdal  # After as L2A (12 bands: no B10) beside an L1C Before

    source = gdal.Open(str(pair[1]))
    keep = [i for i in range(1, 14) if source.GetRasterBand(i).GetDescription() != "B10"]
    written = gdal.Translate(str(tmp_path / "after_l2a.tif"), source, bandList=keep)
    del written, source  # closed: on disk
    assert problem(add_layer(qgis_iface, tmp_path / "after_l2a.tif", "after L2A")) == (
        "Before is Sentinel-2 L1C (13 bands of imagery) and After has 12, as Sentinel-2 L2A "
        "has: the two dates must be of the same processing level. Choose two Sentinel-2 L1C "
        "layers or two Sentinel-2 L2A layers."
    )
    elsewhere = add_layer(
        qgis_iface, oscd_crop("rennes", 2, tmp_path / "rennes.tif"), "rennes 2017"
    )
    assert problem(elsewhere) == (
        "Before and After do not overlap: choose two layers of the same place."
    )
    naip = add_layer(qgis_iface, data / NAIP.name, "naip")  # active, on top
    plugin.change_action.trigger()  # no other 4-band layer: the nearest, below it, is Before
    names = (opened[-1].layer.currentLayer().name(), opened[-1].after.currentLayer().name())
    assert names == ("rennes 2017", "naip")

    # the engine's own refusal (a job the dialog would not send), one line in the bar
    job = engine_job("change", before.source(), tmp_path / "results" / "x.tif", after=naip.source())
    plugin.start(runner, job)
    wait(plugin, qgis_app)
    said = messages(qgis_iface, "Critical")
    assert "BEFORE is s2_l1c (13 bands) but AFTER has 4 bands: the two dates must come" in said
    assert "Traceback" not in said and " --" not in said
    assert list((tmp_path / "results").iterdir()) == []


def test_change_compares_an_rgba_orthophoto_with_an_rgb_one(
    plugin, qgis_iface, qgis_app, monkeypatch, tmp_path
):
    """A drone orthophoto with an alpha band (Before) and an RGB one of the same place (After)
    are the same three bands of imagery: the dialog lets them through (it compared 4 bands with
    3 and refused), and the engine leaves the alpha band out, its transparent rim no data."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    before = add_layer(qgis_iface, rgba_orthophoto(tmp_path / "data" / "flight1.tif"), "flight 1")
    after = add_layer(
        qgis_iface, rgba_orthophoto(tmp_path / "data" / "flight2.tif", alpha=False), "flight 2"
    )
    assert OfaDialog("change", settings.current_engine(), before, after=after).problem() is None
    change_dialog(monkeypatch)
    plugin.change_action.trigger()
    wait(plugin, qgis_app)
    said = messages(qgis_iface, "Success")
    assert "flight 1 to flight 2 change: " in said, said + messages(qgis_iface, "Critical")
    layer = QgsProject.instance().mapLayersByName("flight 1 to flight 2 change")[0]
    assert layer.extent() == before.extent()
    ds = gdal.Open(layer.source())  # a band outliving its dataset crashes
    nodata, values = ds.GetRasterBand(1).GetNoDataValue(), ds.GetRasterBand(1).ReadAsArray()
    ds = None
    assert nodata is not None and np.isnan(nodata)
    assert np.isnan(values[:100]).all() and not np.isnan(values[100:]).any()  # rim: no data


def test_an_exports_other_layers_are_not_imagery(qgis_iface, pair, tmp_path):
    """An Earth Engine export holds the bands and other layers (QA60, SCL ...): the dialog
    lists those unticked, as the engine leaves them out, and Change compares the bands alone
    (it refused 16 bands against 13)."""
    from ofa_explore_qgis import settings
    from ofa_explore_qgis.dialog import OfaDialog

    before = gdal.Open(str(pair[0]))
    names = [before.GetRasterBand(i).GetDescription() for i in range(1, 14)]
    path = tmp_path / "dates" / "export.tif"
    ds = gdal.GetDriverByName("GTiff").Create(str(path), 192, 192, 16, gdal.GDT_UInt16)
    ds.SetGeoTransform(before.GetGeoTransform())
    ds.SetProjection(before.GetProjection())
    for i, name in enumerate([*names, "QA10", "QA20", "QA60"], 1):
        band = ds.GetRasterBand(i)
        band.WriteArray(before.GetRasterBand(i).ReadAsArray() if i <= 13 else np.zeros((192, 192)))
        band.SetDescription(name)
    ds = None
    runner = settings.current_engine()
    export = add_layer(qgis_iface, path, "export")
    dialog = OfaDialog("embed", runner, export)
    ticked = [dialog.band_list.item(i).checkState() == Qt.Checked for i in range(16)]
    assert ticked == [True] * 13 + [False] * 3
    assert dialog.band_list.item(15).text() == (
        "16: QA60 - none of the sensor's bands that the others are"
    )
    assert dialog.sensor.itemText(0) == "auto (looks like Sentinel-2 L1C)"
    assert dialog.problem() is None and dialog.job().bands == list(range(1, 14))
    after = add_layer(qgis_iface, pair[1], "after")
    assert OfaDialog("change", runner, export, after=after).problem() is None


def test_cancelling_a_change_keeps_the_warm_engine_and_leaves_nothing(
    plugin, qgis_iface, qgis_app, tmp_path
):
    """A whole city (pisa, 718 x 776 px): cancelled once it runs, the engine's worker stops the
    job itself (it stays, same process) and nothing is written."""
    from ofa_explore_qgis import settings, workers

    if not OSCD.is_dir():
        pytest.skip(f"no OSCD pairs at {OSCD}")
    before, after = sorted((OSCD / "pisa").glob("pisa_2*.tif"))
    out_dir = tmp_path / "results"
    job = engine_job(
        "change",
        before,
        out_dir / "pisa_change.tif",
        after=str(after),
        threshold="3",
        polygons=str(out_dir / "pisa_change.gpkg"),
    )
    task = plugin.start(settings.current_engine(), job)
    t0 = time.time()
    while task.progress() <= 0 and time.time() - t0 < 90:
        qgis_app.processEvents()
        time.sleep(0.005)
    assert task.progress() > 0
    pid = workers.current().proc.pid
    task.cancel()
    wait(plugin, qgis_app)
    assert "Comparing pisa_20150704 to pisa_20180211 was cancelled; nothing was written." in (
        messages(qgis_iface, "Info")
    )
    assert workers.current().alive() and workers.current().proc.pid == pid
    assert list(out_dir.iterdir()) == [] and not layers_named("pisa")


class _Feedback:
    """A Processing feedback that keeps what it was told (made once QGIS is up)."""

    @staticmethod
    def make():
        from qgis.core import QgsProcessingFeedback

        class Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.infos: list[str] = []
                self.warnings: list[str] = []

            def pushInfo(self, info):  # noqa: N802
                self.infos.append(info)
                super().pushInfo(info)

            def pushWarning(self, warning):  # noqa: N802
                self.warnings.append(warning)
                super().pushWarning(warning)

        return Feedback()


def test_processing_change_moves_after_onto_befores_features(plugin, pair, tmp_path):
    """AFTER cut 3 px further east but georeferenced where BEFORE's corner is: its features lie
    3 px west of BEFORE's. The engine moves it back before scoring and the log says so."""
    import processing

    corner = gdal.Open(str(pair[1])).GetGeoTransform()
    size = gdal.Open(str(pair[1])).RasterXSize
    bounds = [corner[0], corner[3], corner[0] + size * corner[1], corner[3] + size * corner[5]]
    source = sorted((OSCD / "bercy").glob("bercy_2*.tif"))[1]
    off = tmp_path / "off.tif"
    gdal.Translate(str(off), str(source), srcWin=[103, 80, size, size], outputBounds=bounds)
    out, feedback = tmp_path / "change.tif", _Feedback.make()
    processing.run(
        "ofa_explore:change",
        {"BEFORE": str(pair[0]), "AFTER": str(off), "OUTPUT": str(out)},
        feedback=feedback,
    )
    assert gdal.Open(str(out)).RasterCount == 2
    said = "\n".join(feedback.infos)
    found = re.search(r"AFTER was moved (\d+\.\d) px onto BEFORE's features", said)
    assert found and 2.5 < float(found.group(1)) < 3.5, said  # bercy's own: ~0.2 px
    assert "the dates line up within 0." in said and not feedback.warnings
    # unticked (advanced), After is read where it lies, and the log warns instead
    feedback = _Feedback.make()
    processing.run(
        "ofa_explore:change",
        {"BEFORE": str(pair[0]), "AFTER": str(off), "ALIGN": False, "OUTPUT": str(out)},
        feedback=feedback,
    )
    (warning,) = feedback.warnings
    found = re.search(r"AFTER's features lie (\d+\.\d) px from BEFORE's \(.*px west", warning)
    assert found and 2.5 < float(found.group(1)) < 3.5, warning
    assert not any("AFTER was moved" in info for info in feedback.infos)


def test_processing_says_a_result_to_doubt_as_a_warning(plugin, tmp_path):
    """8-bit Landsat TM read as Landsat 7 surface reflectance: a warning in Processing's log."""
    import processing

    feedback = _Feedback.make()
    small = tmp_path / "nanjing.tif"
    gdal.Translate(str(small), str(LANDSAT_TM), srcWin=[0, 0, 128, 128])
    sensors = plugin.provider.algorithms()[0].sensors
    processing.run(
        "ofa_explore:embed_raster",
        {
            "INPUT": str(small),
            "OUTPUT": str(tmp_path / "e.tif"),
            "SENSOR": sensors.index("landsat_etm"),
        },
        feedback=feedback,
    )
    (warning,) = feedback.warnings
    assert "smaller than the statistics of 'landsat_etm'" in warning, warning


def test_processing_change_writes_the_score_mask_and_polygons(plugin, pair, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    out, gpkg = tmp_path / "change.tif", tmp_path / "areas.gpkg"
    result = processing.run(
        "ofa_explore:change",
        {"BEFORE": str(pair[0]), "AFTER": str(pair[1]), "OUTPUT": str(out), "POLYGONS": str(gpkg)},
    )
    assert result == {"OUTPUT": str(out), "POLYGONS": str(gpkg)}
    ds = gdal.Open(str(out))
    assert ds.RasterCount == 2 and ds.GetMetadataItem("ofa_change_threshold") == "3"
    assert QgsVectorLayer(str(gpkg), "areas", "ogr").featureCount() > 0

    otsu = processing.run(
        "ofa_explore:change",
        {"BEFORE": str(pair[0]), "AFTER": str(pair[1]), "OTSU": True, "OUTPUT": str(out)},
    )
    assert otsu["POLYGONS"] is None
    assert float(gdal.Open(str(out)).GetMetadataItem("ofa_change_threshold")) != 3.0
    given = {"BEFORE": str(pair[0]), "AFTER": str(pair[1]), "THRESHOLD": 2, "OUTPUT": str(out)}
    processing.run("ofa_explore:change", given)
    assert gdal.Open(str(out)).GetMetadataItem("ofa_change_threshold") == "2"

    with pytest.raises(QgsProcessingException, match="are the same file") as err:
        processing.run(
            "ofa_explore:change",
            {"BEFORE": str(pair[0]), "AFTER": str(pair[0]), "OUTPUT": str(tmp_path / "x.tif")},
        )
    assert "--" not in str(err.value)
