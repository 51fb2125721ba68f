"""Tests for reward extraction and failed-result detection (hud_vf_gym/core/grade.py)."""

from __future__ import annotations

import json
import re

import pytest

from hud_vf_gym.core.grade import DEFAULT_TOOL_ERROR_PATTERN, extract_grade, is_failed_tool_result
from hud_vf_gym.types import Grade, ToolResult


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (ToolResult(text="Moved LEFT"), False),
        (ToolResult(text="ERROR: Invalid direction: sideways"), True),
        (ToolResult(text="  ERROR: Game not initialized."), True),
        (ToolResult(text="no ERROR: here"), False),
        (ToolResult(text="fine", is_error=True), True),
    ],
    ids=["ok", "error-prefix", "error-prefix-after-space", "error-mid-text", "mcp-is-error"],
)
def test_is_failed_tool_result_default_pattern(result: ToolResult, expected: bool) -> None:
    assert is_failed_tool_result(result) is expected


def test_is_failed_tool_result_custom_pattern() -> None:
    pattern = re.compile(r"(?i)\bfailed\b")
    assert is_failed_tool_result(ToolResult(text="click failed"), pattern)
    assert not is_failed_tool_result(ToolResult(text="ERROR: ignored by this pattern"), pattern)
    assert DEFAULT_TOOL_ERROR_PATTERN.pattern == r"^\s*ERROR:"


EVALUATION = {"done": True, "content": "Target: 128, Highest: 3", "info": {"highest_tile": 3}}


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        (
            [ToolResult(structured={"reward": 0.25, **EVALUATION})],
            Grade(0.25, True, "Target: 128, Highest: 3", {"highest_tile": 3}, False, "structuredContent.reward"),
        ),
        (
            [ToolResult(structured={"score": 0.1, "grade": 0.5, "reward": 0.75})],
            Grade(0.75, source="structuredContent.reward"),
        ),
        ([ToolResult(structured={"score": 0.1, "grade": 0.5})], Grade(0.5, source="structuredContent.grade")),
        ([ToolResult(structured={"score": 3})], Grade(3.0, source="structuredContent.score")),
        (
            [ToolResult(text='{"grade": 0.5, "done": false}', structured={"result": "see text"})],
            Grade(0.5, source="text.grade"),
        ),
        (
            [ToolResult(text='Evaluation finished.\n{"reward": 1, "done": true, "message": "won"}')],
            Grade(1.0, done=True, content="won", source="text.reward"),
        ),
        (
            [ToolResult(text=json.dumps({"reward": 0.9}), structured={"reward": 0.2})],
            Grade(0.2, source="structuredContent.reward"),
        ),
        (
            [ToolResult(structured={"reward": 0.0}), ToolResult(structured={"reward": 1.0, "done": True})],
            Grade(1.0, done=True, source="structuredContent.reward"),
        ),
    ],
    ids=[
        "structured-reward-with-details",
        "reward-before-grade-before-score",
        "grade-before-score",
        "score-int",
        "text-json-fallback",
        "text-json-on-its-own-line",
        "structured-before-text",
        "last-result-wins",
    ],
)
def test_extract_grade_finds_reward(results: list[ToolResult], expected: Grade) -> None:
    assert extract_grade(results) == expected


@pytest.mark.parametrize(
    ("results", "expected"),
    [
        (
            [ToolResult(text="Error executing tool evaluate: boom", is_error=True, structured={"reward": 1.0})],
            Grade(0.0, content="Error executing tool evaluate: boom", is_error=True),
        ),
        (
            [ToolResult(structured={"reward": 0.0, "done": False, "content": "sheet not found", "isError": True})],
            Grade(0.0, content="the evaluator reported isError: true: sheet not found", is_error=True),
        ),
        (
            [ToolResult(text='{"reward": 0.7, "isError": true}')],
            Grade(0.0, content="the evaluator reported isError: true", is_error=True),
        ),
        (
            [ToolResult(structured={"reward": "high"})],
            Grade(
                0.0,
                content="structuredContent.reward is 'high', expected a finite number",
                is_error=True,
                source="structuredContent.reward",
            ),
        ),
        (
            [ToolResult(structured={"reward": True})],
            Grade(
                0.0,
                content="structuredContent.reward is True, expected a finite number",
                is_error=True,
                source="structuredContent.reward",
            ),
        ),
        (
            [ToolResult(text="Counter reset to 0")],
            Grade(
                0.0,
                content="the evaluate result has no reward, grade, score in structuredContent or text JSON: "
                "'Counter reset to 0'",
                is_error=True,
            ),
        ),
        ([], Grade(0.0, content="the task ran no evaluate call, so there is no reward", is_error=True)),
        (
            [ToolResult(structured={"reward": 1.0}), ToolResult(text="boom", is_error=True)],
            Grade(0.0, content="boom", is_error=True),
        ),
    ],
    ids=[
        "mcp-is-error",
        "inner-is-error",
        "inner-is-error-in-text-json",
        "non-numeric-reward",
        "bool-reward",
        "missing-key",
        "no-results",
        "last-result-error-wins",
    ],
)
def test_extract_grade_error_grades(results: list[ToolResult], expected: Grade) -> None:
    assert extract_grade(results) == expected
