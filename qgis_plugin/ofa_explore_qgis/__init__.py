"""OFA Explore: a thin QGIS plugin over the ofa-explore engine. The UI gathers parameters from
files (GDAL, the model's header); the engine runs in its own Python process, streaming progress
as JSON lines, so QGIS's Python never imports torch."""


def classFactory(iface):  # noqa: N802 - QGIS's name
    from .plugin import OfaExplorePlugin

    return OfaExplorePlugin(iface)
