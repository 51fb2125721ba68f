"""A task's own mistakes that only its running server reveals, as `TaskDefinitionError`s naming the row and field.

A row can validate and still be unable to run: its setup or evaluate names a tool the server lacks, or a hub
function the hub does not dispatch (`setup(name="boards")` where the hub's `name` enum is `["board"]`), or its
`mcp_config` is refused once `${VAR}`s are resolved. These are checked when the session opens, before setup runs,
so the row fails at once with the fix, and as a task error: retrying it as infrastructure would fail the same way.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence

from hud_vf_gym.errors import ConfigError, TaskDefinitionError
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.types import ToolCall, ToolSpec

__all__ = ["UNKNOWN_FUNCTION", "check_lifecycle_calls", "task_definition_error"]

UNKNOWN_FUNCTION = re.compile(r"^\s*unknown (setup|evaluate) function\b", re.IGNORECASE)
"""How a hub answers a function it does not dispatch (ours and HUD's), for hubs that declare no `name` enum."""

_NAMES_SHOWN = 30  # tools or functions listed in a message


def task_definition_error(task: Task, field: str, problem: str) -> TaskDefinitionError:
    """The error of one task row: `row 3 (id 'x'): setup_tool: <problem>`."""
    return TaskDefinitionError(
        f"{task.label}: {field}: {problem}", task_id=task.id, row_index=task.row_index, field=field
    )


def check_lifecycle_calls(task: Task, session: MCPSession) -> None:
    """Check that every setup and evaluate call names a tool (and hub function) the session's servers offer.

    Raises:
        TaskDefinitionError: the first call that cannot run, with the names it could have meant.
    """
    for field, calls in (("setup_tool", task.setup_calls), ("evaluate_tool", task.evaluate_calls)):
        for call in calls:
            problem = _call_problem(call, session)
            if problem is not None:
                raise task_definition_error(task, field, problem)


def _call_problem(call: ToolCall, session: MCPSession) -> str | None:
    """What is wrong with one lifecycle call on this session, or None."""
    try:
        _, spec = session.server_tool(call.name)
    except ConfigError:
        return (
            f"no MCP server of the task offers a tool named {call.name!r}{_did_you_mean(call.name, session.tools)}; "
            f"its tools: {_listed(sorted(session.tools))}; fix the tool name in the row"
        )
    functions = _hub_functions(spec)
    function = call.arguments.get("name")
    if functions is None or not isinstance(function, str) or function in functions:
        return None
    return (
        f"tool {call.name!r} has no function {function!r}{_did_you_mean(function, functions)}; "
        f"expected one of: {_listed(functions)}; fix the function name in the row"
    )


def _hub_functions(spec: ToolSpec) -> list[str] | None:
    """The function names a hub dispatch tool declares (the `enum` of its `name` argument), or None."""
    properties = spec.input_schema.get("properties")
    name = properties.get("name") if isinstance(properties, Mapping) else None
    enum = name.get("enum") if isinstance(name, Mapping) else None
    if isinstance(enum, list) and enum and all(isinstance(value, str) for value in enum):
        return list(enum)
    return None


def _did_you_mean(name: str, candidates: Sequence[str] | Mapping[str, object]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listed(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if len(names) > _NAMES_SHOWN else (shown or "none")
