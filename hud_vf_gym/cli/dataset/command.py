"""`hud-vf-gym dataset TASKS --name NAME`: check a task file and save it as a dataset with HUD's columns.

The steps, each of which can stop the command before anything is written:

1. Every row is validated with `Task.from_row` (through `load_taskset`); all bad rows are reported at once, with
   their index and id, and nothing is written.
2. The tasks become a `datasets.Dataset` of HUD's six string columns (`Task.to_row()`): `id`, `prompt`, and
   `mcp_config`, `setup_tool`, `evaluate_tool`, `metadata` as JSON strings. `system_prompt` and `agent_config`
   columns are added only when a task has them (HUD's `hud hf` dropped them). `${VAR}` templates stay unresolved.
3. The dataset is saved with `save_to_disk` (a folder `load_environment(taskset=...)` reads) or, with `--push`,
   pushed to the Hugging Face hub. A push refuses tasks whose `mcp_config` holds a literal credential.
4. `primary_dataset: {name, task_count, updated_at}` is written into `hud.lock.yaml` next to the tasks file (or
   `--lock`). Only that key changes: the rest of the file is kept byte for byte and never printed, because lock files
   have shipped real keys under `environment.variables.provided`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hud_vf_gym.cli.dataset.options import COMMAND, HELP, DatasetOptions
from hud_vf_gym.errors import ConfigError, HubPushError, TaskError, TasksetError
from hud_vf_gym.runtime.variables import has_template, is_secret_name

if TYPE_CHECKING:
    import datasets

    from hud_vf_gym.tasks.task import Task

__all__ = [
    "COMMAND",
    "HELP",
    "HUD_COLUMNS",
    "DatasetOptions",
    "DatasetResult",
    "HubPushError",
    "build_dataset",
    "make_dataset",
    "read_tasks",
    "run_dataset",
    "update_lock",
]

LOCK_FILE = "hud.lock.yaml"
HUD_COLUMNS = ("id", "prompt", "mcp_config", "setup_tool", "evaluate_tool", "metadata")
OPTIONAL_COLUMNS = ("system_prompt", "agent_config")  # "" in the rows of tasks without one (read back as absent)
DEFAULT_OUTPUT_DIR = Path("datasets")  # datasets/<name> when neither -o nor --push is given

_DATASET_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


@dataclass(frozen=True, slots=True)
class DatasetResult:
    """What `make_dataset` did."""

    task_count: int
    columns: tuple[str, ...]
    folder: Path | None = None
    pushed: bool = False
    lock: Path | None = None
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------------------------
# Tasks -> dataset


def read_tasks(path: str | Path) -> tuple[Task, ...]:
    """Read and validate every row of a task file.

    Raises:
        TaskError: the file is missing or unreadable.
        TasksetError: one or more rows are invalid; every problem is listed with its row index and id.
    """
    from hud_vf_gym.tasks.loading import TasksetWarning, load_taskset

    if not Path(path).is_file():
        raise TaskError(f"{path}: no such file; give a .json (an array of tasks, or one task) or a .jsonl file")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TasksetWarning)  # its problems are reported below, all at once
        taskset = load_taskset(Path(path))
    if taskset.problems:
        raise TasksetError(taskset.source, list(taskset.problems))
    return taskset.tasks


def literal_secrets(tasks: Sequence[Task]) -> list[str]:
    """Name every `mcp_config` header or env value under a credential-like name that is not a `${VAR}` template."""
    problems = []
    for task in tasks:
        for server, entry in task.mcp_config.items():
            for section in ("headers", "env"):
                values = entry.get(section) if isinstance(entry, Mapping) else None
                for key, value in (values or {}).items() if isinstance(values, Mapping) else ():
                    if is_secret_name(str(key)) and isinstance(value, str) and not has_template(value):
                        problems.append(
                            f"task {task.id!r}: mcp_config.{server}.{section}.{key} holds a literal value; write it "
                            'as a template such as "Bearer ${HUD_API_KEY}" so the secret stays out of the dataset'
                        )
    return problems


def build_dataset(tasks: Sequence[Task]) -> datasets.Dataset:
    """The tasks as a `datasets.Dataset` of string columns: HUD's six, plus system_prompt/agent_config if used."""
    import datasets

    rows = [task.to_row() for task in tasks]
    columns = [*HUD_COLUMNS, *(name for name in OPTIONAL_COLUMNS if any(name in row for row in rows))]
    features = datasets.Features({name: datasets.Value("string") for name in columns})
    return datasets.Dataset.from_dict({name: [row.get(name, "") for row in rows] for name in columns}, features)


def save_dataset(dataset: datasets.Dataset, folder: Path, *, force: bool) -> None:
    """Save with `save_to_disk`; an existing folder is overwritten only when it holds a saved dataset and `force`.

    Raises:
        ConfigError: the folder exists and `force` is not set, or it holds something other than a saved dataset.
    """
    import datasets as datasets_module

    if folder.exists() and (folder.is_file() or any(folder.iterdir())):
        if not (folder / "state.json").is_file() and not (folder / "dataset_dict.json").is_file():
            raise ConfigError(f"{folder} exists and is not a saved dataset; choose another folder with -o")
        if not force:
            raise ConfigError(
                f"{folder} already holds a dataset; pass --force to overwrite it, or -o to save elsewhere"
            )
    bars_were_on = not datasets_module.are_progress_bars_disabled()
    datasets_module.disable_progress_bars()  # one summary line instead of a progress bar on stderr
    try:
        dataset.save_to_disk(str(folder))
    finally:
        if bars_were_on:
            datasets_module.enable_progress_bars()


def push_dataset(dataset: datasets.Dataset, name: str, *, private: bool) -> None:
    """Push to the Hugging Face hub as `name`.

    Raises:
        HubPushError: there is no token, the hub cannot be reached (offline), or it refused the push.
    """
    import huggingface_hub

    if huggingface_hub.get_token() is None:
        raise HubPushError(
            "--push needs a Hugging Face token: run `hf auth login` (or set HF_TOKEN) and try again, or leave out "
            "--push to save a local folder"
        )
    try:
        dataset.push_to_hub(name, private=private)
    except _hub_errors() as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise HubPushError(
            f"could not push the dataset to the Hugging Face hub as {name!r} ({type(exc).__name__}: {reason}); "
            "check the network connection, that HF_HUB_OFFLINE is not set and that your token may write there, "
            "or leave out --push to save a local folder"
        ) from exc


def _hub_errors() -> tuple[type[BaseException], ...]:
    """What a failed push raises: offline (ConnectionError), refused (HTTP), or the HTTP library's own errors."""
    from huggingface_hub.errors import HfHubHTTPError

    errors: list[type[BaseException]] = [ConnectionError, TimeoutError, HfHubHTTPError]
    # huggingface_hub has used requests, httpx and httpx2; only a library it imported can raise
    for module_name, class_name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        error_class = getattr(sys.modules.get(module_name), class_name, None)
        if isinstance(error_class, type) and issubclass(error_class, BaseException):
            errors.append(error_class)
    return tuple(errors)


# ---------------------------------------------------------------------------------------------------------------------
# hud.lock.yaml


def update_lock(lock_path: Path, record: Mapping[str, Any]) -> None:
    """Set `primary_dataset` in a lock file, keeping every other byte; its content is never printed.

    Raises:
        ConfigError: the lock is not valid YAML (its line is named, never quoted: it may hold a secret), is not a
            mapping, or cannot be edited in place.
    """
    import yaml

    text = lock_path.read_text(encoding="utf-8")
    original = _load_lock(text, lock_path)
    block = yaml.safe_dump({"primary_dataset": dict(record)}, sort_keys=False, default_flow_style=False)
    updated = _replace_top_level_key(text, "primary_dataset", block)
    if _load_lock(updated, lock_path) != {**original, "primary_dataset": dict(record)}:
        raise ConfigError(
            f"{lock_path}: primary_dataset could not be replaced without touching other keys; set it by hand to:\n"
            f"{block}"
        )
    temporary = lock_path.with_name(f".{lock_path.name}.tmp")
    temporary.write_text(updated, encoding="utf-8")
    shutil.copymode(lock_path, temporary)  # a lock holding keys may be private (0600); keep it so
    os.replace(temporary, lock_path)


def check_lock(lock_path: Path) -> None:
    """Refuse, before anything is written, a lock file that `update_lock` could not update."""
    if not lock_path.is_file():
        raise ConfigError(f"{lock_path}: no such file; give --lock the path of an existing hud.lock.yaml")
    _load_lock(lock_path.read_text(encoding="utf-8"), lock_path)


def _load_lock(text: str, lock_path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        # the parser's own message quotes the offending line, which may hold a key: never show it
        raise ConfigError(f"{lock_path}: not valid YAML{where}; fix the file or run `hud build` again") from None
    if not isinstance(data, Mapping):
        raise ConfigError(f"{lock_path}: expected a mapping (image, tools, ...); fix the file or run `hud build` again")
    return dict(data)


def _replace_top_level_key(text: str, key: str, block: str) -> str:
    """Replace a top-level key's lines (the key line and the indented lines under it), or append the block."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(rf"{re.escape(key)}\s*:", line)), None)
    if start is None:
        separator = "" if not text or text.endswith("\n") else "\n"
        return text + separator + block
    end = start + 1
    for index in range(start + 1, len(lines)):
        line = lines[index]
        if line.strip() and not line[0].isspace():
            break
        if line.strip():
            end = index + 1  # an indented line still belongs to the key; blank lines count only before one
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _find_lock(tasks_path: Path, explicit: str | None) -> Path | None:
    if explicit is not None:
        return Path(explicit)
    candidate = tasks_path.parent / LOCK_FILE
    return candidate if candidate.is_file() else None


# ---------------------------------------------------------------------------------------------------------------------
# The command


def make_dataset(options: DatasetOptions) -> DatasetResult:
    """Validate the tasks, save or push the dataset, and update the lock file; see the module docstring.

    Raises:
        ConfigError: bad options, an unusable lock or output folder, or literal secrets with --push.
        TaskError: the task file is missing or unreadable.
        TasksetError: rows are invalid (all listed).
        HubPushError: the push failed.
    """
    _check_options(options)
    tasks_path = Path(options.tasks)
    lock_path = _find_lock(tasks_path, options.lock)
    if lock_path is not None:
        check_lock(lock_path)
    tasks = read_tasks(tasks_path)
    secrets = literal_secrets(tasks)
    if secrets and options.push:
        raise ConfigError("\n  ".join([f"{len(secrets)} literal credential(s) would be pushed:", *secrets]))
    dataset = build_dataset(tasks)
    folder = Path(options.output) if options.output else None
    if folder is None and not options.push:
        folder = DEFAULT_OUTPUT_DIR / options.name
    if folder is not None:
        save_dataset(dataset, folder, force=options.force)
    if options.push:
        push_dataset(dataset, options.name, private=options.private)
    if lock_path is not None:
        record: dict[str, Any] = {
            "name": options.name,
            "task_count": len(tasks),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if folder is not None and not options.push:
            record["local_path"] = os.path.relpath(folder, lock_path.parent)  # what load_environment(taskset=) takes
        update_lock(lock_path, record)
    return DatasetResult(len(tasks), tuple(dataset.column_names), folder, options.push, lock_path, tuple(secrets))


def _check_options(options: DatasetOptions) -> None:
    if not _DATASET_NAME.match(options.name) or ".." in options.name:
        raise ConfigError(
            f"--name {options.name!r} is not a dataset name; use letters, digits, '-', '_' and '.', as 'name' or "
            "'org/name' (the hub id with --push)"
        )
    if options.private and not options.push:
        raise ConfigError("--private only applies to a pushed dataset; add --push, or leave out --private")


def run_dataset(options: DatasetOptions) -> int:
    """Run `hud-vf-gym dataset`; print a summary (never the lock's content) and return the exit status."""
    result = make_dataset(options)
    for warning in result.warnings:
        sys.stderr.write(f"hud-vf-gym dataset: warning: {warning}\n")
    lines = [f"validated {result.task_count} tasks from {options.tasks}"]
    if result.folder is not None:
        lines.append(f"wrote {result.folder} (columns: {', '.join(result.columns)})")
    if result.pushed:
        lines.append(f"pushed {options.name} to the Hugging Face hub{' (private)' if options.private else ''}")
    if result.lock is not None:
        lines.append(f"updated {result.lock}: primary_dataset {options.name} ({result.task_count} tasks)")
    source = options.name if result.pushed else result.folder
    lines.append(f'load it with: load_environment(taskset="{source}")')
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
