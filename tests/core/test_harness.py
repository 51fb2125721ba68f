"""The one turn loop (hud_vf_gym/core/harness.py), driven directly on real stdio MCP servers.

`Harness.episode(task)` runs in rollout order: `start()` (session, mapping check, setup), `step(text)` per model
message, `evaluate()`, `close()`. Model mistakes come back as turn outcomes and observations; infrastructure failures
raise `MCPServerError`s; a config that does not fit the server raises `ConfigError`. HUDGym, the Gym env and the
trainer all run this loop; their own tests cover what they add on top.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import sys
from typing import Any

import anyio
import pytest
import yaml

from hud_vf_gym.config import EnvConfig, load_config, parse_config
from hud_vf_gym.core.harness import DONE_MESSAGE, MULTIPLE_TOOLS_NOTE, Harness, Observation
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.errors import (
    ConfigError,
    MCPServerError,
    ServerConnectionError,
    ServerTimeoutError,
    TaskSetupError,
)
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.types import Grade, ToolCall
from tests.support import COUNTER_CONFIG, ECHO_SERVER, TINY_SERVER, counter_row, new_marker, processes_with

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_marked_process_left")]

HANG_GUARD_S = 60  # a counter server starts in about a second; only a hang gets near this
COUNTER_TOOLS = "act, crash, evaluate, fail, hang, setup"


def counter_task(marker: str, task_id: str = "count-to-3", **fields: Any) -> Task:
    return Task.from_row(counter_row(marker, task_id, **fields))


def counter_config(**changes: Any) -> EnvConfig:
    """tests/data/counter.yaml with top-level keys replaced (or added)."""
    raw = yaml.safe_load(COUNTER_CONFIG.read_text(encoding="utf-8"))
    return parse_config({**raw, **changes}, source=str(COUNTER_CONFIG))


# -- the happy path ---------------------------------------------------------------------------------------------------


async def test_episode_runs_setup_turns_done_and_grade_in_order(marker: str) -> None:
    episode = Harness(load_config(COUNTER_CONFIG)).episode(counter_task(marker))
    with anyio.fail_after(HANG_GUARD_S):
        first = await episode.start()
        assert first == Observation("Counter reset to 0")  # the setup output is the first observation
        assert [result.text for result in episode.record.setup_results] == ["Counter reset to 0"]
        assert len(processes_with(marker)) == 1

        turn, observation = await episode.step("<tool>act(2)</tool>")
        assert turn.outcome is TurnOutcome.EXECUTED
        assert turn.action is not None and turn.action.tool_call == ToolCall("act", {"step": 2})
        assert observation == Observation("<result>\nAction performed. Current count: 2\n</result>")
        assert not episode.is_done

        turn, observation = await episode.step("<tool>act(step=1)</tool>")
        assert observation.text == "<result>\nAction performed. Current count: 3\n</result>"
        turn, observation = await episode.step("<tool>done()</tool>")
        assert turn.outcome is TurnOutcome.DONE and episode.is_done
        assert observation == Observation(DONE_MESSAGE)

        grade = await episode.evaluate()
        assert grade == Grade(1.0, True, "count 3 of 3", {}, False, "structuredContent.reward")
        assert episode.record.grade == grade
        assert [result.structured for result in episode.record.evaluate_results] == [
            {"reward": 1.0, "done": True, "content": "count 3 of 3", "isError": False}
        ]
        assert [turn.index for turn in episode.record.turns] == [0, 1, 2]
        assert episode.record.env_seconds == pytest.approx(sum(turn.env_seconds for turn in episode.record.turns))

        await episode.close()
        assert processes_with(marker) == []
        await episode.close()  # safe to call again


async def test_episode_on_the_builtin_2048_server(marker: str) -> None:
    task = next(task for task in load_taskset("2048").tasks if task.id == "2048_3x3_target_16")  # setup seed 11
    server = task.mcp_config["text_2048"]  # marked with `-X`: the server's own parser takes no unknown flags
    marked = {"text_2048": {**server, "args": ["-X", f"hud_vf_gym_test_marker={marker}", *server["args"]]}}
    task = dataclasses.replace(task, mcp_config=marked)
    episode = Harness(load_config("2048", session_reuse=False)).episode(task)
    with anyio.fail_after(HANG_GUARD_S):
        first = await episode.start()
        assert first.text.startswith("3x3 game initialized\n")
        turn, observation = await episode.step("<tool>left()</tool>")
        assert turn.outcome is TurnOutcome.EXECUTED
        assert turn.action is not None and turn.action.tool_call == ToolCall("move", {"direction": "left"})
        assert observation.text.startswith("<result>\nMoved LEFT\nScore: 4\n")
        await episode.step("<tool>done()</tool>")
        grade = await episode.evaluate()
        await episode.close()
    assert grade is not None and grade.source == "structuredContent.reward"
    assert 0.0 < grade.reward < 1.0 and not grade.done and not grade.is_error  # a 4 tile is far from 16


async def test_task_without_setup_starts_with_an_empty_observation_and_images_reach_the_model(marker: str) -> None:
    config = parse_config({"system_prompt": "Click.", "action_mappings": {"image": {}}})
    task = Task.from_row(
        {
            "id": "screenshot",
            "prompt": "Take a screenshot.",
            "mcp_config": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER), f"--marker={marker}"]}},
            "evaluate_tool": {"name": "evaluate", "arguments": {"reward": 0.5, "done": False}},
        }
    )
    episode = Harness(config).episode(task)
    with anyio.fail_after(HANG_GUARD_S):
        assert await episode.start() == Observation("")
        _, observation = await episode.step("<tool>image()</tool>")
        grade = await episode.evaluate()
        await episode.close()
    assert observation.text == "<result>\nclicked\n</result>"
    [image] = observation.images
    assert image.mime_type == "image/png" and image.data.startswith("iVBORw0KGgo")
    assert grade is not None and (grade.reward, grade.done) == (0.5, False)


# -- model mistakes are observations ----------------------------------------------------------------------------------

MISTAKES = [
    (
        "no tool call",
        TurnOutcome.PARSE_ERROR,
        "No tool call found. End every turn with exactly one call inside <tool></tool>, e.g. <tool>done()</tool>.",
    ),
    (
        "<tool>jump()</tool>",
        TurnOutcome.ACTION_ERROR,
        "Unknown action 'jump'. Available actions: act(step), crash(), done(), fail(), hang().",
    ),
    (
        "<tool>evaluate()</tool>",
        TurnOutcome.ACTION_ERROR,
        "evaluate is run by the environment (task setup and evaluation); the agent cannot call it. Call done() when "
        "the task is finished.",
    ),
    (
        "<tool>fail()</tool>",
        TurnOutcome.TOOL_ERROR,
        "The action failed:\n<error>\nERROR: this action always fails\n</error>",
    ),
    (
        "<tool>act(step='x')</tool>",
        TurnOutcome.TOOL_ERROR,
        "The action failed:\n<error>\nError executing tool act: 1 validation error for actArguments\nstep\n",
    ),
    (
        "<tool>act(0)</tool>\n<tool>act(5)</tool>",
        TurnOutcome.EXECUTED,
        f"<result>\nAction performed. Current count: 0\n</result>\n{MULTIPLE_TOOLS_NOTE}",
    ),
]


async def test_model_mistakes_become_outcomes_and_observations_without_raising(marker: str) -> None:
    episode = Harness(load_config(COUNTER_CONFIG)).episode(counter_task(marker))
    with anyio.fail_after(HANG_GUARD_S):
        await episode.start()
        for text, outcome, observation_start in MISTAKES:
            turn, observation = await episode.step(text)
            assert (turn.outcome, observation.text[: len(observation_start)]) == (outcome, observation_start), text
        assert episode.session is not None and episode.session.is_alive  # no mistake harmed the server
        grade = await episode.evaluate()
        await episode.close()
    assert [turn.outcome for turn in episode.record.turns] == [outcome for _, outcome, _ in MISTAKES]
    assert grade is not None and grade.content == "count 0 of 3"  # only act(0) ran


async def test_passthrough_call_to_a_tool_the_server_lacks_is_an_action_error(marker: str) -> None:
    episode = Harness(counter_config(passthrough_tools="*")).episode(counter_task(marker))
    with anyio.fail_after(HANG_GUARD_S):
        await episode.start()
        missing, observation = await episode.step("<tool>teleport(x=1)</tool>")
        passed, _ = await episode.step("<tool>act(step=2)</tool>")
        await episode.close()
    assert missing.outcome is TurnOutcome.ACTION_ERROR and missing.action is None
    assert observation.text == f"There is no tool 'teleport'; tools: {COUNTER_TOOLS}."
    assert passed.outcome is TurnOutcome.EXECUTED


async def test_a_tool_call_before_start_is_a_programming_error(marker: str) -> None:
    episode = Harness(load_config(COUNTER_CONFIG)).episode(counter_task(marker))
    turn, observation = await episode.step("no tool")  # nothing to execute: no session needed
    assert turn.outcome is TurnOutcome.PARSE_ERROR and observation.text.startswith("No tool call found.")
    with pytest.raises(RuntimeError, match="the episode is not started"):
        await episode.step("<tool>act()</tool>")
    assert await episode.evaluate() is None  # nothing to grade without a session


# -- infrastructure failures raise ------------------------------------------------------------------------------------


async def test_server_crash_mid_turn_raises_and_leaves_nothing_to_grade(marker: str) -> None:
    episode = Harness(load_config(COUNTER_CONFIG)).episode(counter_task(marker))
    with anyio.fail_after(HANG_GUARD_S):
        await episode.start()
        with pytest.raises(ServerConnectionError, match="closed the connection during the call to tool 'crash'") as err:
            await episode.step("<tool>crash()</tool>")
        assert isinstance(err.value, MCPServerError)  # the classic adapter bridges it to a verifiers InfraError
        assert episode.record.turns[-1].outcome is TurnOutcome.NOT_EXECUTED
        with pytest.raises(ServerConnectionError, match="the evaluate call|the call to tool 'evaluate'"):
            await episode.evaluate()  # the server is gone: an infrastructure error, never a grade or a reward of 0
        assert episode.record.grade is None
        await episode.close()


async def test_server_killed_during_evaluate_fails_it_at_once(marker: str) -> None:
    # issue 15: the call timeout is far beyond NOTICE_S, so only noticing the death can end evaluate in time
    # (the server's child keeps its stdout open, so its end of file never comes: the exit itself must be seen)
    notice_s, in_flight_s = 1.0, 0.3
    server = [str(TINY_SERVER), "--nap", "--spawn-grandchild", f"--marker={marker}"]
    task = Task.from_row(
        {
            "id": "nap",
            "prompt": "Rest.",
            "mcp_config": {"tiny": {"command": sys.executable, "args": server}},
            "evaluate_tool": {"name": "nap", "arguments": {"seconds": 600}},
        }
    )
    config = counter_config(action_mappings={"echo": {}}, timeouts={"connect_s": 20, "tool_call_s": 600})
    episode = Harness(config).episode(task)
    errors: list[Exception] = []
    answered = anyio.Event()

    async def evaluate() -> None:
        try:
            await episode.evaluate()
        except ServerConnectionError as exc:
            errors.append(exc)
        answered.set()

    with anyio.fail_after(HANG_GUARD_S):
        await episode.start()
    assert episode.session is not None
    [server_pid] = episode.session.process_groups  # the server leads its own process group
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(evaluate)
        await anyio.sleep(in_flight_s)
        os.kill(server_pid, signal.SIGKILL)
        with anyio.fail_after(notice_s):
            await answered.wait()
    [error] = errors
    assert "closed the connection during the call to tool 'nap': its process was killed by signal 9" in str(error)
    assert episode.record.grade is None  # nothing graded: an infrastructure error, never a score
    with anyio.fail_after(HANG_GUARD_S):
        await episode.close()


async def test_tool_call_past_the_timeout_raises(marker: str) -> None:
    episode = Harness(load_config(COUNTER_CONFIG)).episode(counter_task(marker))  # timeouts.tool_call_s: 2
    with anyio.fail_after(HANG_GUARD_S):
        await episode.start()
        with pytest.raises(ServerTimeoutError, match="did not answer the call to tool 'hang' within 2 s"):
            await episode.step("<tool>hang()</tool>")
        await episode.close()  # the server still sits in the hung call: closing must stop it anyway


async def test_failed_setup_raises_task_setup_error(marker: str) -> None:
    task = counter_task(marker, setup_tool={"name": "setup", "arguments": {"start": "zero"}})
    episode = Harness(load_config(COUNTER_CONFIG)).episode(task)
    with anyio.fail_after(HANG_GUARD_S):
        with pytest.raises(TaskSetupError, match="^task 'count-to-3': setup call 'setup' failed: Error executing tool"):
            await episode.start()
        await episode.close()


async def test_mappings_that_do_not_fit_the_server_raise_config_error(marker: str) -> None:
    raw = yaml.safe_load(COUNTER_CONFIG.read_text(encoding="utf-8"))
    config = counter_config(action_mappings={**raw["action_mappings"], "jump": {"_tool": "teleport"}})
    episode = Harness(config).episode(counter_task(marker))
    message = (
        "the config's action_mappings do not fit the server's tools:\n"
        f"  action 'jump': the server has no tool 'teleport' (tools: {COUNTER_TOOLS})"
    )
    with anyio.fail_after(HANG_GUARD_S):
        with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
            await episode.start()
        await episode.close()


# -- session bookkeeping ----------------------------------------------------------------------------------------------


def test_max_concurrent_sessions_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="^max_concurrent_sessions must be at least 1 or None, got 0$"):
        Harness(load_config(COUNTER_CONFIG), max_concurrent_sessions=0)


async def test_max_concurrent_sessions_holds_a_start_until_a_session_closes(marker: str) -> None:
    harness = Harness(load_config(COUNTER_CONFIG), max_concurrent_sessions=1)
    second_marker = new_marker()
    with anyio.fail_after(HANG_GUARD_S):
        first = harness.episode(counter_task(marker))
        await first.start()
        # the only slot is taken: the second start waits for it (however long), starting no server meanwhile
        with anyio.move_on_after(1.0) as waited:
            await harness.episode(counter_task(second_marker)).start()
        assert waited.cancelled_caught
        assert processes_with(second_marker) == []
        await first.close()
        second = harness.episode(counter_task(second_marker))
        assert (await second.start()).text == "Counter reset to 0"
        await second.close()
    assert processes_with(second_marker) == []


async def test_close_all_stops_episodes_that_were_never_closed(marker: str) -> None:
    harness = Harness(load_config(COUNTER_CONFIG))
    with anyio.fail_after(HANG_GUARD_S):
        for task_id in ("first", "second"):
            await harness.episode(counter_task(marker, task_id)).start()  # dropped without close()
        assert len(processes_with(marker)) == 2
        await harness.close_all()
    assert processes_with(marker) == []
