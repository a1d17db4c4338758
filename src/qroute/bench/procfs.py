"""CPU time and memory of a process, from Linux's /proc (no psutil).

Every function returns ``None`` where /proc is not there (another OS, or a
process that has gone), so a report shows "n/a" instead of failing.
"""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _family(pid: int) -> list[int]:
    """``pid`` and its live child processes (a server's storage writer is one)."""
    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as listed:
                children.extend(int(child) for child in listed.read().split())
    except OSError:
        pass
    return [pid, *children]


def cpu_seconds(pid: int, children: bool = True) -> float | None:
    """User plus system CPU time the process (and its live children) used so far."""
    total = None
    for member in _family(pid) if children else (pid,):
        try:
            with open(f"/proc/{member}/stat", encoding="ascii") as stat:
                text = stat.read()
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses: split after its last ')'
        fields = text[text.rindex(")") + 2:].split()
        total = (total or 0.0) + (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14, 15)
    return total


def memory_mb(pid: int, field: str = "VmHWM") -> float | None:
    """A ``/proc/<pid>/status`` memory line in MiB, summed over the process
    and its live children: ``VmHWM`` (peak resident set) or ``VmRSS``
    (resident now)."""
    total = None
    for member in _family(pid):
        try:
            with open(f"/proc/{member}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith(field + ":"):
                        total = (total or 0.0) + int(line.split()[1]) / 1024.0  # kB
        except OSError:
            continue
    return total


class CpuMeter:
    """CPU a process used between ``start()`` and ``stop()``, as cores busy
    (1.0 = one core all the time)."""

    def __init__(self, pid: int, children: bool = True) -> None:
        self.pid, self.children = pid, children
        self._begin: tuple[float, float] | None = None
        self.cores: float | None = None
        self.seconds: float | None = None

    def start(self, now: float) -> None:
        used = cpu_seconds(self.pid, self.children)
        self._begin = None if used is None else (now, used)

    def stop(self, now: float) -> None:
        used = cpu_seconds(self.pid, self.children)
        if self._begin is None or used is None or now <= self._begin[0]:
            return
        self.seconds = used - self._begin[1]
        self.cores = self.seconds / (now - self._begin[0])
