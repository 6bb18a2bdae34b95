"""Processing provider ``ofa_explore``: the same engine runs in the toolbox, graphical models and
batch mode."""

from __future__ import annotations

import os

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException,
                       QgsProcessingLayerPostProcessorInterface, QgsProcessingOutputRasterLayer,
                       QgsProcessingParameterFile, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingProvider)
from qgis.PyQt.QtGui import QIcon

from . import runner

ICON = os.path.join(os.path.dirname(__file__), "icon.png")


class OfaProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "ofa_explore"

    def name(self) -> str:
        return "OFA Explore"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def loadAlgorithms(self) -> None:  # noqa: N802
        self.addAlgorithm(ClassifyRaster())
        self.addAlgorithm(EmbedRaster())


class _ClassStyle(QgsProcessingLayerPostProcessorInterface):
    """Gives the loaded class map its head's names and colours."""

    def __init__(self, classes: list[str], colors: list[str]):
        super().__init__()
        self.classes, self.colors = classes, colors

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        from .style import style_classes

        style_classes(layer, self.classes, self.colors)


class _OfaAlgorithm(QgsProcessingAlgorithm):
    TASK = ""

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.addParameter(QgsProcessingParameterString(
            "MODALITY", "Modality (empty: detected; see `ofa modalities`)", optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "CHECKPOINT", "Checkpoint (empty: the shipped model)", optional=True,
            fileFilter="ofa_explore checkpoints (*.safetensors)"))
        self.add_task_parameters()

    def add_task_parameters(self) -> None:
        raise NotImplementedError

    def run_engine(self, parameters, context, feedback, head=None) -> dict:
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is None:
            raise QgsProcessingException("INPUT is not a raster layer")
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        try:
            return runner.run(layer.source(), self.TASK, output,
                              modality=self.parameterAsString(parameters, "MODALITY", context),
                              checkpoint=self.parameterAsFile(parameters, "CHECKPOINT", context),
                              head=head, overwrite=True,  # Processing chose or confirmed OUTPUT
                              progress=feedback.setProgress, cancel=feedback.isCanceled)
        except Exception as err:  # noqa: BLE001 - Processing shows the message
            if type(err).__name__ == "Cancelled":
                raise QgsProcessingException("cancelled; nothing was written") from None
            raise QgsProcessingException(str(err)) from None

    def group(self) -> str:
        return "OFA-Net"

    def groupId(self) -> str:  # noqa: N802
        return "ofanet"

    def createInstance(self):  # noqa: N802
        return type(self)()


class ClassifyRaster(_OfaAlgorithm):
    TASK = "classify"

    def name(self) -> str:
        return "classify_raster"

    def displayName(self) -> str:  # noqa: N802
        return "Classify raster"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Class map (uint8, 255 = nodata) from a classification head of the checkpoint; "
                "default: the shipped EuroSAT land-cover head for Sentinel-2 L1C.")

    def add_task_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterString(
            "HEAD", "Head (empty: the first for the layer's modality)", optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Class map"))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        info = self.run_engine(parameters, context, feedback,
                        head=self.parameterAsString(parameters, "HEAD", context) or None)
        if context.willLoadLayerOnCompletion(info["path"]):
            self.style = _ClassStyle(info["classes"], info["colors"])  # kept alive with self
            context.layerToLoadOnCompletionDetails(info["path"]).setPostProcessor(self.style)
        return {"OUTPUT": info["path"]}


class EmbedRaster(_OfaAlgorithm):
    TASK = "embed"

    def name(self) -> str:
        return "embed_raster"

    def displayName(self) -> str:  # noqa: N802
        return "Embed raster"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Patch embeddings (one band per feature) and a 3-band PCA colour view of them "
                "(written beside the output as *_pca.tif).")

    def add_task_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Embeddings"))
        self.addOutput(QgsProcessingOutputRasterLayer("PCA", "PCA colour view"))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        info = self.run_engine(parameters, context, feedback)
        return {"OUTPUT": info["path"], "PCA": info["pca_path"]}
