"""The engine's "change" task: the calibrated pair scored tile by tile, its tags, and what
the run reports (the changed area, misregistration, a mask too wide to believe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..areas import masked_area_m2
from ..engine import EngineSettings, Task, register
from ..errors import BadInput
from ..modalities import Modality
from ..protocol import (
    CHANGE_HEAD_TAG,
    CHANGE_THRESHOLD_TAG,
    MISREGISTERED_PX,
    WIDESPREAD_CHANGE,
    change_threshold,
)
from ..registration import Shift
from .calibration import CHANGE_ATTR, date_modality
from .terms import ANOMALY_WEIGHT, EMBEDDING_WEIGHT, HEAD_SMOOTH_PX, score

# AFTER's offset from BEFORE (registration.phase_shift on the calibration's sample, within
# 0.16 px of a known move on the 13 pairs of the shared data): from protocol.MISREGISTERED_PX,
# change() warps AFTER onto BEFORE's features (align=True, the default), or warns that edges
# will show as change. AFTER moved 1 px off, the zero-shot default's pooled AP on the 8 OSCD
# cities fell from 0.214 to 0.185, 3 px: 0.109; aligned from 0.3 px instead of 1, 0.229 against
# 0.228 on the pairs as they are (with the last block's embeddings then), for a slower read of
# AFTER through a warp (docs/EVALUATION.md)
# ... when the dates share enough detail for the offset to be believed: the phase correlation
# of unrelated images peaks at a coherence of about 0.01 on 16 tiles, real pairs 0.14-0.62
MIN_COHERENCE = 0.03


@register
class Change(Task):
    """The zero-shot change score of two dates (the pair from ``open_pair``, calibrated by
    ``calibrate``), per pixel; band 2 is the 0/1 mask when a threshold was given."""

    name = "change"

    def __init__(self, model, modality: Modality, settings: EngineSettings):
        if CHANGE_ATTR not in modality.extra:
            raise BadInput(
                "the change task runs on two dates calibrated by ofa_explore.change()",
                "call ofa_explore.change(before, after)",
            )
        self.stats = modality.extra[CHANGE_ATTR]
        self.date = date_modality(modality)
        super().__init__(model, self.date, settings)
        self.threshold = self.stats.get("threshold")

    @property
    def per_pixel(self) -> bool:
        return True

    @property
    def blend(self) -> bool:
        """A head's score blends tiles: its token maps see only their tile, and the cropped
        centres showed as squares on the map (the zero-shot score keeps them: its cost goal)."""
        return self.stats.get("head") is not None

    def bands(self) -> list[str]:
        return ["change_score"] + (["change_mask"] if self.threshold is not None else [])

    def forward(self, x: torch.Tensor, seed: int) -> np.ndarray:
        count = self.date.num_bands
        before, after = x[:, :count], x[:, count:]
        return score(self.model, before, after, self.date, self.stats)[:, None].cpu().numpy()

    def cells(self, block: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            return block
        return np.concatenate([block, (block >= self.threshold).astype(block.dtype)])

    def start(self, grid) -> None:
        super().start(grid)
        self.counts = np.zeros(2, dtype=np.int64)  # valid pixels, changed pixels
        self.changed_m2 = 0.0

    def observe(self, block: np.ndarray, valid: np.ndarray, row: int, col: int) -> None:
        changed = block[1] > 0.5 if self.threshold is not None else np.zeros_like(valid)
        changed &= valid
        self.counts += (int(valid.sum()), int(changed.sum()))
        if self.grid.row_m2 is not None:  # a pixel's area differs by row in degrees
            self.changed_m2 += masked_area_m2(changed, self.grid.row_m2[row : row + len(changed)])

    def tags(self) -> dict[str, str]:
        head = self.stats.get("head")
        tags = {
            "ofa_change_score": f"z(change logit of head {head!r}, Gaussian {HEAD_SMOOTH_PX:g} px)"
            if head is not None
            else f"z(pixels) + {ANOMALY_WEIGHT:g} * z(anomaly) + "
            f"{EMBEDDING_WEIGHT:g} * z(embeddings)"
        }
        if head is not None:  # the score's kind, for a style that fits it
            tags[CHANGE_HEAD_TAG] = head
        if self.threshold is not None:
            tags[CHANGE_THRESHOLD_TAG] = f"{self.threshold:.6g}"
        if self.stats.get("aligned") is not None:  # the file says AFTER was moved, and how
            rows, cols = self.stats["aligned"]
            tags["ofa_after_aligned"] = (
                f"AFTER read {rows:+.2f} rows, {cols:+.2f} columns off its georeferencing, "
                "where its features lie (phase correlation)"
            )
        return tags

    def finish(self, sink, path: Path | None) -> dict[str, Any]:
        pixels, changed = (int(v) for v in self.counts)
        checks: dict[str, float] = {"valid_pixels": pixels}
        notes: list[str] = []
        cautions: list[str] = []
        if self.stats.get("shift") is not None:
            shift = Shift(*self.stats["shift"])
            checks.update(
                shift_rows=shift.rows,
                shift_cols=shift.cols,
                shift_pixels=shift.pixels,
                shift_coherence=shift.coherence,
            )
            said = misregistration(shift, self.grid.transform, self.stats)
            if self.stats.get("aligned") is not None:
                rows, cols = self.stats["aligned"]
                checks.update(aligned_rows=rows, aligned_cols=cols)
                moved = Shift(-rows, -cols, shift.coherence)
                said = (
                    f"AFTER was moved {moved.pixels:.1f} px onto BEFORE's features "
                    f"({directions(moved, self.grid.transform)}; GDAL, bilinear); then {said}"
                )
            (cautions if shift_matters(shift) else notes).append(said)
        if self.threshold is not None:
            share = changed / max(pixels, 1)
            checks.update(threshold=self.threshold, changed_pixels=changed, changed_share=share)
            area = f"{changed} px"
            if self.grid.row_m2 is not None:
                hectares = self.changed_m2 / 1e4
                checks["changed_hectares"] = hectares
                area = f"{hectares:.2f} ha ({changed} px)"
            notes.append(
                f"changed: {area}, {share:.2%} of the pixels with data in both dates "
                f"(score >= {self.threshold:.3g})"
            )
            if share >= WIDESPREAD_CHANGE:
                head = self.stats.get("head") is not None
                otsu = self.stats.get("threshold_from") == "otsu"
                cautions.append(widespread(share, self.threshold, head, otsu))
        return {
            "checks": checks,
            "notes": notes,
            "warnings": cautions,
            "head": self.stats.get("head"),
        }


def widespread(share: float, threshold: float, head: bool, otsu: bool = False) -> str:
    """The warning for a mask that marks WIDESPREAD_CHANGE or more of the scene at
    ``threshold`` (of a trained ``head``'s score, or the zero-shot score's; ``otsu``: Otsu's
    split chose it), with the threshold to try instead."""
    default = change_threshold(head)
    said = (
        f"the mask marks {share:.0%} of the scene as changed; change between two dates is "
        "rarely that wide (0.7-3.8% of each labelled OSCD city)"
    )
    if not otsu and threshold >= default:  # no lower than measured best: not the threshold
        return (
            f"{said}, even at the threshold {threshold:.3g}: unless most of the place did "
            "change, the dates differ in more than the land (clouds, haze or snow in one, another "
            "season, another processing of the data), so check both dates"
        )
    why = (
        "Otsu's split looks for two classes of some size, and marks far more than changed "
        "where change is a small part of the scene"
        if otsu
        else f"the threshold {threshold:.3g} is low for this score"
    )
    return (
        f"{said}: {why}. Use a threshold of {default:g} (the measured default, 'auto') or "
        "higher, unless most of the place did change"
    )


def shift_matters(shift: Shift) -> bool:
    """Whether AFTER's measured offset from BEFORE is large enough to show edges as change
    (MISREGISTERED_PX) and measured on enough shared detail to be believed (MIN_COHERENCE)."""
    return shift.pixels >= MISREGISTERED_PX and shift.coherence >= MIN_COHERENCE


def directions(shift: Shift, transform) -> str:
    """A shift in compass directions on a north-up grid ("1.4 px south, 0.4 px east"), else
    in rows and columns."""
    if transform is not None and transform.b == 0 and transform.d == 0 and transform.e < 0:
        return (
            f"{abs(shift.rows):.1f} px {'south' if shift.rows > 0 else 'north'}, "
            f"{abs(shift.cols):.1f} px {'east' if shift.cols > 0 else 'west'}"
        )
    return f"{shift.rows:+.1f} rows, {shift.cols:+.1f} columns"


def misregistration(shift: Shift, transform, stats: dict) -> str:
    """What the dates' measured offset means, in words (compass directions on a north-up grid,
    else rows and columns), and what to do when it matters: left by alignment (another
    distortion than a move), or alignment was off (``stats["align"]``)."""
    if shift.coherence < MIN_COHERENCE:
        return (
            "the dates' offset could not be measured: they share too little detail "
            f"(phase correlation, coherence {shift.coherence:.2f})"
        )
    if not shift_matters(shift):
        return f"the dates line up within {shift.pixels:.1f} px (phase correlation)"
    if stats.get("aligned") is not None:
        fix = (
            "AFTER was moved onto BEFORE's features, yet the dates still differ by more than a "
            "move (a rotation, scale or terrain?): co-register AFTER onto BEFORE (e.g. with "
            "AROSICS, or GDAL and ground control points) and run again"
        )
    elif not stats.get("align", True):
        fix = "leave alignment on (the default), or co-register AFTER onto BEFORE and run again"
    else:  # no CRS to warp in
        fix = (
            "give both dates a CRS so AFTER can be moved onto BEFORE's features, or co-register "
            "them"
        )
    return (
        f"AFTER's features lie {shift.pixels:.1f} px from BEFORE's ({directions(shift, transform)}"
        f"; phase correlation): from {MISREGISTERED_PX:g} px, edges show as change. "
        + fix[:1].upper()
        + fix[1:]
    )
