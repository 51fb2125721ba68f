"""The pieces of a generated config and how it is written: readable YAML with a header comment.

`hud-vf-gym init` builds each action as a `GeneratedAction` (its mapping, plus how the prompt shows it), gathers
them in a `GeneratedConfig`, and writes that with `dump_config_yaml`: the sections in a fixed order, block style for
sections, one-line flow style for argument specs (`FlowMapping`, `FlowList`), and `|` blocks for multi-line strings
such as the system prompt.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = ["FlowList", "FlowMapping", "GeneratedAction", "GeneratedConfig", "dump_config_yaml"]


@dataclass(frozen=True, slots=True)
class GeneratedConfig:
    """A generated config: the mapping to write, and notes for the header comment."""

    data: dict[str, Any]
    actions: tuple[str, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class GeneratedAction:
    """One generated action: its mapping (empty for a pass-through tool) and how the prompt presents it."""

    name: str
    mapping: dict[str, Any]
    signature: str  # `click(x: integer, y: integer, button?: string)`
    description: str
    example: str  # one call, as the agent writes it inside <tool>
    details: tuple[str, ...] = ()  # one prompt line per parameter worth explaining


class FlowMapping(dict[str, Any]):
    """A mapping written on one line (`{from_arg: x, transform: int}`)."""


class FlowList(list[Any]):
    """A list written on one line (`[x, y]`)."""


class _ConfigDumper(yaml.SafeDumper):
    """Block style for sections, flow style for argument specs, `|` blocks for multi-line strings."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    if style is None and "'" in value and '"' not in value:
        style = '"'  # lambda transforms read as written, not with every ' doubled
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_flow_mapping(dumper: yaml.SafeDumper, value: FlowMapping) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=True)


def _represent_flow_list(dumper: yaml.SafeDumper, value: FlowList) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True)


_ConfigDumper.add_representer(str, _represent_str)
_ConfigDumper.add_representer(FlowMapping, _represent_flow_mapping)
_ConfigDumper.add_representer(FlowList, _represent_flow_list)


def dump_config_yaml(generated: GeneratedConfig, header: Sequence[str]) -> str:
    """The config as YAML: the header lines as comments, then the sections in a readable order."""
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header)
    notes = "".join(f"# Note: {note}\n" for note in generated.notes)
    sections = []
    for key, value in generated.data.items():
        text = yaml.dump({key: value}, Dumper=_ConfigDumper, sort_keys=False, allow_unicode=True, width=120)
        if key == "action_mappings":  # a blank line between actions, as the hand-written configs have
            text = re.sub(r"\n(?=  [^ ])", "\n\n", text).replace(":\n\n", ":\n", 1)
        sections.append(text)
    return comment + notes + "\n" + "\n".join(sections)
