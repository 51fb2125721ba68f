"""HUD's `setup` and `evaluate` hubs for the built-in servers: one dispatch, one EvaluationResult.

A HUD environment exposes setup and evaluate as *hub* tools: `setup(name, arguments)` runs the setup function
`name` with `arguments`, an object or a JSON string ("" means none). A built-in server declares each hub as a `Hub`
of `HubFunction`s (the pydantic model the arguments must fit, and the function to run once they fit) and its two
MCP tools only call `hub.call(...)`:

```python
SETUP_HUB = Hub("setup", {"board": HubFunction(BoardArguments, start_game)})

@mcp.tool(meta={SETUP_RESETS_STATE_META: True})
async def setup(name: ..., arguments: ...) -> CallToolResult:
    return await SETUP_HUB.call(state, name, arguments)
```

What every hub answers, so all built-in servers word it alike:

- an unknown name: an MCP error result, `Unknown setup function 'boards'; expected one of: board`;
- arguments that do not fit: an MCP error result naming every bad argument and the accepted ones,
  `Invalid arguments for setup function 'board': board_size: Input should be ... (got 12). Accepted arguments: ...`;
- a failure the server expects (an unknown task, a missing browser): `describe_failure` words it, e.g.
  `setup function 'open_task' failed: unknown task ...`; any other exception is left to the SDK (a server bug);
- otherwise the function's own result, unchanged. Evaluate functions build HUD's `EvaluationResult` and send it with
  `evaluation_result`: as `structuredContent` and as one text block of the same compact JSON, as HUD does.

`serve_function_lists` adds the resources `file:///setup/functions` and `file:///evaluate/functions` (the JSON list
of each hub's function names) that HUD's hubs serve.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, ValidationError

if TYPE_CHECKING:
    from hud_vf_gym.runtime.mcp_compat import MCPServer

__all__ = [
    "ARGUMENTS_DESCRIPTION",
    "NAME_DESCRIPTION",
    "EvaluationResult",
    "Hub",
    "HubArguments",
    "HubFunction",
    "evaluation_result",
    "serve_function_lists",
    "text_result",
]

# The `Field(description=...)` of the hub tools' two arguments, shared so every built-in server lists them alike.
NAME_DESCRIPTION = "The hub function to call."
ARGUMENTS_DESCRIPTION = "The function's arguments, as an object or a JSON string."

ContextT = TypeVar("ContextT")


class EvaluationResult(TypedDict):
    """HUD's `EvaluationResult` as it goes over the wire (`structuredContent` and the text JSON)."""

    reward: float
    done: bool
    content: str
    info: dict[str, Any]
    isError: bool


class HubArguments(BaseModel):
    """Base of the hub functions' argument models: a misspelt argument is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class HubFunction(Generic[ContextT]):
    """One function behind a hub: the model its arguments must fit, and what it does with them once they fit.

    Attributes:
        arguments_model: the pydantic model of the function's arguments.
        run: called as `run(context, arguments)` with the server's context (its state or session) and a validated
            instance of `arguments_model`; returns the tool result, or an awaitable of it.
    """

    arguments_model: type[HubArguments]
    run: Callable[[ContextT, Any], CallToolResult | Awaitable[CallToolResult]]


class Hub(Generic[ContextT]):
    """A hub tool's functions by name, and the dispatch from `{name, arguments}` to one of them."""

    def __init__(
        self,
        kind: str,
        functions: Mapping[str, HubFunction[ContextT]],
        *,
        describe_failure: Callable[[Exception], str | None] | None = None,
    ) -> None:
        """Declare a hub.

        Args:
            kind: the hub's tool name, "setup" or "evaluate", used in messages.
            functions: the hub's functions by name.
            describe_failure: words an exception a function may raise as the rest of the sentence
                "<kind> function '<name>' ...", e.g. "failed: unknown task 'x'"; None (or returning None) lets the
                exception propagate, so the SDK reports it as the server bug it is.
        """
        self.kind = kind
        self.functions = dict(functions)
        self._describe_failure = describe_failure

    @property
    def names(self) -> list[str]:
        """The function names, sorted: the JSON-schema enum of the tool's `name` argument."""
        return sorted(self.functions)

    async def call(self, context: ContextT, name: str, arguments: Mapping[str, Any] | str) -> CallToolResult:
        """Run the function `name` with `arguments`; a bad name, bad arguments or a described failure is an error."""
        function = self.functions.get(name)
        if function is None:
            return text_result(
                f"Unknown {self.kind} function {name!r}; expected one of: {', '.join(self.names)}", is_error=True
            )
        try:
            validated = function.arguments_model.model_validate(_parse_arguments(arguments))
        except ValidationError as exc:  # a subclass of ValueError, so it must come first
            problem = _describe_validation_error(exc, function.arguments_model)
        except ValueError as exc:
            problem = str(exc)
        else:
            return await self._run(function, context, name, validated)
        return text_result(f"Invalid arguments for {self.kind} function {name!r}: {problem}", is_error=True)

    async def _run(
        self, function: HubFunction[ContextT], context: ContextT, name: str, validated: HubArguments
    ) -> CallToolResult:
        try:
            result = function.run(context, validated)
            return await result if inspect.isawaitable(result) else result
        except Exception as exc:  # only what describe_failure words is caught; the rest is re-raised as is
            described = self._describe_failure(exc) if self._describe_failure is not None else None
            if described is None:
                raise
            return text_result(f"{self.kind} function {name!r} {described}", is_error=True)


def text_result(text: str, *, is_error: bool = False) -> CallToolResult:
    """Wrap text as a tool result with one text block and no structured content."""
    return CallToolResult(content=[TextContent(type="text", text=text)], isError=is_error)


def evaluation_result(evaluation: EvaluationResult) -> CallToolResult:
    """Send an EvaluationResult as HUD does: as `structuredContent` and as one text block of compact JSON."""
    structured = dict(evaluation)
    text = json.dumps(structured, separators=(",", ":"))
    return CallToolResult(content=[TextContent(type="text", text=text)], structuredContent=structured)


def serve_function_lists(mcp: MCPServer, setup: Hub[Any], evaluate: Hub[Any]) -> None:
    """Add the resources `file:///setup/functions` and `file:///evaluate/functions`: each hub's names as JSON."""

    @mcp.resource("file:///setup/functions", mime_type="application/json")
    def setup_functions() -> str:
        """List the setup hub's function names as JSON."""
        return json.dumps(setup.names)

    @mcp.resource("file:///evaluate/functions", mime_type="application/json")
    def evaluate_functions() -> str:
        """List the evaluate hub's function names as JSON."""
        return json.dumps(evaluate.names)


def _parse_arguments(arguments: Mapping[str, Any] | str) -> dict[str, Any]:
    """Return a hub call's inner arguments as a dict; HUD accepts an object or a JSON string ("" means none).

    Raises:
        ValueError: the string is not JSON, or not a JSON object.
    """
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as exc:
        raise ValueError(f"arguments is not valid JSON ({exc}): {arguments!r}") from exc
    if not isinstance(parsed, dict):
        raise ValueError(f"arguments must be a JSON object, got {type(parsed).__name__}: {arguments!r}")
    return parsed


def _describe_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    """Describe every bad argument in one line each, then the arguments the function takes."""
    problems = []
    for error in exc.errors(include_url=False):
        location = ".".join(str(part) for part in error["loc"]) or "arguments"
        problems.append(f"{location}: {error['msg']} (got {error.get('input')!r})")
    accepted = ", ".join(model.model_fields) or "none"
    return f"{'; '.join(problems)}. Accepted arguments: {accepted}"
