"""Results as QGIS layers: class maps with a paletted renderer (the head's names and colours),
embeddings as their PCA colour view, reconstructions drawn like their input layer."""

from __future__ import annotations

from qgis.core import (
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QColor

from ._shared import protocol
from .engine import Job, unique_name
from .layers import layer_bands


def class_renderer(
    layer: QgsRasterLayer, classes: list[str], colors: list[str]
) -> QgsPalettedRasterRenderer:
    entries = [
        QgsPalettedRasterRenderer.Class(i, QColor(color), name)
        for i, (name, color) in enumerate(zip(classes, colors))
    ]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries)


def style_classes(layer: QgsRasterLayer, classes: list[str], colors: list[str]) -> None:
    layer.setRenderer(class_renderer(layer, classes, colors))
    layer.triggerRepaint()


def add_result_layers(
    info: dict,
    job: Job,
    source: QgsRasterLayer | None,
    name: str,
    add_cube: bool = False,
    project: QgsProject | None = None,
) -> list[QgsRasterLayer]:
    """Adds an engine result to the project, styled, under names no other layer has; raises
    RuntimeError if QGIS cannot read a file."""
    project = project or QgsProject.instance()
    taken = {lyr.name() for lyr in project.mapLayers().values()}
    title = unique_name(f"{name} {protocol.task(job.task).layer}", taken)
    if job.task == "classify":
        layer = _open(info["path"], title)
        style_classes(layer, info["classes"], info["colors"])
        layers = [layer]
    elif job.task == "embed":
        layer = _open(info["pca_path"], title)
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3))
        layers = [layer]
        if add_cube:
            layers.append(_open(info["path"], unique_name(f"{name} embedding cube", taken)))
    else:
        layer = _open(info["path"], title)
        _draw_like(layer, source, job.bands)
        layers = [layer]
    for layer in reversed(layers):  # on top of the Layers panel, the first one uppermost:
        project.addMapLayer(layer, False)  # the newest result is the one seen
        project.layerTreeRoot().insertLayer(0, layer)
    return layers


def _draw_like(layer: QgsRasterLayer, source: QgsRasterLayer | None, bands: list[int]) -> None:
    """The reconstruction holds the chosen bands in order, less those the file flags bad when
    the engine left them out (EnMAP): show the input's colour bands at their new places."""
    renderer = source.renderer() if source is not None else None
    if not isinstance(renderer, QgsMultiBandColorRenderer):
        return
    order = bands or list(range(1, source.bandCount() + 1))
    if layer.bandCount() < len(order):
        bad = {b.number for b in layer_bands(source.source()) if b.bad}
        order = [b for b in order if b not in bad]
    picked = [renderer.redBand(), renderer.greenBand(), renderer.blueBand()]
    if all(b in order for b in picked):
        clone = renderer.clone()
        clone.setInput(layer.dataProvider())
        clone.setRedBand(order.index(picked[0]) + 1)
        clone.setGreenBand(order.index(picked[1]) + 1)
        clone.setBlueBand(order.index(picked[2]) + 1)
        layer.setRenderer(clone)


def _open(path: str, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(path, name)
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open the result {path}")
    return layer
