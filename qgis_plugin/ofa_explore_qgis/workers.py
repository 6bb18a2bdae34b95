"""The engine's processes: a warm worker kept between jobs, or one process per job.

A fresh `ofa <task> ... --progress json` pays Python's start-up, the imports and the model's load
(seconds) for every click. The warm worker (`ofa serve`, one per QGIS session) pays them once:
``events(engine, job)`` sends the job to it as a JSON line and yields the job's events, the same
as those of a process of its own. It is started on first use (or ahead, by ``warm_up``, while a
dialog is open), replaced when it died (the job sent again, once) or when the engine changes,
and ended by ``shutdown`` (plugin unload, QGIS closing). A cancel sends the cancel line and
waits CANCEL_GRACE seconds for ``cancelled``; a worker that does not answer is stopped with its
whole process group, and the next job starts a new one.

A job runs in a process of its own (``stream``, as before the warm worker) when the engine is an
ofa-explore without `ofa serve`, when its worker did not start, or when the worker is busy with
another job. Plain Python, no Qt: it runs in QgsTasks' and Processing's threads, never on QGIS's
main thread, so a worker that crashes or hangs cannot take QGIS with it.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator

from . import engine
from ._shared import errors, protocol

CANCEL_GRACE = 5.0  # seconds a worker has to answer a cancel before it is stopped
QUIT_GRACE = 3.0  # seconds a worker has to end after `quit` before its process group is
STARTING = "starting the engine"  # what a job waits for before its first event
WARM_VAR = "OFA_EXPLORE_WARM"  # "0": no warm worker, one process per job (as before it)


class WorkerDied(RuntimeError):
    """The worker ended before the job's last event."""


class Worker:
    """One `ofa serve` process of an engine; one job at a time (``busy``)."""

    def __init__(self, runner: engine.Engine):
        self.engine = runner
        self.proc = subprocess.Popen(
            runner.command("serve"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=engine.worker_env(),
            cwd=engine.NEUTRAL_FOLDER,
            **new_group(),
        )
        self.events: queue.Queue[dict | None] = queue.Queue()
        self.ready: dict | None = None  # the `ready` event, once the engine is imported
        self.busy = threading.Lock()
        self.closed = False  # stopped on purpose: a job that loses it was cancelled
        self.stderr: deque[str] = deque(maxlen=500)
        self.said = 0  # stderr lines so far (the deque keeps the last ones)
        self.ids = itertools.count(1)
        self.readers = [
            threading.Thread(target=target, daemon=True, name="ofa-worker")
            for target in (self._read_events, self._read_stderr)
        ]
        for reader in self.readers:
            reader.start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            event = protocol.parse_event(line)
            if event is None:
                self._said(line)
            elif event["event"] == "ready":
                self.ready = event
            else:
                self.events.put(event)
        self.events.put(None)

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._said(line)

    def _said(self, line: str) -> None:
        self.stderr.append(line)
        self.said += 1

    def alive(self) -> bool:
        return not self.closed and self.proc.poll() is None

    def send(self, kind: str, job_id: int | None = None, argv: list[str] | None = None) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(protocol.job_line(kind, job_id, argv or ()))
            self.proc.stdin.flush()
        except (OSError, ValueError):
            raise WorkerDied(self.why()) from None

    def why(self) -> str:
        """Why it ended: its exit code and the last lines it said."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=2)
        self.readers[1].join(timeout=2)
        code = self.proc.poll()
        said = engine.stderr_tail("".join(self.stderr)) or "no message"
        return f"the engine's worker ended (exit code {code}): {said}"

    def job(
        self,
        job: engine.Job,
        cancelled: Callable[[], bool],
        log: Callable[[str], None] | None = None,
    ) -> Generator[dict, None, None]:
        """Yields the events of ``job`` run here; the caller holds ``busy``. Raises WorkerDied,
        or engine.Cancelled once the worker said ``cancelled`` (or did not answer in time and was
        stopped)."""
        job_id, said = next(self.ids), self.said
        self.send("run", job_id, job.arguments())
        cancel_at: float | None = None
        final = None
        try:
            while final is None:
                if cancel_at is None and cancelled():
                    cancel_at = time.monotonic()
                    with contextlib.suppress(WorkerDied):
                        self.send("cancel", job_id)
                    if self.ready is None:  # still importing: it drops the job when it gets there
                        raise engine.Cancelled("cancelled; nothing was written")
                if cancel_at is not None and time.monotonic() - cancel_at > CANCEL_GRACE:
                    self.stop(quit_first=False)  # no answer: the process group goes
                    raise engine.Cancelled("cancelled; nothing was written")
                try:
                    event = self.events.get(timeout=0.05)
                except queue.Empty:
                    continue
                if event is None:
                    if cancel_at is not None or self.closed:
                        raise engine.Cancelled("cancelled; nothing was written")
                    raise WorkerDied(self.why())
                if event.get("id") not in (job_id, None):
                    continue  # a late event of an earlier job that was given up
                if event["event"] in protocol.FINAL_EVENTS:
                    final = event
                if cancel_at is not None and final is not None:
                    if final["event"] == "result":  # done before the cancel arrived
                        for path in protocol.output_files(job.output, job.task):
                            path.unlink(missing_ok=True)
                    raise engine.Cancelled("cancelled; nothing was written")
                if log and event.get("kind") == protocol.FAILED:  # a bug: its traceback
                    time.sleep(0.2)  # stderr is a pipe of its own: let it catch up
                    lines = list(self.stderr)[-(self.said - said) :] if self.said > said else []
                    log("".join(lines)[-6000:])
                yield event
        finally:
            if final is None and cancel_at is None and self.alive():
                with contextlib.suppress(WorkerDied):  # given up by the caller: stop it there
                    self.send("cancel", job_id)

    def stop(self, quit_first: bool = True) -> None:
        """Ends the worker: ``quit`` (it exits once the running job is cancelled), then SIGTERM
        to its process group after QUIT_GRACE seconds, SIGKILL after as many again."""
        self.closed = True
        if self.proc.poll() is None and quit_first:
            with contextlib.suppress(WorkerDied):
                self.send("quit")
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=QUIT_GRACE)
        stop(self.proc, grace=QUIT_GRACE)
        with contextlib.suppress(OSError, ValueError):  # stdout and stderr: their readers' EOF
            assert self.proc.stdin is not None
            self.proc.stdin.close()


# ---------------------------------------------------------------- the session's worker
_lock = threading.Lock()
_worker: Worker | None = None
_refused: set[str] = set()  # engines whose worker did not start: one process per job


def serves(runner: engine.Engine) -> bool:
    """Whether the engine has `ofa serve` (read from its files: no process started) and a warm
    worker is wanted (OFA_EXPLORE_WARM=0: one process per job)."""
    return (
        os.environ.get(WARM_VAR, "1") != "0"
        and runner.python not in _refused
        and (runner.package / "serve.py").is_file()
    )


def current() -> Worker | None:
    """The warm worker, if one was started (alive or not)."""
    return _worker


def _same(worker: Worker, runner: engine.Engine) -> bool:
    return (worker.engine.python, worker.engine.package) == (runner.python, runner.package)


def _take(runner: engine.Engine) -> Worker | None:
    """The engine's worker, started if needed and reserved for the caller (``busy`` held); None
    when it is busy with another job."""
    global _worker
    with _lock:
        old = _worker
        if old is not None and not (old.alive() and _same(old, runner)):
            if old.alive() and old.busy.locked():
                return None  # another engine's job still runs there
            _worker = None
            old.stop()
        if _worker is None:
            _worker = Worker(runner)
        return _worker if _worker.busy.acquire(blocking=False) else None


def warm_up(runner: engine.Engine) -> None:
    """Starts the engine's worker in the background (while the user fills in a dialog)."""

    def start() -> None:
        with contextlib.suppress(Exception):  # the job that follows says what went wrong
            worker = _take(runner)
            if worker is not None:
                worker.busy.release()

    if serves(runner) and not (_worker is not None and _worker.alive() and _same(_worker, runner)):
        threading.Thread(target=start, daemon=True, name="ofa-warm-up").start()


def shutdown() -> None:
    """Ends the worker (plugin unload, QGIS closing, another engine set up)."""
    global _worker
    with _lock:
        worker, _worker = _worker, None
    if worker is not None:
        worker.stop()


atexit.register(shutdown)  # QGIS (or qgis_process) ending without unloading the plugin


def events(
    runner: engine.Engine,
    job: engine.Job,
    cancelled: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> Iterator[dict]:
    """The events of ``job``: on the engine's warm worker where it can, else in a process of
    its own. ``status(text)`` says what the job waits for (STARTING), then "" at its first
    event."""
    told = False

    def tell(text: str) -> None:
        nonlocal told
        if status and (text or told):
            status(text)
            told = bool(text)

    for attempt in (1, 2):
        worker = _take(runner) if serves(runner) else None
        if worker is None:
            break
        try:
            if worker.ready is None:
                tell(STARTING)
            with contextlib.closing(worker.job(job, cancelled, log)) as job_events:
                for event in job_events:
                    tell("")
                    yield event
            return
        except WorkerDied as died:
            started = worker.ready is not None
            _discard(worker)
            if not started:  # cannot start (an older engine, a broken one): as before
                _refused.add(runner.python)
                if log:
                    log(f"no warm engine, one process per job: {died}")
                break
            if attempt == 2:
                raise engine.EngineError(f"the engine stopped unexpectedly: {died}") from None
            if log:
                log(f"{died}; starting it again for this job")
        finally:
            worker.busy.release()
    tell(STARTING)
    for event in stream(runner.command(*job.arguments()), cancelled, log):
        tell("")
        yield event


def _discard(worker: Worker) -> None:
    global _worker
    with _lock:
        if _worker is worker:
            _worker = None
    worker.stop(quit_first=False)


# ---------------------------------------------------------------- one process per job
def stream(
    command: list[str],
    cancelled: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] | None = None,
):
    """Yields the JSON events a worker prints, one per line; stops the worker (its whole process
    group) when ``cancelled()`` turns true, and turns a silent crash into an EngineError."""
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=engine.worker_env(),
        cwd=engine.NEUTRAL_FOLDER,
        **new_group(),
    )
    lines: queue.Queue[str | None] = queue.Queue()
    stderr: list[str] = []
    readers = [
        threading.Thread(target=_pump, args=(proc.stdout, lines.put, True), daemon=True),
        threading.Thread(target=_pump, args=(proc.stderr, stderr.append), daemon=True),
    ]
    for reader in readers:
        reader.start()
    finished = False
    try:
        while True:
            if cancelled():
                stop(proc)
                raise engine.Cancelled("cancelled; nothing was written")
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:  # stdout closed: the worker ended
                break
            event = protocol.parse_event(line)
            if event is None:
                if log and line.strip():
                    log(line.rstrip())
                continue
            if event["event"] in protocol.FINAL_EVENTS:
                finished = True
            yield event
        code = proc.wait()
        readers[1].join(timeout=5)
        if log and code not in (0, errors.EXIT_BAD_INPUT) and stderr:
            log("".join(stderr)[-6000:])  # a bug's traceback: in the log, not the message bar
        if not finished:
            raise engine.EngineError(
                f"the engine stopped unexpectedly (exit code {code}): "
                f"{engine.stderr_tail(''.join(stderr)) or 'no message'}"
            )
    finally:
        if proc.poll() is None:
            stop(proc)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Ends the worker and anything it started: SIGTERM to its process group (the engine then
    removes its temporary files), SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    if os.name == "posix":
        _signal_group(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.CTRL_BREAK_EVENT)
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if proc.poll() is None:
        if os.name == "posix":
            _signal_group(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait()


def _pump(pipe, put: Callable, mark_end: bool = False) -> None:
    for line in pipe:
        put(line)
    if mark_end:
        put(None)


def new_group() -> dict:
    if os.name == "posix":
        return {"start_new_session": True}
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW}


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
