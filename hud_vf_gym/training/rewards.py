"""The rubric's components as TRL reward functions, weighted by the environment config.

The rollout scores every episode once with the rubric's `score_episode` and
returns them as extra keys (`task_completion`, `tool_execution`, `format_compliance`, `screenshot_behavior`,
`thinking_quality`, and the weighted total `hud_reward`). TRL hands those keys to every reward function as keyword
arguments, so each reward function here only reads its column:

    reward_funcs, reward_weights = reward_functions(config.rubric.weights)
    GRPOConfig(..., reward_weights=reward_weights); GRPOTrainer(..., reward_funcs=reward_funcs)

TRL's reward is then sum(weight * component), which is the rubric's `hud_reward`, and TRL logs each component as
`rewards/<name>/mean`. A rollout that failed (infrastructure, a row that cannot run, a failed evaluation) has None
in every column: every reward
function returns None for it, TRL treats the row as unscorable (left out of the group baseline, advantage 0), and
the rollout's env_mask of zeros keeps its tokens out of the loss. The first function (`task_completion`) also
logs the batch's episode counts with TRL's `log_metric`: `infra_errors` (rollouts of this process's batch that
failed for infrastructure reasons), `task_errors`, `evaluation_failures`, and over the rollouts that ran, `turns`
and `episode_tokens_truncated`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hud_vf_gym.config import RubricWeights
from hud_vf_gym.core.rubric import COMPONENTS
from hud_vf_gym.errors import ConfigError

__all__ = ["COMPONENT_NAMES", "RewardFunc", "reward_functions"]

COMPONENT_NAMES: tuple[str, ...] = tuple(COMPONENTS)
TOTAL_KEY = "hud_reward"  # the rollout's extra key holding the weighted total
INFRA_KEY = "infra_error"  # the rollout's extra key: the failure's message, None when the episode ran
TASK_ERROR_KEY = "task_error"  # the row could not run as written (None when it could)
EVALUATION_ERROR_KEY = "evaluation_error"  # the evaluation failed and the rollout was kept out (None otherwise)
RewardFunc = Callable[..., list[float | None]]


def reward_functions(weights: RubricWeights) -> tuple[list[RewardFunc], list[float]]:
    """One TRL reward function per component, and the weights to pass as `GRPOConfig.reward_weights`."""
    by_name = weights.model_dump()
    functions = [_component_reward(name, logs_episode_metrics=index == 0) for index, name in enumerate(COMPONENT_NAMES)]
    return functions, [float(by_name[name]) for name in COMPONENT_NAMES]


def _component_reward(name: str, *, logs_episode_metrics: bool) -> RewardFunc:
    def reward(**kwargs: Any) -> list[float | None]:
        values = _column(kwargs, name)
        if logs_episode_metrics:
            _log_episode_metrics(kwargs)
        return [None if value is None else float(value) for value in values]

    reward.__name__ = reward.__qualname__ = name
    reward.__doc__ = f"The rubric's {name} of each rollout (None for a rollout that failed for infrastructure reasons)."
    return reward


def _column(kwargs: Mapping[str, Any], name: str) -> Sequence[Any]:
    if name not in kwargs:
        raise ConfigError(
            f"the reward function {name!r} reads the rollout's {name!r} values, which this batch does not have; "
            "train with rollout_func=HUDRollout(...) from hud_vf_gym.training"
        )
    values = kwargs[name]
    return values if isinstance(values, list | tuple) else [values]


def _log_episode_metrics(kwargs: Mapping[str, Any]) -> None:
    log_metric = kwargs.get("log_metric")
    if log_metric is None:  # called outside a trainer
        return
    infra_errors = _column(kwargs, INFRA_KEY)
    failures = [infra_errors]
    log_metric("infra_errors", float(sum(error is not None for error in infra_errors)))
    for key, metric in ((TASK_ERROR_KEY, "task_errors"), (EVALUATION_ERROR_KEY, "evaluation_failures")):
        if key in kwargs:
            failures.append(_column(kwargs, key))
            log_metric(metric, float(sum(error is not None for error in failures[-1])))
    # turns and truncation describe the rollouts that ran to their end
    ran = [all(error is None for error in errors) for errors in zip(*failures, strict=False)]
    turns = [turns for turns, kept in zip(kwargs.get("num_turns", []), ran, strict=False) if kept]
    if turns:
        log_metric("turns", sum(turns) / len(turns))
    stops = [stop for stop, kept in zip(kwargs.get("stop_reason", []), ran, strict=False) if kept]
    if stops:
        log_metric("episode_tokens_truncated", sum(stop == "episode_tokens" for stop in stops) / len(stops))
