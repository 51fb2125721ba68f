"""Run tasks against an OpenAI-compatible endpoint (tests, benchmarks): through verifiers, or on the harness alone.

- `evaluate_outputs`: the classic HUDGym (or any verifiers environment) through verifiers' own `evaluate`;
- `harness_outputs`: the same tasks on the harness (`core.chat.run_chat_episode`, what `hud-vf-gym eval` runs),
  with no verifiers installed at all; the rows have the same keys and values.

Kept out of `hud_vf_gym.testing`'s own imports, which load only the standard library.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from openai import AsyncOpenAI, Timeout

from hud_vf_gym.config import EnvConfig
from hud_vf_gym.core.chat import ChatEndpoint, run_chat_episode
from hud_vf_gym.core.harness import Harness
from hud_vf_gym.tasks.task import Task

__all__ = ["SCRIPTED_SAMPLING", "evaluate_outputs", "harness_outputs"]

SCRIPTED_SAMPLING = {"temperature": 0.0, "max_tokens": 64}  # a scripted policy ignores them; a real model obeys
# openai's default 5 s connect budget is too tight for tests that start four Chromium servers at once on 2 cores:
# the event loop was seen stalled for ~5 s there, and queued connects then time out although the server is up.
CLIENT_TIMEOUT = Timeout(120.0, connect=60.0)


async def evaluate_outputs(
    env: Any, base_url: str, *, rollouts: int = 1, concurrency: int = 4, **kwargs: Any
) -> list[dict[str, Any]]:
    """Every task of `env`, `rollouts` times each, through `env.evaluate`; returns verifiers' output rows.

    Args:
        env: a verifiers environment (HUDGym or any other).
        base_url: the endpoint, e.g. `ScriptedChatServer.base_url`.
        rollouts: rollouts per task.
        concurrency: rollouts in flight at once.
        **kwargs: more `env.evaluate` arguments (`state_columns`, `sampling_args`, `on_progress`, ...).
    """
    import verifiers as vf

    kwargs.setdefault("sampling_args", SCRIPTED_SAMPLING)
    async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT) as openai_client:
        results = await env.evaluate(
            vf.OpenAIChatCompletionsClient(openai_client),
            "scripted",
            num_examples=-1,
            rollouts_per_example=rollouts,
            max_concurrent=concurrency,
            **kwargs,
        )
    return list(results["outputs"])


async def harness_outputs(
    config: EnvConfig | Harness,
    tasks: Sequence[Task],
    base_url: str,
    *,
    rollouts: int = 1,
    concurrency: int = 4,
    sampling: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Every task, `rollouts` times each, on the harness; returns the rows in task order (no verifiers needed).

    Args:
        config: the environment config (a fresh `Harness` is built and closed) or a harness to use as it is.
        tasks: the tasks; a task's index is its rows' `example_id`.
        base_url: the endpoint, e.g. `ScriptedChatServer.base_url`.
        rollouts: rollouts per task.
        concurrency: rollouts in flight at once.
        sampling: sampling arguments (default `SCRIPTED_SAMPLING`).
    """
    harness = config if isinstance(config, Harness) else Harness(config)
    slots = asyncio.Semaphore(concurrency)
    async with AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=CLIENT_TIMEOUT) as client:
        endpoint = ChatEndpoint(client, "scripted", SCRIPTED_SAMPLING if sampling is None else sampling)

        async def run(example_id: int, task: Task) -> dict[str, Any]:
            async with slots:
                return await run_chat_episode(harness, task, endpoint, example_id=example_id)

        try:
            jobs = [run(index, task) for index, task in enumerate(tasks) for _ in range(rollouts)]
            return list(await asyncio.gather(*jobs))
        finally:
            if harness is not config:
                await harness.close_all()
