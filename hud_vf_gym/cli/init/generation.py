"""Writing an environment config from a server's tool list: the pure half of `hud-vf-gym init`.

`generate_config(tools, ...)` turns the tools an MCP server lists into a config that `load_config` accepts and
`HUDGym` runs unchanged:

- every tool except the lifecycle tools (`setup`, `evaluate`, `<server>_setup`, ...) becomes one action. Required
  parameters are positional, in the order the schema lists them; optional ones are keyword-only
  (`optional: true`, so an omitted one is left out and the server applies its own default). A parameter whose name
  is not a Python identifier gets an identifier the agent can write, mapped back to the real name;
- a tool whose schema publishes no `properties` is listed in `passthrough_tools`, so the agent passes its
  arguments by name and nothing is invented (HUD's generator wrote a literal `"# TODO"` key that was then sent to
  the server as an argument);
- HUD's `computer` tool (an `action` enum with `click` and `screenshot`, plus `x` and `y`) becomes the friendly
  action set of `configs/default.yaml` (see `computer_actions.py`);
- the system prompt shows each action's typed signature, its enums and one example call, then `done()`.

`config_yaml.dump_config_yaml` writes the result with a readable key order and a header comment.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.cli.init.computer_actions import (
    ScreenSize,
    computer_actions,
    enum_values,
    is_computer_tool,
    is_vendor_computer,
    screen_size,
)
from hud_vf_gym.cli.init.yaml_writer import FlowList, FlowMapping, GeneratedAction, GeneratedConfig
from hud_vf_gym.config import LIFECYCLE_TOOLS
from hud_vf_gym.types import ToolSpec

__all__ = ["generate_config", "lifecycle_tool_names"]

DESCRIPTION_LIMIT = 240  # characters of a tool's or parameter's description kept in the prompt
DEFAULT_MAX_TURNS = 30
# HUD's `hud rl init` weights; the computer-use weights are configs/default.yaml's
TEXT_RUBRIC_WEIGHTS = {"task_completion": 0.8, "tool_execution": 0.1, "format_compliance": 0.1}
COMPUTER_RUBRIC_WEIGHTS = {
    "task_completion": 0.75,
    "tool_execution": 0.05,
    "format_compliance": 0.1,
    "screenshot_behavior": 0.05,
    "thinking_quality": 0.05,
}
DONE_ACTION = "done"
_DONE_DESCRIPTION = "finish when the task is complete"
_NOT_IDENTIFIER = re.compile(r"\W")


@dataclass(frozen=True, slots=True)
class _Parameter:
    """One parameter of a tool's input schema, as the prompt and the mapping need it."""

    name: str  # the MCP argument name
    agent_name: str  # the identifier the agent writes (usually the same)
    type_label: str
    required: bool
    enum: tuple[Any, ...] = ()
    default: Any = None
    has_default: bool = False
    description: str = ""


# ---------------------------------------------------------------------------------------------------------------------
# Reading schemas


def lifecycle_tool_names(server_names: Sequence[str]) -> frozenset[str]:
    """The agent-visible names of the lifecycle tools: `setup`, `evaluate`, and `<server>_...` with several servers."""
    prefixed = {f"{server}_{tool}" for server in server_names for tool in LIFECYCLE_TOOLS}
    return LIFECYCLE_TOOLS | (prefixed if len(server_names) > 1 else set())


def _clip(text: str | None) -> str:
    """The first paragraph of a description, on one line, cut to `DESCRIPTION_LIMIT` characters."""
    paragraph = (text or "").strip().split("\n\n")[0]
    line = " ".join(paragraph.split())
    return line if len(line) <= DESCRIPTION_LIMIT else line[: DESCRIPTION_LIMIT - 3].rstrip() + "..."


def _identifier(name: str) -> str:
    """A Python identifier for a tool or parameter name (`repo-path` -> `repo_path`, `2d` -> `_2d`)."""
    text = _NOT_IDENTIFIER.sub("_", name) or "_"
    if text[0].isdigit():
        text = "_" + text
    return text + "_" if keyword.iskeyword(text) else text


def _type_label(schema: Any) -> str:
    """A short type name for a JSON-schema property: `string`, `integer`, `list of string`, `string or integer`."""
    if not isinstance(schema, Mapping):
        return "any"
    if "enum" in schema and "type" not in schema:
        kinds = sorted({type(value).__name__ for value in schema["enum"]})
        return " or ".join({"str": "string", "int": "integer", "float": "number"}.get(kind, kind) for kind in kinds)
    members = schema.get("anyOf") or schema.get("oneOf")
    if isinstance(members, list):
        labels = [_type_label(member) for member in members if _type_label(member) != "null"]
        return " or ".join(dict.fromkeys(labels)) or "any"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_type_label({**schema, "type": item}) for item in kind if item != "null") or "any"
    if kind == "array":
        items = schema.get("items")
        return f"list of {_type_label(items)}" if isinstance(items, Mapping) and items else "list"
    if isinstance(kind, str):
        return kind
    return "object" if "$ref" in schema or "properties" in schema else "any"


def _parameters(spec: ToolSpec) -> list[_Parameter] | None:
    """The tool's parameters in schema order (required ones first keep their order); None without `properties`."""
    properties = spec.input_schema.get("properties")
    if not isinstance(properties, Mapping):
        return None
    required_names = [str(name) for name in spec.input_schema.get("required") or []]
    names = [str(name) for name in properties] + [name for name in required_names if name not in properties]
    taken: set[str] = set()
    parameters = []
    for name in names:
        schema = properties.get(name, {})
        agent_name = _unique(_identifier(name), taken)
        has_default = isinstance(schema, Mapping) and "default" in schema
        parameters.append(
            _Parameter(
                name=name,
                agent_name=agent_name,
                type_label=_type_label(schema),
                required=name in required_names,
                enum=enum_values(schema),
                default=schema.get("default") if has_default else None,
                has_default=has_default,
                description=_clip(schema.get("description") if isinstance(schema, Mapping) else None),
            )
        )
    return [p for p in parameters if p.required] + [p for p in parameters if not p.required]


def _unique(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`, ... when it is taken; the result is added to `taken`."""
    candidate, number = name, 2
    while candidate in taken:
        candidate, number = f"{name}_{number}", number + 1
    taken.add(candidate)
    return candidate


def _python_literal(value: Any) -> str:
    """A JSON value written as the agent writes it (Python literal syntax: True, None, 'text')."""
    return repr(value) if not isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------------------------------
# One action per ordinary tool


def _example_value(parameter: _Parameter) -> str:
    """A value for the example call: an enum's first value, the default, or a typed placeholder."""
    if parameter.enum:
        return _python_literal(parameter.enum[0])
    if parameter.has_default and parameter.default is not None:
        return _python_literal(parameter.default)
    placeholders = {"integer": "1", "number": "1.0", "boolean": "True", "object": "{}"}
    if parameter.type_label in placeholders:
        return placeholders[parameter.type_label]
    if parameter.type_label.startswith("list"):
        return f'["<{parameter.agent_name}>"]'
    return f'"<{parameter.agent_name}>"'


def _signature_part(parameter: _Parameter) -> str:
    if parameter.required:
        return f"{parameter.agent_name}: {parameter.type_label}"
    if parameter.has_default:
        return f"{parameter.agent_name}: {parameter.type_label} = {_python_literal(parameter.default)}"
    return f"{parameter.agent_name}?: {parameter.type_label}"


def _detail_line(parameter: _Parameter) -> str | None:
    """The prompt line explaining a parameter, when there is more to say than its type."""
    facts = []
    if parameter.enum:
        facts.append("one of " + ", ".join(_python_literal(value) for value in parameter.enum))
    if parameter.agent_name != parameter.name:
        facts.append(f"sent as {parameter.name!r}")
    if parameter.description:
        facts.append(parameter.description)
    return f"{parameter.agent_name}: {'; '.join(facts)}" if facts else None


def _tool_action(action_name: str, spec: ToolSpec, parameters: list[_Parameter]) -> GeneratedAction:
    """The action for a tool with a published schema."""
    required = [p for p in parameters if p.required]
    mapping: dict[str, Any] = {"_tool": spec.name}
    description = _clip(spec.description)
    if description:
        mapping["_description"] = description
    mapping["_parser"] = FlowMapping({"positional": FlowList(p.agent_name for p in required)})
    for parameter in parameters:
        argument: dict[str, Any] = {"from_arg": parameter.agent_name}
        if not parameter.required:
            argument["optional"] = True  # left out when omitted: the server applies its own default
        mapping[parameter.name] = FlowMapping(argument)
    details = tuple(line for line in map(_detail_line, parameters) if line)
    example = f"{action_name}({', '.join(_example_value(p) for p in required)})"
    signature = f"{action_name}({', '.join(_signature_part(p) for p in parameters)})"
    return GeneratedAction(action_name, mapping, signature, description, example, details)


def _passthrough_action(action_name: str, spec: ToolSpec, parameters: list[_Parameter] | None) -> GeneratedAction:
    """The prompt entry for a tool the agent calls directly (`passthrough_tools`): no mapping is written."""
    if parameters is not None:  # known parameters: the call binds them in the order `_parameters` gives
        return dataclasses.replace(_tool_action(action_name, spec, parameters), mapping={})
    description = _clip(spec.description)
    details = ('its parameters are not published; pass any by name, e.g. name="value"',)
    return GeneratedAction(action_name, {}, f"{action_name}(...)", description, f"{action_name}()", details)


# ---------------------------------------------------------------------------------------------------------------------
# The whole config


def generate_config(
    tools: Mapping[str, ToolSpec],
    *,
    environment: str,
    lifecycle_tools: Iterable[str] = LIFECYCLE_TOOLS,
    max_turns: int = DEFAULT_MAX_TURNS,
    metadata: Mapping[str, Any] | None = None,
) -> GeneratedConfig:
    """Build a config for a server's tools (by agent-visible name).

    Args:
        tools: the server's tools, as `MCPSession.tools` names them (`<server>_<tool>` with several servers).
        environment: a short name for the environment, used in `job` and the prompt.
        lifecycle_tools: tool names the task runs itself; they are left out (see `lifecycle_tool_names`).
        max_turns: `defaults.max_turns` of the config.
        metadata: extra `job.metadata` entries (the image, the generator).

    Returns:
        The config mapping (validated by the caller with `parse_config`), its action names and header notes.
    """
    skipped = frozenset(lifecycle_tools)
    usable = {name: spec for name, spec in tools.items() if name not in skipped}
    computer = next((spec for spec in usable.values() if is_computer_tool(spec)), None)
    taken: set[str] = {DONE_ACTION}
    actions: list[GeneratedAction] = []
    passthrough: list[str] = []
    notes: list[str] = []
    screen = screen_size(computer) if computer is not None else None
    if computer is not None and screen is not None:  # screen is set exactly when computer is
        friendly, computer_notes = computer_actions(computer, screen)
        actions += friendly
        taken.update(action.name for action in friendly)
        notes += computer_notes
        if not screen.reported:
            notes.append(
                f"{computer.name}: no meta.resolution, so HUD's default {screen.width}x{screen.height} is used"
            )
    for name, spec in usable.items():
        if spec is computer:
            continue
        if _is_other_computer(name, computer):
            notes.append(f"{name} is left out: the computer actions above drive the same screen")
            continue
        action_name = _unique(_identifier(name), taken)
        parameters = _parameters(spec)
        # a mapping cannot name an MCP argument starting with "_" (those keys configure the action itself)
        hidden = [p.name for p in parameters or [] if p.name.startswith("_")]
        if (parameters is None or hidden) and action_name == name:
            passthrough.append(name)
            actions.append(_passthrough_action(action_name, spec, parameters))
            continue
        if hidden:
            notes.append(f"{name}: its arguments {', '.join(hidden)} cannot be mapped (names starting with '_')")
        usable_parameters = [p for p in parameters or [] if not p.name.startswith("_")]
        actions.append(_tool_action(action_name, spec, usable_parameters))
    left_out = sorted(set(tools) & skipped)
    if left_out:
        notes.insert(0, f"left out {', '.join(left_out)}: the task's setup and evaluation run them, not the agent")
    data = _config_data(environment, actions, passthrough, screen, max_turns, metadata or {})
    return GeneratedConfig(data, tuple(action.name for action in actions) + (DONE_ACTION,), tuple(notes))


def _is_other_computer(name: str, computer: ToolSpec | None) -> bool:
    """hud-browser also serves `anthropic_computer` and `openai_computer`; with HUD's computer they are redundant."""
    return computer is not None and is_vendor_computer(name)


def _config_data(
    environment: str,
    actions: list[GeneratedAction],
    passthrough: list[str],
    screen: ScreenSize | None,
    max_turns: int,
    metadata: Mapping[str, Any],
) -> dict[str, Any]:
    mappings: dict[str, Any] = {action.name: action.mapping for action in actions if action.mapping}
    mappings[DONE_ACTION] = FlowMapping({"_tool": None})  # done() ends the episode and calls no tool
    data: dict[str, Any] = {
        "job": {"name": environment, "metadata": {"environment": environment, **metadata}},
        "system_prompt": _system_prompt(environment, actions, screen),
        "defaults": {"max_turns": max_turns},
        "parser": {"use_thinking": True, "xml_weight": 0.6, "action_weight": 0.4},
        "action_mappings": mappings,
    }
    if passthrough:
        data["passthrough_tools"] = FlowList(passthrough)
    weights = COMPUTER_RUBRIC_WEIGHTS if screen is not None else TEXT_RUBRIC_WEIGHTS
    data["rubric"] = {"weights": dict(weights)}
    return data


def _system_prompt(environment: str, actions: list[GeneratedAction], screen: ScreenSize | None) -> str:
    if screen is not None:
        lines = [
            "You are an AI assistant that operates a computer to complete tasks.",
            "",
            f"Screen: {screen.width}x{screen.height} pixels; (0, 0) is the top-left corner, x grows to the right "
            "and y downwards.",
        ]
        first_step = ("I need to see the screen first.", "screenshot()")
    else:
        lines = [f"You are an AI agent working in the {environment} environment through the actions below."]
        first_step = ("I should start with the first step of the task.", actions[0].example if actions else "done()")
    lines += ["", "Available actions:"]
    for action in actions:
        summary = f"- {action.signature}" + (f": {action.description}" if action.description else "")
        lines.append(summary)
        lines += [f"    {detail}" for detail in action.details]
        lines.append(f"    Example: <tool>{action.example}</tool>")
    lines += [f"- done(): {_DONE_DESCRIPTION}", "    Example: <tool>done()</tool>", ""]
    lines += [
        "Write an action like a Python call: required arguments in the order shown, optional ones (marked ?",
        "or given a default) by name, strings in quotes. The action's result comes back as the next message.",
        "",
        "Each turn, think briefly inside <think></think>, then give exactly one action inside <tool></tool>:",
        f"<think>{first_step[0]}</think>",
        f"<tool>{first_step[1]}</tool>",
    ]
    if screen is not None:
        lines += ["", "Start with a screenshot, and check the result of each action before the next one."]
    return "\n".join(line.rstrip() for line in lines) + "\n"
