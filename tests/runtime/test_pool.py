"""Session reuse (hud_vf_gym/runtime/pool.py and its use in the harness), on real stdio servers.

The text-2048 server declares that its setup resets the game; the counter server (tests/servers/counter.py) does
not, which is how the tests check the correctness guard.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import psutil
import pytest

from hud_vf_gym import ConfigError
from hud_vf_gym.config import SessionsConfig, load_config
from hud_vf_gym.core.chat import SUMMARY_KEY
from hud_vf_gym.core.harness import Harness
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.errors import ServerConnectionError, ServerTimeoutError
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import Play2048Policy, ScriptedChatServer
from hud_vf_gym.testing.evaluate import evaluate_outputs
from tests.support import COUNTER_CONFIG, COUNTER_SERVER, TEXT_2048_MODULE, TINY_SERVER, Serve

if TYPE_CHECKING:
    from hud_vf_gym import HUDGym

TEXT_2048 = ["-m", TEXT_2048_MODULE]
HANG_GUARD_S = 120  # 16 server starts on 2 busy cores take well under this; only a hang gets near it
MOVES = 10


pytestmark = pytest.mark.usefixtures("no_child_process_left")  # every test stops the servers it started


def game_task(seed: int, *, index: int = 0) -> Task:
    """A seeded 4x4 2048 task (target 64) on the built-in server."""
    s = seed
    return Task.from_row(
        {
            "id": f"2048-seed-{seed}",
            "prompt": "Reach 64.",
            "mcp_config": {"text_2048": {"command": sys.executable, "args": TEXT_2048}},
            "setup_tool": {"name": "setup", "arguments": {"name": "board", "arguments": {"board_size": 4, "seed": s}}},
            "evaluate_tool": {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 64}}},
        },
        index=index,
    )


def counter_task(*, setup: bool = True, **fields: Any) -> Task:
    row: dict[str, Any] = {
        "id": "count-to-3",
        "prompt": "Count to 3.",
        "mcp_config": {"counter": {"command": sys.executable, "args": [str(COUNTER_SERVER)]}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"target": 3}},
        **fields,
    }
    if setup:
        row["setup_tool"] = {"name": "setup", "arguments": {}}
    return Task.from_row(row, index=0)


def server_pids(harness: Harness) -> set[int]:
    """The process ids of every server the harness holds (checked out or idle)."""
    assert harness.pool is not None
    return {group for session in harness.pool._entries for group in session.process_groups}


async def wait_until_gone(pid: int) -> None:
    """Wait until a killed process has exited (a zombie counts: its code no longer runs)."""
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        await anyio.sleep(0.01)


async def play(harness: Harness, task: Task, moves: list[str]) -> tuple[float | None, int]:
    """One whole episode through the harness: setup, the moves, evaluate, close; returns (reward, server pid)."""
    episode = harness.episode(task)
    try:
        await episode.start()
        assert episode.session is not None
        pid = episode.session.process_groups[0]
        for move in moves:
            await episode.step(move)
        grade = await episode.evaluate()
    finally:
        await episode.close()
    return (None if grade is None else grade.reward), pid


async def evaluate_2048(env: HUDGym, server: ScriptedChatServer, concurrency: int) -> dict[str, tuple[float, int]]:
    """Every task once through verifiers' `env.evaluate`; task id -> (reward, moves executed)."""
    outputs = await evaluate_outputs(
        env,
        server.base_url,
        concurrency=concurrency,
        state_columns=[SUMMARY_KEY],
        on_start=_no_progress_bar,
        on_progress=_no_progress_bar,
    )
    outcomes = {}
    for output in outputs:
        assert output["error"] is None
        summary = output[SUMMARY_KEY]
        moves = sum(turn["outcome"] == TurnOutcome.EXECUTED.value for turn in summary["turns"])
        outcomes[summary["task_id"]] = (output["metrics"]["task_completion"], moves)
    return outcomes


def _no_progress_bar(*args: Any, **kwargs: Any) -> None:
    """A verifiers progress callback that prints nothing."""


# -- correctness: the same work with and without reuse ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.classic
@pytest.mark.parametrize("concurrency", [1, 4, 16], ids=["c1", "c4", "c16"])
async def test_pool_rewards_and_moves_match_fresh_servers(concurrency: int, serve: Serve) -> None:
    from hud_vf_gym import HUDGym

    tasks = [game_task(seed, index=index) for index, seed in enumerate(range(2000, 2016))]
    chat = serve(Play2048Policy(max_moves=MOVES, look_ahead=True))
    with anyio.fail_after(HANG_GUARD_S):
        fresh = HUDGym(load_config("2048", max_turns=MOVES + 2, session_reuse=False), tasks)
        pooled = HUDGym(load_config("2048", max_turns=MOVES + 2, session_reuse="per_slot"), tasks)
        try:
            expected = await evaluate_2048(fresh, chat, concurrency)
            first = await evaluate_2048(pooled, chat, concurrency)
            second = await evaluate_2048(pooled, chat, concurrency)  # every rollout now on a used server
        finally:
            await fresh.harness.close_all()
            await pooled.harness.close_all()
    assert len(expected) == 16
    assert first == expected
    assert second == expected
    assert all(moves == MOVES for _, moves in expected.values())
    assert len(set(expected.values())) > 1  # distinct seeds give distinct games: shared work would show
    stats = pooled.harness.pool.stats if pooled.harness.pool else None
    assert stats is not None
    assert stats.opened <= concurrency  # one server per concurrent slot, never one per rollout
    assert stats.opened + stats.reused == 32


@pytest.mark.anyio
async def test_pool_checks_out_each_session_to_one_rollout_at_a_time() -> None:
    harness = Harness(load_config("2048", session_reuse="per_slot"))
    with anyio.fail_after(HANG_GUARD_S):
        episodes = [harness.episode(game_task(seed)) for seed in (1, 2, 3)]
        try:
            await asyncio.gather(*(episode.start() for episode in episodes))
            sessions = {id(episode.session) for episode in episodes}
        finally:
            await asyncio.gather(*(episode.close() for episode in episodes))
        assert len(sessions) == 3
        assert harness.pool is not None
        assert (harness.pool.stats.idle, harness.pool.stats.checked_out) == (3, 0)
        await harness.close_all()
    assert harness.pool.stats.idle == 0


@pytest.mark.anyio
async def test_close_all_during_a_rollout_releases_its_session_once() -> None:
    harness = Harness(load_config("2048", session_reuse="per_slot"), max_concurrent_sessions=1)
    with anyio.fail_after(HANG_GUARD_S):
        episode = harness.episode(game_task(1))
        await episode.start()
        await harness.close_all()  # the environment's teardown while a rollout still holds its session
        assert harness.pool is not None
        assert (harness.pool.stats.checked_out, harness.pool.stats.idle) == (0, 0)
        await episode.close()  # the rollout's own cleanup, later: must not free the one slot a second time
        second = harness.episode(game_task(2))
        await second.start()
        slots = harness._slots()
        assert slots is not None and slots.locked()  # the limit of one open session still holds
        await second.close()
        await harness.close_all()


# -- failures: a broken session never goes back into the pool ------------------------------------------------------


@pytest.mark.anyio
async def test_pool_replaces_a_server_killed_mid_rollout() -> None:
    harness = Harness(load_config("2048", session_reuse="per_slot"))
    task = game_task(7)
    with anyio.fail_after(HANG_GUARD_S):
        reward, first_pid = await play(harness, task, ["<tool>left()</tool>"])
        episode = harness.episode(task)
        await episode.start()
        assert episode.session is not None and episode.session.process_groups == (first_pid,)  # reused
        await episode.step("<tool>up()</tool>")
        os.kill(first_pid, signal.SIGKILL)
        with pytest.raises(ServerConnectionError, match="closed the connection during the call to tool 'move'"):
            await episode.step("<tool>down()</tool>")
        await episode.close()
        assert harness.pool is not None and harness.pool.stats.idle == 0  # discarded, not returned

        again, second_pid = await play(harness, task, ["<tool>left()</tool>"])
        await harness.close_all()
    assert second_pid != first_pid
    assert again == reward  # a fresh server, the same seeded game


@pytest.mark.anyio
async def test_pool_replaces_a_server_killed_while_idle() -> None:
    harness = Harness(load_config("2048", session_reuse="per_slot"))
    with anyio.fail_after(HANG_GUARD_S):
        reward, first_pid = await play(harness, game_task(8), ["<tool>left()</tool>"])
        os.kill(first_pid, signal.SIGKILL)
        await wait_until_gone(first_pid)
        again, second_pid = await play(harness, game_task(8), ["<tool>left()</tool>"])
        await harness.close_all()
    assert second_pid != first_pid
    assert again == reward
    assert harness.pool is not None and harness.pool.stats.discarded == 2  # the dead one, then close_all's


@pytest.mark.anyio
async def test_pool_never_hands_out_a_server_killed_a_moment_ago() -> None:
    # issue 15 (bench/soak.py): `kill -9` returns once the signal is queued; until the kernel schedules the server
    # its state still reads as running. A checkout right after the kill (no await between) must see it dead.
    harness = Harness(load_config("2048", session_reuse="per_slot"))
    with anyio.fail_after(HANG_GUARD_S):
        reward, first_pid = await play(harness, game_task(9), ["<tool>left()</tool>"])
        assert harness.pool is not None and harness.pool.idle_process_groups() == (first_pid,)
        os.kill(first_pid, signal.SIGKILL)
        again, second_pid = await play(harness, game_task(9), ["<tool>left()</tool>"])  # raised on main
        await harness.close_all()
    assert second_pid != first_pid
    assert again == reward


@pytest.mark.anyio
async def test_pool_discards_a_session_whose_call_timed_out() -> None:
    config = load_config(COUNTER_CONFIG, session_reuse="per_slot").model_copy(
        update={"sessions": SessionsConfig(reuse="per_slot", setup_resets_state=True)}
    )
    harness = Harness(config)
    with anyio.fail_after(HANG_GUARD_S):
        episode = harness.episode(counter_task())
        await episode.start()
        assert episode.session is not None
        with pytest.raises(ServerTimeoutError):
            await episode.session.call_tool("hang", {}, timeout_s=0.2)
        assert episode.session.faulted
        await episode.close()
        assert harness.pool is not None
        assert (harness.pool.stats.idle, harness.pool.stats.discarded) == (0, 1)


@pytest.mark.anyio
async def test_pool_restarts_a_server_after_max_uses() -> None:
    config = load_config("2048", session_reuse="per_slot")
    config = config.model_copy(update={"sessions": SessionsConfig(reuse="per_slot", max_uses=2)})
    harness = Harness(config)
    with anyio.fail_after(HANG_GUARD_S):
        pids = [(await play(harness, game_task(seed), []))[1] for seed in (1, 2, 3)]
        await harness.close_all()
    assert pids[0] == pids[1] != pids[2]


@pytest.mark.anyio
async def test_pool_closes_sessions_idle_past_the_timeout() -> None:
    config = load_config("2048", session_reuse="per_slot")
    config = config.model_copy(update={"sessions": SessionsConfig(reuse="per_slot", idle_timeout_s=0.05)})
    harness = Harness(config)
    with anyio.fail_after(HANG_GUARD_S):
        _, first_pid = await play(harness, game_task(1), [])
        await anyio.sleep(0.2)
        _, second_pid = await play(harness, game_task(1), [])
        await harness.close_all()
    assert first_pid != second_pid


def task_with_env(value: str) -> Task:
    """A 2048 task whose server gets one environment variable (a part of its resolved config)."""
    row = game_task(1).to_row()
    row["mcp_config"] = {"text_2048": {"command": sys.executable, "args": TEXT_2048, "env": {"VARIANT": value}}}
    return Task.from_row(row, index=0)


@pytest.mark.anyio
async def test_pool_keys_sessions_by_the_resolved_config() -> None:
    harness = Harness(load_config("2048", session_reuse="per_slot"), environ={"FIRST": "a", "SECOND": "b"})
    with anyio.fail_after(HANG_GUARD_S):
        _, from_template = await play(harness, task_with_env("${FIRST}"), [])
        _, from_literal = await play(harness, task_with_env("a"), [])  # resolves to the same config
        _, other = await play(harness, task_with_env("${SECOND}"), [])
        assert harness.pool is not None
        [entry] = harness.pool._entries.values()  # pool size = the one rollout at a time: the first was evicted
        stats = harness.pool.stats
        assert (stats.opened, stats.reused, stats.discarded, stats.idle) == (2, 1, 1, 1)
        await harness.close_all()
    assert from_template == from_literal != other
    assert re.fullmatch("[0-9a-f]{64}", entry.key)  # a digest: the resolved values (maybe secrets) are not kept


# -- the correctness guard: reuse only where setup resets everything ------------------------------------------------


@pytest.mark.anyio
async def test_per_slot_refuses_a_server_that_does_not_declare_a_reset() -> None:
    harness = Harness(load_config(COUNTER_CONFIG, session_reuse="per_slot"))
    message = (
        "sessions.reuse is per_slot, but the setup of task 'count-to-3' (setup) does not declare that it resets all "
        'state of server(s) counter. A server declares it with _meta {"hud_vf_gym/setup_resets_state": true} on its '
        "setup tool; if you know setup resets everything, set sessions.setup_resets_state: true; otherwise set "
        "sessions.reuse: auto or false"
    )
    with anyio.fail_after(HANG_GUARD_S):
        with pytest.raises(ConfigError, match=re.escape(message)):
            await harness.episode(counter_task()).start()
        assert harness.pool is not None
        assert (harness.pool.stats.idle, harness.pool.stats.checked_out) == (0, 0)


@pytest.mark.anyio
async def test_per_slot_refuses_a_task_without_setup() -> None:
    harness = Harness(load_config(COUNTER_CONFIG, session_reuse="per_slot"))
    message = (
        "task 'count-to-3' has no setup call, so a reused server would start where the previous rollout ended; give "
        "the task a setup_tool that resets the environment, or set sessions.reuse: auto or false"
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        await harness.episode(counter_task(setup=False)).start()


@pytest.mark.anyio
async def test_auto_reuses_only_declared_servers() -> None:
    harness = Harness(load_config(COUNTER_CONFIG, session_reuse="auto"))
    with anyio.fail_after(HANG_GUARD_S):
        counter_pids = [(await play(harness, counter_task(), ["<tool>act()</tool>"]))[1] for _ in range(2)]
        no_setup_reward, _ = await play(harness, counter_task(setup=False), [])
        await harness.close_all()
        game_harness = Harness(load_config("2048", session_reuse="auto"))
        game_pids = [(await play(game_harness, game_task(seed), []))[1] for seed in (1, 2)]
        await game_harness.close_all()
    assert counter_pids[0] != counter_pids[1]  # undeclared: a fresh server each time, as without a pool
    assert no_setup_reward == 0.0
    assert game_pids[0] == game_pids[1]


@pytest.mark.anyio
async def test_setup_resets_state_trusts_an_undeclared_server() -> None:
    config = load_config(COUNTER_CONFIG)
    config = config.model_copy(update={"sessions": SessionsConfig(reuse="per_slot", setup_resets_state=True)})
    harness = Harness(config)
    with anyio.fail_after(HANG_GUARD_S):
        first = await play(harness, counter_task(), ["<tool>act()</tool>"] * 3)
        second = await play(harness, counter_task(), ["<tool>act()</tool>"])
        await harness.close_all()
    assert first[1] == second[1]
    assert (first[0], second[0]) == (1.0, pytest.approx(1 / 3))  # setup reset the count between the rollouts


# -- lifetime: nothing outlives the environment ------------------------------------------------------------------------


def test_pool_sessions_of_an_ended_loop_are_not_reused() -> None:
    harness = Harness(load_config("2048", session_reuse="per_slot"))
    _, first_pid = asyncio.run(play(harness, game_task(1), []))  # ends with its session idle in the pool
    _, second_pid = asyncio.run(play(harness, game_task(1), []))
    asyncio.run(harness.close_all())
    assert first_pid != second_pid
    assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE


def test_pool_kills_its_servers_at_interpreter_exit(tmp_path: Path) -> None:
    """A script that drops a pool without closing it leaves no server, even one that ignores stdin EOF and SIGTERM."""
    pid_file = tmp_path / "server.pid"
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from hud_vf_gym.config import SessionsConfig
        from hud_vf_gym.runtime.pool import SessionPool

        async def main():
            pool = SessionPool(SessionsConfig(reuse="per_slot"))
            config = {{"tiny": {{"command": sys.executable, "args": [{str(TINY_SERVER)!r}, "--stubborn"]}}}}
            session = await pool.checkout(config)
            open({str(pid_file)!r}, "w").write(str(session.process_groups[0]))
            await pool.checkin(session, reusable=True)
            globals()["kept"] = pool  # alive at exit, never closed

        loop = asyncio.new_event_loop()
        loop.run_until_complete(main())
        # the loop is left open and the pool unclosed: only the exit handler can stop the server now
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=HANG_GUARD_S)
    pid = int(pid_file.read_text())
    try:
        psutil.Process(pid).wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    assert not psutil.pid_exists(pid)
