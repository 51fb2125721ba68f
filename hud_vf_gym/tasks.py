"""HUD tasks: one taskset row as a validated `Task`, and `load_taskset` for every place a taskset can live.

A HUD task (hud-python 0.4.x) is a prompt, an `mcp_config` naming the MCP server(s) to start, the setup call(s) that
prepare the environment and the evaluate call(s) that grade the episode. Rows come as dicts, JSON or JSONL files, or
Hugging Face datasets whose `mcp_config`, `setup_tool`, `evaluate_tool` and `metadata` columns are JSON strings.
`Task.from_row` reads every form HUD wrote over time and rewrites the legacy ones:

- `""`, `"null"`, `"{}"`, `{}`, `[]` and `None` mean "absent" for setup_tool, evaluate_tool, metadata and agent_config.
- `{"function": f, "args": a}` (before hud 0.4.0) becomes `{"name": f, "arguments": a}`, both at the top level and
  inside a hub call's arguments (`{"name": "setup", "arguments": {"function": "board", "args": {...}}}`).
- A top-level `arguments` given as a JSON string is parsed; a hub call's inner `arguments` string is kept, because
  hub dispatchers accept an object or a string.
- The 0.4.74 shorthand `{"setup": {"navigate": {...}}}` becomes the hub call `setup(name="navigate", arguments={...})`.
- A stdio server entry with an `arguments` list and no `args` (HUD's Oct-2025 rename hit the docker argument list
  too) gets its `args` back.

`mcp_config` is kept exactly as written: `${VAR}` templates are resolved per rollout and never stored resolved.
Rows are counted from 0 in every message.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hud_vf_gym.errors import TaskError, TasksetError
from hud_vf_gym.types import ToolCall

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    import datasets

__all__ = ["Task", "TaskSet", "TasksetWarning", "load_taskset", "tasks_to_dataset"]

_REPR_LIMIT = 80  # characters of a bad value quoted in an error message
_TASKSET_SUFFIXES = (".json", ".jsonl")
# built-in servers are written as `python -m ...`; they must run in the interpreter (and venv) that loaded them
_PYTHON_COMMANDS = frozenset({"python", "python3"})
# `org/name` or `org/name:split`, as `datasets.load_dataset` and hud's `load_tasks` take them
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")

# a tool call's keys, legacy spellings included, mapped to the key they stand for
_CALL_KEYS = {"name": "name", "function": "name", "arguments": "arguments", "args": "arguments"}
# keys HUD's MCPToolCall dumps carry (a uuid and MCP request metadata) that say nothing about what to call
_IGNORED_CALL_KEYS = frozenset({"id", "_meta", "meta"})
# HUD row keys we read nothing from, so a typo hint never points at them
_IGNORED_ROW_KEYS = frozenset({"integration_test_tool"})
_EXAMPLE_MCP_CONFIG = '{"local": {"command": "docker", "args": ["run", "--rm", "-i", "<image>"]}}'
_EXAMPLE_EVALUATE = '{"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 128}}}'


class TasksetWarning(UserWarning):
    """Warned when a taskset has bad rows: they are skipped, and every problem is listed."""


class _FieldError(ValueError):
    """The problems of one field of a row, each as (location below the field, message); internal to this module."""

    def __init__(self, *entries: tuple[str, str]) -> None:
        self.entries = list(entries)
        super().__init__("; ".join(message for _, message in entries))

    def under(self, location: str) -> _FieldError:
        """Return the same problems, located below `location` (a list index or a key)."""
        return _FieldError(*((location + inner, message) for inner, message in self.entries))


def _fail(message: str, location: str = "") -> _FieldError:
    return _FieldError((location, message))


def _short(value: Any) -> str:
    """Return a truncated repr of a bad value and its type, for messages."""
    text = repr(value)
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return f"{text} ({type(value).__name__})"


def _json_default(value: Any) -> Any:
    """Let `json.dumps` write any Mapping (a Task built by hand may hold a MappingProxyType)."""
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _dumps(value: Any, *, compact: bool = False) -> str:
    separators = (",", ":") if compact else None
    return json.dumps(value, ensure_ascii=False, separators=separators, default=_json_default)


# ---------------------------------------------------------------------------------------------------------------------
# Reading one field of a row


def _decode_json(value: Any) -> Any:
    """Decode a JSON-string column value; return None for every form that means "absent"."""
    if isinstance(value, str):
        text = value.strip()
        if text in ("", "null"):
            return None
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            detail = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            raise _fail(f"not valid JSON ({detail}); found {_short(value)}; fix the JSON text") from exc
    if value is None or (isinstance(value, Mapping | list) and len(value) == 0):
        return None
    return value


def _parse_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise _fail(f"expected a string, found {_short(value)}")
    return str(value)


def _parse_prompt(value: Any) -> str:
    if value is None:
        raise _fail("missing; expected the agent's instruction as a non-empty string")
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"expected the agent's instruction as a non-empty string, found {_short(value)}")
    return value


def _parse_system_prompt(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _fail(f"expected a string, found {_short(value)}")
    return value


def _parse_mapping(value: Any) -> dict[str, Any]:
    decoded = _decode_json(value)
    if decoded is None:
        return {}
    if not isinstance(decoded, Mapping):
        raise _fail(f"expected a JSON object, found {_short(decoded)}")
    return copy.deepcopy(dict(decoded))


def _parse_mcp_config(value: Any) -> dict[str, Any]:
    decoded = _decode_json(value)
    if decoded is None:
        raise _fail(f"missing; expected a mapping of server name to server entry, e.g. {_EXAMPLE_MCP_CONFIG}")
    if not isinstance(decoded, Mapping):
        raise _fail(f"expected a mapping of server name to server entry, found {_short(decoded)}")
    config: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for server, entry in decoded.items():
        try:
            config[str(server)] = _parse_server_entry(entry)
        except _FieldError as exc:
            errors.extend(exc.under(f".{server}").entries)
    if errors:
        raise _FieldError(*errors)
    return config


def _parse_server_entry(entry: Any) -> dict[str, Any]:
    if entry is None:
        raise _fail(
            "expected a server entry, found None; a Dataset built from dicts gives every row the server names of "
            "all rows (Arrow structs), so store mcp_config as a JSON string per row, as Task.to_row() does"
        )
    if not isinstance(entry, Mapping):
        raise _fail(f"expected a server entry (a mapping with 'command' or 'url'), found {_short(entry)}")
    if "command" not in entry and "url" not in entry:
        keys = ", ".join(repr(key) for key in entry) or "none"
        raise _fail(f"has neither 'command' (a stdio server) nor 'url' (an HTTP or SSE server); found keys {keys}")
    fixed = copy.deepcopy(dict(entry))
    if "command" in fixed and "args" not in fixed and isinstance(fixed.get("arguments"), list):
        # HUD's Oct-2025 rewrite of every "args" key to "arguments" also renamed the stdio argument list
        fixed["args"] = fixed.pop("arguments")
    return fixed


def _parse_setup_calls(value: Any) -> tuple[ToolCall, ...]:
    return _parse_calls(value, required=False)


def _parse_evaluate_calls(value: Any) -> tuple[ToolCall, ...]:
    return _parse_calls(value, required=True)


def _parse_calls(value: Any, *, required: bool) -> tuple[ToolCall, ...]:
    """Read a single call or a list of calls."""
    decoded = _decode_json(value)
    if decoded is None:
        if required:
            raise _fail(f"missing; a task without an evaluate call cannot be scored; add one, e.g. {_EXAMPLE_EVALUATE}")
        return ()
    items = decoded if isinstance(decoded, list) else [decoded]
    calls: list[ToolCall] = []
    errors: list[tuple[str, str]] = []
    for position, item in enumerate(items):
        try:
            calls.append(_parse_call(item))
        except _FieldError as exc:
            errors.extend(exc.under(f"[{position}]" if isinstance(decoded, list) else "").entries)
    if errors:
        raise _FieldError(*errors)
    return tuple(calls)


def _parse_call(item: Any) -> ToolCall:
    if not isinstance(item, Mapping):
        raise _fail(f'expected a tool call {{"name": ..., "arguments": {{...}}}}, found {_short(item)}')
    item = _expand_shorthand(item)
    unknown = [key for key in item if key not in _CALL_KEYS and key not in _IGNORED_CALL_KEYS]
    if unknown:
        keys = ", ".join(repr(key) for key in unknown)
        raise _fail(
            f"unknown key(s) {keys}; a tool call has 'name' and 'arguments' (legacy: 'function' and 'args'), "
            'or is the shorthand {"setup": {"function_name": {...}}}'
        )
    name = _pick_key(item, "name", "function")
    if not isinstance(name, str) or not name.strip():
        raise _fail(f"expected the tool's name as a non-empty string, found {_short(name)}", ".name")
    arguments = _parse_arguments(_pick_key(item, "arguments", "args"))
    return ToolCall(name, _rewrite_hub_arguments(arguments))


def _pick_key(item: Mapping[str, Any], key: str, legacy_key: str) -> Any:
    if key in item and legacy_key in item:
        raise _fail(f"has both {key!r} and its legacy spelling {legacy_key!r}; keep only {key!r}")
    return item.get(key, item.get(legacy_key))


def _expand_shorthand(item: Mapping[str, Any]) -> Mapping[str, Any]:
    """Rewrite hud 0.4.74's `{"setup": {"navigate": {...}}}` as `{"name": "setup", "arguments": {...}}`."""
    if len(item) != 1:
        return item
    ((tool_name, inner),) = item.items()
    if tool_name in _CALL_KEYS or tool_name in _IGNORED_CALL_KEYS or not isinstance(inner, Mapping):
        return item
    if "name" in inner or "function" in inner:  # {"setup": {"name": "navigate", "arguments": {...}}}
        return {"name": tool_name, "arguments": inner}
    if len(inner) == 1:
        ((function_name, function_arguments),) = inner.items()
        if isinstance(function_arguments, Mapping):
            return {"name": tool_name, "arguments": {"name": function_name, "arguments": function_arguments}}
    return item


def _parse_arguments(value: Any) -> dict[str, Any]:
    try:
        decoded = _decode_json(value)
    except _FieldError as exc:
        raise exc.under(".arguments") from exc
    if decoded is None:
        return {}
    if not isinstance(decoded, Mapping):
        raise _fail(f"expected a JSON object of tool arguments, found {_short(decoded)}", ".arguments")
    return copy.deepcopy(dict(decoded))


def _rewrite_hub_arguments(arguments: dict[str, Any]) -> dict[str, Any]:
    """Rewrite a pre-0.4.0 hub dispatch `{"function": f, "args": a}` as `{"name": f, "arguments": a}`."""
    if set(arguments) - {"function", "args"} or not isinstance(arguments.get("function"), str):
        return arguments
    # the hub's input schema requires both keys; the inner arguments may stay a JSON string, hubs accept both
    return {"name": arguments["function"], "arguments": arguments.get("args", {})}


# ---------------------------------------------------------------------------------------------------------------------
# Reading a whole row

_FIELD_PARSERS: dict[str, Callable[[Any], Any]] = {
    "id": _parse_id,
    "prompt": _parse_prompt,
    "mcp_config": _parse_mcp_config,
    "setup_tool": _parse_setup_calls,
    "evaluate_tool": _parse_evaluate_calls,
    "system_prompt": _parse_system_prompt,
    "metadata": _parse_mapping,
    "agent_config": _parse_mapping,
}


def _parse_fields(row: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Read every field of a row; return the values read and one problem line per bad location."""
    values: dict[str, Any] = {}
    problems: list[str] = []
    for key, parse in _FIELD_PARSERS.items():
        try:
            values[key] = parse(row.get(key))
        except _FieldError as exc:
            hint = "" if key in row else _did_you_mean(key, row)
            problems.extend(f"{key}{location}: {message}{hint}" for location, message in exc.entries)
    if "system_prompt" in values and "agent_config" in values:
        try:
            values["system_prompt"] = _merge_system_prompt(values["system_prompt"], values["agent_config"])
        except _FieldError as exc:
            problems.extend(f"agent_config{location}: {message}" for location, message in exc.entries)
    return values, problems


def _merge_system_prompt(top_level: str | None, agent_config: Mapping[str, Any]) -> str | None:
    """Return the system prompt from the top level (hud 0.4.12) or `agent_config.system_prompt` (0.4.74)."""
    try:
        nested = _parse_system_prompt(agent_config.get("system_prompt"))
    except _FieldError as exc:
        raise exc.under(".system_prompt") from exc
    if top_level is not None and nested is not None and top_level != nested:
        raise _fail("differs from the top-level system_prompt; keep one of the two", ".system_prompt")
    return top_level if top_level is not None else nested


def _did_you_mean(key: str, row: Mapping[str, Any]) -> str:
    unknown = [str(name) for name in row if name not in _FIELD_PARSERS and name not in _IGNORED_ROW_KEYS]
    close = difflib.get_close_matches(key, unknown, n=1)
    return f" (the row has {close[0]!r}: did you mean {key!r}?)" if close else ""


def _row_label(task_id: Any, index: int | None) -> str:
    """Name a row in messages: `row 3 (id 'x')`, `row 3 (no id)`, or `task (id 'x')` when the index is unknown."""
    described = "no id" if task_id is None or task_id == "" else f"id {task_id!r}"
    if index is None:
        return f"task ({described})"
    return f"row {index} ({described})"


def _row_message(label: str, problems: Sequence[str]) -> str:
    if len(problems) == 1:
        return f"{label}: {problems[0]}"
    return f"{label}: {len(problems)} problems" + "".join(f"\n    {problem}" for problem in problems)


def _dump_calls(calls: Sequence[ToolCall]) -> str:
    """Write calls as HUD's HF columns do: `null` for none, one object for one call, a list for several."""
    if not calls:
        # "null" reads back as absent in every hud 0.4.x loader; "{}" crashed 0.4.12's MCPToolCall
        return "null"
    if len(calls) == 1:
        return _dumps(calls[0].to_json())
    return _dumps([call.to_json() for call in calls])


@dataclass(frozen=True, slots=True)
class Task:
    """One HUD task, validated, with its `mcp_config` unresolved (`${VAR}` templates kept as written).

    Build it with `Task.from_row` from anything a taskset holds; the constructor does not validate.

    Attributes:
        id: the task's id (`task-0003` when the row had none).
        prompt: the instruction the agent is given.
        mcp_config: server name -> server entry (`command`/`args`/`env`/`cwd` for stdio, `url`/`headers` for HTTP).
        setup_calls: the calls that prepare the environment, run in order before the first turn.
        evaluate_calls: the calls that grade the episode, run in order after the last turn.
        system_prompt: a task-specific system prompt, if the row had one.
        metadata: free-form data carried along (difficulty, answer, ...).
        agent_config: hud 0.4.74's agent settings (`allowed_tools`, `append_setup_output`, ...), empty if none.
    """

    id: str
    prompt: str
    mcp_config: Mapping[str, Any]
    setup_calls: tuple[ToolCall, ...] = ()
    evaluate_calls: tuple[ToolCall, ...] = ()
    system_prompt: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    agent_config: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Mapping[str, Any], *, index: int | None = None) -> Task:
        """Read one HUD task row, in any form HUD wrote (see the module docstring), and validate it.

        Args:
            row: the row as a dict; JSON-string columns and legacy forms are accepted.
            index: the row's position in its taskset, used in messages and for a missing id.

        Returns:
            The task.

        Raises:
            TaskError: the row cannot be used; the message names the row and lists every problem with its fix.
        """
        if not isinstance(row, Mapping):
            raise TaskError(f"{_row_label(None, index)}: expected a task object (a mapping), found {_short(row)}")
        values, problems = _parse_fields(row)
        if problems:
            raise TaskError(_row_message(_row_label(row.get("id"), index), problems))
        return cls(
            id=values["id"] or f"task-{index or 0:04d}",
            prompt=values["prompt"],
            mcp_config=values["mcp_config"],
            setup_calls=values["setup_tool"],
            evaluate_calls=values["evaluate_tool"],
            system_prompt=values["system_prompt"],
            metadata=values["metadata"],
            agent_config=values["agent_config"],
        )

    def to_row(self) -> dict[str, str]:
        """Return the task as HUD's Hugging Face columns, the last four of the six being JSON strings.

        `system_prompt` and `agent_config` are added only when set. `Task.from_row(task.to_row()) == task`.
        """
        row = {
            "id": self.id,
            "prompt": self.prompt,
            "mcp_config": _dumps(self.mcp_config),
            "setup_tool": _dump_calls(self.setup_calls),
            "evaluate_tool": _dump_calls(self.evaluate_calls),
            "metadata": _dumps(self.metadata),
        }
        if self.system_prompt is not None:
            row["system_prompt"] = self.system_prompt
        if self.agent_config:
            row["agent_config"] = _dumps(self.agent_config)
        return row

    def to_info(self) -> str:
        """Return the whole task as one compact JSON string, the verifiers dataset's `info` column."""
        info: dict[str, Any] = {
            "id": self.id,
            "prompt": self.prompt,
            "mcp_config": self.mcp_config,
            "setup_tool": [call.to_json() for call in self.setup_calls],
            "evaluate_tool": [call.to_json() for call in self.evaluate_calls],
            "metadata": self.metadata,
        }
        if self.system_prompt is not None:
            info["system_prompt"] = self.system_prompt
        if self.agent_config:
            info["agent_config"] = self.agent_config
        return _dumps(info, compact=True)

    @classmethod
    def from_info(cls, info: str | Mapping[str, Any]) -> Task:
        """Rebuild a task from `to_info()`'s JSON string, or from that string already decoded.

        Raises:
            TaskError: `info` is not a JSON object holding a valid task.
        """
        decoded: Any = info
        if isinstance(info, str):
            try:
                decoded = json.loads(info)
            except json.JSONDecodeError as exc:
                raise TaskError(
                    f"info: not valid JSON ({exc.msg}); found {_short(info)}; build it with Task.to_info()"
                ) from exc
        if not isinstance(decoded, Mapping):
            raise TaskError(f"info: expected a JSON object built by Task.to_info(), found {_short(decoded)}")
        return cls.from_row(decoded)


# ---------------------------------------------------------------------------------------------------------------------
# Loading a taskset


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
        raise TaskError(f"taskset file {str(source)!r} not found (looked for {path}); check the path or base_dir")
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
    return resources.files("hud_vf_gym") / "tasksets"


def _builtin_tasksets() -> dict[str, Traversable]:
    """Map each built-in taskset's name (its file name without suffix) to its file, sorted by name."""
    folder = _builtin_tasksets_dir()
    if not folder.is_dir():
        return {}
    found = {
        Path(entry.name).stem: entry
        for entry in folder.iterdir()
        if entry.is_file() and Path(entry.name).suffix in _TASKSET_SUFFIXES
    }
    return dict(sorted(found.items()))
