"""Jobs survive the service: kill -9 it mid-training, restart it, and every job is listed with its true state, its
running process re-attached, its event stream complete (no event lost, none twice); a job killed together with the
service is marked interrupted and resumes from its last checkpoint.

Real processes throughout: `hud-vf-gym serve` on 127.0.0.1, train/grpo.py training a tiny random model (built from
local text, so no hub is needed) on the built-in 2048 server.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.training.conftest import build_tiny_model

from .conftest import ServiceProcess, kill_job_processes, parse_sse

pytest.importorskip("trl", reason="training jobs need the train extra: pip install -e '.[train]'")

pytestmark = pytest.mark.timeout(1800)  # three trainer starts on a busy 2-core machine take minutes each
WAIT_S = 1200.0


def small_job(model: Path, name: str, steps: int) -> dict[str, Any]:
    return {
        "model_name": name,
        "base_model": str(model),  # the tiny random model instead of SmolLM2
        "num_steps": steps,
        "num_tasks": 1,  # one task, one group per step
        "batch_size": 2,  # the smallest GRPO group
        "num_generations": 2,
        "max_turns": 2,  # short episodes
        "max_turn_tokens": 8,
        "max_completion_length": 64,
        "save_steps": 1,  # a checkpoint after every step, to resume from
    }


class Client:
    opened: list[Any] = []  # closed by the `services` fixture

    def __init__(self, base_url: str) -> None:
        import httpx2

        self.http = httpx2.Client(base_url=base_url, timeout=60.0)
        Client.opened.append(self.http)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.http.get(f"/jobs/{job_id}").json()

    def wait(self, job_id: str, predicate: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            status = self.job(job_id)
            if predicate(status):
                return status
            time.sleep(0.5)
        raise AssertionError(f"job {job_id}: never {what}; last status {status}")

    def events(self, job_id: str, *, follow: bool, last_event_id: int | None = None) -> list[dict]:
        headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
        params = {"follow": str(follow).lower()}
        with self.http.stream("GET", f"/jobs/{job_id}/events", params=params, headers=headers, timeout=WAIT_S) as r:
            assert r.status_code == 200
            return list(parse_sse(r.iter_lines()))


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[ServiceProcess]]:
    started: list[ServiceProcess] = []
    yield started
    while Client.opened:
        Client.opened.pop().close()
    for service in started:
        service.stop()
    kill_job_processes(tmp_path / "state")


def log_lines(state: Path, job_id: str) -> int:
    """Non-empty lines of a job's log file: each must be exactly one log, metric or summary event."""
    text = (state / "jobs" / job_id / "log.txt").read_text(encoding="utf-8", errors="replace")
    return sum(1 for line in text.splitlines() if line.replace("\r", "").strip())


def test_durability_kill_9_restart_reattaches_interrupts_and_resumes(
    tmp_path: Path, services: list[ServiceProcess]
) -> None:
    model = build_tiny_model(tmp_path / "tiny-lm")
    state = tmp_path / "state"
    services.append(ServiceProcess(state, tmp_path))
    client = Client(services[-1].base_url)
    first = client.http.post("/train", json=small_job(model, "first", steps=8)).json()["job_id"]
    second = client.http.post("/train", json=small_job(model, "second", steps=3)).json()["job_id"]
    client.wait(first, lambda s: s["step"] >= 1, "logged a step")
    before = client.events(first, follow=False)

    services[-1].kill()  # 1. kill -9 the service while `first` trains and `second` waits
    services.append(ServiceProcess(state, tmp_path))
    client = Client(services[-1].base_url)
    listed = {job["job_id"]: job for job in client.http.get("/jobs").json()["jobs"]}
    assert listed[first]["state"] == "running"  # re-attached: its process kept training
    assert (listed[second]["state"], listed[second]["queue_position"]) == ("queued", 1)
    after = client.events(first, follow=True, last_event_id=int(before[-1]["id"]))  # the stream resumes
    events = before + after
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))  # none lost, none twice
    assert [e["data"]["step"] for e in events if e["event"] == "metric"] == list(range(1, 9))
    assert [e["data"]["state"] for e in events if e["event"] == "state"] == ["queued", "running", "succeeded"]
    assert sum(e["event"] in ("log", "metric", "summary") for e in events) == log_lines(state, first)

    # 2. kill -9 the service and `second`'s processes together: nothing is left to report its end
    status = client.wait(second, lambda s: s["state"] == "running" and s["checkpoints"], "saved a checkpoint")
    services[-1].kill()
    os.killpg(client_pid(state, second), signal.SIGKILL)
    services.append(ServiceProcess(state, tmp_path))
    client = Client(services[-1].base_url)
    interrupted = client.wait(second, lambda s: s["state"] != "running", "left running")
    assert interrupted["state"] == "interrupted"
    assert interrupted["error"].endswith(f"POST /jobs/{second}/resume continues it from its last checkpoint")
    assert client.job(first)["state"] == "succeeded"  # still true after two restarts

    resumed = client.http.post(f"/jobs/{second}/resume").json()
    assert resumed["state"] in ("queued", "running")
    done = client.wait(second, lambda s: s["state"] not in ("queued", "running"), "finished")
    assert (done["state"], done["step"], done["attempt"]) == ("succeeded", 3, 2)
    events = client.events(second, follow=False)
    assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
    restart = [e["data"] for e in events if e["event"] == "state" and e["data"]["state"] == "running"][-1]
    assert restart["attempt"] == 2 and restart["resumed_from_step"] >= min(status["checkpoints"])
    assert sum(e["event"] in ("log", "metric", "summary") for e in events) == log_lines(state, second)


def client_pid(state: Path, job_id: str) -> int:
    import sqlite3

    with sqlite3.connect(state / "service.db") as connection:
        return int(connection.execute("SELECT pid FROM jobs WHERE id = ?", (job_id,)).fetchone()[0])
