"""HUDGym end to end: real stdio MCP servers, a real OpenAI-compatible endpoint on 127.0.0.1, verifiers' own loop."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import verifiers as vf

from hud_vf_gym import ConfigError, HUDGym, load_environment
from hud_vf_gym.classic import as_infra_error, classic_errors
from hud_vf_gym.config import load_config, parse_config
from hud_vf_gym.core.record import EpisodeRecord
from hud_vf_gym.env import STATE_KEY, SUMMARY_KEY
from hud_vf_gym.errors import (
    InferenceError,
    MCPServerError,
    RolloutTimeoutError,
    ServerConnectionError,
    ServerStartError,
    ServerTimeoutError,
    TaskSetupError,
)
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import FixedRepliesPolicy, NonsensePolicy, Play2048Policy, ScriptedChatServer
from hud_vf_gym.testing.evaluate import evaluate_outputs
from tests.support import ACT_THREE_TIMES, COUNTER_CONFIG, COUNTER_SERVER, counter_row, processes_with


def counter_env(rows: Sequence[dict[str, Any]], **env_kwargs: Any) -> HUDGym:
    return HUDGym(
        load_config(COUNTER_CONFIG), [Task.from_row(row, index=i) for i, row in enumerate(rows)], **env_kwargs
    )


async def run(
    env: HUDGym, server: ScriptedChatServer, *, rollouts: int = 1, concurrency: int = 4, **kwargs: Any
) -> list[dict[str, Any]]:
    kwargs.setdefault("state_columns", [SUMMARY_KEY])
    return await evaluate_outputs(env, server.base_url, rollouts=rollouts, concurrency=concurrency, **kwargs)


@pytest.mark.anyio
async def test_env_counter_rollout_is_graded_by_the_evaluate_tool(serve: Any, marker: str) -> None:
    env = counter_env([counter_row(marker)])
    [output] = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)))
    assert output["error"] is None
    assert output["stop_condition"] == "has_final_env_response"
    assert output["metrics"]["task_completion"] == 1.0
    assert output["metrics"]["tool_execution"] == 1.0
    assert output["metrics"]["format_compliance"] == 1.0
    assert output["reward"] == pytest.approx(1.0)
    episode = output[SUMMARY_KEY]
    assert [turn["outcome"] for turn in episode["turns"]] == ["executed", "executed", "executed", "done"]
    assert episode["grade"]["source"] == "structuredContent.reward"
    # the setup output is the first observation, appended to the task prompt
    assert "Counter reset to 0" in output["prompt"][-1]["content"]
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_env_text_error_counts_as_failed_tool_call(serve: Any, marker: str) -> None:
    env = counter_env([counter_row(marker)])
    [output] = await run(
        env, serve(FixedRepliesPolicy(["<tool>fail()</tool>", "<tool>act(3)</tool>", "<tool>done()</tool>"]))
    )
    assert output["metrics"]["tool_execution"] == pytest.approx(2 / 3)
    assert output["metrics"]["tool_errors"] == 1.0
    assert output["metrics"]["task_completion"] == 1.0
    assert "ERROR: this action always fails" in output["completion"][1]["content"]


@pytest.mark.anyio
async def test_env_model_mistakes_become_observations(serve: Any, marker: str) -> None:
    replies = [
        "I think I will act.",
        "<tool>act(1 + 1)</tool>",
        "<tool>jump()</tool>",
        "<tool>setup()</tool>",
        "<tool>done()</tool>",
    ]
    env = counter_env([counter_row(marker)])
    [output] = await run(env, serve(FixedRepliesPolicy(replies)))
    observations = [message["content"] for message in output["completion"] if message["role"] == "user"]
    assert observations[0].startswith("No tool call found.")
    assert "argument 1 is an expression" in observations[1]
    assert "Unknown action 'jump'" in observations[2] and "act(step)" in observations[2]
    assert observations[3].startswith("setup is run by the environment")
    assert output["metrics"]["parse_errors"] == 2.0
    assert output["metrics"]["action_errors"] == 2.0
    assert output["metrics"]["tool_execution"] == pytest.approx(1 / 5)
    assert output["error"] is None


@pytest.mark.anyio
async def test_env_server_that_dies_mid_rollout_is_an_infra_error(serve: Any, marker: str) -> None:
    env = counter_env([counter_row(marker)])
    [output] = await run(env, serve(FixedRepliesPolicy(["<tool>act()</tool>", "<tool>crash()</tool>"])))
    assert output["error"]["error"] == "ServerConnectionError"
    assert "counter" in output["error"]["message"]
    assert output[SUMMARY_KEY]["grade"] is None  # never scored as if the model had failed the task
    assert output[SUMMARY_KEY]["infra_error"]
    assert processes_with(marker) == []


@pytest.mark.parametrize(
    "error",
    [
        ServerStartError("a"),
        ServerTimeoutError("b"),
        ServerConnectionError("c"),
        TaskSetupError("d"),
        RolloutTimeoutError("e"),
        InferenceError("f"),
    ],
)
def test_infrastructure_errors_reach_verifiers_as_infra_errors(error: MCPServerError | InferenceError) -> None:
    # the core's errors import no verifiers; the classic adapter re-raises them as the same class that is also an
    # InfraError, so verifiers records (`except vf.Error`) and retries them, and the row keeps the class name
    cause = OSError("pipe closed")
    with pytest.raises(vf.InfraError) as raised, classic_errors():
        raise error from cause
    bridged = raised.value
    assert not isinstance(error, vf.Error)
    assert isinstance(bridged, type(error)) and type(bridged).__name__ == type(error).__name__
    assert str(bridged) == str(error) and bridged.__cause__ is cause
    assert as_infra_error(bridged) is bridged


@pytest.mark.anyio
async def test_env_tool_call_that_never_answers_times_out(serve: Any, marker: str) -> None:
    env = counter_env([counter_row(marker)])
    [output] = await run(env, serve(FixedRepliesPolicy(["<tool>hang()</tool>"])))
    assert output["error"]["error"] == "ServerTimeoutError"
    assert "hang" in output["error"]["message"]
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_env_server_that_fails_to_start_does_not_stop_other_tasks(serve: Any, marker: str) -> None:
    broken = counter_row(marker, task_id="broken", mcp_config={"counter": {"command": "hud-vf-gym-no-such-command"}})
    env = counter_env([broken, counter_row(marker)])
    outputs = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)))
    by_task = {output[SUMMARY_KEY]["task_id"] if output.get(SUMMARY_KEY) else "broken": output for output in outputs}
    assert by_task["broken"]["error"]["error"] == "ServerStartError"
    assert "hud-vf-gym-no-such-command" in by_task["broken"]["error"]["message"]
    assert by_task["count-to-3"]["error"] is None
    assert by_task["count-to-3"]["metrics"]["task_completion"] == 1.0


@pytest.mark.anyio
async def test_env_failed_evaluation_is_recorded_not_an_infra_error(serve: Any, marker: str) -> None:
    row = counter_row(marker, evaluate_tool={"name": "evaluate", "arguments": {"target": 3, "broken": True}})
    env = counter_env([row])
    [output] = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)))
    # Issue 15 changed this from `error is None` (scored, so a crashed evaluator became a training signal): the
    # rollout now carries an EvaluationError, which keeps it out of training and out of the means; it is not an
    # infrastructure error (never retried), and the metrics still say what happened.
    assert output["error"]["error"] == "EvaluationError"
    assert output["metrics"]["evaluation_failed"] == 1.0
    assert output["metrics"]["task_completion"] == 0.0
    assert output[SUMMARY_KEY]["grade"]["is_error"] is True


@pytest.mark.anyio
async def test_env_setup_error_is_an_infra_error(serve: Any, marker: str) -> None:
    row = counter_row(marker, setup_tool={"name": "setup", "arguments": {"start": "not a number"}})
    env = counter_env([row])
    [output] = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)))
    assert output["error"]["error"] == "TaskSetupError"
    assert "setup call 'setup' failed" in output["error"]["message"]
    assert output["completion"] == []  # the model was never asked


@pytest.mark.anyio
async def test_env_legacy_task_forms_run(serve: Any, marker: str) -> None:
    row = counter_row(
        marker,
        mcp_config=json.dumps(
            {"counter": {"command": sys.executable, "arguments": [str(COUNTER_SERVER), f"--marker={marker}"]}}
        ),
        setup_tool="{}",
        evaluate_tool=json.dumps({"function": "evaluate", "args": {"target": 3}}),
        metadata="",
    )
    env = counter_env([row])
    [output] = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)))
    assert output["error"] is None
    assert output["metrics"]["task_completion"] == 1.0
    # without a setup call the first observation is the plain task prompt
    assert output["prompt"][-1]["content"] == row["prompt"]


@pytest.mark.anyio
async def test_env_two_server_config_uses_prefixed_tool_names(serve: Any, marker: str) -> None:
    def server(name: str) -> dict[str, Any]:
        return {"command": sys.executable, "args": [str(COUNTER_SERVER), f"--marker={marker}-{name}"]}

    row = counter_row(
        marker,
        mcp_config={"left": server("left"), "right": server("right")},
        setup_tool=[{"name": "left_setup", "arguments": {}}, {"name": "right_setup", "arguments": {"start": 10}}],
        evaluate_tool={"name": "right_evaluate", "arguments": {"target": 12}},
    )
    raw = load_config(COUNTER_CONFIG).model_dump(by_alias=True, include={"system_prompt", "parser"})
    config = parse_config(
        {**raw, "action_mappings": {"bump_left": {"_tool": "left_act"}, "bump_right": {"_tool": "right_act"}}}
    )
    env = HUDGym(config, [Task.from_row(row)])
    replies = [
        "<tool>bump_left()</tool>",
        "<tool>bump_right()</tool>",
        "<tool>bump_right()</tool>",
        "<tool>done()</tool>",
    ]
    [output] = await run(env, serve(FixedRepliesPolicy(replies)))
    assert output["error"] is None
    assert output[SUMMARY_KEY]["turns"][1]["result_text"] == "Action performed. Current count: 11"
    assert output["metrics"]["task_completion"] == 1.0  # right reached 12; left's count never mattered


@pytest.mark.anyio
async def test_env_secrets_never_reach_saved_results(serve: Any, marker: str, tmp_path: Path) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    row = counter_row(marker)
    row["mcp_config"]["counter"]["env"] = {"COUNTER_TOKEN": "${HUD_VF_GYM_TEST_TOKEN}"}
    crashing = counter_row(marker, task_id="crash")
    crashing["mcp_config"]["counter"]["env"] = {"COUNTER_TOKEN": "${HUD_VF_GYM_TEST_TOKEN}"}
    env = counter_env([row, crashing], environ={"HUD_VF_GYM_TEST_TOKEN": secret, "PATH": ""})
    policy = FixedRepliesPolicy(["<tool>act()</tool>", "<tool>crash()</tool>"])
    await run(env, serve(policy), save_results=True, results_path=tmp_path)
    saved = "".join(path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    assert "${HUD_VF_GYM_TEST_TOKEN}" in saved or "count-to-3" in saved  # results were written
    assert secret not in saved


@pytest.mark.anyio
async def test_env_leaves_no_server_behind_after_50_rollouts_at_concurrency_8(serve: Any, marker: str) -> None:
    env = counter_env([counter_row(marker, task_id=f"task-{i}") for i in range(10)])
    outputs = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)), rollouts=5, concurrency=8)
    assert len(outputs) == 50
    assert all(output["error"] is None for output in outputs)
    assert {output["metrics"]["task_completion"] for output in outputs} == {1.0}
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_env_nonsense_model_gets_near_zero_format_and_no_crash(serve: Any) -> None:
    env = load_environment(num_tasks=2, max_turns=4)
    outputs = await run(env, serve(NonsensePolicy(seed=3)), rollouts=2)
    assert all(output["error"] is None for output in outputs)
    assert max(output["metrics"]["format_compliance"] for output in outputs) < 0.2
    assert {output["metrics"]["tool_execution"] for output in outputs} == {0.0}


@pytest.mark.anyio
async def test_env_2048_scripted_play_reaches_reward(serve: Any) -> None:
    env = load_environment(num_tasks=3, max_turns=12)
    outputs = await run(env, serve(Play2048Policy(max_moves=10, look_ahead=True)), rollouts=2)
    assert all(output["error"] is None for output in outputs)
    assert min(output["metrics"]["task_completion"] for output in outputs) > 0
    assert {output["metrics"]["tool_execution"] for output in outputs} == {1.0}
    # the same seed gives the same game: both rollouts of a task get the same grade
    rewards: dict[int, set[float]] = {}
    for output in outputs:
        rewards.setdefault(output["example_id"], set()).add(output["metrics"]["task_completion"])
    assert all(len(values) == 1 for values in rewards.values())


class CountingGym(HUDGym):
    """Subclassing as seed 002 shows: custom state in setup_state, a custom env_response."""

    async def setup_state(self, state: vf.State) -> vf.State:
        state = await super().setup_state(state)
        state["custom_metric"] = 0
        return state

    async def env_response(self, messages: vf.Messages, state: vf.State, **kwargs: Any) -> vf.Messages:
        state["custom_metric"] += 1
        response = await super().env_response(messages, state, **kwargs)
        return [vf.UserMessage(content=f"[turn {state['custom_metric']}] {response[0].content}")]


@pytest.mark.anyio
async def test_env_subclass_with_custom_setup_and_env_response(serve: Any, marker: str) -> None:
    env = CountingGym(load_config(COUNTER_CONFIG), [Task.from_row(counter_row(marker))])
    [output] = await run(env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)), state_columns=["custom_metric"])
    assert output["custom_metric"] == 4  # three act() turns and the done() turn
    assert output["completion"][1]["content"].startswith("[turn 1] <result>")
    assert output["metrics"]["task_completion"] == 1.0


@pytest.mark.anyio
async def test_env_mapping_that_does_not_fit_the_server_is_a_config_error(serve: Any, marker: str) -> None:
    raw = load_config(COUNTER_CONFIG).model_dump(by_alias=True, include={"system_prompt", "parser"})
    config = parse_config({**raw, "action_mappings": {"jump": {"_tool": "leap", "height": 2}}})
    env = HUDGym(config, [Task.from_row(counter_row(marker))])
    with pytest.raises(ConfigError, match=re.escape("action 'jump': the server has no tool 'leap'")):
        await run(env, serve(FixedRepliesPolicy(["<tool>jump()</tool>"])))
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_env_missing_hub_key_is_a_clear_error_before_connecting(serve: Any) -> None:
    row = {
        "id": "hub-task",
        "prompt": "Play.",
        "mcp_config": {
            "hud": {
                "url": "https://mcp.hud.ai/v3/mcp",
                "headers": {"Authorization": "Bearer ${HUD_API_KEY}", "Mcp-Image": "hudevals/hud-text-2048:0.1.3"},
            }
        },
        "setup_tool": {"name": "setup", "arguments": {"name": "board", "arguments": {"board_size": 4}}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 64}}},
    }
    env = HUDGym(load_config("2048"), [Task.from_row(row)], environ={})
    with pytest.raises(ConfigError, match="HUD_API_KEY"):
        await run(env, serve(FixedRepliesPolicy(["<tool>left()</tool>"])))


def test_load_environment_defaults_to_the_builtin_2048_environment() -> None:
    env = load_environment()
    assert isinstance(env, HUDGym)
    assert len(env.tasks) >= 20
    assert env.max_turns == load_config("2048").max_turns
    dataset = env.get_dataset()
    assert json.loads(dataset[0]["info"])["id"] == env.tasks[0].id


def test_load_environment_applies_overrides() -> None:
    env = load_environment(num_tasks=2, max_turns=5, system_prompt="Be brief.")
    assert len(env.tasks) == 2
    assert env.max_turns == 5
    assert env.config.system_prompt == "Be brief."


def test_load_environment_rejects_unknown_arguments() -> None:
    message = (
        "load_environment() got unknown argument(s) max_turn; expected: taskset, config_path, num_tasks, split, "
        "max_turns, system_prompt, session_reuse, max_concurrent_sessions"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_environment(max_turn=3)


def test_env_episode_record_lives_in_state() -> None:
    assert STATE_KEY == "hud"
    assert EpisodeRecord(task_id="x").to_json()["task_id"] == "x"


@pytest.mark.anyio
@pytest.mark.parametrize(
    "replies",
    [
        ACT_THREE_TIMES,
        ["<tool>act()</tool>", "no call", "<tool>act(2)</tool>"],
        ["<tool>act()</tool>", "<tool>crash()</tool>"],
    ],
    ids=["done", "max-turns", "crash"],
)
async def test_harness_rows_match_verifiers_rows(serve: Any, marker: str, replies: list[str]) -> None:
    # `hud-vf-gym eval` plays on the harness without verifiers; its rows must read like verifiers' own
    from openai import AsyncOpenAI

    from hud_vf_gym.core.chat import ChatEndpoint, run_chat_episode
    from hud_vf_gym.core.harness import Harness

    config = load_config(COUNTER_CONFIG, max_turns=3)
    task = Task.from_row(counter_row(marker), index=0)
    [classic] = await run(HUDGym(config, [task]), serve(FixedRepliesPolicy(replies)))
    server = serve(FixedRepliesPolicy(replies))
    async with AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
        row = await run_chat_episode(Harness(config), task, ChatEndpoint(client, "scripted"), example_id=0)
    assert set(classic) - {"tool_defs", "answer"} - set(row) == set()
    for key in ("stop_condition", "is_truncated", "is_completed", "example_id"):
        assert row[key] == classic[key], key
    assert row["reward"] == pytest.approx(classic["reward"])
    timed = {"env_seconds"}  # seconds spent in the environment differ between any two runs
    assert _without(row["metrics"], timed) == pytest.approx(_without(classic["metrics"], timed))
    assert (row["error"] or {}).get("error") == (classic["error"] or {}).get("error")
    assert row["prompt"] == [dict(message) for message in classic["prompt"]]
    assert [m["content"] for m in row["completion"]] == [m["content"] for m in classic["completion"]]
    ignored = {"timing", "env_seconds"}
    assert _without(row[SUMMARY_KEY], ignored) == _without(classic[SUMMARY_KEY], ignored)
    assert processes_with(marker) == []


def _without(value: Any, keys: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _without(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value
