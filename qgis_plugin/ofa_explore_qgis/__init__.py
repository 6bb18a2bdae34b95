"""OFA Explore: a thin QGIS plugin over the ofa_explore package (the UI gathers parameters; the
package's inference engine does the work, in a QgsTask)."""


def classFactory(iface):  # noqa: N802 - QGIS's name
    from .plugin import OfaExplorePlugin

    return OfaExplorePlugin(iface)
