"""HUDGym behind verifiers' env server: rollouts in worker processes, as `vf-eval hud_vf_gym -w 2` runs them.

In one process the harness (verifiers' loop, the openai client, HUDGym and the MCP client) uses at most one core.
vf-eval's default mode instead starts a ZMQ router and `-w` worker processes, each of which calls
`load_environment(**env_args)` again and runs its share of the rollouts on its own event loop, with its own session
pool. This module builds that setup for the bench: the same tasks (as JSON rows), the same policy, `per_slot` reuse.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import psutil
import verifiers as vf
from verifiers.legacy.types import ClientConfig

from hud_vf_gym import Task, load_environment
from hud_vf_gym.core.record import TurnOutcome
from hud_vf_gym.env import SUMMARY_KEY

from lib.common import ENV_SERVER_WORKERS, MAX_TURNS, SAMPLING, Outcome, RunResult, measured

API_KEY_VARIABLE = "HUD_VF_GYM_BENCH_KEY"  # the workers read the key from the environment, by name
SERVER_STARTUP_TIMEOUT_S = 120.0  # each worker imports verifiers (seconds on 2 busy cores)


def hudgym_env_args(tasks: list[Task]) -> dict[str, Any]:
    """`load_environment` arguments a worker can rebuild the bench's HUDGym from (JSON only)."""
    return {"taskset": [task.to_row() for task in tasks], "max_turns": MAX_TURNS, "session_reuse": "per_slot"}


async def start_env_server(tasks: list[Task], workers: int = ENV_SERVER_WORKERS) -> vf.Environment:
    """A HUDGym whose rollouts run in `workers` env-server processes; stop it with `env.stop_server()`."""
    env_args = hudgym_env_args(tasks)
    env = load_environment(**env_args)
    env.env_id, env.env_args = "hud_vf_gym", env_args  # what vf-eval sets; the workers import this module by id
    log_dir = tempfile.mkdtemp(prefix="hud-vf-gym-bench-env-server-")
    await env.start_server(
        num_workers=workers, log_dir=log_dir, console_logging=False, startup_timeout=SERVER_STARTUP_TIMEOUT_S
    )
    return env


def chat_config(base_url: str, timeout_s: float) -> ClientConfig:
    """The chat endpoint as a config: in server mode each worker builds its own client from it."""
    os.environ.setdefault(API_KEY_VARIABLE, "x")
    return ClientConfig(api_key_var=API_KEY_VARIABLE, api_base_url=base_url, max_retries=0, timeout=timeout_s)


async def run_env_server(env: vf.Environment, config: ClientConfig, concurrency: int, name: str) -> RunResult:
    """Every task once through `env.evaluate` at `concurrency`, the rollouts spread over the workers."""

    async def evaluate() -> list[Outcome]:
        outputs = await evaluate_outputs(env, config, concurrency, -1, state_columns=[SUMMARY_KEY])
        return [outcome(output) for output in outputs]

    assert env.env_server_process is not None and env.env_server_process.pid is not None  # started by start_env_server
    return await measured(name, concurrency, evaluate, helpers=[psutil.Process(env.env_server_process.pid)])


def outcome(output: dict[str, Any]) -> Outcome:
    """(task_completion, moves executed, failed) of one HUDGym rollout output."""
    moves = sum(turn["outcome"] == TurnOutcome.EXECUTED.value for turn in output[SUMMARY_KEY]["turns"])
    return output["metrics"]["task_completion"], moves, output.get("error") is not None


async def evaluate_outputs(
    env: Any, client: vf.Client | ClientConfig, concurrency: int, rollouts: int, **kwargs: Any
) -> list[Any]:
    """The first `rollouts` tasks (-1: all) once each through verifiers' `env.evaluate`; its rollout outputs."""
    results = await env.evaluate(
        client,
        "scripted",
        sampling_args=SAMPLING,
        num_examples=rollouts,
        max_concurrent=concurrency,
        on_start=_ignore,  # no tqdm bar
        on_progress=_ignore,
        **kwargs,
    )
    return list(results["outputs"])


def _ignore(*args: Any, **kwargs: Any) -> None:
    """A verifiers callback that does nothing (replaces the progress bar)."""
