"""Fixtures of the training-service tests: settings in a temporary state folder, the app in process, the service as
a real `hud-vf-gym serve` process on 127.0.0.1, and a small real training job command for the runner's mechanics."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the service tests need: pip install -e '.[service,service-test]'")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2: pip install -e '.[service-test]'")

from fastapi.testclient import TestClient  # noqa: E402  # after the importorskip above

from hud_vf_gym.service.app import create_app  # noqa: E402
from hud_vf_gym.service.jobs import JobPaths  # noqa: E402
from hud_vf_gym.service.settings import ServiceSettings  # noqa: E402
from hud_vf_gym.service.store import JobRow  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0  # a service process imports FastAPI, verifiers and datasets: ~5 s, much more on a busy machine
TOKEN = "test-token-0123456789abcdef"

# A stand-in for the trainer, for tests of the runner's own mechanics (queueing, tailing, cancel), which must not
# take a minute per job: a real child process that prints what transformers' PrinterCallback prints, one step per
# STEP_S, and saves a checkpoint folder the way a Trainer does. Real training runs in test_train_e2e and
# test_durability.
FAKE_TRAINER = """
import json, os, sys, time
steps, output, delay = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
print("loading the model", flush=True)
for step in range(1, steps + 1):
    time.sleep(delay)
    print({"loss": "0.01", "reward": f"{0.2 * step:.4g}", "epoch": f"{step / steps:.4g}"}, flush=True)
    folder = os.path.join(output, f"checkpoint-{step}")
    os.makedirs(folder, exist_ok=True)
    open(os.path.join(folder, "trainer_state.json"), "w").write(json.dumps({"global_step": step}))
print({"train_runtime": "1.5", "train_loss": "0.01"}, flush=True)
sys.exit(int(os.environ.get("FAKE_TRAINER_EXIT", "0")))
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def settings(tmp_path: Path) -> ServiceSettings:
    return ServiceSettings(state_dir=tmp_path / "state", work_dir=tmp_path, poll_interval_s=0.02)


@pytest.fixture
def make_client() -> Iterator[Callable[..., TestClient]]:
    """Start the app in process (its lifespan: store, runner) with the given settings; stopped after the test."""
    stack = contextlib.ExitStack()

    state_dirs: list[Path] = []

    def make(settings: ServiceSettings, **kwargs: Any) -> TestClient:
        state_dirs.append(settings.state_dir)
        return stack.enter_context(TestClient(create_app(settings), **kwargs))

    with stack:
        yield make
    for state_dir in state_dirs:  # jobs outlive their service by design; a test's jobs end with the test
        kill_job_processes(state_dir)


def fake_trainer_builder(tmp_path: Path, *, step_s: float = 0.05, exit_code: int = 0) -> Any:
    """A CommandBuilder that runs FAKE_TRAINER for the job's num_steps instead of train/grpo.py."""
    script = tmp_path / "fake_trainer.py"
    script.write_text(FAKE_TRAINER, encoding="utf-8")

    def build(job: JobRow, paths: JobPaths, resume: bool) -> tuple[list[str], dict[str, str]]:
        command = [sys.executable, str(script), str(job.num_steps), str(paths.output_dir), str(step_s)]
        return command, {**os.environ, "FAKE_TRAINER_EXIT": str(exit_code)}

    return build


def read_events(
    client: Any, job_id: str, *, after: int | None = None, headers: dict[str, str] | None = None
) -> list[dict]:
    """Every event of a job's stream until it ends, parsed from the server-sent events text."""
    events: list[dict] = []
    params = {} if after is None else {"after": after}
    with client.stream("GET", f"/jobs/{job_id}/events", params=params, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        for event in parse_sse(response.iter_lines()):
            events.append(event)
    return events


def parse_sse(lines: Any) -> Iterator[dict]:
    """Server-sent events from text lines: {"id", "event", "data"} per event (data decoded from JSON)."""
    current: dict[str, Any] = {}
    for line in lines:
        if not line:
            if "data" in current:
                yield {**current, "data": json.loads(current["data"])}
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            current[name] = value[1:] if value.startswith(" ") else value


class ServiceProcess:
    """`python -m hud_vf_gym.cli serve` as a real process on 127.0.0.1 (killed with SIGKILL by `kill`)."""

    def __init__(self, state_dir: Path, work_dir: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = (state_dir.parent / f"service-{self.port}.log").open("wb")
        command = [sys.executable, "-m", "hud_vf_gym.cli", "serve", "--port", str(self.port)]
        command += ["--state-dir", str(state_dir), "--log-level", "warning", *extra]
        environment = {**os.environ, **(env or {}), "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            command, cwd=work_dir, stdout=self.log, stderr=subprocess.STDOUT, env=environment
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx2

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}; see {self.log.name}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(self.base_url + "/health", timeout=2.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"the service did not answer /health in {START_TIMEOUT_S} s; see {self.log.name}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the job processes it started keep running)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def kill_job_processes(state_dir: Path) -> None:
    """SIGKILL the process group of every job a test's service started (its supervisors lead their groups)."""
    import sqlite3

    database = state_dir / "service.db"
    if not database.exists():
        return
    from hud_vf_gym.service.runner import process_start_time

    with contextlib.closing(sqlite3.connect(database)) as connection:
        rows = list(connection.execute("SELECT pid, pid_start FROM jobs WHERE pid IS NOT NULL"))
    for pid, started in rows:
        if process_start_time(pid) == started:  # still the process the service started, not a reused pid
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
