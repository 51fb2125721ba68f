"""The config's actions as native (function-calling) tools: a name, a description and a JSON schema each.

The classic adapter shows actions to the model as text (`click(x, y)`); a harness that speaks native tool calls
(verifiers v1) needs a JSON schema per action instead. The schema is derived from the action mapping, so a native
call goes through the same `ActionMapper` as a text one:

- the properties are the agent's arguments (`_parser.positional` first, then every other `from_arg`/`from_args`
  name), in that order;
- an argument passed to the MCP tool untransformed takes that MCP argument's own schema (type, enum, description);
  a transformed one accepts any JSON value (the transform decides), described by its MCP argument;
- an argument is required unless its mapping gives a `default` (or `defaults` item) or says `optional: true`;
- `done` ends the episode; pass-through tools keep the server's own schema.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.config import LIFECYCLE_TOOLS, ActionMapping, ArgumentSpec
from hud_vf_gym.core.actions import DONE_ACTION, ActionMapper
from hud_vf_gym.types import ToolSpec

__all__ = ["ActionTool", "action_tools"]

DONE_DESCRIPTION = "Finish the episode when the task is complete; the environment then grades it."


@dataclass(frozen=True, slots=True)
class ActionTool:
    """One action as a native tool."""

    name: str
    description: str
    input_schema: Mapping[str, Any] = field(default_factory=dict)


def action_tools(mapper: ActionMapper, server_tools: Mapping[str, ToolSpec]) -> list[ActionTool]:
    """Every action the agent may call, as a native tool, in `mapper.action_names` order.

    Args:
        mapper: the config's action mapper.
        server_tools: the session's tools by agent-visible name (for argument schemas and pass-through tools).
    """
    tools = [_mapped_tool(name, mapper.mappings.get(name), server_tools) for name in mapper.action_names]
    passthrough = mapper.passthrough_tools
    for name, spec in sorted(server_tools.items()):
        lifecycle = name in LIFECYCLE_TOOLS or name.rsplit("_", 1)[-1] in LIFECYCLE_TOOLS
        if name in mapper.mappings or lifecycle or not (passthrough == "*" or name in passthrough):
            continue
        tools.append(ActionTool(name, spec.description, copy.deepcopy(dict(spec.input_schema))))
    return tools


def _mapped_tool(name: str, mapping: ActionMapping | None, server_tools: Mapping[str, ToolSpec]) -> ActionTool:
    if mapping is None:  # only `done` is an action without a mapping
        return ActionTool(name, DONE_DESCRIPTION, {"type": "object", "properties": {}})
    tool = _find_tool(server_tools, mapping.tool or name)
    mcp_properties: Mapping[str, Any] = (tool.input_schema.get("properties") or {}) if tool else {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for argument in _agent_arguments(mapping):
        properties[argument], needed = _argument_schema(argument, mapping, mcp_properties)
        if needed:
            required.append(argument)
    description = mapping.description or (tool.description if tool else "") or f"Calls {mapping.tool or name}."
    if name == DONE_ACTION:
        description = f"{description} {DONE_DESCRIPTION}"
    input_schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        input_schema["required"] = required
    return ActionTool(name, description, input_schema)


def _agent_arguments(mapping: ActionMapping) -> list[str]:
    """The agent's argument names: positional ones first, then the others in mapping order."""
    names = list(mapping.parser.positional)
    for spec in mapping.mcp_arguments.values():
        for argument in [spec.from_arg] if spec.from_arg else spec.from_args or []:
            if argument not in names:
                names.append(argument)
    return names


def _argument_schema(
    argument: str, mapping: ActionMapping, mcp_properties: Mapping[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The JSON schema of one agent argument and whether it is required."""
    schema: dict[str, Any] = {}
    required = False
    for mcp_name, spec in mapping.mcp_arguments.items():
        reads = _reads(spec, argument)
        if reads is None:
            continue
        mcp_schema = mcp_properties.get(mcp_name) or {}
        if reads == "item":
            mcp_schema = mcp_schema.get("items") or {} if isinstance(mcp_schema, Mapping) else {}
        if spec.compiled_transform is None and isinstance(mcp_schema, Mapping):
            schema = {key: copy.deepcopy(value) for key, value in mcp_schema.items() if key != "default"}
        elif isinstance(mcp_schema, Mapping) and mcp_schema.get("description"):
            schema = {"description": mcp_schema["description"]}
        required = required or _required(spec, argument)
    return schema, required


def _reads(spec: ArgumentSpec, argument: str) -> str | None:
    """How `spec` reads the agent argument: "value" (from_arg), "item" (one of from_args) or None."""
    if spec.from_arg == argument:
        return "value"
    if spec.from_args and argument in spec.from_args:
        return "item"
    return None


def _required(spec: ArgumentSpec, argument: str) -> bool:
    if spec.from_args is not None:
        return spec.defaults is None
    return not (spec.has_default or spec.optional)


def _find_tool(tools: Mapping[str, ToolSpec], tool_name: str) -> ToolSpec | None:
    """The server's tool, by its own name or (with several servers) by its prefixed name."""
    if tool_name in tools:
        return tools[tool_name]
    return next((spec for name, spec in tools.items() if name.endswith(f"_{tool_name}")), None)
