"""Shared fixtures: the real imagery in ../shared/data (beside the repo), read with rasterio."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OFA_SHARED_DATA", ROOT.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# `pytest -m "not slow"` is the inner loop (README, Development). Slow: about 4.5 s or more on
# the 2-core development machine (measured with --durations=0), listed here by test name.
SLOW_FILES = {
    "test_pretraining.py",
    "test_gpu_pretrain.py",
    "test_notebooks.py",
    "test_qgis_desktop.py",
    "test_qgis_plugin.py",
    "test_jupyterlab.py",
}
SLOW_TESTS = {
    "test_installed_console_script_runs",
    "test_published_weights_by_name_wherever_a_checkpoint_is_taken",
    "test_sigterm_cancels_like_ctrl_c_and_leaves_nothing",
    "test_converted_dofa_equals_torchgeo_tokens_and_pooled_features",
    "test_legacy_kernel_layout_equals_torchgeo_before_the_fix",
    "test_backbone_comparison_reports_both_backbones",
    "test_fine_tuning_trains_the_last_blocks_only",
    "test_geobench_folders_run_and_give_the_paper_table",
    "test_head_on_real_eurosat_chips_is_well_above_chance",
    "test_published_weight_layout_runs_the_comparison_and_wavelength_only_tasks",
    "test_saved_head_round_trips_and_drives_ofa_classify",
    "test_segmentation_head_overfits_a_real_labelled_scene",
    "test_cancel_stops_the_process_group_and_leaves_nothing",
    "test_run_streams_progress_and_returns_the_result",
    "test_existing_scheduler_loads_one_model_per_worker",
    "test_local_dask_cluster_matches_serial_run",
    "test_sigterm_stops_a_dask_run_and_leaves_nothing_hidden",
    "test_generated_rasters_succeed_or_fail_cleanly",
    "test_two_jobs_on_one_worker_load_the_model_once",
    "test_a_killed_worker_is_replaced_and_the_job_sent_again",
    "test_an_engine_without_serve_runs_one_process_per_job",
    "test_shutdown_leaves_no_process",
    "test_serve_runs_the_jobs_sent_until_eof",
    "test_serve_quit_cancels_the_running_job_and_ends",
    "test_cancel_stops_the_job_not_the_worker",
    "test_an_error_leaves_the_worker_alive",
}


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        name = item.path.name
        if name.startswith("test_qgis"):
            item.add_marker(pytest.mark.qgis)
        if "browser" in item.path.parts:
            item.add_marker(pytest.mark.browser)
        if name in SLOW_FILES or item.originalname in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


def pytest_terminal_summary(terminalreporter) -> None:
    """A test's ``summary`` property (e.g. how many generated cases ran) at the session's end."""
    for reports in terminalreporter.stats.values():
        for report in reports:
            for name, value in getattr(report, "user_properties", ()):
                if name == "summary" and report.when == "call":
                    terminalreporter.write_line(f"{report.nodeid}:\n{value}")


try:  # tests/qgis need QGIS's Python; tests/test_qgis_plugin.py runs them there
    from qgis.core import Qgis as _qgis  # (tests/qgis itself is no such package)

    del _qgis
except ImportError:
    collect_ignore = ["qgis"]


def read_tif(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return src.read()


@contextlib.contextmanager
def process_group(command: list[str], **options):
    """A command in its own process group with piped text output, as a scheduler or a GUI
    starts a worker; whatever is left of the group is killed at the end."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        **options,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "MANIFEST.md").exists():
        pytest.skip(f"shared data not found at {SHARED} (set OFA_SHARED_DATA)")
    return SHARED


@pytest.fixture(scope="session")
def eurosat_batch(shared) -> torch.Tensor:
    """Eight real EuroSAT-MS chips (13 bands, uint16 DN), one per class where possible:
    [8, 13, 64, 64]."""
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


@pytest.fixture(scope="session")
def neon_trees(shared, tmp_path_factory) -> Path:
    """The NEON 0.1 m RGB tile with its 61 tree-crown boxes rasterised as a mask (1 = tree), in the
    images/ + masks/ layout that `ofa train-head --task segmentation` reads."""
    return _neon_trees(shared, tmp_path_factory.mktemp("neon_trees"), None)


@pytest.fixture(scope="session")
def neon_trees_crop(shared, tmp_path_factory) -> Path:
    """The top-left 192 x 192 pixels of the same scene and mask (small enough to overfit fast)."""
    return _neon_trees(shared, tmp_path_factory.mktemp("neon_trees_crop"), 192)


def _neon_trees(shared: Path, root: Path, crop: int | None) -> Path:
    import json

    import rasterio
    from rasterio.windows import Window

    from ofa_explore.downstream.datasets import boxes_to_mask

    (root / "images").mkdir()
    (root / "masks").mkdir()
    src_path = shared / "neon_rgb" / "OSBS_029.tif"
    with rasterio.open(src_path) as src:
        window = Window(0, 0, crop or src.width, crop or src.height)
        profile = src.profile
        image = src.read(window=window)
        transform = src.window_transform(window)
    profile.update(
        nodata=None, width=image.shape[2], height=image.shape[1], transform=transform
    )  # 255 is a valid bright pixel here (MANIFEST)
    with rasterio.open(root / "images" / "OSBS_029.tif", "w", **profile) as dst:
        dst.write(image)
    mask = boxes_to_mask(shared / "neon_rgb" / "OSBS_029.csv", (400, 400))[
        : image.shape[1], : image.shape[2]
    ]
    profile.update(count=1, dtype="uint8")
    with rasterio.open(root / "masks" / "OSBS_029.tif", "w", **profile) as dst:
        dst.write(mask[None])
    (root / "classes.json").write_text(
        json.dumps({"classes": ["background", "tree"], "colors": ["#d9d9d9", "#1b7837"]})
    )
    return root
