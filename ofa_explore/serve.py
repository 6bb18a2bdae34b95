"""`ofa serve`: the engine as a long-lived worker for programs (the QGIS plugin's warm engine).

A fresh `ofa <task>` process pays Python's start-up, the imports (torch, the engine) and the
model's load, seconds, for a job that may take half a second. A worker pays them once, then runs
jobs one at a time through the same code as `ofa <task> --progress json` (``cli.run_command``
and ``cli_raster.cmd_predict``) and writes the same events, each with its job's ``id``. The
lines both ways are protocol.py's (``JOBS``, ``parse_job``, ``ready_event``)::

    stdin   {"job": "run", "id": 3, "argv": ["classify", "scene.tif", "-o", "classes.tif"]}
            {"job": "cancel", "id": 3}
            {"job": "quit"}
    stdout  {"event": "ready", "version": "0.1.0", "pid": 4242, "protocol": 1}
            {"event": "start", "id": 3, ...}  {"event": "progress", "id": 3, ...}
            {"event": "result", "id": 3, ..., "model_loads": 1, "cached": true}

Models are kept per checkpoint (the last ``MODELS_KEPT``); while no job waits after the start,
the shipped model is loaded ahead. stdin is read by a thread of its own, so a cancel reaches the
running job at its next batch: its outputs are removed as on Ctrl-C, ``cancelled`` is written and
the worker waits for the next job. A job's error is its ``error`` event (an unexpected one with
kind ``failed`` and its traceback on stderr); the worker goes on. EOF on stdin ends the worker
once the jobs sent have run; ``quit``, SIGTERM, or a reader that went away (stdout closed) end it
at once, the running job cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import queue
import signal
import sys
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from . import protocol
from ._version import __version__
from .cli_raster import CANCEL_SIGNAL
from .errors import CLI_WORDS, EXIT_CANCELLED, BadInput, OFAError, literal
from .report import JsonReport

MODELS_KEPT = 2  # models in memory at once (a tiny demo model is ~10 MB, DOFA-Base ~0.5 GB)


@dataclass
class Job:
    id: int | str
    argv: list[str]
    cancel: threading.Event = field(default_factory=threading.Event)


class Output:
    """stdout for events only, one whole line per write under a lock. A reader that went away
    (a broken pipe) calls ``on_broken`` once instead of raising in the middle of a job."""

    def __init__(self, stream: IO[str], on_broken):
        self.stream, self.on_broken = stream, on_broken
        self.lock = threading.Lock()
        self.broken = False

    def write(self, message: dict[str, Any]) -> None:
        with self.lock:
            if self.broken:
                return
            try:
                self.stream.write(protocol.event_line(message))
                self.stream.flush()
                return
            except (OSError, ValueError):  # BrokenPipeError, or the stream closed
                self.broken = True
        self.on_broken()


class Models:
    """Loaded models by checkpoint: the shipped one, a file as it is on disk now (a file
    rewritten since is loaded again), published weights by name. The last ``keep`` stay."""

    def __init__(self, keep: int = MODELS_KEPT):
        self.keep = keep
        self.kept: OrderedDict[tuple, Any] = OrderedDict()
        self.loads = 0  # models loaded by this worker
        self.cached = False  # whether the last model asked for was loaded before

    def load(self, checkpoint: str | os.PathLike | None = None):
        key = _model_key(checkpoint)
        self.cached = key in self.kept
        if self.cached:
            self.kept.move_to_end(key)
            return self.kept[key]
        from .pretrained import load_model

        model = load_model(checkpoint)
        self.loads += 1
        self.kept[key] = model
        while len(self.kept) > self.keep:
            self.kept.popitem(last=False)
        return model


def _model_key(checkpoint: str | os.PathLike | None) -> tuple:
    if checkpoint is None or str(checkpoint) == "":
        return ("shipped",)
    path = Path(checkpoint)
    if path.is_file():
        stat = path.stat()
        return ("file", str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return ("name", str(checkpoint))


class JobReport(JsonReport):
    """`--progress json` for one job: its events with its ``id``, on the worker's output; the
    result says how many models the worker has loaded and whether this job's was one of them."""

    def __init__(self, command: str, out: Output, job_id: int | str, models: Models):
        super().__init__(command)
        self.out, self.job_id, self.models = out, job_id, models

    def _write(self, message: dict) -> None:
        message = {**message, "id": self.job_id}
        if message["event"] == "result":
            message.update(model_loads=self.models.loads, cached=self.models.cached)
        self.out.write(message)


class Worker:
    """The job queue between the stdin thread (``read``) and the main thread (``serve``)."""

    def __init__(self, stdout: IO[str]):
        self.out = Output(stdout, self.quit)
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.pending: dict[int | str, Job] = {}  # queued or running, by id
        self.lock = threading.Lock()
        self.quitting = False
        self.code = 0  # the exit code: EXIT_CANCELLED after SIGTERM
        self.models = Models()
        self.parser: argparse.ArgumentParser | None = None

    def read(self, stdin: IO[str]) -> None:
        for line in stdin:
            if not line.strip():
                continue
            try:
                message = protocol.parse_job(line)
            except BadInput as err:
                self.out.write({**err.to_event(CLI_WORDS), "id": None})
                continue
            if message["job"] == "run":
                job = Job(message["id"], message["argv"])
                with self.lock:
                    self.pending[job.id] = job
                self.jobs.put(job)
            elif message["job"] == "cancel":
                with self.lock:
                    running = self.pending.get(message["id"])
                if running is not None:
                    running.cancel.set()
            else:
                self.quit()
                return
        self.jobs.put(None)  # EOF: the jobs sent run, then the worker ends

    def quit(self) -> None:
        """End now: every job cancelled, the running one at its next batch."""
        self.quitting = True
        with self.lock:
            for job in self.pending.values():
                job.cancel.set()
        self.jobs.put(None)

    def serve(self) -> int:
        while not self.quitting:
            if self.jobs.empty() and not self.models.kept:
                with contextlib.suppress(Exception):  # ahead of the first job; it says why
                    self.models.load(None)
            job = self.jobs.get()
            if job is None:
                return self.code
            try:
                self.run(job)
            finally:
                with self.lock:
                    self.pending.pop(job.id, None)
        return self.code

    def run(self, job: Job) -> None:
        from .cli import run_command

        report = JobReport("serve", self.out, job.id, self.models)
        if job.cancel.is_set():
            report.cancelled("cancelled before it started; nothing was written")
            return
        try:
            args = self.arguments(job.argv)
        except OFAError as err:
            report.error(err.to_event(CLI_WORDS))
            return
        args.report = JobReport(args.command, self.out, job.id, self.models)
        args.cancel, args.load_model = job.cancel, self.models.load
        if args.threads:
            from .threads import set_threads

            set_threads(args.threads)
        run_command(args)

    def arguments(self, argv: list[str]) -> argparse.Namespace:
        """``argv`` parsed as `ofa` parses it; a job is one task on one scene."""
        from .cli import build_parser

        self.parser = self.parser or build_parser()
        said = io.StringIO()
        try:
            with contextlib.redirect_stderr(said), contextlib.redirect_stdout(said):
                args = self.parser.parse_args(argv)
        except SystemExit:  # argparse's usage error, or -h
            lines = said.getvalue().strip().splitlines()
            raise BadInput(
                literal(lines[-1] if lines else "no arguments"),
                "give the arguments of `ofa <task>` in the job's argv",
            ) from None
        if args.command not in protocol.TASK_NAMES:
            raise BadInput(
                f"`ofa serve` runs the tasks ({', '.join(protocol.TASK_NAMES)}), "
                f"not {literal(args.command)}",
                "run other commands as `ofa` itself",
            )
        if args.output.suffix.lower() not in protocol.TIF_SUFFIXES:
            raise BadInput(
                "a job of `ofa serve` writes one scene",
                "give a .tif in {output}, or run several scenes as `ofa` itself",
            )
        args.progress = "json"
        return args


def warm_up() -> None:
    """What every job needs, imported (and the devices looked at) before ``ready``."""
    from .devices import check_device
    from .engine import predict_raster  # noqa: F401 - torch, rasterio, xarray, the tasks
    from .io import open_raster  # noqa: F401
    from .pretrained import load_model  # noqa: F401

    check_device("auto")


def serve(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Runs jobs from ``stdin`` until EOF or ``quit``; returns the exit code."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    worker = Worker(stdout)
    shown, sys.stdout = sys.stdout, sys.stderr  # a library's print goes to the log, not stdout
    threading.Thread(target=worker.read, args=(stdin,), name="ofa-serve-stdin", daemon=True).start()
    previous = _on_terminate(worker)
    try:
        warm_up()
        worker.out.write(protocol.ready_event(__version__, os.getpid()))
        return worker.serve()
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C between jobs
        return EXIT_CANCELLED
    finally:
        sys.stdout = shown
        if previous is not None and CANCEL_SIGNAL is not None:
            signal.signal(CANCEL_SIGNAL, previous)


def _on_terminate(worker: Worker):
    """SIGTERM (Ctrl-Break on Windows): the running job is cancelled as on Ctrl-C (outputs
    removed), then the worker ends. Returns the handler to restore (None: none installed)."""
    if CANCEL_SIGNAL is None:
        return None

    def terminate(signum, frame) -> None:
        worker.quitting, worker.code = True, EXIT_CANCELLED
        raise KeyboardInterrupt

    try:
        previous = signal.signal(CANCEL_SIGNAL, terminate)
    except ValueError:  # not the main thread
        return None
    return signal.SIG_DFL if previous is None else previous
