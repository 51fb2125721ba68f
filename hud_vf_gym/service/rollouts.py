"""`POST /rollout`: run a model on HUD tasks with the `hud-vf-gym eval` harness and return the trajectories.

Nothing here runs a turn: the request becomes `EvalOptions` (checked here, so a bad combination is a 422) and runs
as `hud-vf-gym eval` itself (HUDGym, verifiers' rollout loop, the same MCP sessions and rubric) in a child process,
with its results folder under `<state-dir>/rollouts/<id>/`. A process, not a thread: building a verifiers
environment installs SIGINT/SIGTERM handlers (main thread only) and an atexit hook per environment, which must not
land in the service. Its rows become `Trajectory` objects. A rollout that failed for infrastructure reasons keeps
its error and no reward, and is left out of the mean.

The model is, in order: a model this service trained (`model_name`), the request's `endpoint`, the service's
default endpoint (`--default-base-url`), or the embedded SmolLM2 in process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from hud_vf_gym.cli.eval.options import EvalOptions
from hud_vf_gym.cli.eval.summary import COMPONENTS
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.service.core import ConflictError, TrainingService
from hud_vf_gym.service.logparse import finished_checkpoints
from hud_vf_gym.service.models import TEXT_MAX_CHARS, ChatMessage, RolloutRequest, RolloutResponse, Trajectory
from hud_vf_gym.service.security import check_env_variable
from hud_vf_gym.service.sources import RequestError, load_request_config, load_request_tasks, write_tasks_file

__all__ = ["eval_command", "message_text", "row_to_trajectory", "run_rollouts"]

USAGE_ERROR = 2  # hud-vf-gym's exit status for a user error (hud_vf_gym.cli.app.USAGE_ERROR)


def message_text(content: Any) -> str:
    """A message's content as text: a string as it is, list content as its text parts (images are left out)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, Mapping) and "text" in part)
    return "" if content is None else str(content)


def _role(role: Any) -> Literal["system", "user", "assistant", "tool"]:
    if role in ("system", "assistant", "tool"):
        return role  # type: ignore[no-any-return]  # checked just above
    return "user"


def row_to_trajectory(row: Mapping[str, Any]) -> Trajectory:
    """One `results.jsonl` row as a trajectory: messages, reward, components, error."""
    messages = [
        ChatMessage(role=_role(message.get("role")), content=message_text(message.get("content"))[:TEXT_MAX_CHARS])
        for message in [*(row.get("prompt") or []), *(row.get("completion") or [])]
        if isinstance(message, Mapping)
    ]  # fmt: skip
    error = row.get("error")
    error_text = None
    if error:
        error_text = str(error.get("message") or error.get("error")) if isinstance(error, Mapping) else str(error)
    metrics = row.get("metrics") or {}
    components = {name: float(metrics[name]) for name in COMPONENTS if isinstance(metrics.get(name), int | float)}
    reward = row.get("reward")
    return Trajectory(
        messages=messages or [ChatMessage(role="system", content="")],
        task_id=row.get("task_id"),
        reward=None if error_text is not None or reward is None else float(reward),
        components={} if error_text is not None else components,
        error=error_text,
    )


def _model_options(request: RolloutRequest, service: TrainingService) -> dict[str, Any]:
    """The EvalOptions fields that choose the model."""
    settings = service.settings
    if request.model_name is not None:
        folder = service.model_folder(request.project, request.model_name)
        if not (folder / "config.json").is_file():  # still training: its newest checkpoint
            checkpoints = finished_checkpoints(folder)
            if not checkpoints:
                raise ConflictError(
                    f"model {request.project}/{request.model_name} has no saved weights yet; wait for its first "
                    "checkpoint (GET /models shows them)"
                )
            folder = checkpoints[max(checkpoints)]
        return {"model_path": str(folder)}
    if request.endpoint is not None:
        check_env_variable("endpoint.api_key_env", request.endpoint.api_key_env, settings)
        endpoint = request.endpoint
        return {"base_url": endpoint.base_url, "model": endpoint.model, "api_key_env": endpoint.api_key_env}
    if settings.default_base_url is not None:
        return {
            "base_url": settings.default_base_url,
            "model": settings.default_model,
            "api_key_env": settings.default_api_key_env,
        }
    return {}


async def run_rollouts(request: RolloutRequest, service: TrainingService) -> RolloutResponse:
    """Run the request's rollouts and return the trajectories (see the module docstring).

    Raises:
        RequestError, NotAllowedError, ConflictError, NotFoundError: the request cannot run (4xx).
    """
    settings = service.settings
    tasks = load_request_tasks(request, settings)
    config_name, _ = load_request_config(request, settings)
    planned = len(tasks) * request.num_rollouts
    if planned > settings.max_rollouts:
        raise RequestError(
            ("num_rollouts",),
            f"{len(tasks)} tasks x {request.num_rollouts} rollouts = {planned}, more than this service's limit of "
            f"{settings.max_rollouts} per request (setting: max_rollouts); ask for fewer tasks (num_tasks) or rollouts",
        )
    dataset = _dataset_path(request, service)
    rollout_id = f"roll-{uuid.uuid4().hex[:12]}"
    folder = settings.rollouts_dir / rollout_id
    tasks_file = write_tasks_file(tasks, folder.with_name(f"{rollout_id}-tasks.jsonl"))
    try:
        options = EvalOptions(
            taskset=str(tasks_file), config=config_name, num_tasks=None, rollouts_per_task=request.num_rollouts,
            max_turns=request.max_turns, concurrency=request.concurrency, temperature=request.temperature,
            max_tokens=request.max_tokens, seed=request.seed, output=str(folder), **_model_options(request, service),
        )  # fmt: skip
    except ConfigError as exc:
        raise RequestError(("endpoint",), service.secrets(str(exc))) from exc
    await _run_eval_process(options, service)
    results = folder / "results.jsonl"
    lines = results.read_text(encoding="utf-8").splitlines() if results.is_file() else []
    rows = [json.loads(line) for line in lines if line]
    rows.sort(key=lambda row: (int(row["example_id"]), int(row["rollout_index"])))
    trajectories = [row_to_trajectory(row) for row in rows]
    for trajectory in trajectories:
        if trajectory.error is not None:
            trajectory.error = service.secrets(trajectory.error)
    if dataset is not None:
        dataset.parent.mkdir(parents=True, exist_ok=True)
        dataset.write_text("".join(t.model_dump_json() + "\n" for t in trajectories), encoding="utf-8")
    rewards = [t.reward for t in trajectories if t.reward is not None]
    return RolloutResponse(
        rollout_id=rollout_id,
        model=str(rows[0].get("model")) if rows else "",
        trajectories=trajectories,
        mean_reward=sum(rewards) / len(rewards) if rewards else None,
        failed=sum(1 for t in trajectories if t.error is not None),
        dataset=str(dataset) if dataset is not None else None,
    )


def eval_command(options: EvalOptions) -> list[str]:
    """`hud-vf-gym eval` with the options as flags (defaults left out)."""
    command = [sys.executable, "-m", "hud_vf_gym.cli", "eval"]
    for item in dataclasses.fields(EvalOptions):
        value = getattr(options, item.name)
        if value == item.default:
            continue
        flag = "--" + item.name.replace("_", "-")
        if isinstance(value, bool):
            command.append(flag)
        else:
            command += [flag, "none" if value is None else str(value)]
    return command


async def _run_eval_process(options: EvalOptions, service: TrainingService) -> None:
    """Run `hud-vf-gym eval` as a child process; its user errors become a 422, a crash an error (500).

    The child is killed with its process group when the request is cancelled (the client went away).
    """
    environment = {name: value for name, value in service.environ.items() if value != service.settings.token}
    process = await asyncio.create_subprocess_exec(
        *eval_command(options),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environment,
        cwd=service.settings.work_dir,
        start_new_session=True,  # one process group with the MCP servers it starts: killed together if cancelled
    )
    try:
        _, stderr = await process.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    errors = service.secrets(stderr.decode("utf-8", errors="replace"))
    if process.returncode == USAGE_ERROR:  # `hud-vf-gym eval: error: ...`: the request's mistake
        message = next((line for line in errors.splitlines() if ": error: " in line), errors.strip()[-2000:])
        raise RequestError(("taskset",), message.split(": error: ", 1)[-1])
    if process.returncode != 0:
        raise RuntimeError(f"hud-vf-gym eval exited with status {process.returncode}: {errors.strip()[-2000:]}")


def _dataset_path(request: RolloutRequest, service: TrainingService) -> Path | None:
    if request.dataset_name is None:
        return None
    path = service.settings.datasets_dir / f"{request.dataset_name}.jsonl"
    if path.exists():
        raise ConflictError(f"dataset {request.dataset_name!r} already exists ({path}); choose another dataset_name")
    return path
