"""Copy the small data sets of the workshop notebooks into notebooks/data/.

    OFA_SHARED_DATA=/path/to/shared/data python scripts/make_workshop_data.py

- ``my_chips/`` (notebook 04): five EuroSAT-MS chips (Sentinel-2 L1C, 13 bands, 64 x 64 px, MIT
  licence) of each of four classes, a folder per class: enough for the "Your own classes"
  exercise to run offline.
- ``naip_change/`` (notebook 06): the same 2 km x 2 km of the NAIP series (RGB + NIR at 5 m,
  North Dakota, US public domain) in 2009, 2014 and 2020, each cut from its own year's file at
  the 2009 crop's bounds (the years' grids differ by a metre or two; ``change`` warps them).

The pixels are unchanged; the files are rewritten with lossless deflate compression.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import rasterio
from rasterio.windows import Window, from_bounds

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("AnnualCrop", "Forest", "River", "SeaLake")
PER_CLASS = 5
# NAIP quarter-quad m_4709963_se: prairie potholes whose lakes grew and changed colour
NAIP_DATES = {"2009": "20090818", "2014": "20140720", "2020": "20200831"}
NAIP_WINDOW = Window(400, 300, 400, 400)  # pixels of the 2009 file: 2 km x 2 km at 5 m


def main() -> None:
    shared = Path(os.environ.get("OFA_SHARED_DATA", "/work/shared/data"))
    chips(shared, ROOT / "notebooks" / "data" / "my_chips")
    naip_change(shared, ROOT / "notebooks" / "data" / "naip_change")


def chips(shared: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    for name in CLASSES:
        (target / name).mkdir(parents=True)
        for source in sorted((shared / "eurosat" / name).glob("*.tif"))[:PER_CLASS]:
            with rasterio.open(source) as src:
                copy(src, target / name / source.name, Window(0, 0, src.width, src.height))
    shutil.copy(shared / "LICENSES" / "EuroSAT_LICENSE_MIT.txt", target / "LICENSE-EuroSAT.txt")
    print("wrote", target)


def naip_change(shared: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    files = {year: shared / "naip" / f"m_4709963_se_14_1_{d}.tif" for year, d in NAIP_DATES.items()}
    with rasterio.open(files["2009"]) as first:
        bounds = rasterio.windows.bounds(NAIP_WINDOW, first.transform)
    for year, path in files.items():
        with rasterio.open(path) as src:
            window = from_bounds(*bounds, src.transform).round_offsets().round_lengths()
            copy(src, target / f"naip_{year}.tif", window)
    shutil.copy(
        shared / "LICENSES" / "opengeos-data_LICENSE_MIT.txt", target / "LICENSE-opengeos-data.txt"
    )
    print("wrote", target)


def copy(src, path: Path, window: Window) -> None:
    """``window`` of an open raster, pixels unchanged, rewritten with lossless deflate."""
    profile = src.profile | {
        "width": window.width,
        "height": window.height,
        "transform": src.window_transform(window),
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(src.read(window=window))
        dst.descriptions = src.descriptions


if __name__ == "__main__":
    main()
