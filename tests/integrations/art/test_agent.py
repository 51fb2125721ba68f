"""ARTTrainingAgent: real built-in 2048 MCP servers, a real OpenAI-compatible endpoint on 127.0.0.1, real ART objects.

The agent must play exactly what `hud-vf-gym eval` plays (the same harness): a deterministic scripted policy gets
the same messages, so each task ends with the same reward and the same number of turns in both.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import ART_MISSING

art = pytest.importorskip("art", reason=ART_MISSING)

from openai import AsyncOpenAI  # noqa: E402
from openai.types.chat.chat_completion import Choice  # noqa: E402

from hud_vf_gym.cli.eval.evaluation import run_eval  # noqa: E402
from hud_vf_gym.cli.eval.options import EvalOptions  # noqa: E402
from hud_vf_gym.config import load_config  # noqa: E402
from hud_vf_gym.errors import ConfigError, InferenceError, ServerStartError  # noqa: E402
from hud_vf_gym.integrations.art import ARTTrainingAgent, Sampling  # noqa: E402
from hud_vf_gym.testing import FixedRepliesPolicy, Play2048Policy, ScriptedChatServer  # noqa: E402

from .conftest import processes_with, server_2048, tasks_2048, wait_until_gone  # noqa: E402

MAX_TURNS = 6


def client_for(server: ScriptedChatServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends: nothing listens there


def test_an_episode_is_an_art_trajectory_scored_like_hud_vf_gym_eval(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path
) -> None:
    server = serve(Play2048Policy(max_moves=3))
    tasks = tasks_2048(marker, 2)
    config = load_config("2048", max_turns=MAX_TURNS)

    async def play() -> list[object]:
        async with client_for(server) as client, ARTTrainingAgent(config, client, "scripted", taskset="2048") as agent:
            return [await agent.run_with_trajectory(task, rollout_index=1) for task in tasks]

    trajectories = asyncio.run(play())

    # the same tasks through `hud-vf-gym eval` (HUDGym in verifiers) with the same policy
    taskset = tmp_path / "tasks.json"
    taskset.write_text(json.dumps([{**task.to_row(), "mcp_config": server_2048(marker)} for task in tasks]))
    options = EvalOptions(
        taskset=str(taskset), base_url=server.base_url, model="scripted", max_turns=MAX_TURNS, num_tasks=2,
        output=str(tmp_path / "results"),
    )  # fmt: skip
    report = run_eval(options, log=lambda message: None)
    rows = {row["task_id"]: row for row in map(json.loads, (report.output / "results.jsonl").read_text().splitlines())}

    for task, trajectory in zip(tasks, trajectories, strict=True):
        assert isinstance(trajectory, art.Trajectory)
        row = rows[task.id]
        assert trajectory.reward == pytest.approx(row["reward"])
        assert trajectory.metrics["hud_reward"] == pytest.approx(row["reward"])
        for component in ("task_completion", "tool_execution", "format_compliance"):
            assert trajectory.metrics[component] == pytest.approx(row["metrics"][component])
        assert trajectory.metrics["turns"] == len(row["hud_episode"]["turns"])
        episode_turns = row["hud_episode"]["turns"]
        assert trajectory.metrics["done"] is (episode_turns[-1]["outcome"] == "done")
        assert trajectory.metadata == {
            "task_id": task.id,
            "taskset": "2048",
            "rollout_index": 1,
            "stop_reason": "done" if trajectory.metrics["done"] else "max_turns",
            "model": "scripted",
        }
        # the model's turns are the endpoint's own Choice objects, word for word what eval's model wrote
        items = trajectory.messages_and_choices
        assert [item["role"] for item in items[:2]] == ["system", "user"]
        choices = [item for item in items if isinstance(item, Choice)]
        written = [message["content"] for message in row["completion"] if message["role"] == "assistant"]
        assert [choice.message.content for choice in choices] == written
        assert all(item["role"] == "user" for item in items[2:] if not isinstance(item, Choice))
    assert wait_until_gone(marker) == []


@pytest.mark.anyio
async def test_a_group_keeps_infrastructure_failures_as_exceptions_not_rewards(
    serve: Callable[..., ScriptedChatServer], marker: str
) -> None:
    server = serve(Play2048Policy(max_moves=2))
    [task] = tasks_2048(marker, 1)
    dead_server = dataclasses.replace(
        task, id="server-exits", mcp_config={"dead": {"command": sys.executable, "args": ["-c", "pass", marker]}}
    )
    config = load_config("2048", max_turns=MAX_TURNS)
    async with client_for(server) as client, ARTTrainingAgent(config, client, "scripted") as agent:
        group = await agent.rollout_group(dead_server, 3)
    assert isinstance(group, art.TrajectoryGroup)
    assert group.trajectories == []
    # ART records an exception's type as str(type(exc))
    assert [failure.type for failure in group.exceptions] == [str(ServerStartError)] * 3
    assert all("MCP server 'dead'" in failure.message for failure in group.exceptions)
    assert group.metrics == {"infra_errors": 3}
    assert group.metadata["task_id"] == "server-exits"
    assert wait_until_gone(marker) == []


@pytest.mark.anyio
async def test_an_unreachable_model_endpoint_is_an_infrastructure_failure(marker: str) -> None:
    [task] = tasks_2048(marker, 1)
    config = load_config("2048", max_turns=MAX_TURNS)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    async with (
        AsyncOpenAI(base_url=url, api_key="test", max_retries=0) as client,
        ARTTrainingAgent(config, client, "nobody") as agent,
    ):
        group = await agent.rollout_group(task, 2)
        assert not agent.harness._open_sessions  # every session was handed back
    assert group.trajectories == []
    assert [failure.type for failure in group.exceptions] == [str(InferenceError)] * 2
    assert "APIConnectionError" in group.exceptions[0].message
    assert wait_until_gone(marker) == []


@pytest.mark.anyio
async def test_a_config_that_does_not_fit_the_server_stops_the_group(
    serve: Callable[..., ScriptedChatServer], marker: str
) -> None:
    server = serve(Play2048Policy())
    [task] = tasks_2048(marker, 1)
    config = load_config("default", max_turns=MAX_TURNS)  # computer-use actions; the 2048 server has no computer tool
    async with client_for(server) as client, ARTTrainingAgent(config, client, "scripted") as agent:
        with pytest.raises(ConfigError, match="action_mappings do not fit"):
            await agent.rollout_group(task, 2)
    assert wait_until_gone(marker) == []


@pytest.mark.anyio
async def test_sampling_fields_logprobs_and_a_custom_reward(
    serve: Callable[..., ScriptedChatServer], marker: str
) -> None:
    server = serve(FixedRepliesPolicy(["<tool>left()</tool>", "<tool>done()</tool>"]))
    [task] = tasks_2048(marker, 1)
    config = load_config("2048", max_turns=MAX_TURNS)
    sampling = Sampling(temperature=0.7, max_tokens=16, logprobs=True, seed=100)

    def executed_only(trajectory: Any, record: object) -> float:
        return float(trajectory.metrics["executed_turns"])

    async with (
        client_for(server) as client,
        ARTTrainingAgent(config, client, lambda: "policy@3", sampling=sampling, reward_fn=executed_only) as agent,
    ):
        trajectory = await agent.run_with_trajectory(task, rollout_index=2)
    bodies = [request["json"] for request in server.requests if request["path"].endswith("/chat/completions")]
    assert len(bodies) == 2
    for body in bodies:
        assert body["model"] == "policy@3"
        assert (body["temperature"], body["max_tokens"], body["logprobs"], body["seed"]) == (0.7, 16, True, 102)
    # the second request carries the first turn and its observation, as plain messages
    assert [message["role"] for message in bodies[1]["messages"]] == ["system", "user", "assistant", "user"]
    assert bodies[1]["messages"][2]["content"] == "<tool>left()</tool>"
    assert trajectory.reward == trajectory.metrics["executed_turns"] == 1
    assert trajectory.metrics["hud_reward"] != trajectory.reward
    assert trajectory.metrics["done"] is True
    assert wait_until_gone(marker) == []
    assert processes_with(marker) == []
