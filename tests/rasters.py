"""Real GeoTIFFs cut down for the tests: a window of a shared scene as its own file, or a
scene's bands as a Sentinel-2 product holds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window


def crop(src: str | Path, dst: str | Path, window: Window, **changes) -> Path:
    """``window`` of ``src`` as the GeoTIFF ``dst``, with its band descriptions and tags
    (striped, so any size is valid); ``changes`` edit the profile (``count=`` keeps the first
    bands)."""
    with rasterio.open(src) as s:
        profile = s.profile | {
            "width": window.width,
            "height": window.height,
            "transform": s.window_transform(window),
            "tiled": False,
        }
        data, descriptions = s.read(window=window), s.descriptions
        tags, band_tags = s.tags(), [s.tags(i + 1) for i in range(s.count)]
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    profile.update(changes)
    count = profile["count"]
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data[:count])
        out.descriptions = descriptions[:count]
        out.update_tags(**tags)
        for i, band in enumerate(band_tags[:count]):
            out.update_tags(i + 1, **band)
    return Path(dst)


# Sentinel-2's bands and their pixel sizes in metres
S2_PIXEL_M = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B05": 20, "B06": 20, "B07": 20}
S2_PIXEL_M |= {"B8A": 20, "B11": 20, "B12": 20, "B01": 60, "B09": 60, "B10": 60}


def product_bands(src: str | Path, folder: Path, stem: str, crs: str | None = None) -> Path:
    """The bands of ``src`` (a multi-band file with band names) as a Sentinel-2 product's
    IMG_DATA holds them: a JPEG 2000 file a band, ``{stem}_{band}.jp2``, without band names,
    and the 3-band true-colour ``{stem}_TCI.jp2``; with ``crs``, each band reprojected into it
    at its own pixel size (``S2_PIXEL_M``, averaged from ``src``)."""
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(src) as s:
        for i, band in enumerate(s.descriptions, start=1):
            data, transform, to = s.read(i), s.transform, s.crs
            if crs is not None:
                to, res = rasterio.crs.CRS.from_user_input(crs), S2_PIXEL_M[band]
                transform, width, height = calculate_default_transform(
                    s.crs, to, s.width, s.height, *s.bounds, resolution=res
                )
                moved = np.zeros((height, width), data.dtype)
                reproject(
                    data, moved, src_transform=s.transform, src_crs=s.crs, dst_transform=transform,
                    dst_crs=to, resampling=Resampling.average if res > 10 else Resampling.bilinear,
                )  # fmt: skip
                data = moved
            write_jp2(folder / f"{stem}_{band}.jp2", data[None], to, transform)
            if band == "B04":  # the true-colour quicklook, at the 10 m grid
                rgb = [s.read(s.descriptions.index(b) + 1) for b in ("B04", "B03", "B02")]
                tci = np.clip(np.stack(rgb) / 40, 0, 255).astype(np.uint8)
                write_jp2(folder / f"{stem}_TCI.jp2", tci, s.crs, s.transform)
    return folder


def write_jp2(path: Path, data: np.ndarray, crs, transform) -> Path:
    """``data`` [bands, h, w] as a lossless JPEG 2000 file, as Sentinel-2 products hold them."""
    profile = dict(driver="JP2OpenJPEG", count=data.shape[0], height=data.shape[1])
    profile |= dict(width=data.shape[2], dtype=data.dtype, crs=crs, transform=transform)
    with rasterio.open(path, "w", **profile, QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(data)
    return path


def sentinel2_product(root: Path, scene: Path, baseline: str = "02.04", side_m: int = 2400) -> Path:
    """A Sentinel-2 L1C product in the SAFE layout that GDAL's SENTINEL2 driver reads, of a
    corner of ``scene`` (a folder of the 13 band files, in UTM): each band a JPEG 2000 file at
    its own pixel size, the product's MTD_MSIL1C.xml (the baseline, the granule's files) and
    the granule's MTD_TL.xml (its CRS, sizes and corner), holding only what the driver reads.
    From baseline 04.00 the values carry ESA's offset of +1000. Returns the .SAFE folder."""
    code = f"N{baseline.replace('.', '')}"
    safe = root / f"S2A_MSIL1C_20200101T000000_{code}_R000_T18SUH_20200101T000000.SAFE"
    granule = safe / "GRANULE" / "L1C_T18SUH_A000000_20200101T000000"
    (granule / "IMG_DATA").mkdir(parents=True)
    offset = 1000 if tuple(map(int, baseline.split("."))) >= (4, 0) else 0
    with rasterio.open(scene / "B02.tif") as src:
        crs, left, top = src.crs, src.transform.c, src.transform.f
    files = []
    for band, res in S2_PIXEL_M.items():
        n = side_m // res
        with rasterio.open(scene / f"{band}.tif") as src:
            side = round(side_m / src.res[0])
            data = src.read(1, window=Window(0, 0, side, side), out_shape=(n, n))
        data = np.where(data > 0, data + offset, 0).astype(np.uint16)
        name = f"GRANULE/{granule.name}/IMG_DATA/T18SUH_20200101T000000_{band}"
        write_jp2(
            safe / f"{name}.jp2",
            data[None],
            crs,
            rasterio.transform.from_origin(left, top, res, res),
        )
        files.append(f"<IMAGE_FILE>{name}</IMAGE_FILE>")
    (safe / "MTD_MSIL1C.xml").write_text(
        '<n1:Level-1C_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
        'User_Product_Level-1C.xsd"><n1:General_Info><Product_Info>'
        f"<PROCESSING_LEVEL>Level-1C</PROCESSING_LEVEL><PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>"
        f"<PROCESSING_BASELINE>{baseline}</PROCESSING_BASELINE>"
        '<Query_Options completeSingleTile="true"><PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>'
        '</Query_Options><Product_Organisation><Granule_List><Granule imageFormat="JPEG2000">'
        + "".join(files)
        + "</Granule></Granule_List></Product_Organisation></Product_Info>"
        "</n1:General_Info></n1:Level-1C_User_Product>"
    )
    sizes = "".join(
        f'<Size resolution="{r}"><NROWS>{side_m // r}</NROWS><NCOLS>{side_m // r}</NCOLS></Size>'
        f'<Geoposition resolution="{r}"><ULX>{left}</ULX><ULY>{top}</ULY><XDIM>{r}</XDIM>'
        f"<YDIM>-{r}</YDIM></Geoposition>"
        for r in (10, 20, 60)
    )
    (granule / "MTD_TL.xml").write_text(
        '<n1:Level-1C_Tile_ID xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/'
        'S2_PDI_Level-1C_Tile_Metadata.xsd"><n1:Geometric_Info><Tile_Geocoding>'
        f"<HORIZONTAL_CS_CODE>EPSG:{crs.to_epsg()}</HORIZONTAL_CS_CODE>{sizes}"
        "</Tile_Geocoding></n1:Geometric_Info></n1:Level-1C_Tile_ID>"
    )
    return safe


# NASA's Harmonized Landsat Sentinel-2 (HLS v2.0) band files: each of a granule's bands as the
# Sentinel-2 L2A band it stands for (L30 adjusts Landsat-8/9 OLI to Sentinel-2: OLI 5, 6, 7 are
# MSI 8A, 11, 12), else a constant: cirrus (top-of-atmosphere), thermal (degrees C x 100), the
# Fmask quality layer and the sun and view angles
HLS_BANDS = {
    "L30": {"B01": "B01", "B02": "B02", "B03": "B03", "B04": "B04", "B05": "B8A", "B06": "B11",
            "B07": "B12", "B09": 12, "B10": 2150, "B11": 2070},
    "S30": {**{b: b for b in ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                              "B09", "B11", "B12")}, "B10": 15},
}  # fmt: skip
HLS_LAYERS = {"Fmask": 64, "SAA": 1500, "SZA": 3000, "VAA": 1000, "VZA": 300}


def hls_granule(patch: Path, root: Path, product: str, bands: list[str] | None = None) -> Path:
    """An HLS granule's folder of int16 band files (``HLS.L30.T33UUP.2017164T101031.v2.0.B05.tif``,
    nodata -9999), made of a BigEarthNet Sentinel-2 L2A ``patch`` folder at 120 x 120 px:
    ``bands`` of it (default all, with Fmask and the angles)."""
    stem = f"HLS.{product}.T33UUP.2017164T101031.v2.0"
    folder = root / stem
    folder.mkdir(parents=True)
    layers = {**HLS_BANDS[product], **HLS_LAYERS}
    with rasterio.open(next(patch.glob("*_B02.tif"))) as src:  # the 10 m grid, 120 x 120 px
        profile = {**src.profile, "dtype": "int16", "nodata": -9999, "driver": "GTiff"}
    for name in bands or list(layers):
        source = layers[name]
        if isinstance(source, str):
            with rasterio.open(next(patch.glob(f"*_{source}.tif"))) as src:
                data = src.read(1, out_shape=(120, 120), resampling=Resampling.bilinear)
        else:
            data = np.full((120, 120), source)
        with rasterio.open(folder / f"{stem}.{name}.tif", "w", **profile) as dst:
            dst.write(data.astype(np.int16)[None])
    return folder


ENMAP_ID = "ENMAP01-____L2A-DT0000001867_20220724T104526Z_008_V010302_20230628T165614Z"


def enmap_product(tile: Path, folder: Path, gain: float = 1e-4) -> Path:
    """An EnMAP L2A product as DLR delivers it, of a shared EnMAP tile (its bands tagged with
    their wavelengths): ``<ID>-SPECTRAL_IMAGE.TIF`` of int16 numbers (reflectance / ``gain``,
    no band tags) beside ``<ID>-METADATA.XML`` with each band's wavelength, width, gain and
    offset, and a quality layer, ``<ID>-QL_PIXELMASK.TIF``. Returns the folder."""
    folder.mkdir(parents=True)
    with rasterio.open(tile) as src:
        profile, tags = src.profile, [src.tags(i) for i in range(1, src.count + 1)]
        data = src.read()
    bad = data == src.nodata
    numbers = np.where(bad, -32768, np.round(data * 1e-4 / gain)).astype(np.int16)
    profile.update(dtype="int16", nodata=-32768, driver="GTiff")
    with rasterio.open(folder / f"{ENMAP_ID}-SPECTRAL_IMAGE.TIF", "w", **profile) as dst:
        dst.write(numbers)
    with rasterio.open(
        folder / f"{ENMAP_ID}-QL_PIXELMASK.TIF",
        "w",
        **{**profile, "count": 1, "dtype": "uint8", "nodata": None},
    ) as dst:
        dst.write(np.zeros((1, *data.shape[1:]), np.uint8))
    bands = "".join(
        f'<bandID number="{i}"><wavelengthCenterOfBand>{t["wavelength"]}</wavelengthCenterOfBand>'
        f"<FWHMOfBand>{t['fwhm']}</FWHMOfBand><GainOfBand>{gain:g}</GainOfBand>"
        "<OffsetOfBand>0</OffsetOfBand></bandID>"
        for i, t in enumerate(tags, start=1)
    )
    (folder / f"{ENMAP_ID}-METADATA.XML").write_text(
        f'<?xml version="1.0" encoding="UTF-8"?><level_X><specific>'
        f"<bandCharacterisation>{bands}</bandCharacterisation></specific></level_X>"
    )
    return folder
