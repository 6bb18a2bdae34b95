"""Many scenes: one ``predict_raster`` per scene, one after another or spread over a Dask cluster.

Each scene is written by the engine exactly as a single run writes it (a COG renamed into place),
so a scene that fails, or a run that stops, leaves the finished scenes whole and nothing half
written. On a cluster every worker loads the model once and keeps it for all its scenes; inputs,
outputs and the checkpoint must be paths every worker can read (one machine, or a shared disk).
"""

from __future__ import annotations

import contextlib
import functools
import glob
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from . import protocol
from .engine import EngineSettings, PredictionResult, get_task, predict_raster
from .errors import (
    API_WORDS,
    BadInput,
    MissingPart,
    NotFound,
    OFAError,
    OutputNotWritable,
    literal,
)
from .fileio import check_writable
from .modalities import get_modality

LIST_SUFFIXES = (".txt", ".lst")  # a text file of paths, one per line
# a name ending like a file's (.txt, .png, .json): not taken as a new output folder's name
FILE_SUFFIX = re.compile(r"\.[A-Za-z][A-Za-z0-9]{1,4}")


@dataclass
class SceneOutcome:
    """One scene's end: its result, or the one-line error that stopped it."""

    scene: Path
    output: Path
    result: PredictionResult | None = None
    error: str | None = None


def expand_inputs(items: list[str]) -> list[Path]:
    """Paths, glob patterns and text files of paths (``.txt``/``.lst``: one per line, ``#``
    comments; relative paths are taken from the list's folder) -> scene paths, in the order
    given, each once. Anything that names no file is an error that says which."""
    scenes: list[Path] = []
    for item in items:
        if glob.has_magic(item):
            scenes += matching(item)
        elif Path(item).suffix.lower() in LIST_SUFFIXES:
            scenes += _read_list(Path(item))
        else:
            scenes.append(Path(item))
    for scene in scenes:
        if not scene.is_file():
            raise NotFound(f"{literal(scene)}: no such raster file", "check the path")
    return list(dict.fromkeys(scenes))


def matching(pattern: str) -> list[Path]:
    """The files a glob pattern matches, by name; none is an error that says so."""
    found = sorted(glob.glob(pattern, recursive=True))
    if not found:
        raise NotFound(
            f"no file matches {literal(repr(pattern))}",
            "check the pattern (quote it so that ofa, not the shell, expands it)",
        )
    return [Path(f) for f in found]


def _read_list(path: Path) -> list[Path]:
    if not path.is_file():
        raise NotFound(f"{literal(path)}: no such list of scenes", "check the path")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
    scenes = [
        Path(line) if Path(line).is_absolute() else path.parent / line for line in lines if line
    ]
    if not scenes:
        raise BadInput(f"{literal(path)} lists no scenes", "write one raster path per line")
    return scenes


def scene_outputs(scenes: list[Path], task: str, folder: str | os.PathLike) -> list[Path]:
    """Where each scene's result goes: ``FOLDER/<scene name>_<task>.tif``. Two scenes with the
    same name would write the same file, so that is refused before anything runs."""
    outputs = [protocol.scene_output(folder, scene, task) for scene in scenes]
    seen: dict[Path, Path] = {}
    for scene, out in zip(scenes, outputs):
        if out in seen:
            raise BadInput(
                f"{literal(seen[out])} and {literal(scene)} have the same name and would both "
                f"write {literal(out)}",
                "rename one, or run them into different folders",
            )
        seen[out] = scene
    return outputs


def check_folder(folder: str | os.PathLike) -> Path:
    """An output folder for several scenes: an existing folder, or a new name that does not end
    like a file's (``-o b6.txt`` is a typo for a file, not a folder to make)."""
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise BadInput(
                f"{literal(folder)} is neither a .tif nor a folder",
                "give a .tif in {output} for one scene, or a folder for several",
            )
        return folder
    if FILE_SUFFIX.fullmatch(folder.suffix) and folder.suffix.lower() not in protocol.TIF_SUFFIXES:
        raise BadInput(
            f"{{output}} {literal(folder)} is neither a .tif (one scene) nor a folder name "
            "(several scenes)",
            f"end it in .tif, or give a folder such as {literal(folder.with_suffix(''))}/ "
            "(made if missing)",
            path=str(folder),
        )
    return folder


def need_distributed(cluster: str) -> None:
    """Dask's distributed scheduler, which ``cluster`` needs (the ``cluster`` extra)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        raise MissingPart(
            ("{dask}" if cluster == "local" else "{scheduler}")
            + " needs dask.distributed, which is not installed",
            "pip install 'ofa-explore[cluster]'",
        ) from None


def predict_scenes(
    scenes: list[Path],
    task: str,
    folder: str | os.PathLike,
    *,
    checkpoint: str | None = None,
    settings: EngineSettings | None = None,
    modality: str | None = None,
    overwrite: bool = False,
    cluster: str | None = None,
    workers: int | None = None,
    on_scene: Callable[[SceneOutcome, int, int], None] | None = None,
    on_start: Callable[[], None] | None = None,
    words: Mapping[str, str] = API_WORDS,
) -> list[SceneOutcome]:
    """Run ``task`` on every scene into ``folder`` (created if missing; removed again if it
    was made and nothing was written to it); a failed scene is reported in its outcome and the
    others go on.

    ``checkpoint``: as for ``load_model`` (None: the shipped model). ``cluster``: None runs the
    scenes one after another in this process; "local" starts a Dask ``LocalCluster`` of
    ``workers`` processes (default: one per core, at most one per scene) that share the cores;
    anything else is the address of a running Dask scheduler. ``on_scene(outcome, done,
    total)`` is called as each scene ends, in the order they end; ``on_start()`` once all
    checks have passed, before the first scene. ``words``: the vocabulary a failed scene's fix
    is written in (``errors.CLI_WORDS`` for the command line).
    """
    settings = settings or EngineSettings()
    get_task(task)  # an unknown task stops before anything is made, as do the checks below
    folder = check_folder(folder)
    if cluster is None:  # here: the device must be one of this machine's
        from .devices import check_device

        check_device(settings.device)
    else:
        need_distributed(cluster)
    if modality is not None:
        get_modality(modality)
    if cluster not in (None, "local"):  # workers elsewhere: no shared working folder
        scenes, folder = [Path(s).absolute() for s in scenes], folder.absolute()
    outputs = scene_outputs(scenes, task, folder)  # a name clash stops before anything is made
    made = _make_folder(folder)
    jobs = [
        (checkpoint, scene, task, out, settings, modality, overwrite, dict(words))
        for scene, out in zip(scenes, outputs)
    ]
    try:
        if on_start:
            on_start()
        if cluster is not None:
            return _on_dask(jobs, cluster, workers, on_scene)
        outcomes: list[SceneOutcome] = []
        try:
            for job in jobs:
                outcomes.append(run_scene(*job))
                if on_scene:
                    on_scene(outcomes[-1], len(outcomes), len(jobs))
        except KeyboardInterrupt:  # the engine removed the running scene's files
            raise KeyboardInterrupt(_cancelled(outcomes, len(jobs))) from None
        return outcomes
    finally:
        if made:  # no empty folder left behind when every scene failed
            with contextlib.suppress(OSError):  # (it is not empty: fine)
                folder.rmdir()


def _make_folder(folder: Path) -> bool:
    """The output folder, made if missing and tried for writing (whether it was made comes
    back); a folder this call made is removed again when it cannot be written to."""
    made = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputNotWritable(
            f"cannot make the output folder {literal(folder)} ({literal(err.strerror or err)})",
            "choose another {output}",
            path=str(folder),
        ) from None
    try:
        check_writable(folder / "scene.tif")
    except OFAError:
        if made:
            folder.rmdir()
        raise OutputNotWritable(
            f"the output folder {literal(folder)} is not writable", "choose another {output}"
        ) from None
    return made


def run_scene(
    checkpoint: str | None,
    scene: Path,
    task: str,
    output: Path,
    settings: EngineSettings,
    modality: str | None,
    overwrite: bool,
    words: Mapping[str, str] = API_WORDS,
    stop_event: str | None = None,
) -> SceneOutcome:
    """One scene with the model this process keeps; an error becomes the outcome's message
    (interrupts still stop the run). ``stop_event``: the name of a Dask ``Event`` that, once
    set, stops the scene at its next batch (the engine then removes what it wrote)."""
    cancel = _event_flag(stop_event) if stop_event else None
    if cancel and cancel():  # a queued scene after the run was stopped
        return SceneOutcome(scene, output, error="cancelled before it started")
    try:
        result = predict_raster(
            _model(checkpoint),
            scene,
            task,
            output,
            settings=settings,
            modality=modality,
            overwrite=overwrite,
            cancel=cancel,
        )
    except Exception as err:  # noqa: BLE001 - reported per scene, the run goes on
        return SceneOutcome(scene, output, error=_one_line(err, words))
    return SceneOutcome(scene, output, result)


@functools.lru_cache(maxsize=1)
def _model(checkpoint: str | None):
    """The model, loaded once per process: a Dask worker keeps it for all its scenes."""
    from .pretrained import load_model

    return load_model(checkpoint)


def _event_flag(name: str, every: float = 1.0) -> Callable[[], bool]:
    """A cancel flag that asks the scheduler about the Dask Event at most once a second."""
    from distributed import Event

    event, last = Event(name), {"time": 0.0, "set": False}

    def is_set() -> bool:
        if time.monotonic() - last["time"] > every:
            last.update(time=time.monotonic(), set=event.is_set())
        return bool(last["set"])

    return is_set


def _on_dask(
    jobs: list[tuple],
    cluster: str,
    workers: int | None,
    on_scene: Callable[[SceneOutcome, int, int], None] | None,
) -> list[SceneOutcome]:
    try:
        from distributed import Client, Event, LocalCluster, wait
    except ImportError:
        raise MissingPart(
            "spreading scenes over a Dask cluster needs dask.distributed",
            "pip install 'ofa-explore[cluster]'",
        ) from None
    from .threads import usable_cores

    local = None
    if cluster == "local":
        cores = usable_cores()
        n = max(1, min(workers or cores, len(jobs)))
        # processes, one thread each: the model is not shared between threads, and each worker's
        # torch gets an equal share of the cores (Dask sets OMP_NUM_THREADS for its workers)
        local = LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            env={"OMP_NUM_THREADS": str(max(1, cores // n))},
        )
    client = Client(local if local is not None else cluster)
    stop = f"ofa-explore-stop-{uuid.uuid4().hex}"
    futures = {client.submit(run_scene, *job, stop, pure=False, retries=0): job for job in jobs}
    outcomes = {}
    pending = dict(futures)
    try:
        while pending:
            # polled, not `as_completed`: Ctrl-C or SIGTERM raised inside its `with lock:` could
            # leave the lock held, and the cancelled run then hung for good (bpo-29988)
            finished = [future for future in pending if future.done()]
            if not finished:
                time.sleep(0.05)
            for future in finished:
                job = pending.pop(future)
                try:
                    outcome = future.result()
                except Exception as err:  # noqa: BLE001 - the worker itself died
                    outcome = SceneOutcome(job[1], job[3], error=_one_line(err))
                outcomes[job[1]] = outcome
                if on_scene:
                    on_scene(outcome, len(outcomes), len(jobs))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: running scenes stop and clean up after
        Event(stop, client=client).set()  # queued scenes end at once, running ones in a batch
        with contextlib.suppress(Exception):  # a worker stopped by the same signal, a timeout
            wait(list(futures), timeout=60)
        for future, job in futures.items():  # (workers hit by the same signal return nothing)
            if job[1] not in outcomes and future.status == "finished":
                outcomes[job[1]] = future.result()
        raise KeyboardInterrupt(_cancelled(list(outcomes.values()), len(jobs))) from None
    finally:
        client.close()
        if local is not None:
            local.close()  # no worker of this run writes any more: every hidden file is an orphan
            # (a worker stopped mid-write is restarted, and the scene's rerun may end "cancelled
            # before it started" or written, with the first try's temporary file still there)
            _remove_leftovers([(job[3], job[2]) for job in jobs])
    return [outcomes[job[1]] for job in jobs]


def _one_line(err: BaseException, words: Mapping[str, str] = API_WORDS) -> str:
    """The error as a person reads it: its message (a KeyError's without quotes; the project's
    errors in ``words``), or its kind."""
    message = (
        err.render(words)
        if isinstance(err, OFAError)
        else err.args[0]
        if isinstance(err, KeyError) and err.args
        else err
    )
    return str(message).strip().splitlines()[0] if str(message).strip() else type(err).__name__


def _cancelled(ended: list[SceneOutcome], total: int) -> str:
    written = sum(1 for outcome in ended if outcome.result is not None)
    return f"cancelled; {written} of {total} scenes were written, nothing of the others"


def _remove_leftovers(outputs: list[tuple[Path, str]]) -> None:
    """The engine's hidden temporary files and folders (``.<name>.*``, see fileio and
    engine.sinks) of scenes whose worker was stopped mid-write."""
    for out, task in outputs:
        for final in get_task(task).outputs(out):
            for leftover in final.parent.glob(f".{final.name}.*"):
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)
