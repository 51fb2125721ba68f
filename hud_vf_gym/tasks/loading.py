"""Loading a taskset from wherever it lives: rows, JSON/JSONL files, saved datasets, built-in names, the HF hub.

Every row is validated with `Task.from_row`; bad rows are reported together (index, id, field) and skipped, the good
rows are returned. Built-in tasksets live in `hud_vf_gym/tasksets/` (or where a `BUILTINS` row points) and name
their servers `python -m ...`, which runs in the interpreter that loaded them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hud_vf_gym.environments.registry import builtin_taskset_files, shipped_tasksets_dir
from hud_vf_gym.errors import TaskError, TasksetError
from hud_vf_gym.tasks.task import Task, _row_label, _short  # shared message helpers

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import datasets

__all__ = ["TaskSet", "TasksetWarning", "load_taskset", "tasks_to_dataset"]

_TASKSET_SUFFIXES = (".json", ".jsonl")
# built-in servers are written as `python -m ...`; they must run in the interpreter (and venv) that loaded them
_PYTHON_COMMANDS = frozenset({"python", "python3"})
# `org/name` or `org/name:split`, as `datasets.load_dataset` and hud's `load_tasks` take them
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")


class TasksetWarning(UserWarning):
    """Warned when a taskset has bad rows that were skipped; the message lists every problem."""


@dataclass(frozen=True, slots=True)
class TaskSet:
    """The valid tasks of a taskset, one problem message per skipped row, and where the taskset came from."""

    tasks: tuple[Task, ...]
    problems: tuple[str, ...] = ()
    source: str = ""

    def __len__(self) -> int:
        """Return the number of valid tasks."""
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        """Iterate over the valid tasks."""
        return iter(self.tasks)


@dataclass(frozen=True, slots=True)
class _UnreadableRow:
    """A JSONL line that is not JSON; it becomes that row's problem instead of failing the whole file."""

    message: str


def load_taskset(
    source: str | Path | Sequence[Mapping[str, Any]] | Mapping[str, Any] | datasets.Dataset,
    *,
    split: str = "train",
    num_tasks: int | None = None,
    base_dir: Path | None = None,
) -> TaskSet:
    """Load and validate a taskset from wherever it lives.

    Bad rows are skipped and reported together in one `TasksetWarning`; the good rows are returned.

    Args:
        source: a list of task dicts or one dict; a `datasets.Dataset`; a `.json` file (an array or one object);
            a `.jsonl` file; a folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`; a built-in
            name such as `"2048"`; or a Hugging Face dataset id `org/name` or `org/name:split`.
        split: the split to read from a `DatasetDict` folder or a hub dataset (an `org/name:split` id wins).
        num_tasks: keep only the first N valid tasks; None keeps all.
        base_dir: the folder relative file paths are resolved against; the current directory when None.

    Returns:
        The valid tasks, the problems of the skipped rows, and a display name of the source.

    Raises:
        TaskError: the source cannot be found or read, or `num_tasks` is not a positive integer.
        TasksetError: no row of the taskset is valid; every problem is listed.
    """
    if num_tasks is not None and (isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1):
        raise TaskError(f"num_tasks must be a positive integer or None (every task), found {num_tasks!r}")
    rows, name, is_builtin = _read_source(source, split=split, base_dir=base_dir)
    if not rows:
        raise TaskError(f"{name} holds no tasks; expected at least one task row")
    tasks, problems = _validate_rows(rows)
    if not tasks:
        raise TasksetError(name, problems)
    if is_builtin:
        tasks = [_with_current_python(task) for task in tasks]
    if problems:
        warnings.warn(_skipped_rows_message(name, problems, len(tasks)), TasksetWarning, stacklevel=2)
    if num_tasks is not None:
        tasks = tasks[:num_tasks]
    return TaskSet(tasks=tuple(tasks), problems=tuple(problems), source=name)


def tasks_to_dataset(tasks: Sequence[Task]) -> datasets.Dataset:
    """Return the verifiers dataset: `question` (the prompt), `info` (`Task.to_info()`) and `example_id`.

    There is no `task` column (verifiers 0.2+ reserves it for JSON task payloads) and no `answer`.
    """
    import datasets

    features = datasets.Features(
        {"question": datasets.Value("string"), "info": datasets.Value("string"), "example_id": datasets.Value("int64")}
    )
    columns = {
        "question": [task.prompt for task in tasks],
        "info": [task.to_info() for task in tasks],
        "example_id": list(range(len(tasks))),
    }
    return datasets.Dataset.from_dict(columns, features=features)


def _validate_rows(rows: Sequence[Any]) -> tuple[list[Task], list[str]]:
    """Validate every row; return the valid tasks and one problem message per bad row."""
    tasks: list[Task] = []
    problems: list[str] = []
    first_index_of_id: dict[str, int] = {}
    for index, row in enumerate(rows):
        if isinstance(row, _UnreadableRow):
            problems.append(f"{_row_label(None, index)}: {row.message}")
            continue
        try:
            task = Task.from_row(row, index=index)
        except TaskError as exc:
            problems.append(str(exc))
            continue
        if task.id in first_index_of_id:
            problems.append(
                f"{_row_label(task.id, index)}: id: duplicate of row {first_index_of_id[task.id]}; "
                "task ids must be unique, rename one of them"
            )
            continue
        first_index_of_id[task.id] = index
        tasks.append(task)
    return tasks, problems


def _skipped_rows_message(source: str, problems: Sequence[str], kept: int) -> str:
    count = len(problems)
    header = f"{count} invalid task{'s' if count != 1 else ''} in {source} (skipped; {kept} valid kept)"
    return "\n  ".join([header, *problems])


def _with_current_python(task: Task) -> Task:
    """Run a built-in taskset's `python -m ...` servers with this interpreter, so they see this venv."""
    config = {
        server: {**entry, "command": sys.executable} if entry.get("command") in _PYTHON_COMMANDS else entry
        for server, entry in task.mcp_config.items()
    }
    return dataclasses.replace(task, mcp_config=config)


# ---------------------------------------------------------------------------------------------------------------------
# Reading the rows of each kind of source


def _read_source(source: Any, *, split: str, base_dir: Path | None) -> tuple[list[Any], str, bool]:
    """Return the raw rows of a source, its display name, and whether it is a built-in taskset."""
    if isinstance(source, str | Path):
        return _read_named(source, split=split, base_dir=base_dir)
    hf_rows = _read_in_memory_dataset(source, split)
    if hf_rows is not None:
        return hf_rows, "the given Dataset", False
    if isinstance(source, Mapping):
        return [source], "the given task", False
    if isinstance(source, Sequence):
        return list(source), "the given task list", False
    raise TaskError(
        f"taskset source: expected a file path, a built-in name, a hub id, a list of task dicts, a dict or a "
        f"datasets.Dataset, found {_short(source)}"
    )


def _read_in_memory_dataset(source: Any, split: str) -> list[Any] | None:
    """Return the rows of a `datasets.Dataset` (or a `DatasetDict`'s split); None for anything else."""
    datasets_module = sys.modules.get("datasets")  # a Dataset can only exist once `datasets` was imported
    if datasets_module is None:
        return None
    if isinstance(source, datasets_module.DatasetDict):
        source = _pick_split(source, split, "the given DatasetDict")
    if isinstance(source, datasets_module.Dataset):
        return list(source)
    return None


def _read_named(source: str | Path, *, split: str, base_dir: Path | None) -> tuple[list[Any], str, bool]:
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    if path.exists():
        return _read_path(path, str(source), split), str(source), False
    if isinstance(source, str):
        builtins = _builtin_tasksets()
        if source in builtins:
            name = f"built-in taskset {source!r}"
            entry = builtins[source]
            return _parse_rows_text(entry.read_text(encoding="utf-8"), Path(entry.name).suffix, name), name, True
        if _HUB_ID.match(source) and Path(source).suffix not in _TASKSET_SUFFIXES:
            return _read_hub(source, split, path), f"hub dataset {source!r}", False
    if isinstance(source, Path) or Path(source).suffix in _TASKSET_SUFFIXES or "/" in source or "\\" in source:
        relative_to = "the current directory" if base_dir is None else f"base_dir {str(base_dir)!r}"
        raise TaskError(
            f"taskset file {str(source)!r} not found (looked for {path}); check the path (a relative path is read "
            f"from {relative_to})"
        )
    raise TaskError(_unknown_source_message(source, path))


def _unknown_source_message(source: str, path: Path) -> str:
    names = ", ".join(_builtin_tasksets()) or "none installed"
    return (
        f"unknown taskset {source!r}: it is not a file or folder (looked for {path}), not a built-in taskset and "
        f"not a Hugging Face dataset id. Expected a built-in name ({names}), a .json or .jsonl file of task rows, "
        "a folder written by Dataset.save_to_disk, or a hub id 'org/name' or 'org/name:split'"
    )


def _read_path(path: Path, display: str, split: str) -> list[Any]:
    if path.is_dir():
        return _read_saved_dataset(path, display, split)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"taskset file {display!r} could not be read ({exc})") from exc
    return _parse_rows_text(text, path.suffix, f"taskset file {display!r}")


def _parse_rows_text(text: str, suffix: str, display: str) -> list[Any]:
    if suffix == ".jsonl":
        return _parse_jsonl(text)
    if suffix != ".json":
        raise TaskError(
            f"{display}: unsupported file type {suffix or '(none)'!r}; expected .json (an array of task objects, "
            "or one object) or .jsonl (one task object per line)"
        )
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TaskError(
            f"{display} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; "
            "fix the file (use .jsonl for one task object per line)"
        ) from exc
    if isinstance(data, list):
        return data
    if isinstance(data, Mapping):
        return [data]
    raise TaskError(f"{display}: expected a JSON array of task objects (or one task object), found {_short(data)}")


def _parse_jsonl(text: str) -> list[Any]:
    rows: list[Any] = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            message = f"line {line_number} is not valid JSON ({exc.msg} at column {exc.colno}); found {_short(line)}"
            rows.append(_UnreadableRow(message))
    return rows


def _read_saved_dataset(path: Path, display: str, split: str) -> list[Any]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except FileNotFoundError as exc:
        raise TaskError(
            f"taskset folder {display!r} is not a dataset written by Dataset.save_to_disk or "
            "DatasetDict.save_to_disk; pass such a folder, or a .json or .jsonl file of task rows"
        ) from exc
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick_split(loaded, split, f"taskset folder {display!r}")
    return list(loaded)


def _read_hub(hub_id: str, split: str, local_path: Path) -> list[Any]:
    import datasets
    from huggingface_hub.errors import HfHubHTTPError

    repo, _, id_split = hub_id.partition(":")
    try:
        loaded = datasets.load_dataset(repo)
    # offline or unreachable (ConnectionError), not on the hub and not cached (FileNotFoundError), refused (HTTP)
    except (ConnectionError, FileNotFoundError, HfHubHTTPError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise TaskError(
            f"taskset {hub_id!r} is not a local file or folder (looked for {local_path}), so it was read as a "
            f"Hugging Face dataset id, and {repo!r} could not be downloaded ({type(exc).__name__}: {reason}). "
            f"To use a local copy instead, save it once while online with "
            f"`datasets.load_dataset({repo!r}).save_to_disk('tasks/')` and pass that folder, "
            "or pass a .json or .jsonl file of task rows"
        ) from exc
    return list(_pick_split(loaded, id_split or split, f"hub dataset {repo!r}"))


def _pick_split(dataset_dict: Mapping[str, Any], split: str, display: str) -> Any:
    if split in dataset_dict:
        return dataset_dict[split]
    splits = ", ".join(repr(name) for name in dataset_dict) or "none"
    raise TaskError(f"{display} has no split {split!r}; its splits are {splits}; pass split= one of them")


def _builtin_tasksets_dir() -> Traversable:
    """Return the folder of built-in tasksets shipped inside the package."""
    return shipped_tasksets_dir()


def _builtin_tasksets() -> dict[str, Traversable]:
    """Map each built-in taskset's name to its file, sorted by name.

    The shipped files are named by their file name without suffix; then come the files that rows of the built-in
    environments table (`hud_vf_gym.environments.registry`) name by path.
    """
    folder = _builtin_tasksets_dir()
    found: dict[str, Traversable] = {}
    if folder.is_dir():
        found = {
            Path(entry.name).stem: entry
            for entry in folder.iterdir()
            if entry.is_file() and Path(entry.name).suffix in _TASKSET_SUFFIXES
        }
    for name, path in builtin_taskset_files().items():
        found.setdefault(name, path)  # a shipped file keeps its name; register_builtin refuses such clashes anyway
    return dict(sorted(found.items()))
