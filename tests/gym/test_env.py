"""HUDTaskEnv: the Gymnasium contract on real stdio MCP servers (the built-in 2048 server and the test servers)."""

from __future__ import annotations

import dataclasses
import functools
import gc
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import anyio
import gymnasium
import psutil
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.spaces import Text
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv
from openai import AsyncOpenAI

from hud_vf_gym import ConfigError, HUDTaskEnv, TaskError
from hud_vf_gym.config import load_config, parse_config
from hud_vf_gym.gym.spaces import MAX_TEXT_LENGTH
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import Play2048Policy, ScriptedChatServer, message_text
from hud_vf_gym.types import Grade, ImageData
from tests.support import COUNTER_CONFIG, ECHO_SERVER, Serve, counter_row, processes_with

LOOP_THREAD_NAME = "hud-vf-gym-env-loop"
Message = dict[str, Any]


@pytest.fixture
def env_factory() -> Iterator[Callable[..., gymnasium.Env[str, str]]]:
    """Make envs with gymnasium.make; every env a test made is closed afterwards, even when the test failed."""
    made: list[gymnasium.Env[str, str]] = []

    def make(env_id: str = "hud_vf_gym/2048-v0", **kwargs: Any) -> gymnasium.Env[str, str]:
        env = gymnasium.make(env_id, **kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


def child_processes_running(*fragments: str) -> list[psutil.Process]:
    """This test process's descendants still running whose command line contains one of `fragments`."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            running = child.is_running() and child.status() != psutil.STATUS_ZOMBIE
            if running and any(fragment in part for part in child.cmdline() for fragment in fragments):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def child_2048_servers() -> list[psutil.Process]:
    """The built-in 2048 servers this test process started (and did not stop)."""
    return child_processes_running("hud_vf_gym.environments.text_2048")


def loop_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == LOOP_THREAD_NAME)


def builtin_2048_task(task_id: str) -> Task:
    return next(task for task in load_taskset("2048").tasks if task.id == task_id)


def marked_2048_task(task_id: str, marker: str) -> Task:
    """A built-in 2048 task whose server command line carries `marker` (`-X` options are free-form, and the server's
    own argument parser accepts no unknown flags)."""
    task = builtin_2048_task(task_id)
    config = {
        name: {**entry, "args": ["-X", f"hud_vf_gym_test_marker={marker}", *entry["args"]]}
        for name, entry in task.mcp_config.items()
    }
    return dataclasses.replace(task, mcp_config=config)


def counter_task(marker: str, task_id: str = "count-to-3", **fields: Any) -> Task:
    return Task.from_row(counter_row(marker, task_id, **fields))


def play(
    env: gymnasium.Env[str, str], policy: Callable[[list[Message]], str], **reset_kwargs: Any
) -> tuple[list[Message], float, dict[str, Any]]:
    """Play one episode; return the conversation as the model saw it, the final reward and the final info."""
    observation, info = env.reset(**reset_kwargs)
    messages: list[Message] = [
        {"role": "system", "content": info["system_prompt"]},
        {"role": "user", "content": observation},
    ]
    while True:
        action = policy(messages)
        messages.append({"role": "assistant", "content": action})
        observation, reward, terminated, truncated, info = env.step(action)
        messages.append({"role": "user", "content": observation})
        if terminated or truncated:
            return messages, float(reward), info


async def verifiers_rollout(task: Task, server: ScriptedChatServer) -> tuple[dict[str, Any], list[Message]]:
    """The same task through HUDGym and verifiers' own evaluate loop, against a scripted chat server."""
    import verifiers as vf

    from hud_vf_gym import HUDGym

    env = HUDGym(load_config("2048"), [task])
    try:
        async with AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client:
            results = await env.evaluate(
                vf.OpenAIChatCompletionsClient(client),
                "scripted",
                sampling_args={"temperature": 0.0, "max_tokens": 64},
                num_examples=-1,
                rollouts_per_example=1,
                max_concurrent=1,
            )
    finally:
        await env.harness.close_all()  # the built-in 2048 config keeps a warm server until then
    last_request = server.requests[-1]["json"]["messages"]
    [output] = results["outputs"]
    return output, last_request


# -- the Gymnasium contract -------------------------------------------------------------------------------------------


def test_gym_env_check_env_passes_on_builtin_2048(env_factory: Callable[..., gymnasium.Env[str, str]]) -> None:
    env = env_factory()
    check_env(env.unwrapped)  # also makes, resets and closes fresh envs from the spec (render modes, double close)
    env.close()
    assert child_2048_servers() == []


def test_gym_env_declares_text_spaces(env_factory: Callable[..., gymnasium.Env[str, str]]) -> None:
    env = env_factory()
    assert isinstance(env.observation_space, Text) and isinstance(env.action_space, Text)
    assert env.observation_space.max_length == env.action_space.max_length == MAX_TEXT_LENGTH
    assert "" in env.action_space


@pytest.mark.anyio
@pytest.mark.classic
@pytest.mark.parametrize("task_id", ["2048_3x3_target_16", "2048_target_64"])
async def test_gym_env_2048_episode_matches_verifiers_reward(
    task_id: str, env_factory: Callable[..., gymnasium.Env[str, str]], serve: Serve
) -> None:
    policy = Play2048Policy(max_moves=10, look_ahead=True)
    env = env_factory()
    messages, reward, info = play(env, policy, seed=0, options={"task_id": task_id})
    output, last_request = await verifiers_rollout(builtin_2048_task(task_id), serve(policy))

    assert output["error"] is None
    assert reward == output["reward"]
    assert info["reward_components"]["task_completion"] == output["metrics"]["task_completion"]
    assert info["reward_components"] == {name: output["metrics"][name] for name in info["reward_components"]}
    assert info["grade"].reward == output["metrics"]["task_completion"] > 0
    # the model saw the same conversation: the system prompt, the first observation and every step's observation
    assert [(m["role"], message_text(m)) for m in last_request] == [(m["role"], m["content"]) for m in messages[:-2]]
    env.close()  # the episode's server waits in the env's pool for the next reset until then
    assert child_2048_servers() == []


def test_gym_env_episodes_reuse_one_warm_server(env_factory: Callable[..., gymnasium.Env[str, str]]) -> None:
    policy = Play2048Policy(max_moves=3, look_ahead=True)
    env = env_factory()  # the built-in 2048 config: sessions.reuse auto, and its server declares a resetting setup
    first_messages, first_reward, _ = play(env, policy, seed=0, options={"task_id": "2048_target_64"})
    [server] = child_2048_servers()
    second_messages, second_reward, _ = play(env, policy, seed=0, options={"task_id": "2048_target_64"})
    assert child_2048_servers() == [server]  # the same process served the second episode, after setup reset it
    assert (second_messages, second_reward) == (first_messages, first_reward)
    env.close()
    assert child_2048_servers() == []


def test_gym_env_reset_picks_task_by_id_index_or_seed(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    tasks = [
        counter_task(marker),
        counter_task(
            marker, "count-from-5", prompt="Keep counting.", setup_tool={"name": "setup", "arguments": {"start": 5}}
        ),
    ]
    env = env_factory("hud_vf_gym/HUD-v0", taskset=tasks, config_path=COUNTER_CONFIG)
    observation, info = env.reset(options={"task_id": "count-from-5"})
    assert observation == "Keep counting.\n\nCounter reset to 5"
    assert (info["task_id"], info["task_index"], info["turn"]) == ("count-from-5", 1, 0)
    assert info["system_prompt"] == load_config(COUNTER_CONFIG).system_prompt
    _, info = env.reset(options={"task_index": 0})
    assert info["task_id"] == "count-to-3"
    seeded = [env.reset(seed=seed)[1]["task_id"] for seed in (7, 7, 8, 8)]
    assert seeded[0] == seeded[1] and seeded[2] == seeded[3]
    env.close()
    assert processes_with(marker) == []


def test_gym_env_reset_rejects_unknown_task_id(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
    message = (
        "reset(options=...): no task with id 'count-to-4' (did you mean 'count-to-3'?); expected one of count-to-3"
    )
    with pytest.raises(TaskError, match=re.escape(message)):
        env.reset(options={"task_id": "count-to-4"})
    with pytest.raises(ConfigError, match=re.escape("reset(options=...): unknown key(s) 'task'; expected task_id or")):
        env.reset(options={"task": "count-to-3"})
    assert processes_with(marker) == []


def test_gym_env_model_mistakes_are_observations(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
    env.reset()
    observation, reward, terminated, truncated, info = env.step("I think I will act.")
    assert observation.startswith("No tool call found.")
    assert (reward, terminated, truncated, info["outcome"], info["turn"]) == (0.0, False, False, "parse_error", 1)
    observation, _, _, _, info = env.step("<tool>jump()</tool>")
    assert "Unknown action 'jump'" in observation and info["outcome"] == "action_error"
    observation, _, _, _, info = env.step("<tool>act(2)</tool>")
    assert observation == "<result>\nAction performed. Current count: 2\n</result>" and info["outcome"] == "executed"


def test_gym_env_done_terminates_with_the_rubric_reward(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
    env.reset()
    for action in ["<tool>act(3)</tool>", "<tool>fail()</tool>"]:
        assert env.step(action)[1:4] == (0.0, False, False)
    observation, reward, terminated, truncated, info = env.step("<tool>done()</tool>")
    assert (terminated, truncated) == (True, False)
    assert info["reward_components"]["task_completion"] == 1.0
    assert info["reward_components"]["tool_execution"] == pytest.approx(2 / 3)
    assert reward == pytest.approx(0.8 * 1.0 + 0.1 * 2 / 3 + 0.1 * 1.0)
    assert info["metrics"]["tool_errors"] == 1.0
    assert isinstance(info["grade"], Grade) and info["grade"].done
    assert [turn.outcome.value for turn in info["episode_record"].turns] == ["executed", "tool_error", "done"]
    assert "infra_error" not in info
    assert processes_with(marker) == []  # graded, then shut down at once: no server between episodes
    with pytest.raises(ResetNeeded, match=re.escape("the episode has ended (terminated or truncated)")):
        env.unwrapped.step("<tool>act()</tool>")


def test_gym_env_truncates_at_max_turns(marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]) -> None:
    # max_turns=2 overrides the config's 6, so the second step is the last
    env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG, max_turns=2)
    env.reset()
    assert env.step("<tool>act()</tool>")[1:4] == (0.0, False, False)
    _, reward, terminated, truncated, info = env.step("<tool>act()</tool>")
    assert (terminated, truncated) == (False, True)
    assert info["reward_components"]["task_completion"] == pytest.approx(2 / 3)  # the last action was executed
    assert reward == pytest.approx(0.8 * 2 / 3 + 0.1 + 0.1)
    assert processes_with(marker) == []


def test_gym_env_server_crash_is_a_truncated_infra_error(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
    env.reset()
    env.step("<tool>act()</tool>")
    observation, reward, terminated, truncated, info = env.step("<tool>crash()</tool>")
    assert (observation, reward, terminated, truncated) == ("", 0.0, False, True)
    assert info["infra_error"].startswith("ServerConnectionError: ")
    assert "reward_components" not in info and "grade" not in info  # never scored as if the model had failed
    assert info["episode_record"].infra_error == info["infra_error"]
    assert info["episode_record"].grade is None
    assert processes_with(marker) == []
    env.reset()  # the env recovers: a fresh server for the next episode
    assert env.step("<tool>act(3)</tool>")[4]["outcome"] == "executed"


def test_gym_env_screenshots_go_to_info(marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]) -> None:
    task = Task.from_row(
        {
            "id": "snap",
            "prompt": "Take a screenshot.",
            "mcp_config": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER), f"--marker={marker}"]}},
            "evaluate_tool": {"name": "evaluate", "arguments": {"reward": 1.0}},
        }
    )
    config = parse_config({"system_prompt": "Act.", "action_mappings": {"snap": {"_tool": "image"}}})
    env = env_factory("hud_vf_gym/HUD-v0", taskset=task, config_path=config, render_mode="ansi")
    observation, info = env.reset()
    assert observation == "Take a screenshot." and info["images"] == ()
    observation, _, _, _, info = env.step("<tool>snap()</tool>")
    assert observation == "<result>\nclicked\n</result>"  # the image is not in the text
    [image] = info["images"]
    assert isinstance(image, ImageData) and image.mime_type == "image/png"
    assert image.data_url().startswith("data:image/png;base64,iVBOR")
    assert env.render() == observation


def test_gym_env_close_is_safe_before_reset_and_twice(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    threads_before = loop_threads()
    unused = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
    unused.close()
    unused.close()
    env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
    env.reset()
    env.step("<tool>act()</tool>")
    assert len(processes_with(marker)) == 1 and loop_threads() == threads_before + 1
    env.close()  # mid-episode: the session is closed ungraded
    env.close()
    assert processes_with(marker) == []
    assert loop_threads() == threads_before


def test_gym_env_garbage_collected_without_close_shuts_its_server_down(marker: str) -> None:
    threads_before = loop_threads()
    env = HUDTaskEnv([counter_task(marker)], COUNTER_CONFIG)
    env.reset()
    assert len(processes_with(marker)) == 1
    del env
    gc.collect()
    assert processes_with(marker) == []
    assert loop_threads() == threads_before


@pytest.mark.anyio
async def test_gym_env_works_inside_a_running_event_loop(
    marker: str, env_factory: Callable[..., gymnasium.Env[str, str]]
) -> None:
    with anyio.fail_after(60):
        env = env_factory("hud_vf_gym/HUD-v0", taskset=[counter_task(marker)], config_path=COUNTER_CONFIG)
        observation, _ = env.reset()
        assert observation.endswith("Counter reset to 0")
        await anyio.sleep(0)  # the caller's loop still runs between calls
        for action in ["<tool>act(3)</tool>", "<tool>done()</tool>"]:
            _, reward, terminated, _, _ = env.step(action)
        assert terminated and reward == pytest.approx(1.0)
        env.close()
    assert processes_with(marker) == []


def test_gym_env_browser_v0_describes_the_screen_in_text(env_factory: Callable[..., gymnasium.Env[str, str]]) -> None:
    pytest.importorskip("playwright.async_api", reason='needs pip install "hud-vf-gym[browser]"')
    if "hud_vf_gym/Browser-v0" not in gymnasium.registry:
        pytest.skip("this checkout ships no built-in browser environment")
    env = env_factory("hud_vf_gym/Browser-v0")
    observation, info = env.reset(options={"task_index": 0})
    assert "Goal:" in observation and info["images"] == ()
    observation, reward, terminated, truncated, info = env.step("<think>Look first.</think><tool>screenshot()</tool>")
    assert observation.startswith("<result>\nPage ")  # the browser-text config asks for a text description
    assert (reward, terminated, truncated, info["outcome"]) == (0.0, False, False, "executed")
    env.close()
    assert child_processes_running("hud_vf_gym.environments.browser", "chrom") == []


# -- vector envs ------------------------------------------------------------------------------------------------------

VECTOR_TASK_IDS = ("2048_3x3_target_16", "2048_target_32", "2048_target_64", "2048_5x5_target_64")


def run_vector(vector: gymnasium.vector.VectorEnv, policy: Callable[[list[Message]], str]) -> list[tuple[str, float]]:
    """Step every sub-env until each has ended one episode; return each one's last observation and reward."""
    observations, infos = vector.reset(seed=0)
    conversations = [
        [{"role": "system", "content": infos["system_prompt"][i]}, {"role": "user", "content": observations[i]}]
        for i in range(vector.num_envs)
    ]
    finished: list[tuple[str, float] | None] = [None] * vector.num_envs
    while any(result is None for result in finished):
        actions = tuple(policy(conversation) for conversation in conversations)
        observations, rewards, terminated, truncated, _ = vector.step(actions)
        for i, conversation in enumerate(conversations):
            if finished[i] is not None:
                continue  # autoreset started a new episode here; it is closed, ungraded, with the vector env
            conversation += [{"role": "assistant", "content": actions[i]}, {"role": "user", "content": observations[i]}]
            if terminated[i] or truncated[i]:
                finished[i] = (observations[i], float(rewards[i]))
    return [result for result in finished if result is not None]


def test_gym_env_vector_envs_run_four_in_parallel_and_leave_no_server(marker: str) -> None:
    policy = Play2048Policy(max_moves=10, look_ahead=True)
    env_fns: Sequence[Callable[[], gymnasium.Env[str, str]]] = [
        functools.partial(
            gymnasium.make, "hud_vf_gym/HUD-v0", taskset=[marked_2048_task(task_id, marker)], config_path="2048"
        )
        for task_id in VECTOR_TASK_IDS
    ]
    sync_vector = SyncVectorEnv(env_fns)
    try:
        sync_results = run_vector(sync_vector, policy)
    finally:
        sync_vector.close()
    assert processes_with(marker) == []
    # shared_memory=False: with shared memory, Text observations come back as a decoded buffer, not the text
    async_vector = AsyncVectorEnv(env_fns, shared_memory=False)
    try:
        async_results = run_vector(async_vector, policy)
    finally:
        async_vector.close()
    assert processes_with(marker) == []
    assert async_results == sync_results
    assert all(reward > 0 for _, reward in sync_results)
