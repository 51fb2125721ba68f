"""Issue 15: `timeouts.rollout_s` bounds the whole rollout (setup, turns, evaluate and close share one deadline).

Before, a rollout cut at rollout_s still evaluated on its blocked server with the full call timeout and closed it
politely: `rollout_s: 4` with `tool_call_s: 30` took 36 s. The server here is `tests/servers/tiny.py --nap`, which
reads nothing while it naps, so it cannot answer evaluate either. Each test bounds the whole run with
`anyio.fail_after(ROLLOUT_S + GRACE_S)`: only a rollout that honours its deadline ends inside it (the old path needs
rollout_s + 30 s). The call timeout is far longer, so it never explains an early end.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import anyio
import pytest
import yaml

from hud_vf_gym.config import EnvConfig, parse_config
from hud_vf_gym.core.harness import Harness
from hud_vf_gym.env import SUMMARY_KEY, HUDGym
from hud_vf_gym.errors import RolloutTimeoutError
from hud_vf_gym.runtime.session import FORCED_CLOSE_TIMEOUT_S
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import FixedRepliesPolicy
from hud_vf_gym.testing.evaluate import evaluate_outputs
from tests.support import COUNTER_CONFIG, TINY_SERVER, processes_with

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_marked_process_left")]

ROLLOUT_S = 3.0
TOOL_CALL_S = 120.0  # far beyond the test's bound: a call timeout must never be what ends these rollouts
# The deadline starts when the episode's session starts opening; verifiers' own clock a moment earlier. Closing gets
# FORCED_CLOSE_TIMEOUT_S to kill the process group; the rest is slack for a loaded 2-core machine.
GRACE_S = FORCED_CLOSE_TIMEOUT_S + 4.0


def nap_config() -> EnvConfig:
    raw = yaml.safe_load(COUNTER_CONFIG.read_text(encoding="utf-8"))
    raw["system_prompt"] = "Rest with nap(seconds)."
    raw["action_mappings"] = {"nap": {"_parser": {"positional": ["seconds"]}, "seconds": {"from_arg": "seconds"}}}
    raw["timeouts"] = {"connect_s": 20, "tool_call_s": TOOL_CALL_S, "rollout_s": ROLLOUT_S}
    return parse_config(raw, source=str(COUNTER_CONFIG))


def nap_task(marker: str, **fields: Any) -> Task:
    row = {
        "id": "nap",
        "prompt": "Rest.",
        "mcp_config": {"tiny": {"command": sys.executable, "args": [str(TINY_SERVER), "--nap", f"--marker={marker}"]}},
        "evaluate_tool": {"name": "echo", "arguments": {"text": '{"reward": 1.0}'}},
        **fields,
    }
    return Task.from_row(row, index=0)


async def test_rollout_blocked_in_a_tool_call_ends_at_rollout_s_as_an_infra_error(serve: Any, marker: str) -> None:
    env = HUDGym(nap_config(), [nap_task(marker)])
    server = serve(FixedRepliesPolicy(["<tool>nap(600)</tool>"]))
    with anyio.fail_after(ROLLOUT_S + GRACE_S):
        [output] = await evaluate_outputs(env, server.base_url, state_columns=[SUMMARY_KEY])
    assert output["error"]["error"] == "RolloutTimeoutError"
    assert output["error"]["message"] == (
        f"task 'nap': the rollout ran past timeouts.rollout_s ({ROLLOUT_S:g} s) while waiting for the call to tool "
        "'nap'; raise timeouts.rollout_s if the task legitimately needs longer"
    )
    assert output[SUMMARY_KEY]["infra_error"] == output["error"]["message"]
    assert output[SUMMARY_KEY]["grade"] is None  # never evaluated on the blocked server
    assert processes_with(marker) == []


async def test_rollout_whose_model_runs_out_of_time_is_a_truncation(serve: Any, marker: str) -> None:
    released = threading.Event()

    def slow_model(messages: list[dict[str, Any]]) -> str:
        released.wait(ROLLOUT_S + GRACE_S)  # thinks past the deadline (the test releases it at the end)
        return "<tool>nap(0)</tool>"

    env = HUDGym(nap_config(), [nap_task(marker)])
    server = serve(slow_model)
    try:
        with anyio.fail_after(ROLLOUT_S + GRACE_S):
            [output] = await evaluate_outputs(env, server.base_url, state_columns=[SUMMARY_KEY])
    finally:
        released.set()
    assert output["error"] is None  # the model's slowness is no infrastructure failure
    assert output["stop_condition"] == "timeout_reached"
    episode = output[SUMMARY_KEY]
    assert episode["truncation"] == f"timeouts.rollout_s ({ROLLOUT_S:g} s) ran out while the model was generating"
    assert episode["grade"] is None and episode["infra_error"] is None
    assert processes_with(marker) == []


async def test_setup_blocked_past_rollout_s_raises_rollout_timeout_and_closes_within_the_grace(marker: str) -> None:
    task = nap_task(marker, setup_tool={"name": "nap", "arguments": {"seconds": 600}})
    episode = Harness(nap_config()).episode(task)
    with anyio.fail_after(ROLLOUT_S + GRACE_S):
        with pytest.raises(RolloutTimeoutError, match="while waiting for the setup call 'nap'"):
            await episode.start()
        await episode.close()  # no time is left: the server is killed rather than asked to stop
    assert processes_with(marker) == []


async def test_episode_past_its_deadline_executes_no_more_calls(marker: str) -> None:
    episode = Harness(nap_config()).episode(nap_task(marker))
    with anyio.fail_after(ROLLOUT_S + GRACE_S):
        await episode.start()
        await anyio.sleep(ROLLOUT_S)  # the "model" thinks past the deadline
        turn, observation = await episode.step("<tool>nap(0)</tool>")
        assert turn.result is None and episode.is_truncated
        assert observation.text.startswith("The episode ran out of time: timeouts.rollout_s")
        assert await episode.evaluate() is None  # no time is left to grade it
        await episode.close()
