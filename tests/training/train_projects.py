"""Project folders for the `hud-vf-gym train` tests: a hud.lock.yaml, HUD hub tasks, configs, a .env."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.support import REPO_ROOT as ROOT  # the checkout: train/grpo.py, configs/

SECRET = "sk-hud-test-0123456789"  # a key value that must never be printed
IMAGE = "hud-vf-gym-test/never-pulled:0.1"
ENV_NAME = "never-pulled"  # what `hud-vf-gym init` names the config of IMAGE
KEYS = ("HUD_API_KEY", "WANDB_API_KEY", "HF_TOKEN", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP")

LOCK_TOOLS = [
    {"name": "setup", "description": "Hub", "inputSchema": {"type": "object", "properties": {}}},
    {"name": "evaluate", "description": "Hub", "inputSchema": {"type": "object", "properties": {}}},
    {
        "name": "move",
        "description": "Slide the tiles.",
        "inputSchema": {
            "type": "object",
            "properties": {"direction": {"type": "string", "enum": ["up", "down", "left", "right"]}},
            "required": ["direction"],
        },
    },
]


def hub_task(index: int) -> dict[str, Any]:
    """A task on HUD's hub: its mcp_config needs ${HUD_API_KEY}."""
    return {
        "id": f"task-{index}",
        "prompt": f"Reach the {2 ** (index + 4)} tile.",
        "mcp_config": {
            "hud": {
                "url": "https://mcp.hud.ai/v3/mcp",
                "headers": {"Authorization": "Bearer ${HUD_API_KEY}", "Mcp-Image": IMAGE},
            }
        },
        "setup_tool": {"name": "setup", "arguments": {"name": "board"}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"name": "max_number"}},
    }


def write_project(
    root: Path,
    *,
    lock: bool = True,
    tasks: bool = True,
    config: bool = False,
    primary_dataset: bool = False,
    env_file: str | None = None,
) -> Path:
    """A project folder as seed 001's user has it after `hud build` (and optionally init/dataset)."""
    root.mkdir(parents=True, exist_ok=True)
    if tasks:
        (root / "tasks.json").write_text(json.dumps([hub_task(0), hub_task(1)]), encoding="utf-8")
    if lock:
        data: dict[str, Any] = {"version": "1.0", "image": IMAGE, "tools": LOCK_TOOLS}
        data["environment"] = {"variables": {"provided": {"OPENAI_API_KEY": SECRET}}}  # as hud build writes them
        if primary_dataset:
            data["primary_dataset"] = {"name": "my-tasks", "task_count": 2, "local_path": "tasks.json"}
        (root / "hud.lock.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if config:
        (root / "configs").mkdir(exist_ok=True)
        (root / "configs" / f"{ENV_NAME}.yaml").write_text(
            (ROOT / "configs" / "2048.yaml").read_text(encoding="utf-8"), encoding="utf-8"
        )
    if env_file is not None:
        (root / ".env").write_text(env_file, encoding="utf-8")
    return root


def clean_environ(home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without any of the keys the tests set, HOME elsewhere, this checkout importable."""
    environ = {name: value for name, value in os.environ.items() if name not in KEYS}
    environ.update(HOME=str(home), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    environ.update(extra)
    return environ


def cli(*args: str) -> list[str]:
    """`hud-vf-gym ARGS` through this interpreter."""
    return [sys.executable, "-m", "hud_vf_gym.cli", *args]


def prime_credentials(home: Path) -> None:
    """The file `prime login` writes and SkyPilot's Prime cloud reads (no cloud can be reached from here)."""
    (home / ".prime").mkdir(parents=True, exist_ok=True)
    (home / ".prime" / "config.json").write_text(json.dumps({"api_key": "pk-test"}), encoding="utf-8")
