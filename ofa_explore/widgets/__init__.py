"""JupyterLab widgets (ipywidgets + leafmap) over the same Python API and engine as the CLI.
Their logic lives in plain functions (``display``) and methods that tests call directly."""

from .classification_map import ClassificationMap
from .embedding_map import EmbeddingMap
from .raster_explorer import RasterExplorer
from .reconstruction import ReconstructionExplorer

__all__ = ["RasterExplorer", "ReconstructionExplorer", "EmbeddingMap", "ClassificationMap"]
