"""Copy the labelled example chips of notebook 04 into notebooks/data/my_chips/.

    OFA_SHARED_DATA=/path/to/shared/data python scripts/make_workshop_data.py

Five EuroSAT-MS chips (Sentinel-2 L1C, 13 bands, 64 x 64 px, MIT licence) of each of four
classes, a folder per class: enough for the "Your own classes" exercise to run offline. The
pixels are unchanged; the files are rewritten with lossless deflate compression to halve them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import rasterio

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("AnnualCrop", "Forest", "River", "SeaLake")
PER_CLASS = 5


def main() -> None:
    shared = Path(os.environ.get("OFA_SHARED_DATA", "/work/shared/data"))
    target = ROOT / "notebooks" / "data" / "my_chips"
    shutil.rmtree(target, ignore_errors=True)
    for name in CLASSES:
        (target / name).mkdir(parents=True)
        for source in sorted((shared / "eurosat" / name).glob("*.tif"))[:PER_CLASS]:
            with rasterio.open(source) as src:
                profile, pixels = src.profile, src.read()
            profile.update(compress="deflate", predictor=2)
            with rasterio.open(target / name / source.name, "w", **profile) as dst:
                dst.write(pixels)
    shutil.copy(shared / "LICENSES" / "EuroSAT_LICENSE_MIT.txt", target / "LICENSE-EuroSAT.txt")
    print("wrote", target)


if __name__ == "__main__":
    main()
