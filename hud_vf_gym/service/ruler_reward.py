"""`ruler_reward`: a TRL reward function that asks an LLM judge to rank each GRPO group's episodes (RULER).

A training job with `use_ruler: true` runs with `--extra_reward_funcs hud_vf_gym.service.ruler_reward.ruler_reward`;
the service tells it where the judge is through the job's environment:

- `HUD_VF_GYM_JUDGE_BASE_URL`, `HUD_VF_GYM_JUDGE_MODEL`: an OpenAI-compatible judge (empty URL: the embedded model,
  loaded in the training process);
- `HUD_VF_GYM_JUDGE_API_KEY_ENV`: the variable holding its key, when it needs one;
- `HUD_VF_GYM_RULER_GROUP_SIZE`: episodes per group (`num_generations`); TRL lays each group out contiguously.

An episode that failed for infrastructure reasons, or that the judge's answer does not score, gets None: TRL
leaves it out of the group baseline instead of scoring it 0.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

from hud_vf_gym.service.judge import DEFAULT_RUBRIC, JudgeEndpoint, evaluate_with_client, prompt_judge
from hud_vf_gym.service.models import TEXT_MAX_CHARS, ChatMessage, EvaluateRequest, Trajectory
from hud_vf_gym.service.rollouts import message_text

__all__ = ["ruler_reward"]

BASE_URL_ENV, MODEL_ENV = "HUD_VF_GYM_JUDGE_BASE_URL", "HUD_VF_GYM_JUDGE_MODEL"
KEY_ENV_ENV, GROUP_SIZE_ENV = "HUD_VF_GYM_JUDGE_API_KEY_ENV", "HUD_VF_GYM_RULER_GROUP_SIZE"


def _messages(prompt: Any, completion: Any) -> list[ChatMessage]:
    """An episode as chat messages: the prompt's messages, then the completion's (text: one assistant turn)."""
    messages: list[ChatMessage] = []
    for part, default_role in ((prompt, "user"), (completion, "assistant")):
        items = part if isinstance(part, list) else [{"role": default_role, "content": part}]
        for item in items:
            role = item.get("role") if item.get("role") in ("system", "user", "assistant", "tool") else default_role
            content = message_text(item.get("content"))[:TEXT_MAX_CHARS]
            messages.append(ChatMessage.model_validate({"role": role, "content": content}))
    return messages


def _endpoint() -> JudgeEndpoint:
    base_url = os.environ.get(BASE_URL_ENV) or None
    key_env = os.environ.get(KEY_ENV_ENV)
    key = (os.environ.get(key_env) if key_env else None) or "EMPTY"
    return JudgeEndpoint(base_url, os.environ.get(MODEL_ENV) or "embedded", key)


async def _score_groups(groups: Sequence[list[Trajectory]], endpoint: JudgeEndpoint) -> list[float | None]:
    scores: list[float | None] = []
    async with evaluate_with_client(endpoint) as client:
        for group in groups:
            request = EvaluateRequest(trajectories=group, method="ruler")
            scores += [score for score, _ in await prompt_judge(client, endpoint, request, DEFAULT_RUBRIC)]
    return scores


def ruler_reward(prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
    """Each episode's RULER score (0 to 1) relative to the other episodes of its group; None when unscored."""
    group_size = max(1, int(os.environ.get(GROUP_SIZE_ENV, "1")))
    failed = kwargs.get("infra_error") or [None] * len(prompts)
    trajectories = [Trajectory(messages=_messages(p, c)) for p, c in zip(prompts, completions, strict=True)]
    groups = [trajectories[start : start + group_size] for start in range(0, len(trajectories), group_size)]
    scores = asyncio.run(_score_groups(groups, _endpoint()))
    return [None if error is not None else score for score, error in zip(scores, failed, strict=True)]
