"""Phase correlation finds a known move of a real Sentinel-2 date to a tenth of a pixel, and
says when two images share nothing."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject

from ofa_explore.change_detection.task import MIN_COHERENCE
from ofa_explore.registration import phase_shift


@pytest.fixture(scope="module")
def rennes(shared):
    path = shared / "change" / "oscd" / "rennes" / "rennes_20150821.tif"
    if not path.is_file():
        pytest.skip(f"no OSCD pair at {path}")
    with rasterio.open(path) as src:  # B02, B03, B04, B11, B12: the pixel term's bands
        return src.read([2, 3, 4, 12, 13]).astype(np.float32), src.transform, src.crs


def _tiles(bands: np.ndarray) -> np.ndarray:
    """Nine 64 px tiles of each band, as the change calibration samples a scene: [45, 64, 64]."""
    return np.stack(
        [bands[:, y : y + 64, x : x + 64] for y in (20, 130, 240) for x in (30, 230, 430)]
    ).reshape(-1, 64, 64)


def _moved(image, rows: float, cols: float) -> np.ndarray:
    """The image's features ``rows`` px down and ``cols`` px right, warped by GDAL (bilinear)."""
    bands, transform, crs = image
    out = np.zeros_like(bands)
    reproject(
        bands,
        out,
        src_transform=transform * Affine.translation(cols, rows),
        src_crs=crs,
        dst_transform=transform,
        dst_crs=crs,
        resampling=Resampling.bilinear,
    )
    return out


@pytest.mark.parametrize("rows, cols", [(0, 0), (2, 0), (0, -3), (1.5, 0.5), (-4, 5)])
def test_a_known_move_is_found(rennes, rows, cols):
    found = phase_shift(_tiles(rennes[0]), _tiles(_moved(rennes, rows, cols)))
    assert (found.rows, found.cols) == pytest.approx((rows, cols), abs=0.1)
    assert found.pixels == pytest.approx(np.hypot(rows, cols), abs=0.1)
    assert found.coherence > 0.8  # the same image moved: nearly all of it correlates


def test_the_two_dates_of_a_real_pair_cohere_and_noise_does_not(rennes, shared):
    with rasterio.open(shared / "change" / "oscd" / "rennes" / "rennes_20170621.tif") as src:
        later = src.read([2, 3, 4, 12, 13]).astype(np.float32)
    pair = phase_shift(_tiles(rennes[0]), _tiles(later))
    assert pair.pixels < 0.3 and pair.coherence > 0.2  # two seasons apart, still one place
    noise = np.random.default_rng(0).normal(size=rennes[0].shape).astype(np.float32)
    unrelated = phase_shift(_tiles(rennes[0]), _tiles(noise))
    assert unrelated.coherence < MIN_COHERENCE / 2


def test_no_data_does_not_move_the_estimate(rennes):
    before, after = _tiles(rennes[0]), _tiles(_moved(rennes, 1, -2))
    after[:, :20, :] = np.nan  # a strip of each tile without data
    found = phase_shift(before, after)
    assert (found.rows, found.cols) == pytest.approx((1, -2), abs=0.15)
