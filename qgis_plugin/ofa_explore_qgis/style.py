"""Results as QGIS layers: class maps with a paletted renderer (the head's names and colours),
embeddings as their PCA colour view, reconstructions drawn like their input layer, change scores
transparent below their threshold and a yellow-to-red ramp above, with the changed areas'
outlines on top."""

from __future__ import annotations

from qgis.core import (
    QgsColorRampShader,
    QgsFillSymbol,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
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


def change_renderer(
    layer: QgsRasterLayer, threshold: float, span: float
) -> QgsSingleBandPseudoColorRenderer:
    """Band 1, the score: transparent below ``threshold`` (no change: the map beneath shows),
    then yellow to dark red over ``span`` (``protocol.CHANGE_SPANS``), dark red beyond."""
    shader = QgsColorRampShader(threshold, threshold + span)
    shader.setColorRampType(QgsColorRampShader.Interpolated)
    items = [  # below the first item the shader keeps its colour: transparent
        QgsColorRampShader.ColorRampItem(
            threshold - 1e-6, QColor(0, 0, 0, 0), f"below {threshold:.3g}: no change"
        )
    ]
    colors = protocol.CHANGE_COLORS
    for i, color in enumerate(colors):
        value = threshold + span * i / (len(colors) - 1)
        items.append(QgsColorRampShader.ColorRampItem(value, QColor(color), f"{value:.3g}"))
    shader.setColorRampItemList(items)
    function = QgsRasterShader()
    function.setRasterShaderFunction(shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, function)
    renderer.setClassificationMin(threshold)
    renderer.setClassificationMax(threshold + span)
    return renderer


def change_style(path: str) -> tuple[float, float]:
    """The threshold and the ramp's span of a change map, from its file's tags
    (``protocol.change_ramp``)."""
    from osgeo import gdal

    ds = gdal.Open(path)
    return protocol.change_ramp((ds.GetMetadata() or {}) if ds is not None else {})


def style_change(layer: QgsRasterLayer) -> None:
    layer.setRenderer(change_renderer(layer, *change_style(layer.source())))
    layer.triggerRepaint()


def style_outlines(layer: QgsVectorLayer) -> None:
    """The changed areas as outlines only, the change beneath them left visible."""
    symbol = QgsFillSymbol.createSimple(
        {"style": "no", "outline_color": "0,180,255", "outline_width": "0.5"}
    )
    layer.renderer().setSymbol(symbol)
    layer.triggerRepaint()


def add_result_layers(
    info: dict,
    job: Job,
    source: QgsRasterLayer | None,
    name: str,
    add_cube: bool = False,
    project: QgsProject | None = None,
) -> list[QgsMapLayer]:
    """Adds an engine result to the project, styled, under names no other layer has (the main
    layer first in the list); raises RuntimeError if QGIS cannot read a file."""
    project = project or QgsProject.instance()
    taken = {lyr.name() for lyr in project.mapLayers().values()}
    title = unique_name(f"{name} {protocol.task(job.task).layer}", taken)
    layers: list[QgsMapLayer]
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
    elif job.task == "change":
        layer = _open(info["path"], title)
        style_change(layer)
        layers = [layer]
    else:
        layer = _open(info["path"], title)
        _draw_like(layer, source, job.bands)
        layers = [layer]
    outlines = _outlines(job.polygons, unique_name(f"{name} changed areas", taken))
    for layer in reversed(layers):  # on top of the Layers panel, the first one uppermost:
        project.addMapLayer(layer, False)  # the newest result is the one seen
        project.layerTreeRoot().insertLayer(0, layer)
    if outlines is not None:  # the changed areas' outlines, above their scores
        project.addMapLayer(outlines, False)
        project.layerTreeRoot().insertLayer(0, outlines)
        layers.append(outlines)
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


def _outlines(path: str | None, name: str) -> QgsVectorLayer | None:
    """The changed areas' GeoPackage as an outlined layer; None when none was asked for."""
    if not path:
        return None
    layer = QgsVectorLayer(path, name, "ogr")
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open the result {path}")
    style_outlines(layer)
    return layer


def _open(path: str, name: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(path, name)
    if not layer.isValid():
        raise RuntimeError(f"QGIS cannot open the result {path}")
    return layer
