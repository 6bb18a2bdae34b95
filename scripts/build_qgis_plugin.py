"""Zip the QGIS plugin for "Plugins > Manage and Install Plugins > Install from ZIP".

    python scripts/build_qgis_plugin.py [-o dist/ofa_explore_qgis.zip]
"""

from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "qgis_plugin" / "ofa_explore_qgis"


def build(output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".zip.part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(PLUGIN.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, Path(PLUGIN.name) / path.relative_to(PLUGIN))
    tmp.replace(output)
    return output


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "dist" / "ofa_explore_qgis.zip")
    print(f"wrote {build(parser.parse_args().output)}")
