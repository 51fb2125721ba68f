"""Running training jobs: one child process each, its log tailed into events, one job per GPU set at a time.

The runner is one asyncio task in the service. Every `poll_interval_s` it:

1. reads the new complete lines of each running job's log, turns them into events (step metrics, log lines) and
   stores them together with the new log offset, in one transaction, then records new checkpoint folders;
2. finds running jobs whose process has ended, reads the rest of their log and their exit status, and stores the
   final state (succeeded, failed, canceled, or interrupted when there is no exit status);
3. starts queued jobs, oldest first, whose GPU set (or the CPU) no running or earlier queued job holds.

A job's process is `python -m hud_vf_gym.service.supervise --detach EXIT_FILE -- <training_command>`: a detached
supervisor in a session of its own (never the service's child), so it outlives the service. Whether the service
started it a second ago or before a restart, a running job is followed the same way: while its supervisor is alive
(same pid and kernel start time) its log is read on from the stored offset; once it ended, its exit file says how;
if there is none, the job is interrupted and can be resumed from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hud_vf_gym.service.jobs import JobPaths
from hud_vf_gym.service.logparse import finished_checkpoints, parse_line
from hud_vf_gym.service.store import JobRow, JobStore
from hud_vf_gym.service.supervise import pid_file

__all__ = ["CANCEL_GRACE_S", "CommandBuilder", "JobRunner", "process_start_time", "resource_keys"]

LAUNCH_TIMEOUT_S = 60.0  # starting the supervisor is one interpreter start: ~0.1 s, seconds on a loaded machine
CANCEL_GRACE_S = 10.0  # after SIGTERM, a training process gets this long to exit before SIGKILL
READ_CHUNK_BYTES = 1 << 20  # log bytes read per job per poll: a chatty job cannot hold the loop for long
LAST_LINES_IN_ERROR = 5  # log lines quoted in a failed job's error

CommandBuilder = Callable[[JobRow, JobPaths, bool], tuple[list[str], dict[str, str]]]
"""(job, paths, resume) -> (command, extra environment): how the service turns a job into a process."""


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/PID/stat), telling a reused pid apart; None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    if fields[0] == "Z":  # a zombie has ended; only its exit status is left
        return None
    return fields[19]


def _alive(pid: int | None, start: str | None) -> bool:
    if pid is None:
        return False
    current = process_start_time(pid)
    if current is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (not Linux): signal 0 says whether the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return start is None or current == start


def resource_keys(gpus: tuple[int, ...]) -> frozenset[str]:
    """What a job holds while it runs: its GPUs, or the CPU when it has none."""
    return frozenset(f"gpu:{gpu}" for gpu in gpus) if gpus else frozenset({"cpu"})


class JobRunner:
    """Starts, follows, cancels and re-attaches training jobs; see the module docstring."""

    def __init__(
        self,
        store: JobStore,
        build_command: CommandBuilder,
        *,
        poll_interval_s: float,
        paused: bool = False,
        job_filter: Callable[[JobRow], Callable[[str], str]] = lambda job: lambda text: text,
        work_dir: Path | None = None,
    ) -> None:
        """Follow the jobs of `store`; `build_command` makes a job's process, `job_filter` its secret filter."""
        self.store = store
        self.build_command = build_command
        self.poll_interval_s = poll_interval_s
        self.paused = paused
        self.job_filter = job_filter
        self.work_dir = work_dir
        self._cancel_sent: dict[str, float] = {}  # job id -> when SIGTERM was sent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._wake = asyncio.Event()

    # -- the loop -------------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Poll, finish and start jobs until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            self.poll_once()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)

    def poll_once(self) -> None:
        """One round: read logs, finish ended jobs, start queued ones."""
        changed = False
        for job in self.store.jobs(states=("running",)):
            changed |= self._follow(job)
        changed |= self._schedule()
        if changed:
            self._notify()

    def wake(self) -> None:
        """Ask for a round now (safe from any thread): a job was submitted, cancelled or resumed."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)
            self._loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for_change(self, timeout_s: float) -> None:
        """Return when any job's events or state changed, or after `timeout_s`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout_s)

    def close(self) -> None:
        """Stop following; running jobs keep running (a restarted service re-attaches them)."""

    # -- following a running job ----------------------------------------------------------------------------------

    def _follow(self, job: JobRow) -> bool:
        paths = JobPaths(Path(job.job_dir), Path(job.output_dir))
        alive = self._is_running(job)
        changed = self._read_log(job, paths, final=not alive)
        changed |= self._record_checkpoints(job, paths)
        if alive:
            self._escalate_cancel(job)
            return changed
        self._finish(job, paths)
        return True

    def _is_running(self, job: JobRow) -> bool:
        if job.pid is None:  # the service died between starting the supervisor and storing its pid
            exit_file = JobPaths(Path(job.job_dir), Path(job.output_dir)).exit_file(job.attempt)
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file(exit_file).read_text(encoding="ascii"))
                with self.store.write() as connection:
                    self.store.update_job(connection, job.id, pid=pid, pid_start=process_start_time(pid))
                return _alive(pid, None)
        return _alive(job.pid, job.pid_start)

    def _read_log(self, job: JobRow, paths: JobPaths, *, final: bool) -> bool:
        """Store the events of the log's new complete lines (and, when `final`, of a last unterminated line)."""
        changed = False
        while True:
            job = self.store.job(job.id) or job
            try:
                with paths.log_file.open("rb") as handle:
                    handle.seek(job.log_offset)
                    chunk = handle.read(READ_CHUNK_BYTES)
            except FileNotFoundError:
                return changed
            end = chunk.rfind(b"\n") + 1
            if end == 0 and final and chunk:
                end = len(chunk)
            if end == 0:
                return changed
            self._store_lines(job, chunk[:end].decode("utf-8", errors="replace").splitlines(), job.log_offset + end)
            changed = True
            if len(chunk) < READ_CHUNK_BYTES:
                return changed

    def _store_lines(self, job: JobRow, lines: list[str], new_offset: int) -> None:
        step, metrics = job.step, job.metrics
        events: list[tuple[str, dict[str, Any]]] = []
        hide_secrets = self.job_filter(job)
        for raw in lines:
            line = parse_line(hide_secrets(raw.replace("\r", "")))
            if line.kind == "metric":
                step, metrics = step + 1, line.metrics
                events.append(("metric", {"step": step, "num_steps": job.num_steps, "metrics": line.metrics}))
            elif line.kind == "summary":
                events.append(("summary", {"metrics": line.metrics}))
            elif line.text:
                events.append(("log", {"line": line.text}))
        with self.store.write() as connection:
            self.store.add_events(connection, job.id, events)
            self.store.update_job(connection, job.id, log_offset=new_offset, step=step, metrics=metrics)

    def _record_checkpoints(self, job: JobRow, paths: JobPaths) -> bool:
        found = finished_checkpoints(paths.output_dir)
        known = {row["step"] for row in self.store.checkpoints(job.project, job.model_name)}
        new = sorted(set(found) - known)
        if not new:
            return False
        with self.store.write() as connection:
            for step in new:
                connection.execute(
                    "INSERT OR IGNORE INTO checkpoints (project, model_name, step, path, created) VALUES (?,?,?,?,?)",
                    (job.project, job.model_name, step, str(found[step]), time.time()),
                )
            self.store.add_events(
                connection, job.id, [("checkpoint", {"step": step, "path": str(found[step])}) for step in new]
            )
        return True

    def _finish(self, job: JobRow, paths: JobPaths) -> None:
        """Store the final state of a job whose process has ended."""
        self._cancel_sent.pop(job.id, None)
        job = self.store.job(job.id) or job
        returncode = _exit_status(paths.exit_file(job.attempt))
        error = None
        if job.cancel_requested:
            state = "canceled"
        elif returncode == 0:
            state = "succeeded"
        elif returncode is None:
            state = "interrupted"
            error = (
                "the job's process ended without an exit status (it was killed together with its supervisor); "
                f"POST /jobs/{job.id}/resume continues it from its last checkpoint"
            )
        else:
            state = "failed"
            error = f"the training process exited with status {returncode}" + self._last_lines(job.id)
        data: dict[str, Any] = {"state": state, "exit_code": returncode, "step": job.step}
        if error:
            data["error"] = error
        with self.store.write() as connection:
            self.store.update_job(
                connection, job.id, state=state, finished=time.time(), exit_code=returncode, error=error
            )
            self.store.add_events(connection, job.id, [("state", data)])

    def _last_lines(self, job_id: str) -> str:
        lines = [event.data["line"] for event in self._recent_logs(job_id)]
        return "; last log lines:\n" + "\n".join(lines) if lines else ""

    def _recent_logs(self, job_id: str) -> list[Any]:
        last = self.store.last_seq(job_id)
        events = self.store.events(job_id, after=max(0, last - 50), kinds=("log",))
        return events[-LAST_LINES_IN_ERROR:]

    # -- starting -------------------------------------------------------------------------------------------------

    def _schedule(self) -> bool:
        """Start every queued job whose resources are free and not wanted by an earlier queued job."""
        if self.paused:
            return False
        busy: set[str] = set()
        for job in self.store.jobs(states=("running",)):
            busy |= resource_keys(job.gpus)
        started = False
        for job in self.store.jobs(states=("queued",)):
            keys = resource_keys(job.gpus)
            if not keys & busy:
                self._start(job)
                started = True
            busy |= keys  # a later job sharing these waits behind this one (first come, first served)
        return started

    def _start(self, job: JobRow) -> None:
        paths = JobPaths(Path(job.job_dir), Path(job.output_dir))
        checkpoints = finished_checkpoints(paths.output_dir)
        resume = bool(checkpoints) and job.attempt > 0
        step_base = max(checkpoints) if resume else 0
        attempt = job.attempt + 1
        with self.store.write() as connection:  # marked running before the process exists: see _spawn
            self.store.update_job(
                connection, job.id, state="running", attempt=attempt, started=time.time(), finished=None,
                pid=None, pid_start=None, exit_code=None, error=None, step=step_base,
            )  # fmt: skip
            start = {"state": "running", "attempt": attempt, "resumed_from_step": step_base if resume else None}
            self.store.add_events(connection, job.id, [("state", start)])
        try:
            command, environment = self.build_command(job, paths, resume)
            pid = self._spawn(paths, attempt, command, environment)
        except Exception as exc:  # the job boundary: a job that cannot start fails with the reason, the service stays
            self._fail_to_start(job, exc)
            return
        with self.store.write() as connection:
            self.store.update_job(connection, job.id, pid=pid, pid_start=process_start_time(pid))

    def _spawn(self, paths: JobPaths, attempt: int, command: list[str], environment: dict[str, str]) -> int:
        """Start the job's detached supervisor; return its pid."""
        exit_file = paths.exit_file(attempt)
        exit_file.unlink(missing_ok=True)
        pid_file(exit_file).unlink(missing_ok=True)
        launcher = [sys.executable, "-m", "hud_vf_gym.service.supervise", "--detach", str(exit_file), "--", *command]
        with paths.log_file.open("ab") as log:
            log.write(f"[hud-vf-gym serve] attempt {attempt}: {' '.join(command)}\n".encode())
            log.flush()
            status = subprocess.run(
                launcher, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=environment,
                cwd=self.work_dir, timeout=LAUNCH_TIMEOUT_S, check=False,
            ).returncode  # fmt: skip
        try:
            return int(pid_file(exit_file).read_text(encoding="ascii"))
        except (OSError, ValueError) as exc:
            raise OSError(
                f"the job's supervisor did not start (launcher status {status}); see {paths.log_file}"
            ) from exc

    def _fail_to_start(self, job: JobRow, exc: BaseException) -> None:
        job_id = job.id
        error = f"the job could not start: {self.job_filter(job)(str(exc) or type(exc).__name__)}"
        with self.store.write() as connection:
            self.store.update_job(connection, job_id, state="failed", finished=time.time(), error=error)
            self.store.add_events(connection, job_id, [("state", {"state": "failed", "error": error})])

    # -- cancelling -----------------------------------------------------------------------------------------------

    def cancel(self, job_id: str) -> JobRow | None:
        """Cancel a job: a queued one at once, a running one by SIGTERM to its process group (SIGKILL later)."""
        with self.store.write() as connection:
            job = self.store.job(job_id)
            if job is None or job.state not in ("queued", "running"):
                return job
            if job.state == "queued":
                self.store.update_job(connection, job_id, state="canceled", finished=time.time())
                self.store.add_events(connection, job_id, [("state", {"state": "canceled", "step": job.step})])
            else:
                self.store.update_job(connection, job_id, cancel_requested=1)
        if job.state == "running" and job.pid is not None:
            self._signal(job, signal.SIGTERM)
            self._cancel_sent[job_id] = time.monotonic()
        self.wake()
        return self.store.job(job_id)

    def _escalate_cancel(self, job: JobRow) -> None:
        sent = self._cancel_sent.get(job.id)
        if job.cancel_requested and sent is None:  # requested before a restart: signal again
            self._signal(job, signal.SIGTERM)
            self._cancel_sent[job.id] = time.monotonic()
        elif sent is not None and time.monotonic() - sent > CANCEL_GRACE_S:
            self._signal(job, signal.SIGKILL)

    def _signal(self, job: JobRow, signum: int) -> None:
        if job.pid is None or not _alive(job.pid, job.pid_start):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(job.pid, signum)  # the supervisor leads its own process group

    # -- resuming -------------------------------------------------------------------------------------------------

    def resume(self, job_id: str) -> JobRow | None:
        """Queue a failed, canceled or interrupted job again; it continues from its newest checkpoint."""
        with self.store.write() as connection:
            job = self.store.job(job_id)
            if job is None or job.state not in ("failed", "canceled", "interrupted"):
                return job
            self.store.update_job(
                connection, job_id, state="queued", cancel_requested=0, error=None, exit_code=None, finished=None
            )
            self.store.add_events(connection, job_id, [("state", {"state": "queued", "resume": True})])
        self.wake()
        return self.store.job(job_id)


def _exit_status(exit_file: Path) -> int | None:
    try:
        return int(json.loads(exit_file.read_text(encoding="utf-8"))["returncode"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
