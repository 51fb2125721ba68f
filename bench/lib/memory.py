"""Peak resident memory and wall time per named phase of one process (Linux: /proc/self).

The kernel keeps a process's peak resident set (`VmHWM`) and lets the process reset it (`clear_refs` = 5), so a
phase's own peak is read by resetting at its start and reading at its end. Phases nest: entering an inner phase
first folds the current peak into every open phase, so an outer phase's peak still covers its inner ones.

    meter = PhaseMeter()
    with meter.phase("rollout"):
        with meter.phase("generate"):
            ...
    print(meter.table())
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
GIB = 1024**3


def _status_kib(field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+) kB", STATUS.read_text(encoding="ascii"), re.MULTILINE)
    return int(match.group(1)) if match else 0


def peak_rss_bytes() -> int:
    """The process's peak resident set since it started or since the last `reset_peak`."""
    return _status_kib("VmHWM") * 1024


def rss_bytes() -> int:
    """The process's resident set now."""
    return _status_kib("VmRSS") * 1024


def reset_peak() -> None:
    """Start a new peak at the current resident set (Linux >= 4.0; a no-op where refused)."""
    with contextlib.suppress(OSError):
        CLEAR_REFS.write_text("5", encoding="ascii")


@dataclass
class PhaseStats:
    """One phase's totals over every time it ran."""

    calls: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of every thread of the process: far less sensitive to a busy machine than wall time
    peak_bytes: int = 0


class PhaseMeter:
    """Wall time and peak RSS per phase name, accumulated over calls; `overall_peak_bytes` spans the whole run."""

    def __init__(self) -> None:
        """Start with no phases; the overall peak counts from here."""
        self.phases: dict[str, PhaseStats] = {}
        self._open: list[str] = []
        self.overall_peak_bytes = peak_rss_bytes()

    def _fold(self) -> None:
        peak = peak_rss_bytes()
        self.overall_peak_bytes = max(self.overall_peak_bytes, peak)
        for name in self._open:
            stats = self.phases[name]
            stats.peak_bytes = max(stats.peak_bytes, peak)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block and record its peak RSS under `name` (peaks of repeated calls: the largest)."""
        self._fold()
        reset_peak()
        self.phases.setdefault(name, PhaseStats())
        self._open.append(name)
        started, started_cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            stats = self.phases[name]
            stats.calls += 1
            stats.seconds += time.perf_counter() - started
            stats.cpu_seconds += time.process_time() - started_cpu
            self._fold()
            self._open.remove(name)
            reset_peak()

    def peak(self) -> int:
        """The overall peak so far (every phase and the time between them)."""
        self._fold()
        return self.overall_peak_bytes

    def table(self, title: str = "phase") -> str:
        """One line per phase: calls, total wall and CPU seconds, peak RSS in GiB."""
        lines = [f"{title:<28}{'calls':>6}{'wall s':>9}{'CPU s':>9}{'peak RSS GiB':>14}"]
        for name, stats in self.phases.items():
            cells = f"{stats.calls:>6}{stats.seconds:>9.1f}{stats.cpu_seconds:>9.1f}{stats.peak_bytes / GIB:>14.2f}"
            lines.append(f"{name:<28}{cells}")
        lines.append(f"{'overall (whole process)':<28}{'':>6}{'':>9}{'':>9}{self.peak() / GIB:>14.2f}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, dict[str, float]]:
        """The table as JSON-ready numbers."""
        result = {
            name: {
                "calls": stats.calls,
                "seconds": stats.seconds,
                "cpu_seconds": stats.cpu_seconds,
                "peak_gib": stats.peak_bytes / GIB,
            }
            for name, stats in self.phases.items()
        }
        result["overall"] = {"peak_gib": self.peak() / GIB}
        return result
