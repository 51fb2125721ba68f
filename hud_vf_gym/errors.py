"""The exceptions hud_vf_gym raises, in one place.

```
HUDGymError
├── ConfigError              a bad environment YAML or bad keyword arguments (user error)
├── TaskError                a bad task row or taskset source (user error)
│   └── TasksetError         a taskset with one or more bad rows, all of them listed
├── DependencyNotInstalled   an optional extra is missing; the message has the pip command
├── ModelLoadError           the embedded or local model could not be loaded (a bad folder, a broken file)
├── HubPushError             a dataset could not be pushed to the Hugging Face hub
└── MCPServerError           an MCP server failed (infrastructure)
    ├── ServerStartError     the server could not be started, reached, or initialised in time
    ├── ServerTimeoutError   a tool call (or tools/list) ran past its timeout
    ├── ServerConnectionError  the server died or the connection dropped mid-rollout
    └── TaskSetupError       the task's setup tool answered with an error (the episode cannot start)
TransformError (ValueError)  a transform refused at load or failed on a value; the config or the model sees it
```

A model's mistake (no tool call, bad syntax, unknown action, a tool that answered with an error) is never an
exception: it becomes an observation the model can learn from. User errors are raised before any rollout starts.
Infrastructure errors are recorded and keep the rollout out of training instead of scoring it 0. This module imports
no verifiers: the classic adapter (`hud_vf_gym.classic.classic_errors`) hands HUDGym's to verifiers as the same
classes that are also `verifiers.InfraError`s, so verifiers records them in `state["error"]` and retries them where
configured; the v1 Taskset records them as the rollout's error.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DependencyNotInstalled",
    "HUDGymError",
    "HubPushError",
    "MCPServerError",
    "ModelLoadError",
    "ServerConnectionError",
    "ServerStartError",
    "ServerTimeoutError",
    "TaskError",
    "TaskSetupError",
    "TasksetError",
    "TransformError",
]


class HUDGymError(Exception):
    """Base class of every error hud_vf_gym raises on purpose."""


class ConfigError(HUDGymError, ValueError):
    """Raised when the user gives an environment config (YAML or keyword arguments) that cannot be used."""


class TaskError(HUDGymError, ValueError):
    """Raised when the user gives a task row or a taskset source that cannot be used."""


class TasksetError(TaskError):
    """Raised when a taskset has bad rows and none of them is usable; the message lists every problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        """Build the message from the taskset's name and every problem found in it."""
        self.source = source
        self.problems = list(problems)
        count = len(self.problems)
        header = f"{count} invalid task{'s' if count != 1 else ''} in {source}"
        super().__init__("\n  ".join([header, *self.problems]))


class DependencyNotInstalled(HUDGymError, ImportError):
    """Raised when the user calls a feature whose optional dependencies are not installed."""


class ModelLoadError(HUDGymError):
    """Raised when a local model folder or GGUF file cannot be converted or loaded; the message names the path."""


class HubPushError(HUDGymError):
    """Raised when the dataset cannot be pushed to the Hugging Face hub (offline, refused, or no token)."""


class MCPServerError(HUDGymError):
    """Raised when an MCP server fails for reasons the model did not cause (infrastructure)."""


class ServerStartError(MCPServerError):
    """Raised when an MCP server cannot be started, reached or initialised."""


class ServerTimeoutError(MCPServerError):
    """Raised when a tool call or a tools/list refresh runs past its timeout (a slow start is a ServerStartError)."""


class ServerConnectionError(MCPServerError):
    """Raised when an MCP server dies or its connection drops while a rollout is using it."""


class TaskSetupError(MCPServerError):
    """Raised when a task's setup call answers with an error, so the episode cannot start as the task intends."""


class TransformError(ValueError):
    """Raised when a transform cannot be compiled (at load) or cannot convert a value (at run time)."""
