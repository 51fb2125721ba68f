"""train_hud_with_art end to end: real 2048 servers, a real policy endpoint, RULER through LiteLLM, ART's model.

ART's `LocalBackend` needs an NVIDIA GPU and `ServerlessBackend` needs W&B, neither of which exists here, so the
backend is `RecordingBackend`: a subclass of ART's `art.Backend` that serves the policy from a scripted endpoint on
127.0.0.1 (what `_prepare_backend_for_training` hands the model) and records what `train` receives. Everything around
it is real: `TrainableModel.register`, `model.openai_client()`, `gather_trajectory_groups`, `ruler_score_group`,
`model.log` writing ART's history.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .conftest import ART_MISSING

art = pytest.importorskip("art", reason=ART_MISSING)

from openai.types.chat.chat_completion import Choice  # noqa: E402

from hud_vf_gym.errors import ConfigError, DependencyNotInstalled, MCPServerError  # noqa: E402
from hud_vf_gym.integrations.art import train_hud_with_art  # noqa: E402
from hud_vf_gym.integrations.art.backends import check_backend  # noqa: E402
from hud_vf_gym.testing import ScriptedChatServer  # noqa: E402
from hud_vf_gym.testing.ruler_judge import JUDGE_MODEL_NAME, RulerJudgePolicy  # noqa: E402

from .conftest import MixedPolicy, server_2048, tasks_2048, wait_until_gone  # noqa: E402

pytestmark = pytest.mark.anyio


@dataclass
class TrainCall:
    groups: list[Any]
    learning_rate: float
    model_name: str


@dataclass
class RecordingBackend(art.Backend):  # type: ignore[misc]
    """ART's backend protocol, with a scripted endpoint as the served model; records every `train` call."""

    base_url: str
    step: int = 0
    calls: list[TrainCall] = field(default_factory=list)
    closed: bool = False

    def _model_inference_name(self, model: Any, step: int | None = None) -> str:
        return f"{model.name}@{self.step if step is None else step}"

    async def close(self) -> None:
        self.closed = True

    async def register(self, model: Any) -> None:
        self.registered = model

    async def _get_step(self, model: Any) -> int:
        return self.step

    async def _delete_checkpoint_files(self, model: Any, steps_to_keep: list[int]) -> None:
        return None

    async def _prepare_backend_for_training(self, model: Any, config: Any) -> tuple[str, str]:
        return self.base_url, "test-key"

    async def train(self, model: Any, trajectory_groups: Any, *, learning_rate: float, **kwargs: Any) -> Any:
        groups = list(trajectory_groups)
        self.calls.append(TrainCall(groups, learning_rate, model.get_inference_name()))
        self.step += 1
        rewards = [trajectory.reward for group in groups for trajectory in group.trajectories]
        return art.TrainResult(step=self.step, metrics={"loss": 0.5, "reward_mean": sum(rewards) / len(rewards)})


def write_taskset(tmp_path: Path, marker: str, count: int) -> Path:
    rows = [{**task.to_row(), "mcp_config": server_2048(marker)} for task in tasks_2048(marker, count)]
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(rows))
    return path


def write_config(tmp_path: Path, taskset: Path, **training: Any) -> Path:
    path = tmp_path / "config.yaml"
    lines = [
        "environments:",
        "  my_2048:",
        f"    taskset: {taskset}",
        "    config_path: '2048'",
        "    max_turns: 4",
        "training:",
        "  default:",
        *(f"    {key}: {value}" for key, value in training.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_training_gathers_scores_trains_and_logs_each_step(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path
) -> None:
    policy = serve(MixedPolicy())
    judge = serve(RulerJudgePolicy(), model_name=JUDGE_MODEL_NAME)
    backend = RecordingBackend(policy.base_url)
    config = write_config(tmp_path, write_taskset(tmp_path, marker, 3), rollouts_per_group=2, groups_per_step=2)
    steps_seen: list[int] = []

    report = await train_hud_with_art(
        environment="my_2048",
        base_model="Qwen/Qwen2.5-0.5B-Instruct",
        num_training_scenarios=3,
        learning_rate=3e-5,
        use_ruler=True,
        backend=backend,
        config=str(config),
        steps=2,
        judge_model=JUDGE_MODEL_NAME,
        judge_base_url=judge.base_url,
        run_name="ruler-run",
        art_dir=str(tmp_path / ".art"),
        output=str(tmp_path / "groups"),
        on_step=lambda step: steps_seen.append(step.step),
    )

    assert steps_seen == [1, 2] and [step.trained for step in report.steps] == [True, True]
    assert (report.run_name, report.backend) == ("ruler-run", "RecordingBackend")
    assert [call.learning_rate for call in backend.calls] == [3e-5, 3e-5]
    # each step takes the next two of the three tasks (groups_per_step from the config file), two rollouts each
    assert [[group.metadata["task_id"] for group in call.groups] for call in backend.calls] == [
        ["2048_3x3_target_16", "2048_3x3_target_32"],
        ["2048_3x3_target_64", "2048_3x3_target_16"],
    ]
    assert [call.model_name for call in backend.calls] == ["ruler-run@0", "ruler-run@1"]  # the current checkpoint
    for call, step in zip(backend.calls, report.steps, strict=True):
        for group, group_report in zip(call.groups, step.groups, strict=True):
            assert len(group.trajectories) == 2 and group.metrics["ruler_errors"] == 0
            for trajectory in group.trajectories:
                assert trajectory.reward == trajectory.metrics["ruler_score"]  # trained on RULER's score
                assert trajectory.metrics["independent_reward"] == trajectory.metrics["hud_reward"]
                assert any(isinstance(item, Choice) for item in trajectory.messages_and_choices)
            assert group_report.rewards == tuple(t.reward for t in group.trajectories)
            assert group_report.hud_rewards == tuple(t.metrics["hud_reward"] for t in group.trajectories)
    # every policy request asked for logprobs and named the checkpoint being trained
    chats = [r["json"] for r in policy.requests if r["path"].endswith("/chat/completions")]
    assert chats and all(body["logprobs"] is True for body in chats)
    assert {body["model"] for body in chats} == {"ruler-run@0", "ruler-run@1"}
    # model.log wrote ART's history, one line per step with the backend's metrics
    history = tmp_path / ".art" / "hud-vf-gym" / "models" / "ruler-run" / "history.jsonl"
    logged = [json.loads(line) for line in history.read_text().splitlines()]
    assert any(entry.get("train/loss") == 0.5 for entry in logged)
    assert sorted(path.name for path in (tmp_path / "groups").iterdir()) == ["step-0001.jsonl", "step-0002.jsonl"]
    assert not backend.closed  # a backend object the caller passed is the caller's to close
    assert wait_until_gone(marker) == []

    # a rerun with the same backend resumes at its step: one more step to reach 3
    resumed = await train_hud_with_art(
        environment="my_2048", backend=backend, config=str(config), steps=3, run_name="ruler-run",
        art_dir=str(tmp_path / ".art"), base_model="Qwen/Qwen2.5-0.5B-Instruct",
    )  # fmt: skip
    assert [step.step for step in resumed.steps] == [3]
    assert len(backend.calls) == 3 and backend.calls[2].learning_rate == 1e-5  # the default, no RULER this time
    assert all("ruler_score" not in t.metrics for g in backend.calls[2].groups for t in g.trajectories)


async def test_a_step_whose_rollouts_all_failed_trains_nothing(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path
) -> None:
    policy = serve(MixedPolicy())
    backend = RecordingBackend(policy.base_url)
    dead = [{**row, "mcp_config": {"dead": {"command": sys.executable, "args": ["-c", "pass", marker]}}} for row in
            json.loads(write_taskset(tmp_path, marker, 1).read_text())]  # fmt: skip
    taskset = tmp_path / "dead.json"
    taskset.write_text(json.dumps(dead))
    first = r"\(2 failures; the first: ServerStartError: .*MCP server 'dead'"  # wording depends on timing
    with pytest.raises(MCPServerError, match=rf"every rollout of step 1 failed .* {first}"):
        await train_hud_with_art(
            environment="my_2048", backend=backend, config=str(write_config(tmp_path, taskset)), steps=1,
            rollouts_per_group=2, art_dir=str(tmp_path / ".art"), base_model="m",
        )  # fmt: skip
    assert backend.calls == []
    assert wait_until_gone(marker) == []


def test_backends_say_in_one_line_what_they_need() -> None:
    with pytest.raises(ConfigError) as no_key:
        check_backend("serverless", environ={})
    assert str(no_key.value) == "--backend serverless trains on W&B Training and needs WANDB_API_KEY; export it first"
    # this machine has no NVIDIA GPU (and the CPU test environment has no torch): LocalBackend cannot run here
    with pytest.raises((ConfigError, DependencyNotInstalled)) as no_gpu:
        check_backend("local")
    assert "--backend local needs an NVIDIA GPU" in str(no_gpu.value) and "\n" not in str(no_gpu.value)
    with pytest.raises(ConfigError, match="unknown backend 'skypilot'; choose one of: local, serverless, ruler-only"):
        check_backend("skypilot")
    check_backend("serverless", environ={"WANDB_API_KEY": "x"})
    check_backend("ruler-only")


async def test_an_unknown_environment_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown environment 'gmail'; known environments: 2048, browser, miniwob;"):
        await train_hud_with_art(environment="gmail", backend="ruler-only", base_url="http://127.0.0.1:9/v1")
    config = tmp_path / "config.yaml"
    config.write_text("environments:\n  mine:\n    taskset: '2048'\n    config_path: '2048'\n")
    with pytest.raises(ConfigError, match=r"known environments: 2048, browser, miniwob, mine$"):
        await train_hud_with_art(environment="gmail", backend="ruler-only", base_url="http://x/v1", config=str(config))
    config.write_text("environments:\n  mine:\n    taskset: '2048'\n    max_turn: 3\n")
    with pytest.raises(ConfigError, match=r"environments\.mine\.max_turn: Extra inputs are not permitted"):
        await train_hud_with_art(environment="mine", backend="ruler-only", base_url="http://x/v1", config=str(config))
