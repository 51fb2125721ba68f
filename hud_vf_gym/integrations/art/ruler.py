"""RULER scoring of trajectory groups with any LiteLLM judge, including a local OpenAI-compatible endpoint.

`score_group(group, judge)` calls ART's `ruler_score_group`, which sends the whole group to the judge in one
LiteLLM request and replaces each trajectory's reward with the judge's relative score, keeping the episode's own
reward in `metrics["independent_reward"]` and the score in `metrics["ruler_score"]`. Around it, this module:

- keeps what ART's function drops: the group's metadata, metrics, logs and infrastructure exceptions;
- keeps a group whose judging failed (an unreachable judge, a reply that is not RULER's JSON) with its own rewards,
  counts `ruler_errors` in the group's metrics and logs why, so one bad judge call does not end a training run;
- routes a judge given by base URL through LiteLLM's OpenAI-compatible provider (`openai/<model>` with `api_base`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.cli.eval.options import is_local_url
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.integrations.art._art import require_art

__all__ = ["RULER_ERROR_KEY", "RULER_SCORE_KEY", "Judge", "score_group"]

logger = logging.getLogger(__name__)

RULER_SCORE_KEY = "ruler_score"  # ART's metric names
INDEPENDENT_REWARD_KEY = "independent_reward"
RULER_ERROR_KEY = "ruler_errors"  # a group metric of ours: 1 when the judge could not score the group
NO_API_KEY = "EMPTY"  # what a local endpoint without authentication gets as its key


@dataclass(frozen=True, slots=True)
class Judge:
    """The RULER judge: a LiteLLM model, optionally at an OpenAI-compatible base URL.

    Attributes:
        model: a LiteLLM model string (`openai/o4-mini`, `anthropic/...`); with `base_url`, a bare name is sent to
            that endpoint through LiteLLM's OpenAI-compatible provider.
        base_url: an OpenAI-compatible endpoint (`http://127.0.0.1:8000/v1`); None: the provider's own.
        api_key_env: the environment variable holding the judge's key (not needed for a local base URL; without a
            base URL LiteLLM reads the provider's usual variable, e.g. OPENAI_API_KEY).
        rubric: RULER's grading rubric; None: ART's default.
        max_tokens: the most tokens the judge may write.
    """

    model: str
    base_url: str | None = None
    api_key_env: str | None = None
    rubric: str | None = None
    max_tokens: int | None = 2048

    @property
    def litellm_model(self) -> str:
        """The model string LiteLLM gets: `openai/<model>` for a bare name at a base URL."""
        if self.base_url is not None and "/" not in self.model:
            return f"openai/{self.model}"
        return self.model

    def litellm_params(self) -> dict[str, Any]:
        """The extra LiteLLM parameters: endpoint, key, token limit.

        Raises:
            ConfigError: `api_key_env` names a variable that is not set, or a remote base URL has no key.
        """
        params: dict[str, Any] = {}
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if self.base_url is not None:
            params["api_base"] = self.base_url
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"--judge-api-key-env {self.api_key_env}: the variable is not set; export it first")
            params["api_key"] = key
        elif self.base_url is not None:
            if not is_local_url(self.base_url):
                raise ConfigError(
                    f"--judge-base-url {self.base_url} is not on this machine, so it needs a key: pass "
                    "--judge-api-key-env VAR naming the variable that holds it"
                )
            params["api_key"] = NO_API_KEY
        return params

    def describe(self) -> str:
        """The judge in one line, without secrets."""
        where = f" at {self.base_url}" if self.base_url else ""
        return f"{self.litellm_model}{where}"


async def score_group(group: Any, judge: Judge, *, debug: bool = False) -> Any:
    """The group scored by RULER (see the module docstring); a failed judging keeps the group's own rewards."""
    require_art()
    from art.rewards import ruler_score_group

    if not group.trajectories:  # every rollout failed for infrastructure reasons: nothing to rank
        return group
    params = judge.litellm_params()
    extra = {"rubric": judge.rubric} if judge.rubric is not None else {}
    try:
        scored = await ruler_score_group(
            group, judge.litellm_model, extra_litellm_params=params, swallow_exceptions=False, debug=debug, **extra
        )
    except Exception as exc:  # the judge boundary: an unusable judging is recorded, the group keeps its rewards
        reason = f"RULER could not score this group with judge {judge.describe()}: {type(exc).__name__}: {exc}"
        logger.warning("task %r: %s", group.metadata.get("task_id"), reason.splitlines()[0])
        group.metrics[RULER_ERROR_KEY] = 1
        group.log(reason)
        return group
    return _with_group_fields(scored, group)


def _with_group_fields(scored: Any, original: Any) -> Any:
    """A copy of RULER's group carrying the original group's metadata, metrics, logs and exceptions."""
    art = require_art()
    return art.TrajectoryGroup(
        scored.trajectories,
        exceptions=original.exceptions,
        metadata=dict(original.metadata),
        metrics={**original.metrics, RULER_ERROR_KEY: 0},
        logs=[*original.logs, *scored.logs],
    )
