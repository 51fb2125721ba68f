"""Values passed between the stages of a rollout: tool calls, tool results, grades, tool specs.

They are frozen dataclasses so that a stage cannot change what an earlier stage produced, and so that the rubric,
the trainer and the Gymnasium wrapper read the same objects the turn loop stored in the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Grade", "ImageData", "ToolCall", "ToolResult", "ToolSpec"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One MCP `tools/call` request: the tool's name and its JSON arguments."""

    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the call as HUD writes it in task rows: `{"name": ..., "arguments": {...}}`."""
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True, slots=True)
class ImageData:
    """An image a tool returned, kept base64-encoded as it came over the wire."""

    data: str
    mime_type: str = "image/png"

    def data_url(self) -> str:
        """Return the image as a `data:` URL, the form OpenAI-style `image_url` content parts take."""
        return f"data:{self.mime_type};base64,{self.data}"


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's answer normalised to text, images and structured data.

    Attributes:
        text: every text block of the result, joined with newlines ("" when there were none).
        images: every image block, in order.
        structured: the result's `structuredContent`, when the server sent one.
        is_error: the MCP-level `isError` flag (the server reported the call as failed).
    """

    text: str = ""
    images: tuple[ImageData, ...] = ()
    structured: Mapping[str, Any] | None = None
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class Grade:
    """The outcome of a task's evaluate call(s), read the way HUD's agent reads it.

    Attributes:
        reward: the float under `reward`, `grade` or `score` (first found), 0.0 when the evaluation failed.
        done: whether the evaluator says the task is complete.
        content: the evaluator's human-readable explanation, if any.
        info: any extra data the evaluator returned.
        is_error: the evaluation itself failed (an MCP error, or `isError` inside the structured result).
        source: where the reward was found, e.g. `structuredContent.reward` or `text.grade`; "" when not found.
    """

    reward: float
    done: bool = False
    content: str | None = None
    info: Mapping[str, Any] = field(default_factory=dict)
    is_error: bool = False
    source: str = ""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the server lists it: name, description, JSON schema of its input, and its `meta` (if any)."""

    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] | None = None
