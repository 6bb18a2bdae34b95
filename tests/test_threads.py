"""CPU thread defaults: the cores this process may use, less those other programs keep busy."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from ofa_explore import threads


@pytest.fixture(autouse=True)
def keep_torch_threads(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_cgroup_v2_quota_of_own_cgroup_and_its_parents(tmp_path):
    root = tmp_path / "cgroup"
    own = root / "user.slice" / "jupyter-ana.service"
    own.mkdir(parents=True)
    (own / "cpu.max").write_text("max 100000\n")
    (own.parent / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs for the whole slice
    membership = tmp_path / "cgroup-membership"
    membership.write_text("0::/user.slice/jupyter-ana.service\n")
    assert threads.cgroup_cpu_quota(root, membership) == 1.5
    (own / "cpu.max").write_text("50000 100000\n")
    assert threads.cgroup_cpu_quota(root, membership) == 0.5


def test_cgroup_v1_quota_and_no_quota(tmp_path):
    root = tmp_path / "cgroup"
    cpu = root / "cpu,cpuacct" / "docker" / "abc"
    cpu.mkdir(parents=True)
    (cpu / "cpu.cfs_quota_us").write_text("200000\n")
    (cpu / "cpu.cfs_period_us").write_text("100000\n")
    membership = tmp_path / "cgroup-membership"
    membership.write_text("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n")
    assert threads.cgroup_cpu_quota(root, membership) == 2.0
    (cpu / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_quota(root, membership) is None
    assert threads.cgroup_cpu_quota(tmp_path / "nothing", tmp_path / "missing") is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_a_competing_process_counts_as_a_busy_core():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        busy = threads.busy_cores(interval=0.5)
    finally:
        burner.kill()
        burner.wait()
    assert busy >= 0.6, busy
    if threads.usable_cores() == 2:  # this machine: one core left
        torch.set_num_threads(2)
        threads._torch_default = None
        assert threads.default_threads() == 1 or threads.busy_cores() < 0.75


def test_own_work_is_not_counted_as_busy():
    """The sampling leaves this process's own CPU time out: a core kept busy here adds about
    nothing to what it reports (a whole core if it counted). Compared with a sample taken just
    before, so that other programs on a shared machine (a CI runner) do not count."""
    import threading

    before = threads.busy_cores(0.4)
    sample = {}
    t0 = time.perf_counter()
    worker = threading.Thread(target=lambda: sample.setdefault("busy", threads.busy_cores(0.4)))
    worker.start()
    while time.perf_counter() - t0 < 0.4:  # keep one core busy in this very process
        pass
    worker.join()
    assert sample["busy"] < before + 0.6, (before, sample)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/stat is Linux's")
def test_busy_cores_since_an_earlier_sample_waits_only_for_the_rest():
    """The CLI samples before importing torch: the import's time counts, no extra wait."""
    since = threads.cpu_sample()
    assert since is not None
    time.sleep(0.3)
    t0 = time.perf_counter()
    busy = threads.busy_cores(0.2, since=since)
    assert time.perf_counter() - t0 < 0.1
    assert 0 <= busy <= threads.usable_cores() + 0.5
    t0 = time.perf_counter()
    threads.busy_cores(0.2, since=threads.cpu_sample())  # a fresh sample: the whole interval
    assert time.perf_counter() - t0 >= 0.19


def test_settings_named_by_the_user_win(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    assert threads.default_threads() == 3
    monkeypatch.setenv(threads.ENV, "lots")
    with pytest.raises(ValueError, match="OFA_EXPLORE_THREADS must be a whole number"):
        threads.default_threads()
    monkeypatch.delenv(threads.ENV)
    assert threads.set_threads(1) == 1 and torch.get_num_threads() == 1
    threads.ensure_threads()  # an explicit choice is kept
    assert torch.get_num_threads() == 1
    assert 1 <= threads.default_threads() <= threads.usable_cores()


def test_cli_threads_option(monkeypatch, capsys):
    from ofa_explore.cli import main

    assert main(["modalities", "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    with pytest.raises(SystemExit):
        main(["--threads", "0", "modalities"])
    assert "--threads must be a whole number of threads, 1 or more" in capsys.readouterr().err


def test_library_functions_leave_torch_threads_alone(monkeypatch, tmp_path):
    """Loading a checkpoint, the engine and training change no global state: in a fresh process
    (nothing chosen yet) with OFA_EXPLORE_THREADS=1, torch keeps the count it had."""
    from ofa_explore import load_pretrained
    from ofa_explore.demo import SAMPLES, sample_path
    from ofa_explore.engine import predict_raster
    from ofa_explore.pretraining.config import load_config
    from ofa_explore.pretraining.train import train

    monkeypatch.setattr(threads, "_applied", False)
    monkeypatch.setenv(threads.ENV, "1")
    torch.set_num_threads(2)
    model = load_pretrained()
    predict_raster(model, sample_path("eurosat_river.tif"), "embed")
    config = load_config(
        {
            "model": {"size": "tiny", "patch_size": 8, "img_size": 32, "arch": {"depth": 1}},
            "data": [
                {"modality": m, "paths": [str(sample_path(f))], "val_fraction": 0.25}
                for f, m in SAMPLES.items()
                if m == "s2_l1c"
            ][:1],
            "steps": 2,
            "batch_size": 2,
            "checkpoint_every": 2,
            "val_batches": 1,
            "output_dir": str(tmp_path / "run"),
        }
    )
    train(config, quiet=True)
    assert torch.get_num_threads() == 2


def test_shells_choose_the_default(monkeypatch, tmp_path, capsys):
    """The CLI commands that run a model and the notebook widgets apply the default once per
    process (here OFA_EXPLORE_THREADS=1); `ofa info` runs no model and leaves it."""
    from ofa_explore.cli import main
    from ofa_explore.demo import sample_path
    from ofa_explore.pretrained import shipped_checkpoint_path

    monkeypatch.setenv(threads.ENV, "1")
    monkeypatch.setattr(threads, "_applied", False)
    torch.set_num_threads(2)
    assert main(["info", str(shipped_checkpoint_path())]) == 0
    assert torch.get_num_threads() == 2
    assert (
        main(["embed", str(sample_path("eurosat_river.tif")), "-o", str(tmp_path / "e.tif"), "-q"])
        == 0
    )
    assert torch.get_num_threads() == 1

    pytest.importorskip("ipywidgets")
    from ofa_explore import load_pretrained
    from ofa_explore.widgets import ReconstructionExplorer

    monkeypatch.setattr(threads, "_applied", False)
    torch.set_num_threads(2)
    model = load_pretrained()
    assert torch.get_num_threads() == 2
    ReconstructionExplorer(model, sample_path("eurosat_river.tif"))
    assert torch.get_num_threads() == 1
