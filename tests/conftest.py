"""Shared fixtures: the real imagery in ../shared/data (beside the repo), read with rasterio."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def read_tif(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "MANIFEST.md").exists():
        pytest.skip(f"shared data not found at {SHARED} (set OFA_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def eurosat_batch(shared) -> torch.Tensor:
    """Eight real EuroSAT-MS chips (13 bands, uint16 DN), one per class where possible: [8, 13, 64, 64]."""
    with open(shared / "eurosat" / "index.csv") as f:
        rows = list(csv.DictReader(f))
    picked, seen = [], set()
    for row in rows:
        if row["label"] not in seen:
            seen.add(row["label"])
            picked.append(row)
    chips = [read_tif(shared / "eurosat" / r["path"]) for r in picked[:8]]
    return torch.from_numpy(np.stack(chips).astype(np.float32))


class PickleBomb:
    """Unpickling this runs a shell command that leaves a marker file: loaders must never do it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED_BY_PICKLE",))
