"""The action-mapping engine: an agent's call (`click(100, 200)`) becomes an MCP tool call.

Each action in the config's `action_mappings` names its MCP tool (`_tool`, defaulting to the action's own name),
the names of its positional arguments (`_parser.positional`), and how every MCP argument is built:

- `static: v` (or a bare value): always `v`.
- `from_arg: a`: the agent's argument `a`, passed through `transform` when one is set. When the agent omits `a`,
  `default` is sent as it is: a default is the MCP value, never transformed (so `wait()` waits `default`
  milliseconds, not `default` seconds converted again). With no default the argument is required, unless the
  mapping says `optional: true`, in which case it is left out of the MCP call.
- `from_args: [a, b]` (with optional per-item `defaults`): a list of agent arguments; `transform` applies to the
  whole list.
- `use_context: true`: the lambda transform also receives every argument of the call by name, as published
  configs do for `scroll("down", 3)`.

`done()` is special: it ends the episode. When `done` has a mapping with a `_tool`, that tool is called first (for
example to submit an answer). An action that is not mapped is refused with the list of actions that exist, unless
the config lists its tool in `passthrough_tools`. The lifecycle tools (`setup`, `evaluate` and whatever a task
uses for them) are never reachable by the agent.

Mapping never raises for model mistakes: it returns an `ActionError` the environment shows to the model.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from hud_vf_gym.config import LIFECYCLE_TOOLS, ActionMapping, ArgumentSpec
from hud_vf_gym.core.parser import MAX_ECHO_CHARS, ParsedCall, format_call, quote_model_text
from hud_vf_gym.core.transforms import TransformError
from hud_vf_gym.types import ToolCall, ToolSpec

__all__ = ["ActionError", "ActionErrorKind", "ActionMapper", "MappedAction"]

DONE_ACTION = "done"


class ActionErrorKind(StrEnum):
    """Why a parsed call could not become a tool call."""

    UNKNOWN_ACTION = "unknown_action"
    BAD_ARGUMENTS = "bad_arguments"
    LIFECYCLE_TOOL = "lifecycle_tool"
    TRANSFORM_FAILED = "transform_failed"


@dataclass(frozen=True, slots=True)
class ActionError:
    """A call that cannot be executed; `message` is written for the model."""

    kind: ActionErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class MappedAction:
    """A call ready to execute: the MCP call to make (if any) and whether it ends the episode."""

    action: str
    tool_call: ToolCall | None
    ends_episode: bool = False


class _Missing(Exception):
    """An agent argument the mapping needs was not given."""


class ActionMapper:
    """Maps parsed calls to MCP tool calls according to a config's `action_mappings`.

    Args:
        mappings: the config's action mappings, already validated (transforms compiled).
        passthrough_tools: MCP tools the agent may call directly with keyword arguments, or "*" for any.
    """

    def __init__(
        self,
        mappings: Mapping[str, ActionMapping],
        passthrough_tools: Sequence[str] | Literal["*"] = (),
    ) -> None:
        """Keep the mappings; no I/O."""
        self.mappings = dict(mappings)
        self.passthrough_tools: frozenset[str] | Literal["*"] = (
            "*" if passthrough_tools == "*" else frozenset(passthrough_tools)
        )
        self._lowercase_names = {name.lower(): name for name in self.mappings}
        self._tool_specs: Mapping[str, ToolSpec] = {}

    @property
    def action_names(self) -> list[str]:
        """The actions the agent can use, `done` included."""
        return sorted({*self.mappings, DONE_ACTION})

    def bind_tool_specs(self, tools: Mapping[str, ToolSpec]) -> None:
        """Remember the server's tool schemas, so pass-through calls can take positional arguments."""
        self._tool_specs = dict(tools)

    def map(self, call: ParsedCall, *, blocked_tools: frozenset[str] = LIFECYCLE_TOOLS) -> MappedAction | ActionError:
        """Turn a parsed call into the MCP call to make, or explain to the model why it cannot be made."""
        if len(call.name) > MAX_ECHO_CHARS:  # no action is named like that; the error quotes only its start
            return _unknown_action(call.name, self.action_names, [self.usage(name) for name in self.action_names])
        name = call.name if call.name in self.mappings else self._lowercase_names.get(call.name.lower(), call.name)
        mapping = self.mappings.get(name)
        if mapping is None:
            if name.lower() == DONE_ACTION:
                return self._done_without_tool(call)
            return self._map_passthrough(call, blocked_tools)
        tool_name = mapping.tool or name
        if name == DONE_ACTION and mapping.tool is None:
            return self._done_without_tool(call)
        if tool_name in blocked_tools:
            return _lifecycle_error(tool_name)
        return self._map_mapped(name, mapping, call)

    def usage(self, action: str) -> str:
        """Return how the agent calls an action, e.g. `click(x, y)`."""
        mapping = self.mappings.get(action)
        if mapping is None:
            return f"{action}()"
        return f"{action}({', '.join(mapping.parser.positional)})"

    def agent_arguments(self, mapped: MappedAction, call: ParsedCall) -> frozenset[str]:
        """The MCP arguments of `mapped` whose values the agent gave (not a mapping's constant or default)."""
        if mapped.tool_call is None:
            return frozenset()
        mapping = self.mappings.get(mapped.action)
        if mapping is None:  # a pass-through call: every argument is the agent's
            return frozenset(mapped.tool_call.arguments)
        named = _bind_arguments(mapped.action, mapping, call)
        if isinstance(named, ActionError):
            return frozenset()
        return frozenset(
            argument
            for argument, spec in mapping.mcp_arguments.items()
            if (spec.from_arg is not None and spec.from_arg in named)
            or (spec.from_args is not None and any(name in named for name in spec.from_args))
        )

    def is_screenshot(self, mapped: MappedAction) -> bool:
        """Whether an executed action takes a screenshot (for the screenshot_behavior rubric component)."""
        if mapped.action == "screenshot":
            return True
        call = mapped.tool_call
        return call is not None and call.arguments.get("action") == "screenshot"

    def check_tools(self, tools: Mapping[str, ToolSpec]) -> list[str]:
        """List every way the mappings disagree with the server's tools (unknown tool, argument or enum value)."""
        problems = []
        for action, mapping in sorted(self.mappings.items()):
            if action == DONE_ACTION and mapping.tool is None:
                continue
            tool_name = mapping.tool or action
            spec = _find_tool(tools, tool_name)
            if spec is None:
                available = ", ".join(sorted(tools)) or "none"
                problems.append(f"action {action!r}: the server has no tool {tool_name!r} (tools: {available})")
                continue
            problems += _schema_problems(action, mapping, spec)
        return problems

    def _done_without_tool(self, call: ParsedCall) -> MappedAction | ActionError:
        del call  # done() takes no arguments; any the model gave are ignored rather than punished
        return MappedAction(DONE_ACTION, None, ends_episode=True)

    def _map_mapped(self, name: str, mapping: ActionMapping, call: ParsedCall) -> MappedAction | ActionError:
        named = _bind_arguments(name, mapping, call)
        if isinstance(named, ActionError):
            return named
        arguments: dict[str, Any] = {}
        for argument_name, spec in mapping.mcp_arguments.items():
            try:
                value = _argument_value(spec, named)
            except _Missing as exc:
                return ActionError(
                    ActionErrorKind.BAD_ARGUMENTS,
                    f"{name}() is missing the argument {exc.args[0]!r}. Usage: {self.usage(name)}.",
                )
            except TransformError as exc:  # its message may quote the model's value: cut like any echo
                reason = str(exc) if len(str(exc)) <= 4 * MAX_ECHO_CHARS else str(exc)[: 4 * MAX_ECHO_CHARS] + "..."
                return ActionError(
                    ActionErrorKind.TRANSFORM_FAILED,
                    f"{name}(): the value for {argument_name!r} cannot be used ({reason}). Usage: {self.usage(name)}.",
                )
            if value is not _OMIT:
                arguments[argument_name] = value
        return MappedAction(name, ToolCall(mapping.tool or name, arguments), ends_episode=name == DONE_ACTION)

    def _map_passthrough(self, call: ParsedCall, blocked_tools: frozenset[str]) -> MappedAction | ActionError:
        allowed = self.passthrough_tools == "*" or call.name in self.passthrough_tools
        # with several servers the lifecycle tools are named <server>_setup / <server>_evaluate
        prefixed_lifecycle = call.name.rsplit("_", 1)[-1] in LIFECYCLE_TOOLS and "_" in call.name
        if call.name in blocked_tools or (allowed and prefixed_lifecycle):
            return _lifecycle_error(call.name)
        if not allowed:
            return _unknown_action(call.name, self.action_names, [self.usage(name) for name in self.action_names])
        arguments = dict(call.kwargs)
        if call.args:
            positional = _schema_positional_names(self._tool_specs.get(call.name))
            if len(call.args) > len(positional):
                return _too_many_passthrough_arguments(call, positional)
            named = dict(zip(positional, call.args, strict=False))
            twice = sorted(named.keys() & arguments.keys())
            if twice:
                return ActionError(
                    ActionErrorKind.BAD_ARGUMENTS,
                    f"{call.name}() got {twice[0]!r} twice. Usage: {call.name}({', '.join(positional)}).",
                )
            arguments.update(named)
        return MappedAction(call.name, ToolCall(call.name, arguments))


_OMIT: Any = object()


def _bind_arguments(name: str, mapping: ActionMapping, call: ParsedCall) -> dict[str, Any] | ActionError:
    """Name the call's positional arguments and check its keywords against what the mapping reads."""
    positional = mapping.parser.positional
    usage = f"{name}({', '.join(positional)})"
    if len(call.args) > len(positional):
        expected = f"{len(positional)} positional argument{'s' if len(positional) != 1 else ''}"
        return ActionError(
            ActionErrorKind.BAD_ARGUMENTS,
            f"{name}() takes {expected} but {len(call.args)} were given. Usage: {usage}.",
        )
    named = dict(zip(positional, call.args, strict=False))
    accepted = mapping.referenced_agent_arguments
    for key, value in call.kwargs.items():
        if key not in accepted:
            choices = ", ".join(sorted(accepted)) or "none"
            return ActionError(
                ActionErrorKind.BAD_ARGUMENTS,
                f"{name}() got an unknown argument {quote_model_text(key)} (accepted: {choices}). Usage: {usage}.",
            )
        if key in named:
            return ActionError(ActionErrorKind.BAD_ARGUMENTS, f"{name}() got {key!r} twice. Usage: {usage}.")
        named[key] = value
    return named


def _argument_value(spec: ArgumentSpec, named: Mapping[str, Any]) -> Any:
    """Build one MCP argument from its spec and the agent's named arguments (raises `_Missing`)."""
    if spec.has_static:
        return copy.deepcopy(spec.static)
    transform = spec.compiled_transform
    if spec.from_args is not None:
        defaults = spec.defaults or [_OMIT] * len(spec.from_args)
        items = []
        for item_name, item_default in zip(spec.from_args, defaults, strict=True):
            if item_name in named:
                items.append(named[item_name])
            elif item_default is not _OMIT:
                items.append(copy.deepcopy(item_default))
            else:
                raise _Missing(item_name)
        return transform(items, named) if transform else items
    assert spec.from_arg is not None  # the schema guarantees exactly one source
    if spec.from_arg in named:
        value = named[spec.from_arg]
        return transform(value, named) if transform else value
    if spec.has_default:
        return copy.deepcopy(spec.default)
    if spec.optional:
        return _OMIT
    raise _Missing(spec.from_arg)


def _too_many_passthrough_arguments(call: ParsedCall, positional: list[str]) -> ActionError:
    if not positional:  # the tool's parameters are unknown (no schema bound) or it takes none
        example = format_call(call.name, (), {"name": "value"})
        return ActionError(
            ActionErrorKind.BAD_ARGUMENTS,
            f"{call.name}() takes keyword arguments only, e.g. {example}.",
        )
    expected = f"{len(positional)} positional argument{'s' if len(positional) != 1 else ''}"
    return ActionError(
        ActionErrorKind.BAD_ARGUMENTS,
        f"{call.name}() takes at most {expected} but {len(call.args)} were given. "
        f"Usage: {call.name}({', '.join(positional)}).",
    )


def _lifecycle_error(tool_name: str) -> ActionError:
    return ActionError(
        ActionErrorKind.LIFECYCLE_TOOL,
        f"{tool_name} is run by the environment (task setup and evaluation); the agent cannot call it. "
        "Call done() when the task is finished.",
    )


def _unknown_action(name: str, action_names: list[str], usages: list[str]) -> ActionError:
    # a name longer than any echo is no typo of an action name (and difflib on megabytes takes seconds)
    close = difflib.get_close_matches(name, action_names, n=1) if len(name) <= MAX_ECHO_CHARS else []
    hint = f" Did you mean {close[0]}()?" if close else ""
    return ActionError(
        ActionErrorKind.UNKNOWN_ACTION,
        f"Unknown action {quote_model_text(name)}.{hint} Available actions: {', '.join(usages)}.",
    )


def _find_tool(tools: Mapping[str, ToolSpec], tool_name: str) -> ToolSpec | None:
    if tool_name in tools:
        return tools[tool_name]
    prefixed = [spec for name, spec in tools.items() if name.endswith(f"_{tool_name}")]
    return prefixed[0] if len(prefixed) == 1 else None


def _schema_positional_names(spec: ToolSpec | None) -> list[str]:
    """Required parameters first, then the optional ones, each in the order the schema lists its properties."""
    if spec is None:
        return []
    properties = list(dict(spec.input_schema.get("properties") or {}))
    required = set(spec.input_schema.get("required") or [])
    return [name for name in properties if name in required] + [name for name in properties if name not in required]


def _schema_problems(action: str, mapping: ActionMapping, spec: ToolSpec) -> list[str]:
    properties: Mapping[str, Any] = spec.input_schema.get("properties") or {}
    open_schema = not properties or spec.input_schema.get("additionalProperties") not in (None, False)
    problems = []
    for argument_name, argument in mapping.mcp_arguments.items():
        if argument_name not in properties:
            if not open_schema:
                known = ", ".join(sorted(properties))
                problems.append(f"action {action!r}: tool {spec.name!r} has no argument {argument_name!r} ({known})")
            continue
        allowed = properties[argument_name].get("enum") if isinstance(properties[argument_name], Mapping) else None
        if allowed and argument.has_static and argument.static not in allowed:
            hint = (
                " (HUD renamed the computer action 'type' to 'write' in hud 0.4.28)"
                if argument.static == "type"
                else ""
            )
            problems.append(
                f"action {action!r}: {argument_name}={argument.static!r} is not one of {allowed} for tool "
                f"{spec.name!r}{hint}"
            )
    return problems
