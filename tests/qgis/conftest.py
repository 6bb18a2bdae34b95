"""PyQGIS tests of the plugin (real QGIS, headless). Run by tests/test_qgis_plugin.py inside a
venv that sees Debian's python3-qgis, or directly:
    QT_QPA_PLATFORM=offscreen OFA_EXPLORE_PYTHON=.venv/bin/python \
        .venv-qgis/bin/python -m pytest --confcutdir tests/qgis tests/qgis
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "qgis_plugin"), str(ROOT / "tests"),
                "/usr/share/qgis/python/plugins"]  # QGIS's own processing plugin
