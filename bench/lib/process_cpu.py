"""CPU seconds per process kind over this process's tree (harness, MCP servers, Playwright's driver, Chromium's parts).

A background thread polls `psutil` every `interval_s` and keeps each process's latest user+system CPU time, so a
process that exits between two polls loses at most one interval of its CPU (a fresh-per-rollout run starts and ends
a server and a browser per rollout; a warm run keeps them all alive). Processes that already ran before `start()`
count only what they spend after it. The table divides by the rollouts run:

    with TreeCpu() as cpu:
        ...run the rollouts...
    print(cpu.table(rollouts=16))

Kinds: `harness` (this process: verifiers, HUDGym, the scripted chat server's threads), `mcp server` (python -m
...environments.browser), `playwright driver` (node), `chromium browser`, `chromium renderer`, `chromium gpu`,
`chromium utility` (network service, storage, audio), `chromium zygote`, `crashpad`, `other`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from types import TracebackType

import psutil

__all__ = ["KINDS", "TreeCpu", "process_kind"]

KINDS = (
    "harness",
    "mcp server",
    "playwright driver",
    "chromium browser",
    "chromium renderer",
    "chromium gpu",
    "chromium utility",
    "chromium zygote",
    "crashpad",
    "other",
)


def process_kind(process: psutil.Process, own_pid: int) -> str:
    """Name the kind of one process of the tree (see the module docs)."""
    if process.pid == own_pid:
        return "harness"
    name = process.name()
    command = process.cmdline()
    joined = " ".join(command)
    if "crashpad" in name or "crashpad" in joined.split(" ")[0]:
        return "crashpad"
    if "environments.browser" in joined:
        return "mcp server"
    if name == "node" or "playwright" in joined.split(" --")[0]:
        return "playwright driver"
    if "chrom" in name or "chrom" in (command[0] if command else ""):
        for argument in command:
            if argument.startswith("--type="):
                kind = argument.removeprefix("--type=")
                if kind == "gpu-process":
                    return "chromium gpu"
                return f"chromium {kind}" if f"chromium {kind}" in KINDS else "chromium utility"
        return "chromium browser"
    return "other"


class TreeCpu:
    """Poll the CPU time of this process and all its descendants; read the totals per kind afterwards.

    Args:
        interval_s: how often the tree is polled (a process's last interval before it exits is lost).
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        """Prepare the sampler; polling starts in `start()` (or on entering the `with` block)."""
        self.interval_s = interval_s
        self._own_pid = os.getpid()
        self._baseline: dict[int, float] = {}  # CPU a process had spent before start()
        self._latest: dict[int, float] = {}
        self._kinds: dict[int, str] = {}
        self._processes: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.wall_s = 0.0

    def _poll(self, *, first: bool = False) -> None:
        root = psutil.Process(self._own_pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                known = self._processes.get(process.pid)
                if known is None or known.create_time() != process.create_time():
                    self._processes[process.pid] = process
                    self._kinds[process.pid] = process_kind(process, self._own_pid)
                    known = process
                times = known.cpu_times()
                spent = times.user + times.system
            except psutil.Error:
                continue
            if first:
                self._baseline[process.pid] = spent
            self._latest[process.pid] = spent

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._poll()

    def start(self) -> None:
        """Take the baseline and start polling."""
        self._started = time.perf_counter()
        self._poll(first=True)
        self._thread = threading.Thread(target=self._run, name="tree-cpu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Poll once more and stop."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._poll()
        self.wall_s = time.perf_counter() - self._started

    def __enter__(self) -> TreeCpu:
        """Start polling."""
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop polling."""
        self.stop()

    def seconds_by_kind(self) -> dict[str, float]:
        """CPU seconds each kind spent between start() and stop()."""
        totals: dict[str, float] = defaultdict(float)
        for pid, spent in self._latest.items():
            totals[self._kinds.get(pid, "other")] += spent - self._baseline.get(pid, 0.0)
        return {kind: totals[kind] for kind in KINDS if totals.get(kind)}

    def process_counts(self) -> dict[str, int]:
        """How many processes of each kind were seen."""
        counts: dict[str, int] = defaultdict(int)
        for kind in self._kinds.values():
            counts[kind] += 1
        return dict(counts)

    def table(self, rollouts: int) -> str:
        """The CPU seconds per rollout of every kind, and the total against the wall time (cores busy)."""
        seconds = self.seconds_by_kind()
        counts = self.process_counts()
        total = sum(seconds.values())
        lines = [f"    {'kind':20s} {'procs':>5s} {'CPU s':>7s} {'per rollout':>11s} {'share':>6s}"]
        for kind, spent in sorted(seconds.items(), key=lambda item: -item[1]):
            share = spent / total if total else 0.0
            lines.append(f"    {kind:20s} {counts.get(kind, 0):5d} {spent:7.2f} {spent / rollouts:9.3f} s {share:6.1%}")
        busy = total / self.wall_s if self.wall_s else 0.0
        lines.append(f"    {'total':20s} {'':5s} {total:7.2f} {total / rollouts:9.3f} s  ({busy:.2f} cores busy)")
        return "\n".join(lines)
