"""The aggregate of an evaluation's results rows, and the table `hud-vf-gym eval` prints.

Definitions (the README quotes them):

- **infrastructure error**: a rollout whose `error` is set and is not a model mistake: an MCP server that died,
  timed out or failed to start or set up, or an endpoint that failed. Such rollouts are listed and counted, and kept
  out of every mean (they say nothing about the model).
- **model error**: the endpoint answered with an empty or invalid message (`EmptyModelResponseError`,
  `InvalidModelResponseError`). The rollout ended there; it is scored as it stands and counted in the means.
- **task error**: the row cannot run as written (`TaskDefinitionError`: a setup or evaluate tool or hub function
  its server lacks, an `mcp_config` refused once resolved). Listed with its row and fix, kept out of the means.
- **evaluation failure**: the task's evaluator failed (`EvaluationError`: isError, or no usable grade). Listed with
  the evaluator's message, counted apart and kept out of the means (unless the config scores such rollouts 0).
- **success**: a scored rollout whose grade says `done`, or whose `task_completion` is at least 1.0.
- **turns**: the assistant turns of a rollout (parsed by the turn loop).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

__all__ = ["COMPONENTS", "SUCCESS_DEFINITION", "error_kind", "is_success", "render_table", "summarize", "turns_of"]

COMPONENTS = ("task_completion", "tool_execution", "format_compliance", "thinking_quality", "screenshot_behavior")
# column headings for the components, short enough for an 80-column terminal
_HEADINGS = {
    "task_completion": "completion",
    "tool_execution": "tool_exec",
    "format_compliance": "format",
    "thinking_quality": "thinking",
    "screenshot_behavior": "screenshot",
}
MODEL_ERROR_TYPES = frozenset({"EmptyModelResponseError", "InvalidModelResponseError"})
ErrorKind = Literal["infra", "model", "task", "evaluation"]
SUCCESS_DEFINITION = "grade done, or task_completion >= 1.0"
SUCCESS_COMPLETION = 1.0
_MESSAGE_CHARS = 300  # of an error message in the table


def error_kind(row: Mapping[str, Any]) -> ErrorKind | None:
    """Whether a row ended in an infrastructure, model, task or evaluation error, or in none (None)."""
    error = row.get("error")
    if not error:
        return None
    name = error.get("error") if isinstance(error, Mapping) else None
    if name in MODEL_ERROR_TYPES:
        return "model"
    if name == "TaskDefinitionError":
        return "task"
    return "evaluation" if name == "EvaluationError" else "infra"


def turns_of(row: Mapping[str, Any]) -> int:
    """The assistant turns of a rollout."""
    episode = row.get("hud_episode")
    if isinstance(episode, Mapping) and isinstance(episode.get("turns"), list):
        return len(episode["turns"])
    completion = row.get("completion") or []
    return sum(1 for message in completion if isinstance(message, Mapping) and message.get("role") == "assistant")


def is_success(row: Mapping[str, Any]) -> bool:
    """A scored rollout whose grade says done or whose task_completion reached 1.0."""
    episode = row.get("hud_episode")
    grade = episode.get("grade") if isinstance(episode, Mapping) else None
    done = isinstance(grade, Mapping) and grade.get("done") is True and not grade.get("is_error")
    return done or _metric(row, "task_completion") >= SUCCESS_COMPLETION


def _metric(row: Mapping[str, Any], name: str) -> float:
    metrics = row.get("metrics")
    value = metrics.get(name) if isinstance(metrics, Mapping) else row.get(name)
    return float(value) if isinstance(value, int | float) else 0.0


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _aggregate(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means over the rows that count (none or a model error), plus counts over all of them."""
    kinds = [error_kind(row) for row in rows]
    scored = [row for row, kind in zip(rows, kinds, strict=True) if kind in (None, "model")]
    return {
        "rollouts": len(rows),
        "scored": len(scored),
        "infra_errors": kinds.count("infra"),
        "model_errors": kinds.count("model"),
        "task_errors": kinds.count("task"),
        "evaluation_failures": kinds.count("evaluation"),
        "mean_reward": _mean([float(row.get("reward") or 0.0) for row in scored]),
        "success_rate": _mean([1.0 if is_success(row) else 0.0 for row in scored]),
        "components": {name: _mean([_metric(row, name) for row in scored]) for name in COMPONENTS},
        "mean_turns": _mean([float(turns_of(row)) for row in scored]),
    }


def summarize(rows: Iterable[Mapping[str, Any]], *, planned: int | None = None) -> dict[str, Any]:
    """The run's aggregate: overall, per task (in task order), and every error listed.

    Args:
        rows: the results rows (see `hud_vf_gym.cli.eval.results`).
        planned: how many rollouts the run was meant to have (None: unknown).
    """
    ordered = sorted(rows, key=lambda row: (int(row["example_id"]), int(row.get("rollout_index", 0))))
    by_task: dict[int, list[Mapping[str, Any]]] = {}
    for row in ordered:
        by_task.setdefault(int(row["example_id"]), []).append(row)
    tasks = [
        {"task_id": str(group[0].get("task_id", example_id)), "example_id": example_id, **_aggregate(group)}
        for example_id, group in by_task.items()
    ]
    errors = [
        {
            "task_id": str(row.get("task_id", row["example_id"])),
            "rollout_index": int(row.get("rollout_index", 0)),
            "kind": error_kind(row),
            "type": str(row["error"].get("error", "Error")) if isinstance(row["error"], Mapping) else "Error",
            "message": str(row["error"].get("message", row["error"]))
            if isinstance(row["error"], Mapping)
            else str(row["error"]),
        }
        for row in ordered
        if error_kind(row) is not None
    ]
    overall = _aggregate(ordered)
    return {
        **overall,
        "planned": planned,
        "success_definition": SUCCESS_DEFINITION,
        "tasks": tasks,
        "errors": errors,
    }


def _cell(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _table_row(label: str, aggregate: Mapping[str, Any]) -> str:
    components = [_cell(aggregate["components"][name]) for name in COMPONENTS]
    errors = aggregate["rollouts"] - aggregate["scored"] + aggregate["model_errors"]
    cells = [label, str(aggregate["rollouts"]), _cell(aggregate["mean_reward"]), *components]
    cells += [_cell(aggregate["mean_turns"], 1), str(errors)]
    return "| " + " | ".join(cells) + " |"


def render_table(summary: Mapping[str, Any]) -> str:
    """The summary as a Markdown table (per task, then overall) with the success rate and the error list."""
    headings = ["task", "n", "reward", *(_HEADINGS[name] for name in COMPONENTS), "turns", "errors"]
    lines = ["| " + " | ".join(headings) + " |", "|" + "|".join("---" for _ in headings) + "|"]
    lines += [_table_row(task["task_id"], task) for task in summary["tasks"]]
    lines.append(_table_row("**overall**", summary))
    rate, scored = summary["success_rate"], summary["scored"]
    successes = round((rate or 0.0) * scored)
    planned = summary.get("planned")
    done = f"{summary['rollouts']}/{planned}" if planned else str(summary["rollouts"])
    lines += [
        "",
        f"rollouts: {done} finished, {scored} scored; mean reward {_cell(summary['mean_reward'])}; "
        f"success rate {_cell(rate)} ({successes}/{scored}; success = {SUCCESS_DEFINITION})",
        f"infrastructure errors: {summary['infra_errors']} (kept out of the means); "
        f"model errors: {summary['model_errors']} (scored)",
        f"task errors: {summary['task_errors']}; evaluation failures: {summary['evaluation_failures']} "
        "(both kept out of the means)",
    ]
    for error in summary["errors"]:
        message = " ".join(error["message"].split())[:_MESSAGE_CHARS]
        lines.append(
            f"- {error['kind']} error in {error['task_id']} rollout {error['rollout_index']}: "
            f"{error['type']}: {message}"
        )
    return "\n".join(lines)
