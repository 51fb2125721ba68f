"""Tests for hud_vf_gym.tasks.task: reading HUD task rows in every form."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from typing import Any

import pytest

from hud_vf_gym.errors import TaskError
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.types import ToolCall
from tests.tasks.rows import (
    DROP,
    EVALUATE,
    EVALUATE_CALL,
    EXPECTED_TASK,
    MCP_CONFIG,
    MISSING_EVALUATE,
    MISSING_MCP_CONFIG,
    ROUND_TRIP_TASKS,
    SETUP,
    SETUP_CALL,
    make_hf_row,
    make_row,
)

# ---------------------------------------------------------------------------------------------------------------------
# Task.from_row


def test_task_from_row_reads_a_hub_row() -> None:
    assert Task.from_row(make_row()) == EXPECTED_TASK


def test_task_from_row_reads_json_string_columns() -> None:
    assert Task.from_row(make_hf_row()) == EXPECTED_TASK


def test_task_from_row_does_not_share_the_callers_dicts() -> None:
    row = copy.deepcopy(make_row())
    task = Task.from_row(row)
    row["mcp_config"]["local"]["args"].append("--oops")
    row["metadata"]["difficulty"] = 0
    assert task == EXPECTED_TASK


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"function": "board", "args": {"board_size": 4}}, ToolCall("board", {"board_size": 4})),
        (
            {"name": "setup", "arguments": {"function": "board", "args": {"board_size": 4}}},
            SETUP_CALL,
        ),
        ({"name": "setup", "arguments": {"function": "board"}}, ToolCall("setup", {"name": "board", "arguments": {}})),
        ({"name": "move", "arguments": '{"direction": "left"}'}, ToolCall("move", {"direction": "left"})),
        (
            {"name": "setup", "arguments": {"name": "board", "arguments": '{"board_size": 4}'}},
            ToolCall("setup", {"name": "board", "arguments": '{"board_size": 4}'}),
        ),
        (
            {"name": "setup", "arguments": {"function": "board", "args": '{"board_size": 4}'}},
            ToolCall("setup", {"name": "board", "arguments": '{"board_size": 4}'}),
        ),
        ({"setup": {"board": {"board_size": 4}}}, SETUP_CALL),
        ({"setup": {"name": "board", "arguments": {"board_size": 4}}}, SETUP_CALL),
        ({"setup": {"function": "board", "args": {"board_size": 4}}}, SETUP_CALL),
        ({"name": "setup", "arguments": None}, ToolCall("setup", {})),
        ({"name": "setup"}, ToolCall("setup", {})),
        ({"name": "setup", "arguments": "{}"}, ToolCall("setup", {})),
        ({"name": "setup", "arguments": {}, "id": "3f2a-uuid", "_meta": None}, ToolCall("setup", {})),
    ],
    ids=[
        "top-level-function-args",
        "hub-inner-function-args",
        "hub-inner-function-without-args",
        "top-level-arguments-json-string-parsed",
        "hub-inner-arguments-json-string-kept",
        "hub-inner-legacy-args-json-string-kept",
        "shorthand-0.4.74",
        "shorthand-with-name-arguments",
        "shorthand-with-function-args",
        "arguments-null",
        "arguments-missing",
        "arguments-empty-json-string",
        "hud-dump-id-and-meta-ignored",
    ],
)
def test_task_from_row_rewrites_legacy_calls(call: dict[str, Any], expected: ToolCall) -> None:
    task = Task.from_row(make_row(setup_tool=call, evaluate_tool=json.dumps(call)))
    assert task.setup_calls == (expected,)
    assert task.evaluate_calls == (expected,)


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        ({"name": "launch_app", "arguments": {"app_name": "2048"}}, ToolCall("launch_app", {"app_name": "2048"})),
        ({"name": "evaluate", "arguments": {"target": 3}}, ToolCall("evaluate", {"target": 3})),
        (
            {"name": "run", "arguments": {"function": "f", "args": [1], "timeout": 5}},
            ToolCall("run", {"function": "f", "args": [1], "timeout": 5}),
        ),
    ],
    ids=["browser-launch-app", "hud-blank-evaluate", "function-argument-of-a-plain-tool"],
)
def test_task_from_row_keeps_plain_calls(call: dict[str, Any], expected: ToolCall) -> None:
    assert Task.from_row(make_row(evaluate_tool=call)).evaluate_calls == (expected,)


def test_task_from_row_fixes_the_stdio_arguments_typo() -> None:
    entry = {"command": "docker", "arguments": ["run", "-i", "img"]}
    expected = {"command": "docker", "args": ["run", "-i", "img"]}
    assert Task.from_row(make_row(mcp_config={"local": entry})).mcp_config == {"local": expected}


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            {"command": "docker", "args": ["run", "-i", "img"], "arguments": ["x"]},
            "mcp_config.local.arguments: unknown key; expected one of args, command, cwd, env, transport "
            "(did you mean 'args'?)",
        ),
        (
            {"url": "http://localhost:8765/mcp", "arguments": ["x"]},
            "mcp_config.local.arguments: unknown key; expected one of headers, transport, url",
        ),
    ],
    ids=["stdio-with-args-and-arguments", "url-entry-with-arguments"],
)
def test_task_from_row_refuses_arguments_beside_args_or_url(entry: dict[str, Any], problem: str) -> None:
    # issue 15: kept untouched before, such an entry failed only when its rollout opened the session
    with pytest.raises(TaskError, match=f"^{re.escape(f'task (id {EXPECTED_TASK.id!r}): {problem}')}$"):
        Task.from_row(make_row(mcp_config={"local": entry}))


@pytest.mark.parametrize("absent", ["", "null", "{}", " {} ", {}, None, [], "[]", DROP], ids=repr)
def test_task_from_row_reads_absent_forms(absent: Any) -> None:
    task = Task.from_row(make_row(setup_tool=absent, metadata=absent, agent_config=absent))
    assert task.setup_calls == ()
    assert task.metadata == {}
    assert task.agent_config == {}


@pytest.mark.parametrize("absent", ["", "null", "{}", {}, None, [], DROP], ids=repr)
def test_task_from_row_requires_an_evaluate_call(absent: Any) -> None:
    with pytest.raises(TaskError, match=re.escape(f"row 3 (id '2048_target_128'): {MISSING_EVALUATE}")):
        Task.from_row(make_row(evaluate_tool=absent), index=3)


def test_task_from_row_reads_single_calls_and_lists() -> None:
    setup = [SETUP, {"name": "launch_app", "arguments": {"app_name": "2048"}}]
    task = Task.from_row(make_row(setup_tool=json.dumps(setup), evaluate_tool=[EVALUATE]))
    assert task.setup_calls == (SETUP_CALL, ToolCall("launch_app", {"app_name": "2048"}))
    assert task.evaluate_calls == (EVALUATE_CALL,)


def test_task_from_row_keeps_var_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUD_API_KEY", "secret-key")
    config = {
        "hud": {
            "url": "${HUD_MCP_URL}",
            "headers": {"Authorization": "Bearer ${HUD_API_KEY}", "Mcp-Image": "hudevals/hud-text-2048:0.1.3"},
        },
        "local": {"command": "docker", "args": ["run", "-e", "TOKEN=$TOKEN", "img"], "env": {"A": "$$literal"}},
    }
    task = Task.from_row(make_hf_row(mcp_config=config))
    assert task.mcp_config == config
    assert Task.from_row(task.to_row()).mcp_config == config
    assert Task.from_info(task.to_info()).mcp_config == config
    assert "secret-key" not in task.to_info()


@pytest.mark.parametrize(
    ("overrides", "index", "expected_id"),
    [
        ({"id": DROP}, 3, "task-0003"),
        ({"id": ""}, 12, "task-0012"),
        ({"id": None}, None, "task-0000"),
        ({"id": 7}, 0, "7"),
    ],
    ids=["missing", "empty", "null-without-index", "integer"],
)
def test_task_from_row_fills_the_id(overrides: dict[str, Any], index: int | None, expected_id: str) -> None:
    assert Task.from_row(make_row(**overrides), index=index).id == expected_id


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"system_prompt": "Be brief."}, "Be brief."),
        ({"agent_config": {"system_prompt": "Be brief.", "allowed_tools": ["move"]}}, "Be brief."),
        ({"agent_config": '{"system_prompt": "Be brief."}', "system_prompt": "Be brief."}, "Be brief."),
        ({"system_prompt": ""}, None),
        ({}, None),
    ],
    ids=["top-level-0.4.12", "agent-config-0.4.74", "both-equal", "empty", "absent"],
)
def test_task_from_row_reads_the_system_prompt(overrides: dict[str, Any], expected: str | None) -> None:
    assert Task.from_row(make_row(**overrides)).system_prompt == expected


def test_task_from_row_rejects_two_different_system_prompts() -> None:
    row = make_row(system_prompt="Be brief.", agent_config={"system_prompt": "Be verbose."})
    message = (
        "task (id '2048_target_128'): agent_config.system_prompt: differs from the top-level system_prompt; "
        "keep one of the two"
    )
    with pytest.raises(TaskError, match=re.escape(message)):
        Task.from_row(row)


def test_task_from_row_lists_every_problem_of_a_row() -> None:
    row = {"id": "x", "mcp_config": "{bad", "setup_tool": [SETUP, {"name": ""}, "move"], "evaluate_tools": EVALUATE}
    message = "\n    ".join(
        [
            "row 3 (id 'x'): 5 problems",
            "prompt: missing; expected the agent's instruction as a non-empty string",
            "mcp_config: not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2); "
            "found '{bad' (str); fix the JSON text",
            "setup_tool[1].name: expected the tool's name as a non-empty string, found '' (str)",
            'setup_tool[2]: expected a tool call {"name": ..., "arguments": {...}}, found \'move\' (str)',
            f"{MISSING_EVALUATE} (the row has 'evaluate_tools': did you mean 'evaluate_tool'?)",
        ]
    )
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        Task.from_row(row, index=3)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"prompt": "  "}, "prompt: expected the agent's instruction as a non-empty string, found '  ' (str)"),
        ({"mcp_config": "{}"}, MISSING_MCP_CONFIG),
        (
            {"mcp_config": ["local"]},
            "mcp_config: expected a mapping of server name to server entry, found ['local'] (list)",
        ),
        (
            {"mcp_config": {"local": "docker run img"}},
            "mcp_config.local: expected a server entry (a mapping with 'command' or 'url'), "
            "found 'docker run img' (str)",
        ),
        (
            {"mcp_config": {"local": {"cmd": "docker"}}},
            "mcp_config.local: has neither 'command' (a stdio server) nor 'url' (an HTTP or SSE server); "
            "found keys 'cmd'",
        ),
        (
            {"evaluate_tool": {"name": "evaluate", "argument": {"target": 2}}},
            "evaluate_tool: unknown key(s) 'argument'; a tool call has 'name' and 'arguments' "
            "(legacy: 'function' and 'args'), or is the shorthand {\"setup\": {\"function_name\": {...}}}",
        ),
        (
            {"evaluate_tool": {"name": "evaluate", "function": "evaluate"}},
            "evaluate_tool: has both 'name' and its legacy spelling 'function'; keep only 'name'",
        ),
        (
            {"evaluate_tool": {"name": "evaluate", "arguments": "[1, 2]"}},
            "evaluate_tool.arguments: expected a JSON object of tool arguments, found [1, 2] (list)",
        ),
        (
            {"evaluate_tool": {"name": "evaluate", "arguments": "{target"}},
            "evaluate_tool.arguments: not valid JSON (Expecting property name enclosed in double quotes at line 1 "
            "column 2); found '{target' (str); fix the JSON text",
        ),
        ({"metadata": "[1]"}, "metadata: expected a JSON object, found [1] (list)"),
        ({"system_prompt": 5}, "system_prompt: expected a string, found 5 (int)"),
        ({"id": ["a"]}, "id: expected a string, found ['a'] (list)"),
        ({"prompt": "x" * 100}, None),
        (
            {"prompt": ["y" * 100]},
            "prompt: expected the agent's instruction as a non-empty string, found ['" + "y" * 75 + "... (list)",
        ),
        # issue 15: entries are checked as written, so a row that cannot start fails at load, not mid-run
        (
            {"mcp_config": {"local": {"command": "docker", "args": "run --rm -i img"}}},
            "mcp_config.local.args: Input should be a valid list; expected a list of strings, e.g. "
            '["run", "--rm", "-i", "<image>"]',
        ),
        (
            {"mcp_config": {"local": {"command": "docker", "env": ["DEBUG=1"]}}},
            "mcp_config.local.env: Input should be a valid dictionary; expected a mapping of variable names to "
            'string values, e.g. {"DEBUG": "1"} (quote numbers)',
        ),
        (
            {"mcp_config": {"local": {"command": "docker", "env": {"DEBUG": 1}}}},
            "mcp_config.local.env.DEBUG: Input should be a valid string; expected a mapping of variable names to "
            'string values, e.g. {"DEBUG": "1"} (quote numbers)',
        ),
        (
            {"mcp_config": {"local": {"command": 7}}},
            "mcp_config.local.command: Input should be a valid string; expected the executable as one string, "
            "e.g. 'docker' (its arguments go in 'args')",
        ),
        (
            {"mcp_config": {"remote": {"url": "ftp://example.com/mcp"}}},
            "mcp_config.remote.url: expected an http:// or https:// URL (an MCP endpoint, e.g. "
            "https://mcp.hud.ai/v3/mcp), found the scheme 'ftp'",
        ),
        (
            {"mcp_config": {"local": {"command": "docker", "restart": "always"}}},
            "mcp_config.local.restart: unknown key; expected one of args, command, cwd, env, transport",
        ),
        ({"mcp_config": {"remote": {"url": "${HUB_URL}/mcp", "headers": {"X": "${TOKEN}"}}}}, None),
        (
            {"prompt": "Reach \ud800 128."},
            "prompt: contains '\\ud800' at character 6, a lone surrogate that UTF-8 cannot encode (Arrow datasets, "
            "JSON files and HTTP refuse it); fix the text where it was decoded (usually bytes read with "
            "errors='surrogateescape')",
        ),
        (
            {"metadata": {"notes": ["fine", "bad \udcff"]}},
            "metadata.notes[1]: contains '\\udcff' at character 4, a lone surrogate that UTF-8 cannot encode (Arrow "
            "datasets, JSON files and HTTP refuse it); fix the text where it was decoded (usually bytes read with "
            "errors='surrogateescape')",
        ),
        (
            {"setup_tools": SETUP},
            "setup_tools: unknown field (did you mean 'setup_tool'?); a task row has id, prompt, mcp_config, "
            "setup_tool, evaluate_tool, system_prompt, metadata, agent_config; put any other data under metadata",
        ),
        (
            {"system_promt": "Be brief."},
            "system_promt: unknown field (did you mean 'system_prompt'?); a task row has id, prompt, mcp_config, "
            "setup_tool, evaluate_tool, system_prompt, metadata, agent_config; put any other data under metadata",
        ),
    ],
    ids=[
        "blank-prompt",
        "empty-mcp-config",
        "mcp-config-not-a-mapping",
        "server-entry-not-a-mapping",
        "server-entry-without-command-or-url",
        "call-key-typo",
        "call-name-and-function",
        "arguments-json-not-an-object",
        "arguments-bad-json",
        "metadata-not-an-object",
        "system-prompt-not-a-string",
        "id-not-a-string",
        "long-prompt-is-fine",
        "long-bad-value-truncated",
        "entry-args-a-string",
        "entry-env-a-list",
        "entry-env-value-an-int",
        "entry-command-an-int",
        "entry-url-ftp",
        "entry-unknown-key",
        "entry-templates-are-fine",
        "lone-surrogate-in-prompt",
        "lone-surrogate-deep-in-metadata",
        "misspelt-setup-tool",
        "misspelt-system-prompt",
    ],
)
def test_task_from_row_rejects_bad_fields(overrides: dict[str, Any], problem: str | None) -> None:
    row = make_row(id="t1", **overrides) if "id" not in overrides else make_row(**overrides)
    if problem is None:
        Task.from_row(row)
        return
    label = f"row 0 (id {row['id']!r})"
    with pytest.raises(TaskError, match=f"^{re.escape(f'{label}: {problem}')}$"):
        Task.from_row(row, index=0)


def test_task_from_row_rejects_a_row_that_is_not_a_mapping() -> None:
    with pytest.raises(
        TaskError, match=re.escape("row 2 (no id): expected a task object (a mapping), found 'x' (str)")
    ):
        Task.from_row("x", index=2)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------------------------
# Round trips


ROUND_TRIP_IDS = ["single-calls", "no-setup", "lists-system-prompt-agent-config"]


@pytest.mark.parametrize("task", ROUND_TRIP_TASKS, ids=ROUND_TRIP_IDS)
def test_task_to_row_round_trips(task: Task) -> None:
    row = task.to_row()
    assert all(isinstance(value, str) for value in row.values())
    assert Task.from_row(row) == task


def test_task_to_row_writes_hud_columns() -> None:
    row = ROUND_TRIP_TASKS[1].to_row()
    assert row == {
        "id": "no-setup",
        "prompt": "p",
        "mcp_config": json.dumps(MCP_CONFIG),
        "setup_tool": "null",
        "evaluate_tool": json.dumps(EVALUATE),
        "metadata": "{}",
    }
    many = ROUND_TRIP_TASKS[2].to_row()
    assert isinstance(json.loads(many["setup_tool"]), list)
    assert set(many) == {
        "id",
        "prompt",
        "mcp_config",
        "setup_tool",
        "evaluate_tool",
        "metadata",
        "system_prompt",
        "agent_config",
    }


@pytest.mark.parametrize("task", ROUND_TRIP_TASKS, ids=ROUND_TRIP_IDS)
def test_task_to_info_round_trips(task: Task) -> None:
    info = task.to_info()
    assert "\n" not in info and ", " not in info.replace('", "', "")  # compact separators
    assert Task.from_info(info) == task
    assert Task.from_info(json.loads(info)) == task


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (
            "{oops",
            "info: not valid JSON (Expecting property name enclosed in double quotes); found '{oops' (str); "
            "build it with Task.to_info()",
        ),
        ("[1]", "info: expected a JSON object built by Task.to_info(), found [1] (list)"),
        (
            '{"id": "a"}',
            "task (id 'a'): 3 problems\n"
            "    prompt: missing; expected the agent's instruction as a non-empty string\n"
            f"    {MISSING_MCP_CONFIG}\n"
            f"    {MISSING_EVALUATE}",
        ),
    ],
    ids=["bad-json", "not-an-object", "not-a-task"],
)
def test_task_from_info_rejects_bad_info(info: str, message: str) -> None:
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        Task.from_info(info)


def test_tasks_module_imports_without_datasets() -> None:
    code = "import sys, hud_vf_gym.tasks.task; sys.exit('datasets' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
