"""The QGIS plugin in real (headless) QGIS: actions, background task, cancel, errors, styling,
Processing algorithms, screenshots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from qgis.core import (QgsApplication, QgsPalettedRasterRenderer, QgsProject, QgsRasterLayer,
                       QgsVectorLayer)

ROOT = Path(__file__).resolve().parents[2]

SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))
ARTIFACTS = ROOT / "test-artifacts" / "qgis"
S2_SCENE = SHARED / "eurosat" / "River" / "River_1.tif"


@pytest.fixture()
def plugin(qgis_iface, qgis_new_project, qgis_processing):
    from ofa_explore_qgis import classFactory

    p = classFactory(qgis_iface)
    p.initGui()
    qgis_iface.messageBar().clear_messages()
    yield p
    p.unload()


def add_layer(qgis_iface, path, name="layer"):
    layer = QgsRasterLayer(str(path), name)
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    qgis_iface.setActiveLayer(layer)
    return layer


def accept_dialog(monkeypatch, **fields):
    """The dialog is modal: accept it as a user would, after setting ``fields``."""
    from ofa_explore_qgis.dialog import OfaDialog

    def exec_(self):
        for name, value in fields.items():
            getattr(self, name).setFilePath(str(value))
        self.dialog = self
        return 1
    monkeypatch.setattr(OfaDialog, "exec_", exec_)


def wait(plugin, qgis_app, timeout=120):
    t0 = time.time()
    while plugin.tasks or QgsApplication.taskManager().countActiveTasks():
        qgis_app.processEvents()
        time.sleep(0.02)
        assert time.time() - t0 < timeout, "task did not finish"
    qgis_app.processEvents()


def messages(qgis_iface, level):
    from qgis.core import Qgis

    return " | ".join(qgis_iface.messageBar().get_messages(getattr(Qgis, level)))


def big_s2_scene(path: Path, tiles: int = 16) -> Path:
    """A real Sentinel-2 L1C mosaic: EuroSAT chips laid side by side (64*tiles px square)."""
    chips = sorted((SHARED / "eurosat").glob("*/*.tif"))
    with rasterio.open(chips[0]) as src:
        profile = src.profile
    rows = []
    for r in range(tiles):
        row = []
        for c in range(tiles):
            with rasterio.open(chips[(r * tiles + c) * 7 % len(chips)]) as src:  # mixed classes
                row.append(src.read())
        rows.append(np.concatenate(row, axis=2))
    data = np.concatenate(rows, axis=1)
    profile.update(width=data.shape[2], height=data.shape[1])
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


# ---------------------------------------------------------------- loading
def test_plugin_loads_with_actions_and_processing_provider(plugin):
    assert [a.text() for a in plugin.actions] == ["Classify layer", "Embed layer"]
    registry = QgsApplication.processingRegistry()
    assert registry.providerById("ofa_explore") is not None
    assert registry.algorithmById("ofa_explore:classify_raster") is not None
    assert registry.algorithmById("ofa_explore:embed_raster") is not None
    meta = (ROOT / "qgis_plugin" / "ofa_explore_qgis" / "metadata.txt").read_text()
    assert "qgisMinimumVersion=3.22" in meta and "hasProcessingProvider=yes" in meta


# ---------------------------------------------------------------- Classify layer
def test_classify_layer_adds_a_styled_class_map(plugin, qgis_iface, qgis_app, monkeypatch,
                                                tmp_path):
    QgsProject.instance().setFileName(str(tmp_path / "project.qgz"))  # results go beside it
    source = add_layer(qgis_iface, S2_SCENE, "S2 scene")  # a real Sentinel-2 L1C scene
    accept_dialog(monkeypatch)
    plugin.classify_action.trigger()
    assert plugin.tasks, messages(qgis_iface, "Critical")
    wait(plugin, qgis_app)
    assert "wrote" in messages(qgis_iface, "Success"), messages(qgis_iface, "Critical")
    result = [lyr for lyr in QgsProject.instance().mapLayers().values()
              if lyr.name() == "S2 scene (classes)"]
    assert len(result) == 1
    layer = result[0]
    assert layer.crs() == source.crs()
    assert layer.extent().toString(3) == source.extent().toString(3)
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    from ofa_explore import load_pretrained

    info = load_pretrained().head_info["eurosat_landcover"]
    assert [c.label for c in renderer.classes()] == info["classes"]
    assert [c.color.name() for c in renderer.classes()] == info["colors"]
    assert Path(layer.source()) == tmp_path / "River_1_ofa_classes.tif"
    with rasterio.open(layer.source()) as src:
        assert src.read(1).max() < len(info["classes"])


def test_embed_layer_adds_the_pca_colour_view_and_never_overwrites(
        plugin, qgis_iface, qgis_app, monkeypatch, tmp_path):
    from qgis.core import QgsMultiBandColorRenderer

    scene = big_s2_scene(tmp_path / "mosaic.tif", tiles=4)
    (tmp_path / "mosaic_ofa_embedding.tif").write_bytes(b"the user's own file")
    add_layer(qgis_iface, scene, "mosaic")
    accept_dialog(monkeypatch)
    for action in (plugin.embed_action, plugin.classify_action):
        action.trigger()
        wait(plugin, qgis_app)
    layers = {lyr.name(): lyr for lyr in QgsProject.instance().mapLayers().values()}
    pca = layers["mosaic (embedding)"]
    assert isinstance(pca.renderer(), QgsMultiBandColorRenderer) and pca.bandCount() == 3
    assert Path(pca.source()).name == "mosaic_ofa_embedding_2_pca.tif"
    assert (tmp_path / "mosaic_ofa_embedding.tif").read_bytes() == b"the user's own file"
    _screenshot_side_by_side([layers["mosaic"], layers["mosaic (classes)"]],
                             ARTIFACTS / "classified_layer.png")


def test_plugin_installs_from_the_zip(qgis_iface, tmp_path, monkeypatch):
    import importlib.util
    import sys
    import zipfile

    import qgis.utils

    spec = importlib.util.spec_from_file_location("build", ROOT / "scripts" / "build_qgis_plugin.py")
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
        assert [a.text() for a in plugin.actions] == ["Classify layer", "Embed layer"]
        assert Path(sys.modules["ofa_explore_qgis"].__file__).parent.parent == tmp_path / "plugins"
    finally:
        qgis.utils.unloadPlugin("ofa_explore_qgis")


def test_cancel_stops_the_work_and_leaves_no_layer_or_file(plugin, qgis_iface, qgis_app,
                                                           tmp_path):
    scene = big_s2_scene(tmp_path / "big.tif", tiles=24)  # 1536 x 1536 px: many batches
    out = tmp_path / "classes.tif"
    before = set(QgsProject.instance().mapLayers())
    task = plugin.start({"source": str(scene), "task": "classify", "output": str(out)}, "big")
    t0 = time.time()
    while task.progress() <= 0 and time.time() - t0 < 60:
        qgis_app.processEvents()
        time.sleep(0.01)
    task.cancel()
    wait(plugin, qgis_app)
    assert "cancelled" in messages(qgis_iface, "Info")
    assert set(QgsProject.instance().mapLayers()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]  # no output, no temp file


def test_vector_layer_wrong_bands_and_missing_checkpoint_are_explained(
        plugin, qgis_iface, qgis_app, monkeypatch, tmp_path):
    vector = QgsVectorLayer("Point?crs=EPSG:4326", "points", "memory")
    QgsProject.instance().addMapLayer(vector)
    qgis_iface.setActiveLayer(vector)
    plugin.classify_action.trigger()
    assert "select a raster layer" in messages(qgis_iface, "Warning")
    assert not plugin.tasks

    five = tmp_path / "five_bands.tif"
    with rasterio.open(S2_SCENE) as src:
        profile, data = src.profile, src.read()[:5]
    profile.update(count=5)
    with rasterio.open(five, "w", **profile) as dst:
        dst.write(data)
    add_layer(qgis_iface, five, "five")
    accept_dialog(monkeypatch)
    plugin.classify_action.trigger()
    wait(plugin, qgis_app)
    assert "5 bands" in messages(qgis_iface, "Critical")

    qgis_iface.messageBar().clear_messages()
    add_layer(qgis_iface, S2_SCENE, "river")
    accept_dialog(monkeypatch, checkpoint=tmp_path / "missing.safetensors")
    plugin.classify_action.trigger()
    wait(plugin, qgis_app)
    assert "missing.safetensors" in messages(qgis_iface, "Critical")
    assert not any(p.name.endswith("_ofa_classes.tif") for p in tmp_path.iterdir())


def test_missing_package_gives_install_instructions(plugin, qgis_iface, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ofa(name, *args, **kwargs):
        if name == "ofa_explore":
            raise ImportError("No module named 'ofa_explore'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_ofa)
    plugin.classify_action.trigger()
    text = messages(qgis_iface, "Critical")
    assert "needs the ofa-explore Python package" in text and "numpy below 2" in text


# ---------------------------------------------------------------- Processing
def test_processing_algorithms_write_the_right_outputs(plugin, tmp_path):
    import processing

    out = tmp_path / "classes.tif"
    result = processing.run("ofa_explore:classify_raster",
                            {"INPUT": str(S2_SCENE), "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out)
    with rasterio.open(out) as src, rasterio.open(S2_SCENE) as ref:
        assert src.crs == ref.crs and src.count == 1 and src.read(1).max() < 10
        assert src.tags()["class_names"].startswith("AnnualCrop,Forest")

    emb = tmp_path / "emb.tif"
    result = processing.run("ofa_explore:embed_raster", {"INPUT": str(S2_SCENE), "OUTPUT": str(emb),
                                                         "MODALITY": "s2_l1c"})
    with rasterio.open(result["OUTPUT"]) as src, rasterio.open(result["PCA"]) as pca:
        assert src.count == 192 and pca.count == 3 and src.crs == pca.crs

    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="unknown modality|no patch embedding"):
        processing.run("ofa_explore:embed_raster", {"INPUT": str(S2_SCENE), "MODALITY": "lidar",
                                                    "OUTPUT": str(tmp_path / "x.tif")})


def test_dialog_screenshot(plugin, qgis_iface):
    from ofa_explore_qgis.dialog import OfaDialog

    layer = add_layer(qgis_iface, S2_SCENE, "Sentinel-2 L1C scene")
    dialog = OfaDialog("classify", layer)
    assert dialog.modality.itemText(0) == "auto (detected: s2_l1c)"
    assert "eurosat_landcover" in [dialog.head.itemText(i) for i in range(dialog.head.count())]
    assert dialog.parameters()["output"].endswith("_ofa_classes.tif")
    dialog.resize(560, dialog.sizeHint().height())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(ARTIFACTS / "dialog.png"))


def _screenshot_side_by_side(layers, path: Path, size: int = 384) -> None:
    """The input (true colour: B04, B03, B02) and the styled result, rendered by QGIS."""
    from qgis.core import (QgsContrastEnhancement, QgsMapRendererParallelJob, QgsMapSettings,
                           QgsMultiBandColorRenderer, QgsRasterMinMaxOrigin)
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    source = layers[0]
    source.setRenderer(QgsMultiBandColorRenderer(source.dataProvider(), 4, 3, 2))
    source.setContrastEnhancement(QgsContrastEnhancement.StretchToMinimumMaximum,
                                  QgsRasterMinMaxOrigin.CumulativeCut)
    canvas = QImage(size * len(layers) + 8 * (len(layers) - 1), size, QImage.Format_ARGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    for i, layer in enumerate(layers):
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(layer.crs())
        settings.setExtent(layer.extent())
        settings.setOutputSize(QSize(size, size))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        painter.drawImage(i * (size + 8), 0, job.renderedImage())
    painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    assert canvas.save(str(path))
