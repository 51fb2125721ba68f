"""The exceptions hud_vf_gym raises, in one place.

```
HUDGymError
├── ConfigError              a bad environment YAML or bad keyword arguments (user error)
│   └── MissingCredentialsError  a server's API key is not set (checked before connecting)
├── TaskError                a bad task row or taskset source (user error)
│   ├── TasksetError         a taskset with one or more bad rows, all of them listed
│   └── TaskDefinitionError  a row that cannot run as written, found when its rollout starts (that row only)
├── EvaluationError          the task's evaluation failed (isError, no grade): never scored, never trained on
├── DependencyNotInstalled   an optional extra is missing; the message has the pip command
├── ModelLoadError           the embedded or local model could not be loaded (a bad folder, a broken file)
├── HubPushError             a dataset could not be pushed to the Hugging Face hub
├── NotAllowedError          a training-service request asks for a command or variable the operator did not allow
├── MCPServerError           an MCP server failed (infrastructure)
│   ├── ServerStartError     the server could not be started, reached, or initialised in time
│   ├── ServerTimeoutError   a tool call (or tools/list) ran past its timeout
│   │   └── RolloutTimeoutError  the rollout ran past timeouts.rollout_s while waiting on its server
│   ├── ServerConnectionError  the server died or the connection dropped mid-rollout
│   └── TaskSetupError       the task's setup tool answered with an error (the episode cannot start)
└── InferenceError           the model endpoint a rollout samples from failed (infrastructure)
TransformError (ValueError)  a transform refused at load or failed on a value; the config or the model sees it
```

A model's mistake (no tool call, bad syntax, unknown action, a tool that answered with an error) is never an
exception: it becomes an observation the model can learn from. User errors are raised before any rollout starts,
except the ones only a running server can reveal (`TaskDefinitionError`), which end that row's rollouts alone.
Infrastructure errors (`MCPServerError`, `InferenceError`) are recorded and keep the rollout out of training instead
of scoring it 0; `TaskDefinitionError` and `EvaluationError` are recorded and kept out of training the same way, but
never retried (a row's mistake or a broken evaluator repeats on every attempt). This module imports no verifiers:
the classic adapter (`hud_vf_gym.classic.classic_errors`) hands HUDGym's errors to verifiers as the same classes
that are also `verifiers.InfraError`s (infrastructure: recorded in `state["error"]` and retried where configured) or
plain `verifiers.Error`s (the task and evaluation errors: recorded, not retried); the v1 Taskset records them as the
rollout's error.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DependencyNotInstalled",
    "EvaluationError",
    "HUDGymError",
    "HubPushError",
    "InferenceError",
    "MCPServerError",
    "MissingCredentialsError",
    "ModelLoadError",
    "NotAllowedError",
    "RolloutTimeoutError",
    "ServerConnectionError",
    "ServerStartError",
    "ServerTimeoutError",
    "TaskDefinitionError",
    "TaskError",
    "TaskSetupError",
    "TasksetError",
    "TransformError",
]


class HUDGymError(Exception):
    """Base class of every error hud_vf_gym raises on purpose."""


class ConfigError(HUDGymError, ValueError):
    """Raised when the user gives an environment config (YAML or keyword arguments) that cannot be used."""


class MissingCredentialsError(ConfigError):
    """Raised when the user has not set the API key a server needs (an empty `HUD_API_KEY` for the hub).

    Every row on that server would fail the same way, so this stops a run instead of failing its rows one by one.
    """


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


class TaskDefinitionError(TaskError):
    """Raised when a task row cannot run as written, which only its running server reveals.

    Its `mcp_config` is refused when the session opens, or its setup or evaluate names a tool (or hub function)
    the server does not have. The message names the row, the task, the field and the fix; the error ends that
    row's rollouts only.
    """

    def __init__(self, message: str, *, task_id: str = "", row_index: int | None = None, field: str = "") -> None:
        """Keep the message and, for the results, which task, row and field it is about."""
        super().__init__(message)
        self.task_id = task_id
        self.row_index = row_index
        self.field = field


class EvaluationError(HUDGymError):
    """Raised when a task's evaluation fails (its evaluate tool answered isError, or with no usable grade).

    The rollout is kept out of training and out of the means unless `rubric.score_failed_evaluations` says to
    score it as task_completion 0; the message is the evaluator's own.
    """


class DependencyNotInstalled(HUDGymError, ImportError):
    """Raised when the user calls a feature whose optional dependencies are not installed."""


class ModelLoadError(HUDGymError):
    """Raised when a local model folder or GGUF file cannot be converted or loaded; the message names the path."""


class HubPushError(HUDGymError):
    """Raised when the dataset cannot be pushed to the Hugging Face hub (offline, refused, or no token)."""


class NotAllowedError(HUDGymError):
    """Raised when a request to the training service names a command or variable its operator has not allowed."""


class MCPServerError(HUDGymError):
    """Raised when an MCP server fails for reasons the model did not cause (infrastructure)."""


class ServerStartError(MCPServerError):
    """Raised when an MCP server cannot be started, reached or initialised."""


class ServerTimeoutError(MCPServerError):
    """Raised when a tool call or a tools/list refresh runs past its timeout (a slow start is a ServerStartError)."""


class RolloutTimeoutError(ServerTimeoutError):
    """Raised when a rollout runs past `timeouts.rollout_s` while waiting on its server (setup, a call, evaluate)."""


class ServerConnectionError(MCPServerError):
    """Raised when an MCP server dies or its connection drops while a rollout is using it."""


class TaskSetupError(MCPServerError):
    """Raised when a task's setup call answers with an error, so the episode cannot start as the task intends."""


class InferenceError(HUDGymError):
    """Raised when the model endpoint a rollout samples from fails (unreachable, timed out, a server error)."""


class TransformError(ValueError):
    """Raised when a transform cannot be compiled (at load) or cannot convert a value (at run time)."""
