"""PyQGIS tests of the plugin (real QGIS, headless). Run by tests/test_qgis_plugin.py inside a
venv that sees Debian's python3-qgis, or directly:
    QT_QPA_PLATFORM=offscreen OFA_EXPLORE_PYTHON=.venv/bin/python \
        .venv-qgis/bin/python -m pytest --confcutdir tests/qgis tests/qgis

The plugin is imported as its build stages it (scripts/build_qgis_plugin.py: the sources plus
the _shared copy of ofa_explore/protocol.py and errors.py), in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location(
    "build_qgis_plugin", ROOT / "scripts" / "build_qgis_plugin.py"
)
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)
STAGED = tempfile.TemporaryDirectory(prefix="ofa-qgis-plugin-")  # removed when pytest ends
_build.stage(STAGED.name)
sys.path[:0] = [
    STAGED.name,
    str(ROOT / "tests"),
    "/usr/share/qgis/python/plugins",
]  # QGIS's own processing plugin
