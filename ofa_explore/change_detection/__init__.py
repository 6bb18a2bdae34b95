"""Change between two dates: ``change(before, after)`` and ``ofa change BEFORE AFTER -o OUT.tif``.

The zero-shot score, per pixel of BEFORE's grid (float32, higher = more change, in standard
deviations of the scene's own scores):

    score = z(pixels) + ANOMALY_WEIGHT * z(anomaly) + EMBEDDING_WEIGHT * z(embeddings)

* pixels: each date's bands standardised by that date's own band means and deviations (which
  removes most of the difference of season, sun and haze), the absolute difference averaged
  over the visible and shortwave-infrared bands (PIXEL_BANDS_UM, from the modality's
  wavelengths; all bands of a sensor without wavelengths, and of SAR), the visible range
  weighed 0.8 and the SWIR 0.2 (PIXEL_RANGE_SHARES: the visible bands rank urban change best),
  and over a PIXEL_BOX x PIXEL_BOX window, so one pixel of misregistration barely counts. The
  near infrared and red edge (0.7-1.5 µm) are left out: they mostly see the vegetation's season.
* anomaly: the same bands' anomalous change (the Gaussian detector of Theiler and Perkins,
  2006): how unlikely the pixel's two dates are together, given how likely each date is alone,
  under the scene's joint band covariance of both dates. Where the whole scene changes alike
  (a season, haze, another sensor gain), the covariance has learnt that change and it scores
  low; so it ranks what changed unlike the rest, averaged over the same window.
* embeddings: 1 - cosine of the two dates' patch embeddings from the model (the token maps
  after EMBEDDING_DEPTH of its blocks: about as good as the last block's, for less work),
  each date's mean embedding subtracted first (raw embeddings mostly say "other season"), one
  value per patch, interpolated bilinearly to pixels (``to_pixels``).
* z(): standardised by its mean and deviation over the scene, so scores of different scenes
  and sensors mean the same.

The band statistics and covariances, the mean embeddings and z's figures come from a sample of
tiles spread over the scene (``calibrate``) before the engine runs the task tile by tile;
memory stays flat in the raster's size. Measured on the 8 labelled OSCD cities in docs/EVALUATION.md
(scripts/evaluate_change.py), where the weights below were chosen.

With a trained change head (``ofa train-head --task change``, kind "change" in the checkpoint)
band 1 is instead the head's change logit, from the same calibrated inputs plus the token maps
of a few encoder blocks (``head_inputs``), smoothed by a Gaussian of ``HEAD_SMOOTH_PX`` and
standardised over the scene like the zero-shot score.

AFTER is warped onto BEFORE's grid by GDAL (rasterio's WarpedVRT, bilinear) when its grid differs.
Dates that are not co-registered show every edge as change: the calibration's sample measures
how far AFTER's features lie from BEFORE's (``registration.phase_shift``), and from
MISREGISTERED_PX AFTER is warped again from where its features lie (``align``, the default) or
a warning says so (``result.checks["shift_pixels"]``, ``["shift_rows"]``, ``["shift_cols"]``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import rasterio
import torch
import xarray as xr

from ..engine import EngineSettings, PredictionResult, predict_raster
from ..engine.run import GDAL_CACHE_BYTES
from ..engine.sinks import check_output
from ..errors import BadInput
from ..io import MODALITY_ATTR, raster_modality
from ..modalities import Modality
from ..protocol import SCENE_THRESHOLDS
from .calibration import CHANGE_ATTR, calibrate, date_modality, date_shift, sample_tiles
from .dates import Date, date_files, open_dates, pair_of
from .polygons import check_polygons, write_polygons
from .task import Change, shift_matters


def change(
    before: Date,
    after: Date,
    output: str | Path | None = None,
    *,
    model=None,  # an OFANet, a function that loads one, or None: the shipped model
    threshold: float | str | None = None,
    polygons: str | Path | None = None,
    head: str | None = None,
    modality: str | Modality | None = None,
    settings: EngineSettings | None = None,
    overwrite: bool = False,
    align: bool = True,
    progress=None,
    cancel=None,
) -> PredictionResult:
    """The change between two dates on BEFORE's grid: ``result.data`` (in memory, a
    georeferenced DataArray) or ``output`` (a COG): band 1 the zero-shot score (see the
    module's docstring), band 2 a 0/1 mask when ``threshold`` is given: a score, "auto" (3 for
    the zero-shot score, 2.5 for a head's: ``protocol.CHANGE_THRESHOLDS``) or "otsu" (Otsu's
    split of the scene's scores, which marks far more than changed on the OSCD cities).
    ``polygons`` (a .gpkg, needs a threshold) gets the changed areas as polygons.

    ``before`` and ``after``: paths (a file, a scene's folder or zip), or DataArrays that
    ``open_raster`` gave, as they are now (cropped, bands selected, values scaled:
    ``arrays.opened_array``); an AFTER DataArray on another grid is warped window by window.

    ``head``: the model's change head that scores (band 1 is then its standardised logit); by
    default its first change head for the sensor, if it has one; ``"zero-shot"``: none.

    ``align``: AFTER whose features lie MISREGISTERED_PX or more off BEFORE's (measured by phase
    correlation, ``result.checks["shift_pixels"]``) is warped onto them before scoring; False
    reads AFTER as its georeferencing puts it and warns instead."""
    from ..pretrained import load_model

    if threshold not in (None, *SCENE_THRESHOLDS) and not isinstance(threshold, (int, float)):
        raise BadInput(f"threshold {threshold!r}", "give {threshold} a number, 'auto' or 'otsu'")
    check_output(output, date_files(before) + date_files(after), overwrite, Change)
    gpkg = check_polygons(polygons, threshold, overwrite)
    settings = settings or EngineSettings()
    if model is None or not isinstance(model, torch.nn.Module):  # None, or what loads one
        model = load_model(None) if model is None else model()
    tile = settings.tile or model.config.img_size
    pair, stats = calibrated_pair(
        model, before, after, modality, tile, threshold, head=head, align=align
    )
    pm = raster_modality(pair)
    pair.attrs[MODALITY_ATTR] = replace(pm, extra={**pm.extra, CHANGE_ATTR: stats}).to_dict()
    result = predict_raster(
        model,
        pair,
        "change",
        output,
        settings=settings,
        overwrite=overwrite,
        progress=progress,
        cancel=cancel,
    )
    if gpkg is not None:
        try:
            count = write_polygons(result, gpkg)
        except BaseException:  # nothing half-written: the map and its picture go too
            for written in (result.path, result.quicklook):
                if written is not None:
                    written.unlink(missing_ok=True)
            raise
        result.notes.append(f"wrote {count} changed area(s) to {gpkg}")
    return result


def calibrated_pair(
    model,
    before: Date,
    after: Date,
    modality: str | Modality | None,
    tile: int,
    threshold: float | str | None,
    head: str | None = None,
    samples: int | None = None,
    align: bool = True,
    for_head: bool = False,
) -> tuple[xr.DataArray, dict]:
    """The pair (``open_pair``) and its calibration (``calibrate``; ``head`` as ``change()``
    takes it, ``for_head`` as ``calibrate`` does). With ``align``, AFTER found
    MISREGISTERED_PX or more off BEFORE is warped again from where its features lie, and
    calibrated again: its ``shift`` is then what is left, ``aligned`` the move."""
    dates = open_dates(before, after, modality)
    pair = pair_of(*dates)
    m = date_modality(raster_modality(pair))
    name = change_head(model, head, m)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):  # as the engine reads: a bounded cache
        sample = sample_tiles(model, pair, tile, name, samples)
        shift = date_shift(sample, m)
        aligned = None
        if align and shift and shift_matters(shift) and pair.rio.crs is not None:
            aligned = [shift.rows, shift.cols]
            pair = pair_of(*dates, offset=(shift.rows, shift.cols))
            sample = sample_tiles(model, pair, tile, name, samples)
            shift = date_shift(sample, m)  # what is left
        stats = calibrate(model.eval(), pair, tile, threshold, name, samples, sample, for_head)
    stats.update(shift=None if shift is None else list(shift), aligned=aligned, align=align)
    return pair, stats


def change_head(model, head: str | None, m: Modality) -> str | None:
    """The change head to score with: the one named, else the model's first change head for
    this sensor; None for the zero-shot score (``head="zero-shot"``, or no change head)."""
    if head == "zero-shot":
        return None
    has = [n for n, i in model.heads.info.items() if i["kind"] == "change"]
    if head is None and not has:
        return None
    name = model.heads.select(head, "change", m)
    if model.heads.info[name]["kind"] != "change":
        raise BadInput(
            f"head {name!r} is a {model.heads.info[name]['kind']} head, not a change head",
            "name a change head with {head}, or 'zero-shot'",
        )
    return name
