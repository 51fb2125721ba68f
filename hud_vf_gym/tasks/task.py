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
Its entries are still checked as written (types, keys, URL schemes: `runtime.servers.entry_problems`), every string
of the row must be encodable as UTF-8 (Arrow and JSON refuse a lone surrogate), and a field the row format does not
have is refused with the closest known name, so a typo such as `setup_tools` never drops the setup silently.
Rows are counted from 0 in every message.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.errors import TaskError
from hud_vf_gym.runtime.servers import entry_problems
from hud_vf_gym.types import ToolCall

__all__ = ["Task"]

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
_ROW_INDEX_KEY = "row_index"  # where `to_info` keeps the row's position in its taskset
_EXAMPLE_MCP_CONFIG = '{"local": {"command": "docker", "args": ["run", "--rm", "-i", "<image>"]}}'
_EXAMPLE_EVALUATE = '{"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 128}}}'


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
    problems = entry_problems(fixed)
    if problems:
        raise _FieldError(*(_located(problem) for problem in problems))
    return fixed


def _located(problem: str) -> tuple[str, str]:
    """Split an entry problem `args: Input should be ...` into (`.args`, the message); a whole-entry one stays put."""
    location, separator, message = problem.partition(": ")
    if separator and location and " " not in location:
        return f".{location}", message
    return "", problem


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
    hinted: set[str] = set()  # unknown fields a missing field's message already points at
    for key, parse in _FIELD_PARSERS.items():
        unencodable = _unencodable_text(row.get(key))
        if unencodable is not None:
            location, message = unencodable
            problems.append(f"{key}{location}: {message}")
            continue
        try:
            values[key] = parse(row.get(key))
        except _FieldError as exc:
            typo = None if key in row else _misspelling_of(key, row)
            hint = f" (the row has {typo!r}: did you mean {key!r}?)" if typo else ""
            hinted.update([typo] if typo else [])
            problems.extend(f"{key}{location}: {message}{hint}" for location, message in exc.entries)
    problems.extend(_unknown_field_problems(row, hinted))
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


def _unknown_field_problems(row: Mapping[str, Any], hinted: set[str]) -> list[str]:
    """One problem per field the row format does not have (a typo would otherwise drop that field silently)."""
    problems = []
    known = ", ".join(_FIELD_PARSERS)
    for name in row:
        if name in _FIELD_PARSERS or name in _IGNORED_ROW_KEYS or str(name) in hinted:
            continue
        close = difflib.get_close_matches(str(name), list(_FIELD_PARSERS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{name}: unknown field{hint}; a task row has {known}; put any other data under metadata")
    return problems


def _unencodable_text(value: Any, location: str = "") -> tuple[str, str] | None:
    """The first string (or key) in `value` that UTF-8 cannot encode, as (location, message); None when all can."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            character = value[exc.start]
            return location, (
                f"contains {character!r} at character {exc.start}, a lone surrogate that UTF-8 cannot encode "
                "(Arrow datasets, JSON files and HTTP refuse it); fix the text where it was decoded "
                "(usually bytes read with errors='surrogateescape')"
            )
        return None
    if isinstance(value, Mapping):
        items: list[tuple[str, Any]] = []
        for key, item in value.items():
            items += [(location, key), (f"{location}.{key}", item)]
    elif isinstance(value, list | tuple):
        items = [(f"{location}[{position}]", item) for position, item in enumerate(value)]
    else:
        return None
    for item_location, item in items:
        found = _unencodable_text(item, item_location)
        if found is not None:
            return found
    return None


def _misspelling_of(key: str, row: Mapping[str, Any]) -> str | None:
    """The row's unknown field that looks like a misspelling of `key`, if any."""
    unknown = [str(name) for name in row if name not in _FIELD_PARSERS and name not in _IGNORED_ROW_KEYS]
    close = difflib.get_close_matches(key, unknown, n=1)
    return close[0] if close else None


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
        row_index: the row's position in its taskset (None when unknown), named in the errors of its rollouts;
            not part of the task's identity, so it is left out of comparisons and of `to_row`.
    """

    id: str
    prompt: str
    mcp_config: Mapping[str, Any]
    setup_calls: tuple[ToolCall, ...] = ()
    evaluate_calls: tuple[ToolCall, ...] = ()
    system_prompt: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    agent_config: Mapping[str, Any] = field(default_factory=dict)
    row_index: int | None = field(default=None, compare=False)

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
            row_index=index,
        )

    @property
    def label(self) -> str:
        """How messages name the task: `row 3 (id 'x')`, or `task (id 'x')` when its row is unknown."""
        return _row_label(self.id, self.row_index)

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
        if self.row_index is not None:
            info[_ROW_INDEX_KEY] = self.row_index
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
        row = {key: value for key, value in decoded.items() if key != _ROW_INDEX_KEY}
        index = decoded.get(_ROW_INDEX_KEY)
        return cls.from_row(row, index=index if isinstance(index, int) and not isinstance(index, bool) else None)
