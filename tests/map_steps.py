"""How smooth a map is where tiles or patches meet, for the change tests."""

from __future__ import annotations

import numpy as np


def step_ratio(score: np.ndarray, every: int) -> float:
    """The mean step between neighbouring pixels across the lines every ``every`` px (both
    axes), over the mean step everywhere else: about 1 on a map without seams."""
    at, elsewhere = [], []
    for axis in (0, 1):
        steps = np.abs(np.diff(score, axis=axis)).mean(axis=1 - axis)
        lines = np.arange(every - 1, steps.size, every)
        at.append(steps[lines].mean())
        elsewhere.append(np.delete(steps, lines).mean())
    return float(np.mean(at) / np.mean(elsewhere))
