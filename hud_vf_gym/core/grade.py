"""Turning evaluate results into a `Grade`, and telling a failed tool result from a successful one.

Reward extraction follows HUD's agent (`find_reward`): the first of `reward`, `grade`, `score` found in the result's
`structuredContent`, then in JSON parsed from its text. Unlike HUD we use the *last* evaluate result (as
hud-vf-gym always did), and we never turn a failed evaluation into a silent 0: an MCP `isError`, an `isError: true`
inside the structured result, a missing reward or a non-numeric one all give a `Grade` with `is_error=True`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from hud_vf_gym.types import Grade, ToolResult

__all__ = [
    "DEFAULT_TOOL_ERROR_PATTERN",
    "REWARD_KEYS",
    "extract_grade",
    "is_failed_tool_result",
]

DEFAULT_TOOL_ERROR_PATTERN = re.compile(r"^\s*ERROR:")
"""Text that marks a failed call even with `isError: false` (text-2048 reports every error this way)."""

REWARD_KEYS = ("reward", "grade", "score")
"""Keys that hold the reward of an evaluate result, in the order HUD looks for them."""

# How much of an unusable evaluate result to quote in the grade's content.
_QUOTE_CHARS = 200


def is_failed_tool_result(result: ToolResult, error_pattern: re.Pattern[str] = DEFAULT_TOOL_ERROR_PATTERN) -> bool:
    """Whether a tool call failed: MCP `isError`, or text matching `error_pattern` (an `ERROR:` prefix by default)."""
    return result.is_error or error_pattern.search(result.text) is not None


def extract_grade(results: Sequence[ToolResult]) -> Grade:
    """Read the grade from the last of a task's evaluate results, the way HUD's agent reads the reward."""
    if not results:
        return Grade(reward=0.0, is_error=True, content="the task ran no evaluate call, so there is no reward")
    result = results[-1]
    text_json = _json_object_in(result.text)
    if result.is_error:
        return Grade(reward=0.0, is_error=True, content=result.text or "the evaluate call failed (isError)")
    for payload in (result.structured, text_json):
        if payload is not None and payload.get("isError") is True:
            return _error_grade(payload, "the evaluator reported isError: true")
    return _grade_from_reward(result, text_json)


def _grade_from_reward(result: ToolResult, text_json: Mapping[str, Any] | None) -> Grade:
    """Find the reward (structuredContent first, then text JSON) and build the grade around it."""
    for origin, payload in (("structuredContent", result.structured), ("text", text_json)):
        if payload is None:
            continue
        for key in REWARD_KEYS:
            if key in payload:
                return _grade_from_payload(payload, f"{origin}.{key}", payload[key])
    quoted = (result.text or json.dumps(result.structured, default=str))[:_QUOTE_CHARS]
    return Grade(
        reward=0.0,
        is_error=True,
        content=f"the evaluate result has no {', '.join(REWARD_KEYS)} in structuredContent or text JSON: {quoted!r}",
    )


def _grade_from_payload(payload: Mapping[str, Any], source: str, raw_reward: Any) -> Grade:
    """Build a grade from the mapping the reward was found in; a non-numeric reward is an error grade."""
    if isinstance(raw_reward, bool) or not isinstance(raw_reward, int | float) or not math.isfinite(raw_reward):
        return _error_grade(payload, f"{source} is {raw_reward!r}, expected a finite number", source=source)
    return Grade(
        reward=float(raw_reward),
        done=payload.get("done") is True,
        content=_content_of(payload),
        info=_info_of(payload),
        source=source,
    )


def _error_grade(payload: Mapping[str, Any], reason: str, source: str = "") -> Grade:
    """A failed evaluation: reward 0, with the evaluator's own explanation (if any) after the reason."""
    explanation = _content_of(payload)
    return Grade(
        reward=0.0,
        done=payload.get("done") is True,
        content=f"{reason}: {explanation}" if explanation else reason,
        info=_info_of(payload),
        is_error=True,
        source=source,
    )


def _content_of(payload: Mapping[str, Any]) -> str | None:
    """The human-readable explanation, from the first of the keys HUD reads it from."""
    for key in ("content", "text", "message", "logs"):
        value = payload.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _info_of(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    """The evaluator's extra data (`info`), or an empty mapping."""
    info = payload.get("info")
    return dict(info) if isinstance(info, Mapping) else {}


def _json_object_in(text: str) -> Mapping[str, Any] | None:
    """The JSON object in `text`: the whole text, else its first line that is one, else its outermost `{...}`."""
    stripped = text.strip()
    if not stripped:
        return None
    candidates = [stripped, *stripped.splitlines()]
    if "{" in stripped and "}" in stripped:
        candidates.append(stripped[stripped.index("{") : stripped.rindex("}") + 1])
    for candidate in candidates:
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            return parsed
    return None
