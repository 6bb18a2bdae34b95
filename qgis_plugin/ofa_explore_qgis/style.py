"""Results as QGIS layers: class maps with a paletted renderer (the head's names and colours),
embeddings as their PCA colour view."""

from __future__ import annotations

from qgis.core import (QgsMultiBandColorRenderer, QgsPalettedRasterRenderer, QgsProject,
                       QgsRasterLayer)
from qgis.PyQt.QtGui import QColor


def class_renderer(layer: QgsRasterLayer, classes: list[str],
                   colors: list[str]) -> QgsPalettedRasterRenderer:
    entries = [QgsPalettedRasterRenderer.Class(i, QColor(color), name)
               for i, (name, color) in enumerate(zip(classes, colors))]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries)


def style_classes(layer: QgsRasterLayer, classes: list[str], colors: list[str]) -> None:
    layer.setRenderer(class_renderer(layer, classes, colors))
    layer.triggerRepaint()


def add_result_layer(info: dict, name: str, project: QgsProject | None = None) -> QgsRasterLayer:
    """Add the result of ``runner.run`` to the project, styled; raises if GDAL cannot read it."""
    project = project or QgsProject.instance()
    if info.get("classes"):
        layer = QgsRasterLayer(info["path"], name)
        _check(layer, info["path"])
        style_classes(layer, info["classes"], info["colors"])
    else:
        layer = QgsRasterLayer(info["pca_path"], name)
        _check(layer, info["pca_path"])
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3))
    project.addMapLayer(layer)
    return layer


def _check(layer: QgsRasterLayer, path: str) -> None:
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open the result {path}")
