"""The warm engine: `ofa serve` (a worker that runs many jobs) and the QGIS plugin's Qt-free
workers module that keeps one alive, with real processes. The plugin is imported as its build
stages it; the engine is this test environment's Python, as in tests/test_qgis_engine.py."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "build_qgis_plugin", ROOT / "scripts" / "build_qgis_plugin.py"
)
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)
_STAGED = tempfile.TemporaryDirectory(prefix="ofa-plugin-")
_build.stage(_STAGED.name)
sys.path.insert(0, _STAGED.name)
try:
    engine = importlib.import_module("ofa_explore_qgis.engine")
    workers = importlib.import_module("ofa_explore_qgis.workers")
finally:
    sys.path.remove(_STAGED.name)


@pytest.fixture(scope="module")
def runner():
    found = engine.probe(sys.executable, "test")
    yield found
    workers.shutdown()


@pytest.fixture(scope="module")
def chip(shared):
    return shared / "eurosat" / "River" / "River_1.tif"


@pytest.fixture(scope="module")
def mosaic(shared, tmp_path_factory) -> Path:
    """A real Sentinel-2 L1C mosaic of EuroSAT chips, 1536 px square: many batches."""
    chips = sorted((shared / "eurosat").glob("*/*.tif"))[:36]
    with rasterio.open(chips[0]) as src:
        profile = src.profile
    rows = [
        np.concatenate([rasterio.open(chips[(r * 6 + c) % 36]).read() for c in range(6)], 2)
        for r in range(6)
    ]
    data = np.tile(np.concatenate(rows, axis=1), (1, 4, 4))
    profile.update(width=data.shape[2], height=data.shape[1])
    path = tmp_path_factory.mktemp("mosaic") / "scene.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def pid() -> int:
    worker = workers.current()
    assert worker is not None and worker.alive()
    return worker.proc.pid


def gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False


def classify(runner, chip, out: Path, **choices):
    return engine.run(runner, engine.Job("classify", str(chip), str(out), **choices))


def test_two_jobs_on_one_worker_load_the_model_once(runner, chip, tmp_path):
    seen: list[str] = []
    first = engine.run(
        runner,
        engine.Job("classify", str(chip), str(tmp_path / "a.tif")),
        status=seen.append,
    )
    worker = pid()
    second = classify(runner, chip, tmp_path / "b.tif")
    assert pid() == worker and workers.current().ready["pid"] == worker
    assert first["model_loads"] == second["model_loads"] == 1 and second["cached"]
    assert first["classes"] == second["classes"] and first["classes"][0] == "AnnualCrop"
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        assert (a.read() == b.read()).all()
    if seen:  # the worker was not started yet: the job said so, then that it runs
        assert seen == [workers.STARTING, ""]


def test_an_error_leaves_the_worker_alive(runner, chip, tmp_path):
    classify(runner, chip, tmp_path / "warm.tif")
    worker = pid()
    with pytest.raises(engine.EngineError, match="Band 14 does not exist") as err:
        classify(runner, chip, tmp_path / "x.tif", bands=[1, 14])
    assert "check Bands" in str(err.value)  # the dialog's field, in QGIS words
    (tmp_path / "exists.tif").write_bytes(b"x")
    with pytest.raises(engine.EngineError, match="exists"):
        classify(runner, chip, tmp_path / "exists.tif")
    assert classify(runner, chip, tmp_path / "ok.tif")["cached"]
    assert pid() == worker
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.tif", "ok.tif", "warm.tif"]


def test_cancel_stops_the_job_not_the_worker(runner, chip, mosaic, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    workers.shutdown()
    t0 = time.monotonic()
    with pytest.raises(engine.Cancelled):  # while the engine starts: at once, the worker stays
        engine.run(
            runner, engine.Job("classify", str(chip), str(out / "x.tif")), cancelled=lambda: True
        )
    assert time.monotonic() - t0 < 2 and workers.current().ready is None
    worker = pid()
    classify(runner, chip, tmp_path / "warm.tif")  # after the cancelled one, on the same worker
    assert pid() == worker and list(out.iterdir()) == []
    started: list[float] = []
    t0 = time.monotonic()
    with pytest.raises(engine.Cancelled):
        engine.run(
            runner,
            engine.Job("embed", str(mosaic), str(out / "emb.tif")),
            progress=started.append,
            cancelled=lambda: bool(started),
        )
    assert started and time.monotonic() - t0 < 60
    assert list(out.iterdir()) == []  # no output, no hidden temporary file
    assert pid() == worker  # it answered the cancel: not stopped
    assert classify(runner, chip, out / "after.tif")["cached"]
    assert pid() == worker


def test_a_killed_worker_is_replaced_and_the_job_sent_again(runner, chip, mosaic, tmp_path):
    classify(runner, chip, tmp_path / "warm.tif")
    idle = pid()
    os.kill(idle, signal.SIGKILL)  # between jobs
    time.sleep(0.2)
    assert classify(runner, chip, tmp_path / "a.tif")["classes"]
    busy = pid()
    assert busy != idle

    def kill_once(percent: float) -> None:
        if pid() == busy:
            os.kill(busy, signal.SIGKILL)  # in the middle of the job

    logged: list[str] = []
    info = engine.run(
        runner,
        engine.Job("classify", str(mosaic), str(tmp_path / "big.tif")),
        progress=kill_once,
        log=logged.append,
    )
    assert info["path"] == str(tmp_path / "big.tif") and pid() not in (idle, busy)
    assert any("starting it again" in line for line in logged), logged


def test_shutdown_leaves_no_process(runner, chip, tmp_path):
    classify(runner, chip, tmp_path / "a.tif")
    worker = workers.current()
    t0 = time.monotonic()
    workers.shutdown()
    assert worker.proc.poll() == 0 and time.monotonic() - t0 < workers.QUIT_GRACE
    assert gone(worker.proc.pid) and workers.current() is None
    workers.warm_up(runner)  # in the background, as when a dialog opens
    deadline = time.monotonic() + 120
    while (workers.current() is None or workers.current().ready is None) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    warm = workers.current()
    assert warm.ready is not None
    workers.shutdown()
    assert warm.proc.poll() is not None and gone(warm.proc.pid)


def test_an_engine_without_serve_runs_one_process_per_job(runner, chip, tmp_path):
    """An older ofa-explore: `python -m ofa_explore serve` is no command there (argparse's exit
    2); the plugin notices when the worker does not start and runs each job as before."""
    old = tmp_path / "python"
    old.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" serve "*) echo "ofa: error: invalid choice: \'serve\'" >&2; '
        "exit 2;; esac\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    old.chmod(0o755)
    older = engine.Engine(str(old), runner.package, "0.0.9", "test")
    workers.shutdown()
    logged: list[str] = []
    info = engine.run(
        older, engine.Job("classify", str(chip), str(tmp_path / "a.tif")), log=logged.append
    )
    assert info["classes"][0] == "AnnualCrop" and "model_loads" not in info
    assert any("one process per job" in line and "invalid choice" in line for line in logged)
    assert not workers.serves(older) and workers.current() is None
    info = engine.run(older, engine.Job("classify", str(chip), str(tmp_path / "b.tif")))
    assert workers.current() is None


# ---------------------------------------------------------------- `ofa serve` itself
def serve(*lines: str, close: bool = True, timeout: float = 180) -> tuple[list[dict], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ofa_explore", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate("".join(lines), timeout=timeout)
    events = [json.loads(line) for line in out.splitlines()]
    assert all(e["event"] for e in events), err
    return events, proc.returncode


def job(job_id, *argv) -> str:
    from ofa_explore import protocol

    return protocol.job_line("run", job_id, [str(a) for a in argv])


def test_serve_in_this_process_keeps_the_model(chip, tmp_path):
    """The same loop in-process (stdin and stdout as text buffers): quick, for the inner loop."""
    import io

    from ofa_explore.serve import serve as serve_here

    out = io.StringIO()
    lines = [
        job(i, "classify", chip, "-o", tmp_path / f"{i}.tif", "--no-quicklook") for i in (1, 2)
    ]
    assert serve_here(io.StringIO("".join(lines)), out) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["event"] == "ready" and events[0]["pid"] == os.getpid()
    results = [e for e in events if e["event"] == "result"]
    assert [r["id"] for r in results] == [1, 2] and [r["model_loads"] for r in results] == [1, 1]
    assert results[1]["cached"] and sys.stdout is not sys.stderr


def test_models_are_kept_per_checkpoint_and_reloaded_when_the_file_changes(tmp_path):
    import shutil

    from ofa_explore.pretrained import shipped_checkpoint_path
    from ofa_explore.serve import Models

    copies = [tmp_path / f"model{i}.safetensors" for i in (1, 2)]
    for copy in copies:
        shutil.copy(shipped_checkpoint_path(), copy)
    models = Models(keep=2)
    shipped = models.load(None)
    assert models.load("") is shipped and models.cached and models.loads == 1
    first = models.load(copies[0])
    assert first is not shipped and not models.cached and models.loads == 2
    assert models.load(str(copies[0])) is first and models.cached
    stat = copies[0].stat()
    os.utime(copies[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the file rewritten
    assert models.load(copies[0]) is not first and models.loads == 3
    models.load(copies[1])  # a third model: the one used longest ago (the shipped) goes
    assert len(models.kept) == 2 and models.load(None) is not shipped and models.loads == 5


def test_serve_runs_the_jobs_sent_until_eof(chip, tmp_path):
    events, code = serve(
        job(1, "classify", chip, "-o", tmp_path / "a.tif", "--no-quicklook"),
        "not json\n",
        job(2, "info", chip),
        job("b", "classify", chip, "-o", tmp_path / "b.tif", "--bands", "4,3,2"),
        job(3, "embed", chip, "-o", tmp_path / "c.tif", "--no-quicklook"),
    )
    assert code == 0
    ready = [e for e in events if e["event"] == "ready"]
    assert len(ready) == 1 and ready[0]["protocol"] == 1
    finals = {e["id"]: e for e in events if e["event"] in ("result", "error", "cancelled")}
    assert finals[1]["event"] == "result" and finals[3]["event"] == "result"
    assert finals[3]["model_loads"] == 1 and finals[3]["cached"]
    assert finals[2]["event"] == "error" and "runs the tasks" in finals[2]["message"]
    assert finals["b"]["event"] == "error" and "s2_l1c_b04_b03_b02" in finals["b"]["message"]
    assert any(
        e["event"] == "error" and e["id"] is None and "not a job" in e["problem"] for e in events
    )
    assert [e["percent"] for e in events if e["event"] == "progress" and e["id"] == 1] == [100.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif", "c.tif", "c_pca.tif"]


def test_serve_quit_cancels_the_running_job_and_ends(mosaic, tmp_path):
    from ofa_explore import protocol

    proc = subprocess.Popen(
        [sys.executable, "-m", "ofa_explore", "serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    proc.stdin.write(job(1, "embed", mosaic, "-o", tmp_path / "emb.tif"))
    proc.stdin.write(job(2, "embed", mosaic, "-o", tmp_path / "emb2.tif"))
    proc.stdin.flush()
    seen = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if seen[-1]["event"] == "progress":
            proc.stdin.write(protocol.job_line("quit"))
            proc.stdin.flush()
            break
    seen += [json.loads(line) for line in proc.stdout]
    assert proc.wait(timeout=60) == 0
    assert seen[-1]["event"] == "cancelled" and seen[-1]["id"] == 1
    assert not [e for e in seen if e.get("id") == 2]
    assert list(tmp_path.iterdir()) == []
