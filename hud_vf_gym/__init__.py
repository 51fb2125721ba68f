"""hud_vf_gym: any HUD environment (an MCP server) as a multi-turn RL environment for verifiers and Gymnasium.

`import hud_vf_gym` stays cheap: the public names below are imported on first use, so a built-in MCP server started
as `python -m hud_vf_gym.environments...` never pays for verifiers, datasets or torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from hud_vf_gym.errors import DependencyNotInstalled
from hud_vf_gym.gym import registration as _gym_registration

__version__ = "0.2.0"

# public name -> module that defines it
_LAZY_NAMES: dict[str, str] = {
    "ActionMapper": "hud_vf_gym.core.actions",
    "ConfigError": "hud_vf_gym.errors",
    "DependencyNotInstalled": "hud_vf_gym.errors",
    "EnvConfig": "hud_vf_gym.config",
    "Grade": "hud_vf_gym.types",
    "HUDGym": "hud_vf_gym.env",
    "HUDGymError": "hud_vf_gym.errors",
    "HUDRubric": "hud_vf_gym.classic",
    "HUDTaskEnv": "hud_vf_gym.gym.env",
    "HUDTaskset": "hud_vf_gym.v1.taskset",
    "MCPServerError": "hud_vf_gym.errors",
    "ParsedTurn": "hud_vf_gym.core.parser",
    "Task": "hud_vf_gym.tasks.task",
    "TaskError": "hud_vf_gym.errors",
    "ToolCall": "hud_vf_gym.types",
    "ToolResult": "hud_vf_gym.types",
    "ToolXMLParser": "hud_vf_gym.classic",
    "load_config": "hud_vf_gym.config",
    "load_environment": "hud_vf_gym.env",
    "load_taskset": "hud_vf_gym.tasks.loading",
}

__all__ = [
    "ActionMapper",
    "ConfigError",
    "DependencyNotInstalled",
    "EnvConfig",
    "Grade",
    "HUDGym",
    "HUDGymError",
    "HUDRubric",
    "HUDTaskEnv",
    "HUDTaskset",
    "MCPServerError",
    "ParsedTurn",
    "Task",
    "TaskError",
    "ToolCall",
    "ToolResult",
    "ToolXMLParser",
    "__version__",
    "load_config",
    "load_environment",
    "load_taskset",
]

if TYPE_CHECKING:
    from hud_vf_gym.classic import HUDRubric, ToolXMLParser
    from hud_vf_gym.config import EnvConfig, load_config
    from hud_vf_gym.core.actions import ActionMapper
    from hud_vf_gym.core.parser import ParsedTurn
    from hud_vf_gym.env import HUDGym, load_environment
    from hud_vf_gym.errors import ConfigError, DependencyNotInstalled, HUDGymError, MCPServerError, TaskError
    from hud_vf_gym.gym.env import HUDTaskEnv
    from hud_vf_gym.tasks.loading import load_taskset
    from hud_vf_gym.tasks.task import Task
    from hud_vf_gym.types import Grade, ToolCall, ToolResult
    from hud_vf_gym.v1.taskset import HUDTaskset


# Gymnasium ids (hud_vf_gym/2048-v0, ...): registered when gymnasium is imported, which this never does itself
_gym_registration.register_when_gymnasium_is_imported()


# The verifiers adapters: the classic one needs verifiers 0.3, the v1 taskset verifiers.v1 (0.4, or 0.3's). Under the
# other verifiers their names are missing attributes, so verifiers 0.4's loader, which reads every name in
# `__all__` and keeps the one Taskset, finds HUDTaskset: `vf-eval hud_vf_gym` works under either verifiers.
_ADAPTER_NAMES = frozenset({"HUDGym", "HUDRubric", "HUDTaskset", "ToolXMLParser", "load_environment"})


def __getattr__(name: str) -> Any:
    """Import a public name from its module the first time it is used."""
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'hud_vf_gym' has no attribute {name!r}")
    try:
        module = importlib.import_module(module_name)
    except DependencyNotInstalled as exc:
        if name not in _ADAPTER_NAMES:
            raise
        raise AttributeError(f"hud_vf_gym.{name} is unavailable: {exc}") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the public names, so tab completion shows what lazy loading hides."""
    return __all__
