"""What the benchmarks read about the machine: whether it is quiet, and the processes and memory of a run.

* :func:`wait_for_quiet` with :func:`cpu_busy`: wait until the CPUs were idle over a window (from /proc/stat),
  rather than for the 1-minute load average to fall, which lags a minute and so, right after a benchmark's
  own run, mostly reports that run;
* :func:`children`, :func:`descendants` and :class:`ProcessTree`: a process tree, from
  /proc/<pid>/task/<tid>/children;
* :func:`memory_kib`: a process's resident (RSS) and proportional (PSS: each shared page divided among its
  sharers) set sizes, from /proc/<pid>/smaps_rollup.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Quiet:
    """What :func:`wait_for_quiet` saw last: the busy fraction, whether below the threshold, after how long."""

    busy: float
    quiet: bool
    waited_s: float


def cpu_times(stat: Path = Path("/proc/stat")) -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from the ``cpu`` line of /proc/stat (idle and iowait
    are not busy; guest time is already inside user and nice)."""
    fields = [int(v) for v in stat.read_text().splitlines()[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def cpu_busy(window_s: float, stat: Path = Path("/proc/stat")) -> float:
    """The fraction of all cores busy over the next ``window_s`` seconds."""
    busy_before, total_before = cpu_times(stat)
    time.sleep(window_s)
    busy_after, total_after = cpu_times(stat)
    return (busy_after - busy_before) / max(total_after - total_before, 1)


def wait_for_quiet(threshold: float, longest_s: float, window_s: float = 10.0,
                   busy: Callable[[], float] | None = None, clock: Callable[[], float] = time.monotonic) -> Quiet:
    """Measure the busy fraction of all cores over ``window_s`` (``busy()``, which takes its own window, in place
    of :func:`cpu_busy`) until it is below ``threshold``, for at most ``longest_s`` after the first measurement;
    what was measured last."""
    measure = busy or (lambda: cpu_busy(window_s))
    started = clock()
    while True:
        fraction = measure()
        waited = clock() - started
        if fraction < threshold or waited >= longest_s:
            return Quiet(fraction, fraction < threshold, waited)


def children(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The processes ``pid``'s threads started that are still running (/proc/<pid>/task/<tid>/children); none
    once ``pid`` has exited."""
    found: list[int] = []
    try:
        for task in (proc / str(pid) / "task").iterdir():
            found += [int(child) for child in (task / "children").read_text().split()]
    except OSError:  # exited while being read
        pass
    return found


def descendants(root: int, proc: Path = Path("/proc")) -> list[int]:
    """``root`` (if running) and every process below it: client processes, decryptors, Ray's GCS, raylet and
    workers. Only the tree is read, not every process on the machine."""
    tree, todo = [], [root] if (proc / str(root)).exists() else []
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children(pid, proc))
    return tree


class ProcessTree:
    """:func:`descendants` of ``root``, read again at most every ``refresh_s`` (reading a tree costs ~1.5 ms, a
    thread of each process at a time; a process started since the last read is missed for at most that long)."""

    def __init__(self, root: int, refresh_s: float = 1.0, proc: Path = Path("/proc"),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._root, self._refresh_s, self._proc, self._clock = root, refresh_s, proc, clock
        self._pids: list[int] = []
        self._read_at: float | None = None

    def pids(self) -> list[int]:
        now = self._clock()
        if self._read_at is None or now - self._read_at >= self._refresh_s:
            self._pids, self._read_at = descendants(self._root, self._proc), now
        return self._pids


def memory_kib(smaps_rollup: Path) -> dict[str, int]:
    """The kB fields of a /proc/<pid>/smaps_rollup (Rss, Pss, ...); empty if the process has gone."""
    try:
        lines = smaps_rollup.read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines:
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            fields[name] = int(parts[0])
    return fields
