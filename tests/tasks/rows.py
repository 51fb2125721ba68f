"""HUD task rows and the tasks they read as, shared by the task and taskset-loading tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hud_vf_gym.tasks.task import Task
from hud_vf_gym.types import ToolCall

MCP_CONFIG = {"local": {"command": "docker", "args": ["run", "--rm", "-i", "hud-text-2048"]}}
SETUP = {"name": "setup", "arguments": {"name": "board", "arguments": {"board_size": 4}}}
EVALUATE = {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 128}}}
SETUP_CALL = ToolCall("setup", {"name": "board", "arguments": {"board_size": 4}})
EVALUATE_CALL = ToolCall("evaluate", {"name": "max_number", "arguments": {"target": 128}})
DROP = object()  # an override value that removes the key from the row

MISSING_EVALUATE = (
    "evaluate_tool: missing; a task without an evaluate call cannot be scored; add one, e.g. "
    '{"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 128}}}'
)
MISSING_MCP_CONFIG = (
    "mcp_config: missing; expected a mapping of server name to server entry, e.g. "
    '{"local": {"command": "docker", "args": ["run", "--rm", "-i", "<image>"]}}'
)


def make_row(**overrides: Any) -> dict[str, Any]:
    """A valid HUD 0.4.x row in hub form, as a dict; `key=DROP` removes a key."""
    row: dict[str, Any] = {
        "id": "2048_target_128",
        "prompt": "Reach the 128 tile.",
        "mcp_config": MCP_CONFIG,
        "setup_tool": SETUP,
        "evaluate_tool": EVALUATE,
        "metadata": {"difficulty": 128, "game": "2048"},
    }
    row.update(overrides)
    return {key: value for key, value in row.items() if value is not DROP}


def make_hf_row(**overrides: Any) -> dict[str, Any]:
    """The same row as `hud hf` writes it: the four structured columns as JSON strings."""
    row = make_row(**overrides)
    for key in ("mcp_config", "setup_tool", "evaluate_tool", "metadata"):
        if key in row and not isinstance(row[key], str):
            row[key] = json.dumps(row[key])
    return row


EXPECTED_TASK = Task(
    id="2048_target_128",
    prompt="Reach the 128 tile.",
    mcp_config=MCP_CONFIG,
    setup_calls=(SETUP_CALL,),
    evaluate_calls=(EVALUATE_CALL,),
    metadata={"difficulty": 128, "game": "2048"},
)


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


# Tasks that must survive Task.to_row -> Task.from_row (and the verifiers dataset) unchanged.
ROUND_TRIP_TASKS = [
    EXPECTED_TASK,
    Task(id="no-setup", prompt="p", mcp_config=MCP_CONFIG, evaluate_calls=(EVALUATE_CALL,)),
    Task(
        id="many",
        prompt="Ünïcode prompt",
        mcp_config={"hud": {"url": "${HUD_MCP_URL}", "headers": {"Authorization": "Bearer ${HUD_API_KEY}"}}},
        setup_calls=(SETUP_CALL, ToolCall("launch_app", {"app_name": "2048"})),
        evaluate_calls=(EVALUATE_CALL, ToolCall("evaluate", {"name": "efficiency", "arguments": '{"min_ratio": 10}'})),
        system_prompt="Answer in one word.",
        metadata={"nested": {"list": [1, 2.5, None, True]}},
        agent_config={"system_prompt": "Answer in one word.", "allowed_tools": ["move"]},
    ),
]
