"""The plugin's files: icons by name (used by the actions and the Processing provider)."""

from __future__ import annotations

from pathlib import Path

from qgis.PyQt.QtGui import QIcon

HERE = Path(__file__).resolve().parent


def icon(name: str) -> QIcon:
    return QIcon(str(HERE / "icons" / f"{name}.png"))
