"""Issue 15: a server killed after the last turn and before evaluate is an infrastructure error, never a silent score.

bench/soak.py found it (3 rollouts in 1200): a SIGKILL that lands after the episode's last call answered (so no turn
fails) but before the evaluate call. Once the connection had noticed the death, `evaluate()` returned None without a
call, no error was recorded, and the rollout reported 10 moves, no grade and no error: scored as if nothing happened.
Each test kills the server exactly there: after `done()`, before evaluation, and waits until the connection has seen
the death, so the outcome never depends on timing.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import anyio
import pytest
import verifiers as vf
import yaml

from hud_vf_gym.config import load_config, parse_config
from hud_vf_gym.core.harness import Harness, TaskEpisode
from hud_vf_gym.env import EPISODE_KEY, SUMMARY_KEY, HUDGym
from hud_vf_gym.errors import MCPServerError, ServerConnectionError
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import FixedRepliesPolicy
from hud_vf_gym.testing.evaluate import evaluate_outputs
from tests.support import ACT_THREE_TIMES, COUNTER_CONFIG, counter_row, processes_with

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("no_marked_process_left")]

HANG_GUARD_S = 60  # a counter server starts in about a second; only a hang gets near this
KILLED = "its process was killed by signal 9"


async def kill_and_wait_until_noticed(session: MCPSession) -> None:
    """SIGKILL the session's one server and wait until its connection has seen it die (as an idle pool would)."""
    [server_pid] = session.process_groups  # the server leads its own process group
    os.kill(server_pid, signal.SIGKILL)
    with anyio.fail_after(HANG_GUARD_S):
        while session.is_alive:
            await anyio.sleep(0.01)


async def test_evaluate_on_a_server_that_died_after_the_last_turn_raises_a_connection_error(marker: str) -> None:
    episode = Harness(load_config(COUNTER_CONFIG)).episode(Task.from_row(counter_row(marker)))
    with anyio.fail_after(HANG_GUARD_S):
        await episode.start()
        for reply in ACT_THREE_TIMES:
            await episode.step(reply)
    try:
        assert episode.is_done and episode.session is not None
        await kill_and_wait_until_noticed(episode.session)
        with pytest.raises(ServerConnectionError, match=KILLED) as error:
            await episode.evaluate()
    finally:
        with anyio.fail_after(HANG_GUARD_S):
            await episode.close()
    assert "'evaluate'" in str(error.value)  # names the call that found the server gone
    assert isinstance(error.value, MCPServerError)
    assert episode.record.grade is None and episode.record.evaluation_error is None
    assert processes_with(marker) == []


class KillBeforeEvaluateHUDGym(HUDGym):
    """HUDGym whose server is killed once the episode is over, before `finish_episode` (priority 50) evaluates it."""

    @vf.cleanup(priority=60)  # type: ignore[untyped-decorator]
    async def kill_server(self, state: vf.State) -> None:
        """Kill the rollout's server and let its connection notice, as a kill just after the last turn would."""
        episode = state[EPISODE_KEY]
        assert isinstance(episode, TaskEpisode) and episode.is_done and episode.session is not None
        await kill_and_wait_until_noticed(episode.session)


@pytest.mark.parametrize("reuse", [False, "per_slot"])
async def test_hudgym_rollout_whose_server_died_before_evaluate_is_an_infra_error(
    serve: Any, marker: str, reuse: bool | str
) -> None:
    raw = yaml.safe_load(COUNTER_CONFIG.read_text(encoding="utf-8"))
    raw["sessions"] = {"reuse": reuse, "setup_resets_state": True}  # the counter's setup resets its one number
    config = parse_config(raw, source=str(COUNTER_CONFIG))
    env = KillBeforeEvaluateHUDGym(config, [Task.from_row(counter_row(marker), index=0)])
    server = serve(FixedRepliesPolicy(ACT_THREE_TIMES))
    try:
        with anyio.fail_after(HANG_GUARD_S):
            [output] = await evaluate_outputs(env, server.base_url, state_columns=[SUMMARY_KEY])
    finally:
        await env.harness.close_all()
    episode: dict[str, Any] = output[SUMMARY_KEY]
    assert [turn["outcome"] for turn in episode["turns"]] == ["executed", "executed", "executed", "done"]
    assert output["error"] is not None, "a silent score: played, not graded, and no error recorded"
    assert output["error"]["error"] == "ServerConnectionError"  # kept out of training
    assert KILLED in output["error"]["message"]
    assert episode["grade"] is None and episode["infra_error"] == output["error"]["message"]
    assert processes_with(marker) == []
