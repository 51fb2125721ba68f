"""The job runner through the API, in process: queueing per GPU set, the event stream, cancel, failure, idempotency.

The job command here is FAKE_TRAINER (conftest): a real child process that prints the Trainer's log lines and saves
checkpoint folders, so these tests check the service's mechanics in seconds. Real training runs in
test_train_e2e.py and test_durability.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import fake_trainer_builder, read_events

WAIT_S = 60.0  # a bound against hangs; the fake trainer's jobs take well under a second


def submit(client: Any, **fields: Any) -> Any:
    body = {"model_name": "m", "num_steps": 3, "num_tasks": 1, **fields}
    return client.post("/train", json=body)


def wait_for(client: Any, job_id: str, *states: str) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = client.get(f"/jobs/{job_id}").json()
        if status["state"] in states:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {states}: {status}")


@pytest.fixture
def client(settings: Any, make_client: Any, tmp_path: Path) -> Any:
    client = make_client(settings)
    client.app.state.service.runner.build_command = fake_trainer_builder(tmp_path, step_s=0.3)
    return client


def test_runner_job_streams_metrics_checkpoints_and_final_state(client: Any) -> None:
    accepted = submit(client)
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]
    events = read_events(client, job_id)
    assert [e["id"] for e in events] == [str(n) for n in range(1, len(events) + 1)]  # every event once, in order
    states = [e["data"]["state"] for e in events if e["event"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    metrics = [e["data"] for e in events if e["event"] == "metric"]
    assert [(m["step"], m["num_steps"]) for m in metrics] == [(1, 3), (2, 3), (3, 3)]
    assert [m["metrics"]["reward"] for m in metrics] == pytest.approx([0.2, 0.4, 0.6])
    assert [e["data"]["step"] for e in events if e["event"] == "checkpoint"] == [1, 2, 3]
    assert any(e["event"] == "log" and e["data"]["line"] == "loading the model" for e in events)
    assert [e["data"]["metrics"]["train_runtime"] for e in events if e["event"] == "summary"] == [1.5]
    status = client.get(f"/jobs/{job_id}").json()
    assert (status["state"], status["step"], status["progress"], status["exit_code"]) == ("succeeded", 3, 1.0, 0)
    assert status["rewards"] == [[1.0, 0.2], [2.0, 0.4], [3.0, 0.6]]  # parsed from the printed "0.2", ".4", ".6"
    assert status["checkpoints"] == [1, 2, 3]
    model = client.get("/models").json()["models"][0]
    assert (model["model_name"], model["state"], [c["step"] for c in model["checkpoints"]]) == (
        "m",
        "succeeded",
        [1, 2, 3],
    )


def test_runner_resumes_a_stream_after_last_event_id(client: Any) -> None:
    job_id = submit(client).json()["job_id"]
    events = read_events(client, job_id)
    resumed = read_events(client, job_id, headers={"Last-Event-ID": "4"})
    assert resumed == events[4:]
    assert read_events(client, job_id, after=len(events)) == []  # a finished job's stream ends at once


def test_runner_queues_jobs_per_gpu_set(client: Any) -> None:
    first = submit(client, model_name="a", gpus=[0]).json()
    second = submit(client, model_name="b", gpus=[1]).json()
    both = submit(client, model_name="c", gpus=[0, 1]).json()
    after = submit(client, model_name="d", gpus=[1]).json()
    assert wait_for(client, first["job_id"], "running")["state"] == "running"
    assert wait_for(client, second["job_id"], "running")["state"] == "running"  # a disjoint GPU set runs alongside
    waiting = client.get(f"/jobs/{both['job_id']}").json()
    assert (waiting["state"], waiting["queue_position"]) == ("queued", 1)
    # d wants GPU 1 too: it waits behind c (first come, first served), second in line for that GPU
    assert client.get(f"/jobs/{after['job_id']}").json()["queue_position"] == 2
    for job in (first, second, both, after):
        assert wait_for(client, job["job_id"], "succeeded", "failed")["state"] == "succeeded"
    starts = {job["job_id"]: client.get(f"/jobs/{job['job_id']}").json()["started_at"] for job in (both, after)}
    finishes = {job["job_id"]: client.get(f"/jobs/{job['job_id']}").json()["finished_at"] for job in (first, second)}
    assert starts[both["job_id"]] >= max(finishes.values())  # c started only once GPUs 0 and 1 were both free
    assert starts[after["job_id"]] >= client.get(f"/jobs/{both['job_id']}").json()["finished_at"]


def test_runner_cancels_running_and_queued_jobs(client: Any) -> None:
    running = submit(client, model_name="a", num_steps=200).json()["job_id"]
    queued = submit(client, model_name="b").json()["job_id"]
    wait_for(client, running, "running")
    assert client.post(f"/jobs/{queued}/cancel").json()["state"] == "canceled"
    client.post(f"/jobs/{running}/cancel")
    assert wait_for(client, running, "canceled", "failed", "succeeded")["state"] == "canceled"
    again = client.post(f"/jobs/{running}/cancel")
    assert again.status_code == 409
    assert again.json() == {"detail": f"job {running} already ended (canceled); nothing to cancel"}


def test_runner_failed_job_names_its_exit_status_and_last_lines(
    settings: Any, make_client: Any, tmp_path: Path
) -> None:
    client = make_client(settings)
    client.app.state.service.runner.build_command = fake_trainer_builder(tmp_path, step_s=0.01, exit_code=3)
    job_id = submit(client).json()["job_id"]
    status = wait_for(client, job_id, "failed", "succeeded")
    assert (status["state"], status["exit_code"]) == ("failed", 3)
    assert status["error"].startswith("the training process exited with status 3; last log lines:\n")
    resumed = client.post(f"/jobs/{job_id}/resume").json()
    assert (resumed["state"], resumed["attempt"]) in {("queued", 1), ("running", 2), ("failed", 2)}


def test_runner_same_request_gives_the_same_job(client: Any) -> None:
    first = submit(client, model_name="x", num_steps=100)
    again = submit(client, model_name="x", num_steps=100)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["job_id"] == first.json()["job_id"] and again.json()["created"] is False
    other = submit(client, model_name="x", num_steps=50)
    assert other.status_code == 409
    assert other.json()["detail"].startswith("model default/x already exists (job ")
    keyed = client.post("/train", json={"model_name": "y", "num_tasks": 1}, headers={"Idempotency-Key": "k1"})
    same_key = client.post("/train", json={"model_name": "y", "num_tasks": 1}, headers={"Idempotency-Key": "k1"})
    assert same_key.json()["job_id"] == keyed.json()["job_id"]
    clash = client.post("/train", json={"model_name": "z", "num_tasks": 1}, headers={"Idempotency-Key": "k1"})
    assert clash.status_code == 409
    assert clash.json()["detail"] == (
        f"Idempotency-Key 'k1' was used for a different request (job {keyed.json()['job_id']}); "
        "send a new key for a new request"
    )
    for job in client.get("/jobs").json()["jobs"]:
        client.post(f"/jobs/{job['job_id']}/cancel")


def test_runner_delete_model_refused_while_training_then_removes_files(client: Any) -> None:
    job_id = submit(client, model_name="gone", num_steps=200).json()["job_id"]
    wait_for(client, job_id, "running")
    refused = client.delete("/models/default/gone")
    assert refused.status_code == 409
    assert refused.json()["detail"].endswith(f"POST /jobs/{job_id}/cancel first")
    client.post(f"/jobs/{job_id}/cancel")
    wait_for(client, job_id, "canceled")
    folder = Path(client.get(f"/jobs/{job_id}").json()["output_dir"])
    assert client.delete("/models/default/gone").status_code == 204
    assert not folder.exists() and client.get("/models").json() == {"models": []}
    assert client.get(f"/jobs/{job_id}").json()["state"] == "canceled"  # the job's history stays
    assert client.delete("/models/default/gone").status_code == 404
