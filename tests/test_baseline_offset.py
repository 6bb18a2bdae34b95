"""Sentinel-2 products of processing baseline 04.00 and later (from 25 January 2022) store every
valid value 1000 higher. Read as they are, the shipped EuroSAT head fell from 95% to 10% (chance)
on the shared chips, and the tool said the values fit. The offset is removed on reading where
the product's name or tags say its baseline, or where no band's darkest pixels lie below it;
no shared Sentinel-2 file without the offset is taken for one."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from rasters import crop  # tests/rasters.py

from ofa_explore import load_pretrained
from ofa_explore.change_detection import change
from ofa_explore.engine import EngineSettings, predict_raster
from ofa_explore.heads import classify
from ofa_explore.io import CONVERSION_ATTR, NOTES_ATTR, open_raster
from ofa_explore.modalities import get_modality
from ofa_explore.scale import baseline_version


def _with_offset(src: Path, dst: Path, offset: int = 1000, **tags: str) -> Path:
    """A copy of ``src`` as a baseline-04.00 product stores it: valid values + ``offset``,
    nodata (0) kept."""
    with rasterio.open(src) as s:
        profile, data, descriptions = s.profile, s.read(), s.descriptions
    data = np.where(data > 0, data.astype(np.int64) + offset, 0).astype(profile["dtype"])
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
        out.descriptions = descriptions
        out.update_tags(**tags)
    return dst


def _removed(source) -> bool:
    return open_raster(source).attrs[CONVERSION_ATTR].get("baseline_offset") == 1000


def _s2_files(shared: Path) -> list[Path]:
    chips = [sorted((shared / "eurosat" / c).glob("*.tif"))[0] for c in ("River", "Forest")]
    oscd = sorted((shared / "change" / "oscd").glob("*/*_20[0-9][0-9][0-9][0-9][0-9][0-9].tif"))
    return [*chips, *oscd]


def test_shared_sentinel2_is_read_as_it_is_and_its_offset_copies_lose_the_offset(shared, tmp_path):
    files = _s2_files(shared)
    assert len(files) == 26
    for i, path in enumerate(files):
        assert not _removed(path), path
        assert _removed(_with_offset(path, tmp_path / f"{i}" / path.name)), path
    for folder in [
        *sorted((shared / "s2_scenes").glob("*")),
        *sorted((shared / "bigearthnet" / "S2").glob("*")),
    ]:  # single-band files stacked, L1C and L2A
        bands = sorted(f for f in folder.glob("*.tif"))
        assert not _removed(bands), folder
        shifted = [_with_offset(b, tmp_path / folder.name / b.name) for b in bands]
        assert _removed(shifted), folder


def test_the_offset_is_removed_exactly_and_said(shared, tmp_path):
    """The shipped head on EuroSAT chips with the offset: the same classes as without it."""
    rows = list(csv.DictReader(open(shared / "eurosat" / "index.csv")))[::5]  # 30 chips
    model = load_pretrained().eval()
    m = get_modality("s2_l1c")
    plain, shifted = [], []
    for i, row in enumerate(rows):
        path = shared / "eurosat" / row["path"]
        plain.append(open_raster(path).values.astype(np.float32))
        da = open_raster(_with_offset(path, tmp_path / f"{i}.tif"))
        assert (
            "less the +1000 that processing baseline 04.00 and later adds"
            in (da.attrs[NOTES_ATTR][-1])
        )
        conversion = da.attrs[CONVERSION_ATTR]
        shifted.append(da.values * conversion["scale"] + conversion["offset"])
    assert np.array_equal(np.stack(plain), np.stack(shifted))
    # judged from the values: the note says how to read such a file as it is, and that works
    assert "gdal_edit.py -mo PROCESSING_BASELINE=03.01" in da.attrs[NOTES_ATTR][-1]
    with torch.no_grad():
        raw = torch.from_numpy(np.stack(plain) + 1000)  # what the model saw before
        ok = classify(model, torch.from_numpy(np.stack(plain)), m).argmax(-1)
        off = classify(model, raw, m).argmax(-1)
    assert (off == ok).float().mean() < 0.5  # the garbage this prevents
    chip = shared / "eurosat" / rows[0]["path"]
    a = predict_raster(model, chip, "embed", settings=EngineSettings(precision="fp32"))
    b = predict_raster(
        model, tmp_path / "0.tif", "embed", settings=EngineSettings(precision="fp32")
    )
    assert np.array_equal(a.data.values, b.data.values, equal_nan=True)
    with rasterio.open(tmp_path / "0.tif", "r+") as dst:
        dst.update_tags(PROCESSING_BASELINE="03.01")
    assert open_raster(tmp_path / "0.tif").attrs[CONVERSION_ATTR] == {"kind": "none"}


def test_the_baseline_named_by_the_product_decides(shared, tmp_path):
    chip = sorted((shared / "eurosat" / "Forest").glob("*.tif"))[0]
    safe = "S2B_MSIL1C_20230612T102559_N0509_R108_T32UMU_20230612T123404.SAFE"
    assert _removed(_with_offset(chip, tmp_path / safe / "chip.tif", offset=1000))
    old = "S2A_MSIL1C_20190612T102559_N0207_R108_T32UMU_20190612T123404.SAFE"
    kept = open_raster(_with_offset(chip, tmp_path / old / "chip.tif"))
    assert kept.attrs[CONVERSION_ATTR].get("baseline_offset") is None  # 02.07: no offset
    tagged = _with_offset(chip, tmp_path / "tagged.tif", PROCESSING_BASELINE="05.10")
    da = open_raster(tagged)
    assert da.attrs[CONVERSION_ATTR]["baseline"] == "05.10"
    assert "(baseline 05.10)" in da.attrs[NOTES_ATTR][-1]
    as_is = replace(get_modality("s2_l1c"), baseline_offset=0)  # a scene to read as it is
    assert open_raster(tagged, modality=as_is).attrs[CONVERSION_ATTR] == {"kind": "none"}
    model = load_pretrained()
    kept = predict_raster(model, tagged, "embed", modality=as_is)  # the model knows it by name
    removed = predict_raster(model, tagged, "embed")
    assert not np.allclose(kept.data.values, removed.data.values)
    assert baseline_version("N0400") == (4, 0) and baseline_version("03.01") == (3, 1)
    assert baseline_version("unknown") == (0, 0)


def test_change_across_the_new_baseline_scores_as_without_it(shared, tmp_path):
    """A pair either side of 25 January 2022: AFTER carries the offset, BEFORE does not."""
    folder = shared / "change" / "oscd" / "bercy"
    if not folder.is_dir():
        pytest.skip(f"no OSCD pair at {folder}")
    window = Window(0, 0, 128, 128)
    before = crop(folder / "bercy_20161130.tif", tmp_path / "before.tif", window)
    after = crop(folder / "bercy_20170829.tif", tmp_path / "after.tif", window)
    shifted = _with_offset(after, tmp_path / "after_2023.tif")
    model = load_pretrained()
    settings = EngineSettings(precision="fp32", device="cpu")
    plain = change(before, after, model=model, settings=settings)
    across = change(before, shifted, model=model, settings=settings)
    assert np.allclose(plain.data.values, across.data.values, atol=1e-4)
