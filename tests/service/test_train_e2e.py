"""The whole path on CPU: `hud-vf-gym serve`, POST /train of the embedded SmolLM2 on the built-in 2048 tasks, the
stream followed to the end, the model listed with its checkpoint, and the trained model rolled out with /rollout.

The one heavy test of the service (a real training step of a 135M model): about a minute on an idle 2-core machine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ServiceProcess, kill_job_processes, parse_sse

pytest.importorskip("trl", reason="training jobs need the train extra: pip install -e '.[train]'")
pytest.importorskip("httpx2", reason="the test client needs httpx2")

pytestmark = pytest.mark.timeout(2400)  # generous: a loaded shared machine is many times slower than an idle one
STREAM_TIMEOUT_S = 2000.0

TRAIN = {
    "model_name": "smol-2048",
    "project": "e2e",
    "base_model": "embedded",
    "num_steps": 1,  # one optimizer step
    "num_tasks": 1,  # one task, so one GRPO group per step
    "batch_size": 2,  # the smallest group: two episodes of the task
    "num_generations": 2,
    "max_turns": 2,  # short episodes
    "max_turn_tokens": 16,  # one tool call is about 8 tokens
    "max_completion_length": 128,
    "save_steps": 1,  # a checkpoint after the step
    "learning_rate": 2e-5,
}


@pytest.fixture
def service(tmp_path: Path) -> Iterator[ServiceProcess]:
    process = ServiceProcess(tmp_path / "state", tmp_path)
    yield process
    process.stop()
    kill_job_processes(tmp_path / "state")


def test_train_e2e_embedded_model_through_the_api(service: ServiceProcess) -> None:
    import httpx2

    with httpx2.Client(base_url=service.base_url, timeout=60.0) as client:
        accepted = client.post("/train", json=TRAIN)
        assert accepted.status_code == 202, accepted.text
        job_id = accepted.json()["job_id"]
        with client.stream("GET", "/train/e2e/smol-2048/stream", timeout=STREAM_TIMEOUT_S) as response:
            events = list(parse_sse(response.iter_lines()))
        assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
        states = [e["data"]["state"] for e in events if e["event"] == "state"]
        assert states == ["queued", "running", "succeeded"], [e["data"] for e in events if e["event"] == "log"][-20:]
        (metric,) = [e["data"] for e in events if e["event"] == "metric"]
        assert (metric["step"], metric["num_steps"]) == (1, 1)
        # the rubric's rewards and the loss were logged by the real trainer (a group whose two episodes score the
        # same has advantage 0 by GRPO's design, so the test does not require the weights to move)
        assert {"reward", "loss", "rewards/format_compliance/mean", "rewards/task_completion/mean"} <= set(
            metric["metrics"]
        )
        assert math.isfinite(metric["metrics"]["loss"]) and 0.0 <= metric["metrics"]["reward"] <= 1.0
        assert [e["data"]["step"] for e in events if e["event"] == "checkpoint"] == [1]
        status = client.get(f"/jobs/{job_id}").json()
        assert (status["state"], status["progress"], status["checkpoints"]) == ("succeeded", 1.0, [1])
        (model,) = client.get("/models").json()["models"]
        assert (model["project"], model["model_name"], model["state"]) == ("e2e", "smol-2048", "succeeded")
        assert (Path(model["path"]) / "model.safetensors").is_file()

        rollout = client.post(
            "/rollout",
            json={"model_name": "smol-2048", "project": "e2e", "num_tasks": 1, "max_turns": 2, "max_tokens": 16},
            timeout=STREAM_TIMEOUT_S,
        )
        assert rollout.status_code == 200, rollout.text
        (trajectory,) = rollout.json()["trajectories"]
        assert trajectory["error"] is None and 0.0 <= trajectory["reward"] <= 1.0
        assert trajectory["messages"][-1]["role"] in ("assistant", "user")
        assert rollout.json()["model"] != ""
