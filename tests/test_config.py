"""Tests for the environment YAML schema, built-in config names and config error messages (config.py)."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from hud_vf_gym.config import (
    EnvConfig,
    RubricWeights,
    builtin_config_names,
    load_config,
    parse_config,
    resolve_config_path,
)
from hud_vf_gym.errors import ConfigError
from tests.support import CONFIGS, PUBLISHED_CONFIGS

MINIMAL_CONFIG: dict[str, Any] = {
    "system_prompt": "Play 2048.",
    "action_mappings": {"left": {"_tool": "move", "direction": "left"}},
}


def _raw(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((CONFIGS / f"{name}.yaml").read_text(encoding="utf-8")))


def _write(tmp_path: Path, raw: Any) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def _full(message: str) -> str:
    """A pattern matching exactly `message`, for `pytest.raises(match=...)`."""
    return f"^{re.escape(message)}$"


# --- the two configs HUD published load unchanged -------------------------------------------------------------


def test_load_config_published_2048_loads_unchanged() -> None:
    config = load_config(PUBLISHED_CONFIGS / "2048.yaml")

    assert config.job.name == "2048 Run"
    assert config.job.dataset_link == "hud-evals/2048-taskset"
    assert config.max_turns == 100
    assert config.parser.use_thinking is False
    assert set(config.action_mappings) == {"left", "right", "up", "down"}
    assert config.action_mappings["left"].tool == "move"
    assert config.action_mappings["left"].mcp_arguments["direction"].static == "left"
    assert config.rubric.weights == RubricWeights(task_completion=0.8, tool_execution=0.05, format_compliance=0.15)


def test_load_config_published_default_loads_unchanged() -> None:
    config = load_config(PUBLISHED_CONFIGS / "default.yaml")

    assert config.max_turns == 30
    assert config.parser.use_thinking is True
    assert (config.parser.xml_weight, config.parser.action_weight) == (0.6, 0.4)
    assert set(config.action_mappings) == {"screenshot", "click", "type", "key", "scroll", "wait"}
    assert {mapping.tool for mapping in config.action_mappings.values()} == {"computer"}
    assert config.action_mappings["click"].parser.positional == ["x", "y"]
    scroll_y = config.action_mappings["scroll"].mcp_arguments["scroll_y"]
    assert scroll_y.use_context is True
    assert scroll_y.compiled_transform is not None and scroll_y.compiled_transform.wants_context
    wait_time = config.action_mappings["wait"].mcp_arguments["time"]
    assert wait_time.default == 1000 and wait_time.compiled_transform is not None
    assert config.rubric.weights == RubricWeights(task_completion=0.8, tool_execution=0.1, format_compliance=0.1)


@pytest.mark.parametrize("name", ["2048", "default"], ids=["2048", "default"])
def test_load_config_published_file_is_read_not_rewritten(name: str) -> None:
    path = PUBLISHED_CONFIGS / f"{name}.yaml"
    before = path.read_bytes()

    load_config(path)

    assert path.read_bytes() == before


# --- built-in configs by short name ---------------------------------------------------------------------------


def test_builtin_config_names_lists_shipped_configs() -> None:
    assert {"2048", "default"} <= set(builtin_config_names())


@pytest.mark.parametrize(
    ("name", "expected_file"),
    [("2048", "2048.yaml"), ("default", "default.yaml"), ("2048.yaml", "2048.yaml"), ("default.yml", "default.yaml")],
    ids=["2048", "default", "2048-with-suffix", "default-with-yml-suffix"],
)
def test_resolve_config_path_short_name_finds_builtin(name: str, expected_file: str) -> None:
    assert resolve_config_path(name).name == expected_file


def test_resolve_config_path_existing_file_is_used_as_is(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL_CONFIG)

    assert resolve_config_path(path) == path
    assert resolve_config_path(str(path)) == path


@pytest.mark.parametrize(
    ("name", "hint"),
    [("2049", " (did you mean '2048'?)"), ("defualt", " (did you mean 'default'?)"), ("no-such-config", "")],
    ids=["close-to-2048", "close-to-default", "nothing-close"],
)
def test_resolve_config_path_unknown_name_lists_builtins(name: str, hint: str) -> None:
    names = ", ".join(builtin_config_names())
    expected = f"config {name!r} is neither a YAML file nor a built-in config; built-in configs: {names}{hint}"

    with pytest.raises(ConfigError, match=_full(expected)):
        resolve_config_path(name)


@pytest.mark.parametrize("name", ["2048", "default"], ids=["2048", "default"])
def test_load_config_builtin_matches_its_file(name: str) -> None:
    assert load_config(name).model_dump() == load_config(CONFIGS / f"{name}.yaml").model_dump()


def test_load_config_overrides_replace_top_level_sections() -> None:
    config = load_config("2048", system_prompt="Only move left.", max_turns=5)

    assert config.system_prompt == "Only move left."
    assert config.max_turns == 5


# --- defaults ----------------------------------------------------------------------------------------------


def test_parse_config_minimal_config_gets_documented_defaults() -> None:
    config = parse_config(MINIMAL_CONFIG)

    assert config.max_turns == 30
    assert config.parser.use_thinking is True
    assert (config.parser.xml_weight, config.parser.action_weight) == (0.6, 0.4)
    weights = config.rubric.weights
    assert (
        weights.task_completion,
        weights.tool_execution,
        weights.format_compliance,
        weights.screenshot_behavior,
        weights.thinking_quality,
    ) == (0.8, 0.1, 0.1, 0.0, 0.0)
    assert config.passthrough_tools == []
    assert (config.timeouts.connect_s, config.timeouts.tool_call_s, config.timeouts.rollout_s) == (30.0, 60.0, 1800.0)
    assert config.tool_error_pattern == r"^\s*ERROR:"


def test_parse_config_bare_value_is_static_shorthand() -> None:
    raw = copy.deepcopy(MINIMAL_CONFIG)
    raw["action_mappings"]["left"]["flags"] = ["a", "b"]
    raw["action_mappings"]["left"]["nothing"] = {"static": None}

    arguments = parse_config(raw).action_mappings["left"].mcp_arguments

    assert arguments["direction"].has_static and arguments["direction"].static == "left"
    assert arguments["flags"].static == ["a", "b"]
    assert arguments["nothing"].has_static and arguments["nothing"].static is None


def test_parse_config_done_may_map_to_a_tool() -> None:
    raw = copy.deepcopy(MINIMAL_CONFIG)
    raw["action_mappings"]["done"] = {
        "_tool": "submit",
        "_parser": {"positional": ["answer"]},
        "answer": {"from_arg": "answer"},
    }

    assert parse_config(raw).action_mappings["done"].tool == "submit"


def test_parse_config_result_is_frozen() -> None:
    config = parse_config(MINIMAL_CONFIG)

    with pytest.raises(ValueError, match="frozen"):
        config.system_prompt = "changed"  # type: ignore[misc]
    assert isinstance(config, EnvConfig)


# --- one clear error per bad config -------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Return an edit that sets the dotted key `path` of a raw config to `value`."""

    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return edit


def _delete(key: str) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        del raw[key]

    return edit


TRANSFORM_NAMES = "bool, float, int, list, lower, seconds_to_ms, split_comma, split_plus, str, strip, upper"
TOP_LEVEL_KEYS = (
    "action_mappings, defaults, images, job, logging, parser, passthrough_tools, rubric, sessions, system_prompt, "
    "timeouts, tool_error_pattern"
)
BAD_CONFIGS = [
    pytest.param(
        _set("parsr", {"use_thinking": True}),
        f"parsr: unknown key; expected one of {TOP_LEVEL_KEYS} (did you mean 'parser'?)",
        id="unknown-top-level-key",
    ),
    pytest.param(
        _set("rubric.weights.task_complete", 0.5),
        "rubric.weights.task_complete: unknown key; expected one of format_compliance, screenshot_behavior, "
        "task_completion, thinking_quality, tool_execution (did you mean 'task_completion'?)",
        id="unknown-nested-key",
    ),
    pytest.param(
        _set("action_mappings.left._tol", "move"),
        "action_mappings.left._tol: unknown key; expected one of _description, _parser, _tool, mcp_arguments "
        "(did you mean '_tool'?)",
        id="unknown-action-option",
    ),
    pytest.param(
        _set("defaults.max_turns", "lots"),
        "defaults.max_turns: Input should be a valid integer, unable to parse string as an integer [input: 'lots']",
        id="wrong-type",
    ),
    pytest.param(
        _set("defaults.max_turns", 0),
        "defaults.max_turns: Input should be greater than 0 [input: 0]",
        id="out-of-range",
    ),
    pytest.param(
        _set("action_mappings.left._tool", 5),
        "action_mappings.left._tool: Input should be a valid string [input: 5]",
        id="wrong-type-tool",
    ),
    pytest.param(
        _delete("system_prompt"),
        "system_prompt: required key is missing (what the model is told about its actions and the format)",
        id="missing-system-prompt",
    ),
    pytest.param(
        _set("system_prompt", ""),
        "system_prompt: String should have at least 1 character [input: '']",
        id="empty-system-prompt",
    ),
    pytest.param(
        _set("action_mappings.move.direction.transform", "splitplus"),
        f"action_mappings.move.direction.transform: unknown transform 'splitplus'; expected one of {TRANSFORM_NAMES}, "
        "or a 'lambda x: ...' string (did you mean 'split_plus'?)",
        id="unknown-transform",
    ),
    pytest.param(
        _set("action_mappings.move.direction.transform", "lambda x: x.__class__"),
        "action_mappings.move.direction.transform: transform 'lambda x: x.__class__' is not allowed: "
        "attribute '__class__' starts with '_'",
        id="forbidden-lambda",
    ),
    pytest.param(
        _set("action_mappings.move.direction.transform", 5),
        "action_mappings.move.direction.transform: Input should be a valid string or a valid list [input: 5]",
        id="transform-wrong-type",
    ),
    pytest.param(
        _set("action_mappings.move.direction.use_context", True),
        "action_mappings.move.direction: use_context is true, so the transform must take two parameters: "
        "'lambda x, ctx: ...'",
        id="use-context-with-one-parameter",
    ),
    pytest.param(
        _set("action_mappings.left.direction", {"static": "left", "from_arg": "d"}),
        "action_mappings.left.direction: set exactly one of static, from_arg, from_args (found: static, from_arg)",
        id="two-argument-sources",
    ),
    pytest.param(
        _set("action_mappings.left.direction", {"from_args": ["a", "b"], "defaults": [1]}),
        "action_mappings.left.direction: defaults must be a list with one entry per name in from_args",
        id="defaults-length",
    ),
    pytest.param(
        _set("rubric.weights.screenshot_behavior", 0.1),
        "rubric.weights.screenshot_behavior: is 0.1 but action_mappings has no 'screenshot' action; add one or set "
        "the weight to 0",
        id="screenshot-weight-without-screenshot-action",
    ),
    pytest.param(
        _set("action_mappings.left._tool", "setup"),
        "action_mappings.left._tool: 'setup' is a lifecycle tool the agent may not call",
        id="lifecycle-tool-setup",
    ),
    pytest.param(
        _set("action_mappings.evaluate", {"direction": "up"}),
        "action_mappings.evaluate._tool: 'evaluate' is a lifecycle tool the agent may not call",
        id="lifecycle-tool-by-action-name",
    ),
    pytest.param(
        _set("action_mappings.move-left", {"_tool": "move", "direction": "left"}),
        "action_mappings.move-left: action names must be identifiers like click or move_left",
        id="action-name-not-identifier",
    ),
    pytest.param(
        _set("passthrough_tools", ["evaluate"]),
        "passthrough_tools: 'evaluate' only runs as the task's setup/evaluate; remove it from this list",
        id="passthrough-lifecycle-tool",
    ),
    pytest.param(
        _set("passthrough_tools", "all"),
        "passthrough_tools: Input should be a valid list or '*' [input: 'all']",
        id="passthrough-wrong-type",
    ),
    pytest.param(
        _set("tool_error_pattern", "(["),
        "tool_error_pattern: not a valid regular expression: unterminated character set at position 1",
        id="invalid-regex",
    ),
    pytest.param(
        _set("action_mappings", {}),
        "action_mappings: no actions are mapped; add at least one, e.g. 'left: {_tool: move, direction: left}' "
        "(done() needs no mapping)",
        id="empty-action-mappings",
    ),
    pytest.param(
        _set("parser", {"xml_weight": 0, "action_weight": 0}),
        "parser: xml_weight and action_weight are both 0; give at least one a positive weight",
        id="format-weights-both-zero",
    ),
]


@pytest.mark.parametrize(("edit", "problem"), BAD_CONFIGS)
def test_load_config_bad_config_names_file_key_and_fix(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], problem: str
) -> None:
    raw = _raw("2048")
    edit(raw)
    path = _write(tmp_path, raw)

    with pytest.raises(ConfigError, match=_full(f"{path}: 1 problem\n  {problem}")):
        load_config(path)


def test_load_config_several_problems_are_all_reported(tmp_path: Path) -> None:
    raw = _raw("2048")
    raw["parsr"] = {}
    raw["defaults"]["max_turns"] = "lots"
    raw["passthrough_tools"] = [1, "ok", 2]
    path = _write(tmp_path, raw)
    expected = (
        f"{path}: 4 problems\n"
        "  defaults.max_turns: Input should be a valid integer, unable to parse string as an integer [input: 'lots']\n"
        "  passthrough_tools.0: Input should be a valid string [input: 1]\n"
        "  passthrough_tools.2: Input should be a valid string [input: 2]\n"
        f"  parsr: unknown key; expected one of {TOP_LEVEL_KEYS} (did you mean 'parser'?)"
    )

    with pytest.raises(ConfigError, match=_full(expected)):
        load_config(path)


def test_load_config_whole_config_checks_report_one_line_each(tmp_path: Path) -> None:
    raw = _raw("2048")
    raw["action_mappings"]["left"]["_tool"] = "setup"
    raw["rubric"]["weights"]["screenshot_behavior"] = 0.5
    path = _write(tmp_path, raw)
    expected = (
        f"{path}: 2 problems\n"
        "  action_mappings.left._tool: 'setup' is a lifecycle tool the agent may not call\n"
        "  rubric.weights.screenshot_behavior: is 0.5 but action_mappings has no 'screenshot' action; add one or "
        "set the weight to 0"
    )

    with pytest.raises(ConfigError, match=_full(expected)):
        load_config(path)


def test_load_config_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("system_prompt: [unclosed\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=f"^{re.escape(f'{path}: not valid YAML: ')}"):
        load_config(path)


def test_load_config_not_a_mapping_says_what_is_expected(tmp_path: Path) -> None:
    path = _write(tmp_path, ["system_prompt", "action_mappings"])
    expected = f"{path}: expected a mapping of sections (system_prompt, action_mappings, ...), found list"

    with pytest.raises(ConfigError, match=_full(expected)):
        load_config(path)


def test_parse_config_source_names_the_config_in_errors() -> None:
    expected = "<kwargs>: 1 problem\n  action_mappings: required key is missing (agent action name -> MCP call)"

    with pytest.raises(ConfigError, match=_full(expected)):
        parse_config({"system_prompt": "x"}, source="<kwargs>")


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_config({})


# --- loading is total: any file gives a ConfigError (issue 15) -------------------------------------------------


def _deep_unary(operand: str) -> str:
    return "lambda x: " + "-" * 1900 + operand


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"\xff\xfesystem_prompt: x\n", "not UTF-8 text (byte 0xff at offset 0); save it as UTF-8"),
        (
            ("a: " + "[" * 20_000 + "]" * 20_000 + "\n").encode(),
            "nested too deeply to read; a config nests a few levels, not thousands",
        ),
        (
            b"system_prompt: 2001-13-45\n",
            "a value cannot be read as YAML: month must be in 1..12; quote it to keep it a string",
        ),
    ],
    ids=["not-utf8", "yaml-20000-deep", "impossible-date"],
)
def test_load_config_unreadable_file_is_a_config_error(tmp_path: Path, content: bytes, problem: str) -> None:
    # before: UnicodeDecodeError, RecursionError and ValueError escaped load_config
    path = tmp_path / "odd.yaml"
    path.write_bytes(content)

    with pytest.raises(ConfigError, match=_full(f"{path}: {problem}")):
        load_config(path)


@pytest.mark.parametrize("operand", ["1", "x"], ids=["on-a-constant", "on-the-parameter"])
def test_load_config_deeply_nested_lambda_is_refused_at_load(tmp_path: Path, operand: str) -> None:
    # before: on a constant the load raised RecursionError; on the parameter it loaded and raised on every call
    raw = _raw("2048")
    raw["action_mappings"]["left"]["direction"] = {"static": "left", "transform": _deep_unary(operand)}
    path = _write(tmp_path, raw)
    shown = _deep_unary(operand)[:100]
    expected = f"transform {shown!r}... is nested 1902 levels deep; the limit is 64"

    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(path)
