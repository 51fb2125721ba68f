"""A request's tasks and environment config, loaded and checked before anything runs.

`/train` and `/rollout` both name tasks (a taskset, or rows inline) and a config. They are loaded here, in the
service, so that a bad row, an unknown config or a command off the allow-list is a 4xx answer to the request, not a
failure minutes later inside a child process. The checked tasks are then written to the job's own tasks file,
which is what the child reads: it runs exactly what was checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

from hud_vf_gym.config import EnvConfig, load_config
from hud_vf_gym.errors import ConfigError, TaskError
from hud_vf_gym.service.models import TaskSource
from hud_vf_gym.service.security import check_tasks, resolve_request_path
from hud_vf_gym.service.settings import ServiceSettings
from hud_vf_gym.tasks.loading import TasksetWarning, load_taskset
from hud_vf_gym.tasks.task import Task

__all__ = ["DEFAULT_TASKSET", "RequestError", "load_request_config", "load_request_tasks", "write_tasks_file"]

DEFAULT_TASKSET = "2048"
PRIVATE_FILE_MODE = 0o600  # a tasks file may hold a request's literal credentials (headers of a URL server)


class RequestError(ValueError):
    """A request field that cannot be used: the field's path and the message (answered as a 422)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        """Name the field (`("tasks", 2)`) and say what is wrong with it."""
        super().__init__(message)
        self.loc = loc
        self.message = message


def load_request_tasks(source: TaskSource, settings: ServiceSettings) -> list[Task]:
    """The request's tasks: loaded, every row valid, `task_prompt` applied, every server allowed.

    Raises:
        RequestError: a row or the taskset cannot be used (every problem in one message, under the field).
        NotAllowedError: a task names a server, variable or path the operator did not allow.
    """
    field = "tasks" if source.tasks is not None else "taskset"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TasksetWarning)
        try:
            if source.tasks is not None:
                taskset = load_taskset(source.tasks, num_tasks=source.num_tasks)
            else:
                name = resolve_request_path("taskset", source.taskset or DEFAULT_TASKSET, settings)
                taskset = load_taskset(name, num_tasks=source.num_tasks)
        except TaskError as exc:
            raise RequestError((field,), str(exc)) from exc
    if taskset.problems:  # a request is all or nothing: a skipped row would train on less than was asked for
        raise RequestError((field,), next((str(w.message) for w in caught), "; ".join(taskset.problems)))
    tasks = list(taskset.tasks)
    if source.task_prompt is not None:
        tasks = [dataclasses.replace(task, system_prompt=source.task_prompt) for task in tasks]
    return check_tasks(tasks, settings)


def load_request_config(source: TaskSource, settings: ServiceSettings) -> tuple[str, EnvConfig]:
    """The request's environment config: the name or path to hand on, and the loaded config.

    Raises:
        RequestError: the config cannot be found or is invalid.
        NotAllowedError: the config path leaves the service's working directory.
    """
    name = resolve_request_path("config", source.config, settings)
    try:
        return name, load_config(name)
    except ConfigError as exc:
        raise RequestError(("config",), str(exc)) from exc


def write_tasks_file(tasks: list[Task], path: Path) -> Path:
    """Write the tasks as a JSONL taskset (HUD's columns) that only this user can read; return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for task in tasks:
            handle.write(json.dumps(task.to_row()) + "\n")
    return path
