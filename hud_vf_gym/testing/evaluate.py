"""Run an environment through verifiers' own `evaluate` against an OpenAI-compatible endpoint (tests, benchmarks).

Kept out of `hud_vf_gym.testing`'s own imports, which load only the standard library; this module loads verifiers.
"""

from __future__ import annotations

from typing import Any

import verifiers as vf
from openai import AsyncOpenAI, Timeout

__all__ = ["SCRIPTED_SAMPLING", "evaluate_outputs"]

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
