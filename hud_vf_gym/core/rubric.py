"""The weighted rubric: five components from seed 002, each a small reward function over the episode record.

| component           | value in [0, 1]                                                                      |
|---------------------|--------------------------------------------------------------------------------------|
| task_completion     | the grade the task's evaluate tool returned (0 when the evaluation itself failed)    |
| tool_execution      | turns whose action ran without error / turns the environment acted on              |
| format_compliance   | mean over turns of (xml_weight * tag score + action_weight * valid action), normalised |
| screenshot_behavior | 1 when the first action takes a screenshot                                            |
| thinking_quality    | mean over turns of thirds: thinking present, its length within bounds, not a copy     |

Every component is reported as a metric even when its weight is 0, and so are the counts behind them
(`tool_attempts`, `parse_errors`, `action_errors`, `tool_errors`, `evaluation_failed`, `env_seconds`).
All functions read `state["hud"]` (an `EpisodeRecord`); none of them parses model text. `score_episode` is the one
place a finished episode is scored outside verifiers (the Gym env, the trainer, the eval CLI): the same functions,
the same weights, summed in the same order as the classic adapter's `HUDRubric` (`hud_vf_gym.classic`).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from hud_vf_gym.config import EnvConfig, ParserConfig, ThinkingBounds
from hud_vf_gym.core.record import STATE_KEY, EpisodeRecord, TurnOutcome, TurnRecord

__all__ = [
    "COMPONENTS",
    "METRICS",
    "EpisodeScore",
    "State",
    "format_compliance",
    "score_episode",
    "screenshot_behavior",
    "task_completion",
    "thinking_quality",
    "tool_execution",
]


State = Mapping[str, Any]
"""What the rubric functions read: a mapping holding the `EpisodeRecord` under `state["hud"]` (a verifiers State
in the classic adapter, a plain dict elsewhere)."""


def _episode(state: State) -> EpisodeRecord | None:
    record = state.get(STATE_KEY)
    return record if isinstance(record, EpisodeRecord) else None


def task_completion(state: State) -> float:
    """The task's grade from its evaluate tool; 0 when there is none or the evaluation failed."""
    episode = _episode(state)
    if episode is None or episode.grade is None or episode.grade.is_error:
        return 0.0
    return float(episode.grade.reward)


def tool_execution(state: State) -> float:
    """Successful actions / attempted actions; no call, bad syntax or an unknown action count as failures."""
    episode = _episode(state)
    attempted = episode.attempted_turns if episode else []
    if not attempted:
        return 0.0
    return sum(turn.succeeded for turn in attempted) / len(attempted)


def turn_format_score(turn: TurnRecord, parser_config: ParserConfig) -> float:
    """One turn's format score: tags weighted by xml_weight, a valid action by action_weight.

    A turn the environment never acted on (the episode ended first) was never mapped, so its action counts as
    valid when its call parsed: the model is not penalised for a step the environment cut off.
    """
    total = parser_config.xml_weight + parser_config.action_weight
    xml_part = parser_config.xml_weight * turn.parsed.xml_score
    valid = turn.action_valid if turn.attempted else turn.parsed.call is not None
    action_part = parser_config.action_weight * (1.0 if valid else 0.0)
    return (xml_part + action_part) / total


def format_compliance(state: State, parser_config: ParserConfig) -> float:
    """Mean format score over every assistant turn, the last one included even when it was never executed."""
    episode = _episode(state)
    if episode is None or not episode.turns:
        return 0.0
    return sum(turn_format_score(turn, parser_config) for turn in episode.turns) / len(episode.turns)


def screenshot_behavior(state: State) -> float:
    """1 when the episode's first action took a screenshot, else 0."""
    episode = _episode(state)
    first = episode.first_action() if episode else None
    if first is None:
        return 0.0
    call = first.tool_call
    takes_screenshot = first.action == "screenshot" or (
        call is not None and call.arguments.get("action") == "screenshot"
    )
    return 1.0 if takes_screenshot else 0.0


def turn_thinking_score(turn: TurnRecord, previous_think: str | None, bounds: ThinkingBounds) -> float:
    """Thirds for: thinking present; its length within [min_chars, max_chars]; not a near-copy of the last turn's."""
    think = (turn.parsed.think or "").strip()
    if not think:
        return 0.0
    within_bounds = bounds.min_chars <= len(think) <= bounds.max_chars
    similarity = difflib.SequenceMatcher(None, think, previous_think).ratio() if previous_think else 0.0
    novel = similarity <= bounds.max_similarity
    return (1.0 + within_bounds + novel) / 3.0


def thinking_quality(state: State, thinking_bounds: ThinkingBounds) -> float:
    """Mean thinking score over every assistant turn (see `turn_thinking_score`)."""
    episode = _episode(state)
    if episode is None or not episode.turns:
        return 0.0
    scores, previous = [], None
    for turn in episode.turns:
        scores.append(turn_thinking_score(turn, previous, thinking_bounds))
        previous = (turn.parsed.think or "").strip() or previous
    return sum(scores) / len(scores)


def tool_attempts(state: State) -> float:
    """How many turns the environment acted on."""
    episode = _episode(state)
    return float(len(episode.attempted_turns)) if episode else 0.0


def parse_errors(state: State) -> float:
    """Turns with no tool call or one that could not be parsed."""
    episode = _episode(state)
    return float(episode.count(TurnOutcome.PARSE_ERROR)) if episode else 0.0


def action_errors(state: State) -> float:
    """Turns whose call named an unknown action, had bad arguments or tried a lifecycle tool."""
    episode = _episode(state)
    return float(episode.count(TurnOutcome.ACTION_ERROR)) if episode else 0.0


def tool_errors(state: State) -> float:
    """Turns whose tool ran and reported an error."""
    episode = _episode(state)
    return float(episode.count(TurnOutcome.TOOL_ERROR)) if episode else 0.0


def evaluation_failed(state: State) -> float:
    """1 when the task's evaluation returned an error (so task_completion is 0 for that reason)."""
    episode = _episode(state)
    return 1.0 if episode is not None and episode.grade is not None and episode.grade.is_error else 0.0


def env_seconds(state: State) -> float:
    """Seconds spent in the environment (setup, tool calls, evaluation), as opposed to the model."""
    episode = _episode(state)
    return episode.setup_seconds + episode.env_seconds + episode.evaluate_seconds if episode else 0.0


COMPONENTS = {
    "task_completion": task_completion,
    "tool_execution": tool_execution,
    "format_compliance": format_compliance,
    "screenshot_behavior": screenshot_behavior,
    "thinking_quality": thinking_quality,
}
METRICS = [tool_attempts, parse_errors, action_errors, tool_errors, evaluation_failed, env_seconds]


@dataclass(frozen=True, slots=True)
class EpisodeScore:
    """An episode's reward as `HUDRubric` computes it: the weighted total, the five components, the count metrics."""

    reward: float
    components: Mapping[str, float]
    metrics: Mapping[str, float]


def score_episode(record: EpisodeRecord, config: EnvConfig) -> EpisodeScore:
    """Score a finished episode exactly as `HUDRubric` does for a verifiers rollout (same functions, same weights).

    Args:
        record: the episode's record, graded (or not) by its evaluate tool(s).
        config: the environment config: rubric weights and thinking bounds, and the parser's format weights.
    """
    state = {STATE_KEY: record}
    injected = {"parser_config": config.parser, "thinking_bounds": config.rubric.thinking}
    functions = cast("dict[str, Callable[..., float]]", COMPONENTS)  # mypy joins their signatures to `function`
    components = {name: _call_reward_function(function, state, injected) for name, function in functions.items()}
    metrics = {function.__name__: _call_reward_function(function, state, injected) for function in METRICS}
    weights = config.rubric.weights.model_dump()
    # summed in the rubric's order, as verifiers' Rubric.score_rollout does, so the float is the same to the last bit
    reward = sum([components[name] * weights[name] for name in COMPONENTS])
    return EpisodeScore(reward=float(reward), components=components, metrics=metrics)


def _call_reward_function(function: Callable[..., Any], state: dict[str, Any], injected: dict[str, Any]) -> float:
    """Call a rubric function with the state and the objects it asks for by name (as verifiers injects them)."""
    wanted = inspect.signature(function).parameters
    return float(function(state, **{name: value for name, value in injected.items() if name in wanted}))
