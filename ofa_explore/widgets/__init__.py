"""JupyterLab widgets (ipywidgets + leafmap) over the same Python API and engine as the CLI.
Their logic lives in plain functions (``display``) and methods that tests call directly."""

import importlib.util

from ..errors import MissingPart

# the widget stack is an extra, not needed by the CLI or the QGIS plugin
_missing = [
    m for m in ("ipywidgets", "ipyleaflet", "leafmap") if importlib.util.find_spec(m) is None
]
if _missing:
    raise MissingPart(
        f"ofa_explore.widgets needs {', '.join(_missing)} (the notebooks extra)",
        "`pip install 'ofa-explore[notebooks]'`, or from a checkout "
        "`pip install -e '.[notebooks]'`",
        missing=_missing,
    )

from .change_map import ChangeMap  # noqa: E402
from .classification_map import ClassificationMap  # noqa: E402
from .embedding_map import EmbeddingMap  # noqa: E402
from .raster_explorer import RasterExplorer  # noqa: E402
from .reconstruction import ReconstructionExplorer  # noqa: E402

__all__ = [
    "RasterExplorer",
    "ReconstructionExplorer",
    "EmbeddingMap",
    "ClassificationMap",
    "ChangeMap",
]
