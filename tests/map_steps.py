"""How smooth a map is where tiles or patches meet, for the change and segmentation tests."""

from __future__ import annotations

import numpy as np


def step_ratio(score: np.ndarray, every: int, phase: int | None = None) -> float:
    """The mean step between neighbouring pixels across the lines every ``every`` px (both
    axes; the first after pixel ``phase``, default ``every - 1``), over the mean step
    everywhere else: about 1 on a map without seams."""
    phase = every - 1 if phase is None else phase
    at, elsewhere = [], []
    for axis in (0, 1):
        steps = np.abs(np.diff(score.astype(np.float64), axis=axis)).mean(axis=1 - axis)
        lines = np.arange(phase, steps.size, every)
        at.append(steps[lines].mean())
        elsewhere.append(np.delete(steps, lines).mean())
    return float(np.mean(at) / np.mean(elsewhere))


def worst_step_ratio(score: np.ndarray, every: int) -> float:
    """``step_ratio`` of the grid of lines every ``every`` px that steps most, wherever the
    grid starts (tiles cropped at a margin do not meet at multiples of their stride)."""
    return max(step_ratio(score, every, phase) for phase in range(every))
