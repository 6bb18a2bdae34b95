"""The README's picture of Change between two layers (docs/images/qgis_change.png), made again
from the data: OSCD Bercy's two dates through `ofa change --threshold 3 --polygons`, drawn by
QGIS with the plugin's own styles (the score transparent below 3, yellow to dark red above, the
changed areas outlined). Left BEFORE, right AFTER with the change on top.

    .venv/bin/python scripts/render_qgis_change.py [--shared ../shared/data] [-o PNG]

The engine runs in this Python; the drawing in Debian's QGIS Python (/usr/bin/python3), which
this script calls with ``--draw``. Contains modified Copernicus Sentinel data (OSCD).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QGIS_PYTHON = "/usr/bin/python3"
CITY = "bercy"
THRESHOLD = 3.0
GAP = 8  # pixels between the two panels
SCALE = 2  # output pixels per raster pixel: the changed areas are a few pixels each


def run_engine(shared: Path, out: Path) -> tuple[Path, Path, Path, Path]:
    """The change score and its polygons of the city's two dates, written into ``out``."""
    before, after = sorted((shared / "change" / "oscd" / CITY).glob(f"{CITY}_2*.tif"))
    score, polygons = out / "change.tif", out / "changed.gpkg"
    subprocess.run(
        [sys.executable, "-m", "ofa_explore", "change", str(before), str(after), "-o", str(score)]
        + ["--threshold", str(THRESHOLD), "--polygons", str(polygons)],
        check=True,
        cwd=ROOT,
    )
    return before, after, score, polygons


def draw(before: str, after: str, score: str, polygons: str, png: str) -> None:
    """BEFORE | AFTER + score + outlines, each panel SCALE times the rasters' pixel size."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import (
        QgsApplication,
        QgsContrastEnhancement,
        QgsMapRendererCustomPainterJob,
        QgsMapSettings,
        QgsMultiBandColorRenderer,
        QgsRasterLayer,
        QgsVectorLayer,
    )
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.insert(0, str(ROOT / "scripts"))
    from build_qgis_plugin import stage

    staged = tempfile.TemporaryDirectory(prefix="ofa-qgis-plugin-")
    stage(staged.name)
    sys.path.insert(0, staged.name)
    from ofa_explore_qgis.style import change_renderer, change_style, style_outlines

    def true_colour(path: str, name: str) -> QgsRasterLayer:
        layer = QgsRasterLayer(path, name)
        renderer = QgsMultiBandColorRenderer(layer.dataProvider(), 4, 3, 2)  # B04, B03, B02
        for band, set_enhancement in (
            (4, renderer.setRedContrastEnhancement),
            (3, renderer.setGreenContrastEnhancement),
            (2, renderer.setBlueContrastEnhancement),
        ):
            stats = layer.dataProvider().bandStatistics(band)
            low, high = stats.mean - 2 * stats.stdDev, stats.mean + 2.5 * stats.stdDev
            enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
            enhancement.setContrastEnhancementAlgorithm(
                QgsContrastEnhancement.StretchToMinimumMaximum
            )
            enhancement.setMinimumValue(max(low, stats.minimumValue))
            enhancement.setMaximumValue(high)
            set_enhancement(enhancement)
        layer.setRenderer(renderer)
        return layer

    left = true_colour(before, "before")
    right = true_colour(after, "after")
    change = QgsRasterLayer(score, "change")
    change.setRenderer(change_renderer(change, *change_style(score)))
    outlines = QgsVectorLayer(polygons, "changed areas", "ogr")
    style_outlines(outlines)
    size = QSize(SCALE * left.width(), SCALE * left.height())
    image = QImage(2 * size.width() + GAP, size.height(), QImage.Format_ARGB32)
    image.fill(QColor("white"))
    painter = QPainter(image)
    for offset, layers in ((0, [left]), (size.width() + GAP, [outlines, change, right])):
        settings = QgsMapSettings()
        settings.setLayers(layers)  # the first is drawn on top
        settings.setDestinationCrs(left.crs())
        settings.setExtent(left.extent())
        settings.setOutputSize(size)
        settings.setBackgroundColor(QColor("white"))
        painter.save()
        painter.translate(offset, 0)
        job = QgsMapRendererCustomPainterJob(settings, painter)
        job.start()
        job.waitForFinished()
        painter.restore()
    painter.end()
    saved = image.save(png)
    staged.cleanup()
    if not saved:
        print(f"could not write {png}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # QGIS 3.22 crashes in its teardown of a standalone script (exitQgis or not): leave at once
    os._exit(0 if saved else 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs/images/qgis_change.png")
    parser.add_argument("--draw", nargs=5, metavar="PATH", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.draw:
        draw(*options.draw)
        return
    from PIL import Image  # the engine's Python; QGIS's draws without it

    with tempfile.TemporaryDirectory() as tmp:
        paths = run_engine(options.shared, Path(tmp))
        drawn = Path(tmp) / "drawn.png"
        subprocess.run([QGIS_PYTHON, __file__, "--draw", *map(str, paths), str(drawn)], check=True)
        quantized = Path(tmp) / "quantized.png"
        with Image.open(drawn) as image:  # 256 colours: a third of the size, the ramp kept
            image.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE).save(
                quantized, optimize=True
            )
        shutil.move(quantized, options.output)  # whole or not at all
    print(f"wrote {options.output}")


if __name__ == "__main__":
    main()
