"""Trajectory groups as JSONL with ART's own serialiser, and `hud-vf-gym eval` results as ART trajectory groups.

ART's `serialize_trajectory_groups` writes one group per line and its `deserialize_trajectory_groups` reads a
`Choice` back as a `Choice` (logprobs included), which a plain pydantic round trip does not: so the files here are
ART's format, readable by ART's own tooling.

`results_to_groups(folder)` turns an evaluation's `results.jsonl` into one group per task: each finished rollout a
trajectory (`prompt` + `completion` messages, the rubric's reward, every numeric metric, and task id, rollout index,
model and taskset as metadata); a rollout that failed for infrastructure reasons becomes one of the group's
exceptions, never a reward of 0. Image parts keep the paths the results folder stores them under.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.integrations.art._art import require_art

__all__ = ["read_groups", "results_to_groups", "write_groups"]

SOURCE = "hud-vf-gym eval"


def write_groups(groups: Sequence[Any], path: Path) -> Path:
    """Write `groups` to `path` as JSONL (ART's serialiser), creating its folder; returns the path."""
    require_art()
    from art.utils.trajectory_migration import serialize_trajectory_groups

    path.parent.mkdir(parents=True, exist_ok=True)
    text = serialize_trajectory_groups(list(groups))
    path.write_text(text + "\n" if text else "", encoding="utf-8")
    return path


def read_groups(path: Path) -> list[Any]:
    """Read a JSONL file of trajectory groups written by `write_groups` (or by ART itself).

    Raises:
        ConfigError: the file is missing or is not ART trajectory groups.
    """
    require_art()
    from art.utils.trajectory_migration import deserialize_trajectory_groups

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        return list(deserialize_trajectory_groups(text)) if text.strip() else []
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not ART trajectory groups ({type(exc).__name__}: {exc})") from exc


def results_to_groups(folder: Path) -> list[Any]:
    """One `art.TrajectoryGroup` per task of a `hud-vf-gym eval` results folder (see the module docstring).

    Raises:
        ConfigError: the folder holds no `results.jsonl`.
    """
    from hud_vf_gym.cli.eval.results import ResultsFolder

    art = require_art()
    results = ResultsFolder(folder)
    if not results.results_file.is_file():
        raise ConfigError(f"{folder}: no results.jsonl there; expected the --output folder of a `hud-vf-gym eval` run")
    taskset = str(results.read_run().get("options", {}).get("taskset", "")) if results.has_run() else ""
    by_task: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(results.read_rows(), key=lambda row: (int(row["example_id"]), int(row["rollout_index"]))):
        by_task.setdefault(str(row.get("task_id", row["example_id"])), []).append(row)
    groups = []
    for task_id, rows in by_task.items():
        failed = [row for row in rows if row.get("error")]
        groups.append(
            art.TrajectoryGroup(
                [_trajectory(art, row, task_id, taskset) for row in rows if not row.get("error")],
                exceptions=[_exception(row["error"]) for row in failed],
                metadata={"task_id": task_id, "taskset": taskset, "source": SOURCE},
                metrics={"infra_errors": len(failed)},
            )
        )
    return groups


def _trajectory(art: Any, row: Mapping[str, Any], task_id: str, taskset: str) -> Any:
    messages = [*_messages(row.get("prompt")), *_messages(row.get("completion"))]
    metrics = {
        key: value
        for key, value in (row.get("metrics") or {}).items()
        if isinstance(value, int | float)  # bools too: ART's metrics are float | int | bool
    }
    episode = row.get("hud_episode")
    if isinstance(episode, Mapping) and isinstance(episode.get("turns"), list):
        metrics["turns"] = len(episode["turns"])
    metadata = {
        "task_id": task_id,
        "taskset": taskset,
        "rollout_index": int(row["rollout_index"]),
        "model": str(row.get("model", "")),
        "stop_condition": str(row.get("stop_condition") or ""),
        "source": SOURCE,
    }
    return art.Trajectory(
        messages_and_choices=messages, reward=float(row.get("reward") or 0.0), metrics=metrics, metadata=metadata
    )


def _messages(value: Any) -> list[dict[str, Any]]:
    """A results row's messages as chat dicts (role and content; tool calls when the message has them)."""
    if not isinstance(value, Iterable) or isinstance(value, str | bytes):
        return []
    messages = []
    for message in value:
        if isinstance(message, Mapping) and "role" in message:
            kept = {key: message[key] for key in ("role", "content", "tool_calls", "tool_call_id") if key in message}
            messages.append(kept)
    return messages


def _exception(error: Any) -> Any:
    """A results row's recorded error as the group exception ART stores (type and message)."""
    from art.trajectories import PydanticException

    if isinstance(error, Mapping):
        kind, message = str(error.get("error", "Error")), str(error.get("message", ""))
    else:
        kind, message = "Error", str(error)
    return PydanticException(type=kind, message=message, traceback="")
