"""Tests for the weighted rubric over the episode record (core/rubric.py)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import verifiers as vf

from hud_vf_gym.classic import HUDRubric, ToolXMLParser
from hud_vf_gym.config import EnvConfig, ParserConfig, ThinkingBounds, load_config, parse_config
from hud_vf_gym.core.actions import ActionError, ActionMapper, MappedAction
from hud_vf_gym.core.parser import ParsedCall
from hud_vf_gym.core.record import STATE_KEY, EpisodeRecord, TurnOutcome, TurnRecord
from hud_vf_gym.core.rubric import (
    format_compliance,
    screenshot_behavior,
    task_completion,
    thinking_quality,
    tool_execution,
)
from hud_vf_gym.types import Grade, ToolCall, ToolResult

COMPONENT_NAMES = ["task_completion", "tool_execution", "format_compliance", "screenshot_behavior", "thinking_quality"]
METRIC_NAMES = ["tool_attempts", "parse_errors", "action_errors", "tool_errors", "evaluation_failed", "env_seconds"]
BOUNDS = ThinkingBounds()  # 10..1500 characters, similarity above 0.9 is a copy
PARSER_CONFIG = ParserConfig()  # xml 0.6, action 0.4


class EpisodeBuilder:
    """Builds an `EpisodeRecord` the way the turn loop does: parse, map, then set the outcome by hand."""

    def __init__(self, config: EnvConfig) -> None:
        self.parser = ToolXMLParser(config.parser.use_thinking)
        self.mapper = ActionMapper(config.action_mappings, config.passthrough_tools)
        self.record = EpisodeRecord(task_id="task-1")

    def turn(self, text: str, outcome: TurnOutcome, result: ToolResult | None = None) -> TurnRecord:
        turn = TurnRecord(index=len(self.record.turns), parsed=self.parser.parse_turn(text), outcome=outcome)
        if outcome is not TurnOutcome.NOT_EXECUTED and turn.parsed.call is not None:
            mapped = self.mapper.map(turn.parsed.call)
            if isinstance(mapped, MappedAction):
                turn.action = mapped
            else:
                turn.action_error = mapped
        turn.result = result
        self.record.turns.append(turn)
        return turn


def _state(record: EpisodeRecord | None) -> vf.State:
    """A state shaped like verifiers' `init_state` makes it, after a rollout finished."""
    state = vf.State(
        input={"prompt": [{"role": "user", "content": "Do the task."}], "answer": "", "info": {}, "example_id": 0}
    )
    state["task"] = {"prompt": state["prompt"], "answer": "", "info": {}, "example_id": 0}
    state["completion"] = [{"role": "assistant", "content": "<tool>done()</tool>"}]
    state["trajectory"] = []
    state["reward"] = None
    state["metrics"] = None
    state["timing"] = {}
    if record is not None:
        state[STATE_KEY] = record
    return state


def _computer_use_episode() -> EpisodeRecord:
    """Five turns of computer use: screenshot, a failing click, no tool, an unknown action, and a cut-off turn."""
    builder = EpisodeBuilder(load_config("default"))
    builder.turn("<think>I need to see the screen first.</think>\n<tool>screenshot()</tool>", TurnOutcome.EXECUTED)
    builder.turn(
        "<think>The search box is at the top.</think>\n<tool>click(640, 120)</tool>",
        TurnOutcome.TOOL_ERROR,
        ToolResult(text="ERROR: nothing to click", is_error=True),
    )
    builder.turn("I will type the query now.", TurnOutcome.PARSE_ERROR)
    builder.turn("<think>Open the context menu.</think>\n<tool>right_click(1, 2)</tool>", TurnOutcome.ACTION_ERROR)
    builder.turn("<think>Open the context menu.</think>\n<tool>click(1, 2)</tool>", TurnOutcome.NOT_EXECUTED)
    record = builder.record
    record.grade = Grade(reward=0.5, done=True, source="structuredContent.reward")
    record.setup_seconds, record.env_seconds, record.evaluate_seconds = 0.5, 1.25, 0.25
    return record


# --- task_completion --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grade", "expected"),
    [(Grade(reward=0.75), 0.75), (Grade(reward=1.0, done=True), 1.0), (Grade(reward=0.9, is_error=True), 0.0),
     (None, 0.0)],
    ids=["partial", "complete", "evaluation-failed", "no-grade"],
)  # fmt: skip
def test_task_completion_reads_the_grade(grade: Grade | None, expected: float) -> None:
    assert task_completion(_state(EpisodeRecord("t", grade=grade))) == expected


# --- tool_execution ---------------------------------------------------------------------------------------------


def test_tool_execution_counts_every_error_kind_as_failure_and_ignores_not_executed() -> None:
    # attempted: EXECUTED (ok), TOOL_ERROR, PARSE_ERROR, ACTION_ERROR; the NOT_EXECUTED turn is left out
    assert tool_execution(_state(_computer_use_episode())) == pytest.approx(1 / 4)


@pytest.mark.parametrize(
    ("outcomes", "expected"),
    [
        ([TurnOutcome.EXECUTED, TurnOutcome.DONE], 1.0),
        ([TurnOutcome.EXECUTED, TurnOutcome.PARSE_ERROR], 0.5),
        ([TurnOutcome.ACTION_ERROR, TurnOutcome.TOOL_ERROR, TurnOutcome.EXECUTED], 1 / 3),
        ([TurnOutcome.NOT_EXECUTED], 0.0),
        ([], 0.0),
    ],
    ids=["all-succeeded", "one-parse-error", "action-and-tool-errors", "nothing-attempted", "no-turns"],
)
def test_tool_execution_is_successes_over_attempts(outcomes: list[TurnOutcome], expected: float) -> None:
    builder = EpisodeBuilder(load_config("2048"))
    for outcome in outcomes:
        builder.turn("<tool>left()</tool>", outcome)

    assert tool_execution(_state(builder.record)) == pytest.approx(expected)


# --- format_compliance ------------------------------------------------------------------------------------------


def test_format_compliance_counts_final_not_executed_turn() -> None:
    # per turn (0.6 * tags + 0.4 * valid action): 1.0, 1.0, 0.0, 0.6 (unknown action), 1.0 (cut off, call parses)
    assert format_compliance(_state(_computer_use_episode()), PARSER_CONFIG) == pytest.approx(3.6 / 5)


def test_format_compliance_not_executed_turn_without_call_scores_zero() -> None:
    builder = EpisodeBuilder(load_config("default"))
    builder.turn("<think>see</think><tool>screenshot()</tool>", TurnOutcome.EXECUTED)
    builder.turn("I ran out of turns", TurnOutcome.NOT_EXECUTED)

    assert format_compliance(_state(builder.record), PARSER_CONFIG) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("xml_weight", "action_weight", "expected"),
    [(0.6, 0.4, 0.6), (1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (3.0, 1.0, 0.75)],
    ids=["default-split", "tags-only", "action-only", "unnormalised-weights"],
)
def test_format_compliance_splits_weight_between_tags_and_action(
    xml_weight: float, action_weight: float, expected: float
) -> None:
    builder = EpisodeBuilder(load_config("default"))
    builder.turn("<think>menu</think><tool>right_click(1, 2)</tool>", TurnOutcome.ACTION_ERROR)  # tags 1.0, no action
    parser_config = ParserConfig(xml_weight=xml_weight, action_weight=action_weight)

    assert format_compliance(_state(builder.record), parser_config) == pytest.approx(expected)


def test_format_compliance_uses_the_tag_score() -> None:
    builder = EpisodeBuilder(load_config("default"))
    builder.turn("Sure! <tool>screenshot()", TurnOutcome.EXECUTED)  # tags: 0.2 unclosed + 0.2 one tag = 0.4

    assert format_compliance(_state(builder.record), PARSER_CONFIG) == pytest.approx(0.6 * 0.4 + 0.4)


# --- screenshot_behavior ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["<tool>screenshot()</tool>", "<tool>click(1, 2)</tool>"], 1.0),
        (["<tool>click(1, 2)</tool>", "<tool>screenshot()</tool>"], 0.0),
        (["no tool", "<tool>screenshot()</tool>"], 1.0),
        (["<tool>done()</tool>"], 0.0),
        (["no tool"], 0.0),
    ],
    ids=["screenshot-first", "click-first", "first-action-after-parse-error", "done-first", "no-action"],
)
def test_screenshot_behavior_rewards_screenshot_as_first_action(texts: list[str], expected: float) -> None:
    builder = EpisodeBuilder(load_config("default"))
    for text in texts:
        builder.turn(text, TurnOutcome.EXECUTED)

    assert screenshot_behavior(_state(builder.record)) == expected


def test_screenshot_behavior_accepts_screenshot_through_any_tool() -> None:
    record = EpisodeRecord("t")
    record.turns.append(
        TurnRecord(
            0,
            ToolXMLParser().parse_turn("<tool>look()</tool>"),
            TurnOutcome.EXECUTED,
            action=MappedAction("look", ToolCall("computer", {"action": "screenshot"})),
        )
    )

    assert screenshot_behavior(_state(record)) == 1.0


# --- thinking_quality ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("thoughts", "expected"),
    [
        (["The search box is at the top of the page."], 1.0),
        ([None], 0.0),
        (["   "], 0.0),
        (["Go."], 2 / 3),
        (["x" * 1501], 2 / 3),
        (["The search box is at the top.", "The search box is at the top."], (1.0 + 2 / 3) / 2),
        (["The search box is at the top.", "Now type the query into it."], 1.0),
        (["The search box is at the top.", None, "The search box is at the top."], (1.0 + 0.0 + 2 / 3) / 3),
    ],
    ids=["present-within-bounds-novel", "absent", "blank", "too-short", "too-long", "copy-of-previous",
         "different-from-previous", "copy-across-a-turn-without-thinking"],
)  # fmt: skip
def test_thinking_quality_scores_thirds(thoughts: list[str | None], expected: float) -> None:
    builder = EpisodeBuilder(load_config("default"))
    for think in thoughts:
        prefix = f"<think>{think}</think>" if think is not None else ""
        builder.turn(f"{prefix}<tool>screenshot()</tool>", TurnOutcome.EXECUTED)

    assert thinking_quality(_state(builder.record), BOUNDS) == pytest.approx(expected)


def test_thinking_quality_bounds_come_from_config() -> None:
    builder = EpisodeBuilder(load_config("default"))
    builder.turn("<think>Go.</think><tool>screenshot()</tool>", TurnOutcome.EXECUTED)

    assert thinking_quality(_state(builder.record), ThinkingBounds(min_chars=1)) == pytest.approx(1.0)


# --- without a record, everything is 0 ---------------------------------------------------------------------------


def test_components_without_episode_record_are_zero() -> None:
    state = _state(None)

    assert task_completion(state) == 0.0
    assert tool_execution(state) == 0.0
    assert format_compliance(state, PARSER_CONFIG) == 0.0
    assert screenshot_behavior(state) == 0.0
    assert thinking_quality(state, BOUNDS) == 0.0


# --- HUDRubric, scored by verifiers ----------------------------------------------------------------------------


def _rubric(config: EnvConfig) -> HUDRubric:
    return HUDRubric(config.rubric, config.parser, ToolXMLParser(config.parser.use_thinking))


def test_hud_rubric_defaults_when_config_has_no_rubric_section() -> None:
    config = parse_config({"system_prompt": "x", "action_mappings": {"left": {"_tool": "move", "direction": "left"}}})

    rubric = _rubric(config)

    assert rubric.weights_by_name == {
        "task_completion": 0.8,
        "tool_execution": 0.1,
        "format_compliance": 0.1,
        "screenshot_behavior": 0.0,
        "thinking_quality": 0.0,
    }
    assert rubric.weights[len(COMPONENT_NAMES) :] == [0.0] * len(METRIC_NAMES)


def test_hud_rubric_is_a_verifiers_rubric_with_the_parser() -> None:
    config = load_config("default")
    parser = ToolXMLParser(config.parser.use_thinking)

    rubric = HUDRubric(config.rubric, config.parser, parser)

    assert isinstance(rubric, vf.Rubric)
    assert rubric.parser is parser
    assert [function.__name__ for function in rubric.funcs] == COMPONENT_NAMES + METRIC_NAMES


def test_hud_rubric_score_rollout_sets_weighted_reward_and_metrics(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config("default")  # weights 0.75 / 0.05 / 0.1 / 0.05 / 0.05
    state = _state(_computer_use_episode())
    think_scores = [1.0, 1.0, 0.0, 1.0, 2 / 3]  # the last think copies the one before it
    expected_metrics: dict[str, Any] = {
        "task_completion": 0.5,
        "tool_execution": 1 / 4,
        "format_compliance": 3.6 / 5,
        "screenshot_behavior": 1.0,
        "thinking_quality": sum(think_scores) / 5,
        "tool_attempts": 4.0,
        "parse_errors": 1.0,
        "action_errors": 1.0,
        "tool_errors": 1.0,
        "evaluation_failed": 0.0,
        "env_seconds": 2.0,
    }

    asyncio.run(_rubric(config).score_rollout(state))

    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]  # verifiers logs, gives 0
    assert state["metrics"] == pytest.approx(expected_metrics)
    weights = config.rubric.weights.model_dump()
    assert state["reward"] == pytest.approx(sum(weights[name] * expected_metrics[name] for name in COMPONENT_NAMES))


def test_hud_rubric_score_rollout_reports_failed_evaluation() -> None:
    record = _computer_use_episode()
    record.grade = Grade(reward=1.0, is_error=True, content="evaluator crashed")
    state = _state(record)

    asyncio.run(_rubric(load_config("default")).score_rollout(state))

    assert state["metrics"]["task_completion"] == 0.0
    assert state["metrics"]["evaluation_failed"] == 1.0


def test_hud_rubric_score_group_scores_each_state_and_sets_advantage() -> None:
    rubric = _rubric(load_config("2048"))  # weights 0.8 / 0.05 / 0.15
    states = []
    for reward in (1.0, 0.0):
        builder = EpisodeBuilder(load_config("2048"))
        builder.turn("<tool>left()</tool>", TurnOutcome.EXECUTED)
        builder.record.grade = Grade(reward=reward)
        states.append(_state(builder.record))

    asyncio.run(rubric.score_group(states))

    # tool_execution and format_compliance are 1.0 in both, so the rewards differ by task_completion alone
    assert [state["reward"] for state in states] == pytest.approx([1.0, 0.2])
    assert [state["advantage"] for state in states] == pytest.approx([0.4, -0.4])
    assert set(states[0]["metrics"]) == set(COMPONENT_NAMES + METRIC_NAMES)


def test_episode_builder_records_mapping_results() -> None:
    # guards the helper above: turns carry the parser's and the mapper's own objects
    record = _computer_use_episode()

    assert record.turns[0].parsed.call == ParsedCall("screenshot")
    assert record.turns[0].action == MappedAction("screenshot", ToolCall("computer", {"action": "screenshot"}))
    assert isinstance(record.turns[3].action_error, ActionError)
    assert record.turns[4].action is None and not record.turns[4].attempted
