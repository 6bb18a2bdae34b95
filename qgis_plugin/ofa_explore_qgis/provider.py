"""Processing provider ``ofa_explore``: the same worker runs in the toolbox, graphical models,
batch mode and ``qgis_process``."""

from __future__ import annotations

import shutil
from pathlib import Path

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingProvider,
    QgsProcessingUtils,
)

from . import engine, settings
from .dialog import DEVICES
from .resources import icon


def sensor_names() -> list[str]:
    """ "auto" and the registry's sensors, read from the engine's files (only "auto" when the
    engine is not set up yet)."""
    try:
        return ["auto"] + [m["name"] for m in settings.current_engine().sensors()]
    except engine.EngineError:
        return ["auto"]


class OfaProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "ofa_explore"

    def name(self) -> str:
        return "OFA Explore"

    def icon(self):
        return icon("classify")

    def loadAlgorithms(self) -> None:  # noqa: N802
        sensors = sensor_names()
        for algorithm in (ClassifyRaster, EmbedRaster, ReconstructRaster):
            self.addAlgorithm(algorithm(sensors))


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

    def __init__(self, sensors: list[str]):
        super().__init__()
        self.sensors = sensors

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Raster layer"))
        self.addParameter(
            QgsProcessingParameterBand(
                "BANDS",
                "Bands, in order (empty: all)",
                parentLayerParameterName="INPUT",
                optional=True,
                allowMultiple=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum("SENSOR", "Sensor", options=self.sensors, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "MODEL",
                "Model (empty: the model that comes with ofa-explore)",
                optional=True,
                fileFilter="OFA Explore models (*.safetensors)",
            )
        )
        self.add_task_parameters()
        self.addParameter(
            QgsProcessingParameterEnum(
                "DEVICE", "Run on", options=list(DEVICES.values()), defaultValue=0
            )
        )

    def add_task_parameters(self) -> None:
        raise NotImplementedError

    def run_engine(
        self, parameters, context, feedback, output: str, head: str | None = None
    ) -> dict:
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        if layer is None:
            raise QgsProcessingException("INPUT is not a raster layer")
        sensor = self.sensors[self.parameterAsEnum(parameters, "SENSOR", context)]
        job = engine.Job(
            task=self.TASK,
            source=layer.source(),
            output=output,
            bands=self.parameterAsInts(parameters, "BANDS", context),
            modality=None if sensor == "auto" else sensor,
            checkpoint=self.parameterAsFile(parameters, "MODEL", context) or None,
            head=head,
            device=list(DEVICES)[self.parameterAsEnum(parameters, "DEVICE", context)],
            overwrite=True,
        )  # Processing chose or confirmed OUTPUT
        try:
            return engine.run(
                settings.current_engine(),
                job,
                progress=feedback.setProgress,
                cancelled=feedback.isCanceled,
                log=feedback.pushInfo,
                status=lambda text: feedback.setProgressText(text and f"{text.capitalize()}…"),
            )
        except engine.Cancelled:
            raise QgsProcessingException("Cancelled; nothing was written.") from None
        except engine.EngineError as err:
            raise QgsProcessingException(str(err)) from None

    def group(self) -> str:
        return "OFA-Net"

    def groupId(self) -> str:  # noqa: N802
        return "ofanet"

    def icon(self):
        return icon(self.TASK)

    def createInstance(self):  # noqa: N802
        return type(self)(self.sensors)


class ClassifyRaster(_OfaAlgorithm):
    TASK = "classify"

    def name(self) -> str:
        return "classify_raster"

    def displayName(self) -> str:  # noqa: N802
        return "Classify raster"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Class map (one byte per pixel, 255 = no data) from a classification head of the "
            "model; by default the shipped EuroSAT land-cover head for Sentinel-2 L1C. "
            "The work runs in the OFA Explore engine's own Python (Set up engine…)."
        )

    def add_task_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterString(
                "HEAD",
                "Classes from head (empty: the model's first for the sensor; the heads "
                "depend on the model file)",
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Class map"))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        info = self.run_engine(
            parameters,
            context,
            feedback,
            output,
            head=self.parameterAsString(parameters, "HEAD", context) or None,
        )
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
        return (
            "The embeddings' PCA colour view (3 bands: similar ground, similar colour) and, "
            "on request, the embedding cube itself (one band per feature, at patch "
            "resolution)."
        )

    def add_task_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterRasterDestination("OUTPUT", "Embedding colour view (PCA)")
        )
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "CUBE", "Embedding cube (all features)", optional=True, createByDefault=False
            )
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        view = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        cube = self.parameterAsOutputLayer(
            parameters, "CUBE", context
        ) or QgsProcessingUtils.generateTempFilename("embedding_cube.tif")
        info = self.run_engine(parameters, context, feedback, cube)
        Path(view).unlink(missing_ok=True)  # Processing chose or confirmed OUTPUT
        shutil.move(info["pca_path"], view)
        return {"OUTPUT": view, "CUBE": info["path"] if parameters.get("CUBE") else None}


class ReconstructRaster(_OfaAlgorithm):
    TASK = "reconstruct"

    def name(self) -> str:
        return "reconstruct_raster"

    def displayName(self) -> str:  # noqa: N802
        return "Reconstruct raster (masked)"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Hides three quarters of the patches and lets the model fill them in from the "
            "rest: the input's bands, what the model expects to see there."
        )

    def add_task_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Reconstruction"))

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        return {"OUTPUT": self.run_engine(parameters, context, feedback, output)["path"]}
