"""Processing provider ``ofa_explore``: the same worker runs in the toolbox, graphical models,
batch mode and ``qgis_process``."""

from __future__ import annotations

import shutil
from pathlib import Path

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsProcessingProvider,
    QgsProcessingUtils,
)

from . import engine, settings
from ._shared import protocol
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
        for algorithm in (ClassifyRaster, EmbedRaster, ReconstructRaster, ChangeRasters):
            self.addAlgorithm(algorithm(sensors))

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg"]  # the engine writes the changed areas as a GeoPackage


class _Style(QgsProcessingLayerPostProcessorInterface):
    """Styles a loaded output as the toolbar's actions do: ``style(layer)``."""

    def __init__(self, style):
        super().__init__()
        self.style = style

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802
        self.style(layer)


def style_on_load(algorithm, context, path: str, style) -> None:
    """``style(layer)`` once Processing loads ``path`` into the project (if it does)."""
    if context.willLoadLayerOnCompletion(path):
        algorithm.styles = [*getattr(algorithm, "styles", []), _Style(style)]  # kept alive
        context.layerToLoadOnCompletionDetails(path).setPostProcessor(algorithm.styles[-1])


class _OfaAlgorithm(QgsProcessingAlgorithm):
    TASK = ""

    def __init__(self, sensors: list[str]):
        super().__init__()
        self.sensors = sensors

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_input_parameters()
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

    def add_input_parameters(self) -> None:
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

    def add_task_parameters(self) -> None:
        raise NotImplementedError

    def inputs(self, parameters, context) -> dict:
        """The job's fields for what it reads: the layer's file and the bands chosen."""
        return {
            "source": self.raster_file(parameters, "INPUT", context),
            "bands": self.parameterAsInts(parameters, "BANDS", context),
        }

    def raster_file(self, parameters, name: str, context) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name} is not a raster layer")
        return layer.source()

    def run_engine(self, parameters, context, feedback, output: str, **choices) -> dict:
        """Runs the engine on the inputs with the common parameters and the task's
        ``choices`` (Job fields); an engine error is a QgsProcessingException in its words."""
        sensor = self.sensors[self.parameterAsEnum(parameters, "SENSOR", context)]
        job = engine.Job(
            task=self.TASK,
            output=output,
            modality=None if sensor == "auto" else sensor,
            checkpoint=self.parameterAsFile(parameters, "MODEL", context) or None,
            device=list(DEVICES)[self.parameterAsEnum(parameters, "DEVICE", context)],
            overwrite=True,  # Processing chose or confirmed OUTPUT
            **self.inputs(parameters, context),
            **choices,
        )
        try:
            result = engine.run(
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
        for note in result.get("notes") or []:  # how the input was read, what was found
            feedback.pushInfo(note)
        for warning in result["warnings"]:  # values that do not fit the sensor, dates off...
            feedback.pushWarning(warning)
        return result

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
        from .style import style_classes

        style_on_load(
            self,
            context,
            info["path"],
            lambda layer: style_classes(layer, info["classes"], info["colors"]),
        )
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


class ChangeRasters(_OfaAlgorithm):
    TASK = "change"

    def name(self) -> str:
        return "change"

    def displayName(self) -> str:  # noqa: N802
        return "Change between two rasters"

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "The change from BEFORE to AFTER on BEFORE's grid (AFTER is warped onto it when "
            "needed): band 1 the change score (higher = more change, in standard deviations "
            "of the scene's scores; drawn from the threshold up), band 2 the 0/1 mask of "
            "scores at or above the threshold; on request the changed areas as polygons with "
            "their area and the mean and highest score of their pixels (score_mean, "
            "score_max: filter on them to keep the strongest). Zero-shot unless the model "
            "carries a trained change head. " + protocol.ALIGN_HELP
        )

    def add_input_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer("BEFORE", "Before (earlier date)"))
        self.addParameter(
            QgsProcessingParameterRasterLayer("AFTER", "After (later date, same sensor)")
        )

    def inputs(self, parameters, context) -> dict:
        return {
            "source": self.raster_file(parameters, "BEFORE", context),
            "after": self.raster_file(parameters, "AFTER", context),
        }

    def add_task_parameters(self) -> None:
        zero_shot, head = (protocol.change_threshold(head=h) for h in (False, True))
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD",
                f"Threshold (score in standard deviations; not set: {zero_shot:g} for the "
                f"zero-shot score, {head:g} for a trained change head)",
                type=QgsProcessingParameterNumber.Double,
                optional=True,
            )
        )
        otsu = QgsProcessingParameterBoolean(
            "OTSU",
            "Threshold from Otsu's split of the scene's scores instead (marks far more than "
            "changed on urban pairs)",
            defaultValue=False,
        )
        otsu.setFlags(otsu.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(otsu)
        align = QgsProcessingParameterBoolean("ALIGN", protocol.ALIGN_LABEL, defaultValue=True)
        align.setFlags(align.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(align)
        self.addParameter(
            QgsProcessingParameterString(
                "HEAD",
                "Change head (empty: the model's first change head, else the zero-shot "
                "score; 'zero-shot': no head)",
                optional=True,
            )
        )
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Change"))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                "POLYGONS",
                "Changed areas (polygons)",
                type=QgsProcessing.TypeVectorPolygon,
                optional=True,
                createByDefault=False,
            )
        )

    def processAlgorithm(self, parameters, context, feedback) -> dict:  # noqa: N802
        from .style import style_change, style_outlines

        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        polygons = self.parameterAsOutputLayer(parameters, "POLYGONS", context) or None
        threshold = "auto"  # the measured default of the score, as the engine knows the head
        if self.parameterAsBoolean(parameters, "OTSU", context):
            threshold = "otsu"
        elif parameters.get("THRESHOLD") is not None:
            threshold = f"{self.parameterAsDouble(parameters, 'THRESHOLD', context):g}"
        info = self.run_engine(
            parameters,
            context,
            feedback,
            output,
            threshold=threshold,
            polygons=polygons,
            head=self.parameterAsString(parameters, "HEAD", context) or None,
            align=self.parameterAsBoolean(parameters, "ALIGN", context),
        )
        style_on_load(self, context, info["path"], style_change)
        if polygons:
            style_on_load(self, context, polygons, style_outlines)
        return {"OUTPUT": info["path"], "POLYGONS": polygons}
