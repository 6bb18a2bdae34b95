"""CPU threads for torch: no more than the cores this process can really use.

PyTorch starts one compute thread per core of the machine. When other programs keep some of
those cores busy (a second notebook, a browser, 30 users on one JupyterHub), the threads wait for
each other at every step and the work gets several times slower: a workshop notebook took 7x as
long with torch's default 2 threads as with 1 while another process kept one of 2 cores busy.
So the default here is the cores this process may run on (CPU affinity, a container's CPU quota),
minus those other programs are keeping busy right now, at least 1.

Library functions (loading a checkpoint, the engine, training) leave torch's thread count as they
find it; the shells choose it: the command lines (``ofa``, and with it the QGIS plugin's worker,
``python -m ofa_explore.pretraining.train``), the notebook widgets and the workshop notebooks.
Override it with ``OFA_EXPLORE_THREADS=N``, ``ofa --threads N`` or ``set_threads(N)``; an
``OMP_NUM_THREADS`` the user set is respected as it is.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import NamedTuple

from .errors import BadInput

ENV = "OFA_EXPLORE_THREADS"
_applied = False
_torch_default: int | None = None  # torch's own choice, read before the first change


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def cgroup_cpu_quota(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs a container may use: the tightest cgroup quota on the path from this process's own
    cgroup up to the root (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``); None: no quota."""
    quotas = []
    for folder in _cgroup_folders(root, membership):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota != "max":
                quotas.append(int(quota) / int(period))
            continue
        except (OSError, ValueError):
            pass
        try:
            quota_us = int((folder / "cpu.cfs_quota_us").read_text())
            if quota_us > 0:
                quotas.append(quota_us / int((folder / "cpu.cfs_period_us").read_text()))
        except (OSError, ValueError):
            pass
    return min(quotas) if quotas else None


def _cgroup_folders(root: Path, membership: Path) -> list[Path]:
    """The cgroup folders that hold this process's CPU limits, innermost first."""
    own = []
    try:
        for line in membership.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # cgroup v2
                own.append(root / path.lstrip("/"))
            elif "cpu" in controllers.split(","):  # cgroup v1
                own.append(root / controllers / path.lstrip("/"))
    except (OSError, ValueError):
        pass
    folders = []
    for folder in own or [root, root / "cpu"]:
        while True:  # up to the top of the hierarchy (v1: the controller's folder)
            folders.append(folder)
            if folder == root or folder.parent == root:
                break
            folder = folder.parent
    return folders


def busy_cores(interval: float = 0.2, since: CpuSample | None = None) -> float:
    """How many of this process's cores other programs keep busy, measured over ``interval``
    seconds from /proc/stat (Linux; elsewhere 0). This process's own CPU time is left out.
    ``since`` (a ``cpu_sample()`` taken earlier) starts the interval then: the time spent since
    (importing torch, say) counts, and only what is left of ``interval`` is waited."""
    try:
        start = since or cpu_sample()
        if start is None:
            return 0.0
        time.sleep(max(0.0, interval - (time.perf_counter() - start.clock)))
        end = cpu_sample()
    except (OSError, AttributeError, ValueError):
        return 0.0
    if end is None:
        return 0.0
    busy = total = 0.0
    for cpu, (b_busy, b_total) in start.cpus.items():
        a_busy, a_total = end.cpus.get(cpu, (b_busy, b_total))
        busy += a_busy - b_busy
        total += a_total - b_total
    if total <= 0:
        return 0.0
    elapsed = total / len(start.cpus)  # clock ticks per core during the interval
    own = (end.own - start.own) * os.sysconf("SC_CLK_TCK")
    return max(0.0, (busy - own) / elapsed)


class CpuSample(NamedTuple):
    cpus: dict[int, tuple[float, float]]  # (busy, total) clock ticks of each usable CPU
    own: float  # this process's CPU seconds
    clock: float  # time.perf_counter()


def cpu_sample() -> CpuSample | None:
    """Where the CPUs stand now, for ``busy_cores``; None where /proc/stat cannot tell."""
    try:
        cpus = _cpu_times(os.sched_getaffinity(0))
    except (OSError, AttributeError, ValueError):
        return None
    return CpuSample(cpus, time.process_time(), time.perf_counter()) if cpus else None


def default_threads(since: CpuSample | None = None) -> int:
    """``OFA_EXPLORE_THREADS`` if set, else the usable cores minus the busy ones (at least 1,
    measured from ``since`` when given, see ``busy_cores``), never more than torch's own
    default."""
    if os.environ.get(ENV):
        return parse_threads(os.environ[ENV], ENV)
    if os.environ.get("OMP_NUM_THREADS"):
        return torch_default_threads()
    free = usable_cores() - busy_cores(since=since)
    return max(1, min(torch_default_threads(), int(free + 0.25)))


def set_threads(threads: int | None = None) -> int:
    """Use ``threads`` CPU threads for torch (None: ``default_threads()``); returns the count.
    Later automatic choices (``ensure_threads``) leave it as it is."""
    since = cpu_sample() if threads is None else None  # the busy cores: measured while torch
    import torch  # is imported (the first time, over a second), not in a wait of their own

    global _applied
    torch_default_threads()  # remembered before the first change
    n = default_threads(since) if threads is None else parse_threads(threads, "threads")
    torch.set_num_threads(n)
    _applied = True
    return n


def torch_default_threads() -> int:
    """torch's own thread count, as it was before this module first changed it."""
    global _torch_default
    if _torch_default is None:
        import torch

        _torch_default = torch.get_num_threads()
    return _torch_default


def ensure_threads() -> None:
    """Apply the default once per process, unless threads were already chosen; what a shell
    calls when it starts work (the ``ofa`` commands that run a model, the notebook widgets)."""
    if not _applied:
        set_threads()


def parse_threads(value, name: str) -> int:
    """A positive thread count, or a BadInput that names the setting."""
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1:
        raise BadInput(f"{name} must be a whole number of threads, 1 or more (got {value!r})")
    return n


def _cpu_times(cpus: set[int]) -> dict[int, tuple[float, float]]:
    """(busy, total) clock ticks of each CPU in ``cpus`` since boot."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        values = [float(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
        idle = values[3] + values[4]
        times[int(name[3:])] = (sum(values) - idle, sum(values))
    return times
