"""What a training run reports, step by step and group by group, and how the CLI prints it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.integrations.art.ruler import INDEPENDENT_REWARD_KEY, RULER_ERROR_KEY, RULER_SCORE_KEY

__all__ = ["GroupReport", "StepReport", "TrainingReport", "render_step"]


@dataclass(frozen=True, slots=True)
class GroupReport:
    """One group (one task's rollouts) after gathering and scoring.

    Attributes:
        task_id: the task the group played.
        rewards: each trajectory's reward as trained on (RULER's score when RULER scored the group).
        hud_rewards: each trajectory's own reward (the rubric's total, or the custom reward), before RULER.
        ruler_scores: RULER's scores, or None when the group was not (or could not be) scored.
        infra_errors: rollouts left out for infrastructure reasons.
        ruler_error: why RULER could not score the group, if it could not.
    """

    task_id: str
    rewards: tuple[float, ...]
    hud_rewards: tuple[float, ...]
    ruler_scores: tuple[float, ...] | None = None
    infra_errors: int = 0
    ruler_error: str | None = None

    @classmethod
    def from_group(cls, group: Any) -> GroupReport:
        """Summarise an `art.TrajectoryGroup`."""
        trajectories = list(group.trajectories)
        scored = bool(trajectories) and all(RULER_SCORE_KEY in t.metrics for t in trajectories)
        ruler_error = None
        if group.metrics.get(RULER_ERROR_KEY):
            ruler_error = next((line for line in reversed(group.logs) if line.startswith("RULER could not")), "")
        return cls(
            task_id=str(group.metadata.get("task_id", "")),
            rewards=tuple(float(t.reward) for t in trajectories),
            hud_rewards=tuple(float(t.metrics.get(INDEPENDENT_REWARD_KEY, t.reward)) for t in trajectories),
            ruler_scores=tuple(float(t.metrics[RULER_SCORE_KEY]) for t in trajectories) if scored else None,
            infra_errors=len(group.exceptions),
            ruler_error=ruler_error,
        )


@dataclass(frozen=True, slots=True)
class StepReport:
    """One step: its groups, whether it trained, and the backend's training metrics."""

    step: int
    groups: tuple[GroupReport, ...]
    trained: bool
    train_metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TrainingReport:
    """A whole run."""

    run_name: str
    backend: str
    steps: tuple[StepReport, ...]

    @property
    def ruler_failed_everywhere(self) -> bool:
        """RULER was asked for and could not score a single group."""
        groups = [group for step in self.steps for group in step.groups if group.rewards]
        return bool(groups) and all(group.ruler_error is not None for group in groups)


def _numbers(values: tuple[float, ...] | None) -> str:
    return "-" if values is None else "[" + ", ".join(f"{value:.3f}" for value in values) + "]"


def render_step(report: StepReport, *, ruler: bool) -> str:
    """The step as lines: one per group with its HUD rewards, RULER scores and infrastructure errors."""
    kind = "trained" if report.trained else "gathered and scored, not trained"
    lines = [f"step {report.step} ({kind}): {len(report.groups)} group(s)"]
    for group in report.groups:
        line = f"  {group.task_id}: hud_reward {_numbers(group.hud_rewards)}"
        if ruler:
            line += f"  ruler_score {_numbers(group.ruler_scores)}"
        if group.infra_errors:
            line += f"  infra_errors {group.infra_errors}"
        lines.append(line)
        if group.ruler_error:
            lines.append(f"    {group.ruler_error.splitlines()[0][:300]}")
    if report.train_metrics:
        shown = ", ".join(
            f"{key} {value:.4g}" if isinstance(value, int | float) else f"{key} {value}"
            for key, value in sorted(report.train_metrics.items())[:8]
        )
        lines.append(f"  train: {shown}")
    return "\n".join(lines)
