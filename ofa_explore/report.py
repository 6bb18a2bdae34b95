"""How `ofa` tells what it does: a progress bar and lines for people, or JSON lines for programs
(`--progress json`, the protocol the QGIS plugin reads; the events are ofa_explore.protocol's)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from . import protocol


class HumanReport:
    """What a person sees: a tqdm bar on stderr (unless quiet, or stderr is no terminal: a log
    gets lines, not redraws), the files written on stdout, errors as one `ofa COMMAND: error:
    ...` line and warnings as `ofa COMMAND: warning: ...` lines on stderr."""

    def __init__(self, command: str, quiet: bool = False):
        self.command, self.quiet = command, quiet
        self.bar: Any = None  # a tqdm bar, opened at the first batch
        self.started = time.perf_counter()
        self.folder: Path | None = None  # several scenes: where they go

    def start(self, modality: str, bands: int, name: str) -> None:
        pass

    def progress(self, done: int, total: int, unit: str = "tile") -> None:
        if self.bar is None:  # opened at the first batch, so an input error prints no bar
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                unit=unit,
                desc=f"ofa {self.command}",
                disable=self.quiet or not _terminal(sys.stderr),
            )
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def result(self, result) -> None:
        files = [str(p) for p in (result.path, result.pca_path) if p]
        if result.quicklook:
            files.append(f"quicklook {result.quicklook}")
        print(
            "wrote "
            + (", ".join(files[:-1]) + " and " if len(files) > 1 else "")
            + files[-1]
            + f" ({protocol.count(result.tiles, 'tile')} of {result.modality} in "
            f"{result.seconds} s on {result.device}, {result.precision})"
        )
        for note in result.notes:
            print(f"  note: {note}")
        if result.class_names:  # the raster's values, then what was found
            print("classes: " + ", ".join(f"{i}={n}" for i, n in enumerate(result.class_names)))
            print(f"found ({result.head}):")
            print(protocol.class_table(result.class_areas))
        sys.stdout.flush()  # before the warnings on stderr
        for warning in result.warnings:
            self.warning(warning)

    def scenes_start(self, total: int, cluster: str | None, folder: Path | None = None) -> None:
        self.started, self.folder = time.perf_counter(), folder
        where = (
            "one after another"
            if cluster is None
            else "on a local Dask cluster"
            if cluster == "local"
            else f"on the Dask cluster at {cluster}"
        )
        print(f"{total} scene{'s' * (total != 1)}, {where}", file=sys.stderr, flush=True)
        self.progress(0, total, unit="scene")

    def scene(self, outcome, done: int, total: int) -> None:
        """One line per scene as it ends, written above the bar (never into it)."""
        r = outcome.result
        if outcome.error:
            self._line(f"{outcome.scene}: failed: {outcome.error}", sys.stderr)
        else:
            self._line(
                f"{outcome.scene} -> {outcome.output} ({protocol.count(r.tiles, 'tile')} of "
                f"{r.modality} in {r.seconds} s)",
                sys.stdout,
            )
            for warning in r.warnings:
                self._line(f"ofa {self.command}: warning: {outcome.scene}: {warning}", sys.stderr)
        self.progress(done, total, unit="scene")

    def _line(self, line: str, stream) -> None:
        if self.bar is not None and not self.bar.disable:
            from tqdm import tqdm

            tqdm.write(line, file=stream)  # clears the bar, writes, draws the bar again
        else:
            print(line, file=stream)
        stream.flush()

    def scenes_end(self, total: int, failed: list) -> None:
        seconds = f"{time.perf_counter() - self.started:.1f} s"
        where = f" to {self.folder}{os.sep}" if self.folder is not None else ""
        written = total - len(failed)
        if not failed:
            print(f"{total} scene{'s' * (total != 1)} written{where} in {seconds}", flush=True)
            return
        print(
            f"ofa {self.command}: error: {len(failed)} of {total} scene{'s' * (total != 1)} failed "
            "(listed above); "
            + (
                f"the other {written} were written{where} in {seconds}"
                if written > 1
                else f"the other one was written{where} in {seconds}"
                if written
                else "nothing was written"
            ),
            file=sys.stderr,
            flush=True,
        )

    def warning(self, message: str) -> None:
        print(f"ofa {self.command}: warning: {message}", file=sys.stderr, flush=True)

    def error(self, message: dict) -> None:
        """An ``error`` event (protocol.error_event) as one line."""
        print(f"ofa {self.command}: error: {message['message']}", file=sys.stderr)

    def cancelled(self, message: str) -> None:
        print(f"ofa {self.command}: {message}", file=sys.stderr)


def _terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed, or no file at all
        return False


class JsonReport:
    """`--progress json`: one JSON object per line on stdout, flushed at once, nothing else;
    the events are those of ofa_explore.protocol (start, progress, result, error, cancelled;
    scenes, scene, scenes_done for several scenes)."""

    def __init__(self, command: str):
        self.command = command

    def _write(self, message: dict) -> None:
        sys.stdout.write(protocol.event_line(message))  # one write per line
        sys.stdout.flush()

    def _emit(self, event: str, **fields) -> None:
        self._write(protocol.event(event, **fields))

    def start(self, modality: str, bands: int, name: str) -> None:
        self._write(protocol.start_event(self.command, modality, bands, name))

    def progress(self, done: int, total: int) -> None:
        self._write(protocol.progress_event(done, total))

    def close(self) -> None:
        pass

    def result(self, result) -> None:
        self._emit(
            "result",
            path=str(result.path),
            pca_path=str(result.pca_path) if result.pca_path else None,
            device=result.device,
            seconds=result.seconds,
            tiles=result.tiles,
            classes=result.class_names,
            colors=result.class_colors,
            head=result.head,
            modality=result.modality,
            precision=result.precision,
            areas=result.class_areas,
            input_bounds=result.input_bounds,
            quicklook=str(result.quicklook) if result.quicklook else None,
            notes=list(result.notes),
            warnings=list(result.warnings),
            checks={name: float(value) for name, value in result.checks.items()},
        )

    def scenes_start(self, total: int, cluster: str | None, folder: Path | None = None) -> None:
        self._emit("scenes", total=total, cluster=cluster)

    def scene(self, outcome, done: int, total: int) -> None:
        r = outcome.result
        self._emit(
            "scene",
            input=str(outcome.scene),
            output=str(outcome.output),
            done=done,
            total=total,
            error=outcome.error,
            seconds=r and r.seconds,
            tiles=r and r.tiles,
            modality=r and r.modality,
        )

    def scenes_end(self, total: int, failed: list) -> None:
        self._emit("scenes_done", total=total, failed=len(failed))

    def error(self, message: dict) -> None:
        self._write(message)

    def cancelled(self, message: str) -> None:
        self._write(protocol.cancelled_event(message))

    def warning(self, message: str) -> None:
        self._emit("warning", message=message)


def report_for(command: str, mode: str) -> HumanReport | JsonReport:
    """``mode``: bar, json or none (commands without --progress report errors only)."""
    return JsonReport(command) if mode == "json" else HumanReport(command, quiet=mode == "none")
