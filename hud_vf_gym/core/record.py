"""The per-rollout record: every turn as parsed, mapped and executed, plus setup, grade, errors and timings.

The turn loop writes one `EpisodeRecord` into `state["hud"]`; the rubric, the result writer, the trainer and the
Gymnasium wrapper read it. Nothing downstream parses model text again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from hud_vf_gym.core.actions import ActionError, MappedAction
from hud_vf_gym.core.parser import ParsedTurn
from hud_vf_gym.types import Grade, ToolResult

__all__ = ["EpisodeRecord", "TurnOutcome", "TurnRecord"]

STATE_KEY = "hud"  # where the record lives in a verifiers State


class TurnOutcome(StrEnum):
    """What became of one assistant turn."""

    EXECUTED = "executed"  # the tool ran and reported success
    TOOL_ERROR = "tool_error"  # the tool ran and reported an error (isError or the error pattern)
    PARSE_ERROR = "parse_error"  # no tool call, or one that could not be parsed
    ACTION_ERROR = "action_error"  # parsed, but unknown action, bad arguments or a lifecycle tool
    DONE = "done"  # the agent called done()
    NOT_EXECUTED = "not_executed"  # the episode ended (max turns, timeout) before the turn was acted on


@dataclass(slots=True)
class TurnRecord:
    """One assistant turn: what the model wrote, what it meant, what ran and what came back."""

    index: int
    parsed: ParsedTurn
    outcome: TurnOutcome = TurnOutcome.NOT_EXECUTED
    action: MappedAction | None = None
    action_error: ActionError | None = None
    result: ToolResult | None = None
    env_seconds: float = 0.0

    @property
    def action_valid(self) -> bool:
        """The turn held a call that parsed and mapped to an executable action."""
        return self.action is not None

    @property
    def attempted(self) -> bool:
        """The environment acted on this turn (every outcome except NOT_EXECUTED)."""
        return self.outcome is not TurnOutcome.NOT_EXECUTED

    @property
    def succeeded(self) -> bool:
        """The turn's action ran without error (done() counts as a success)."""
        return self.outcome in (TurnOutcome.EXECUTED, TurnOutcome.DONE)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready summary (images are counted, not inlined)."""
        call = self.action.tool_call if self.action else None
        return {
            "index": self.index,
            "outcome": self.outcome.value,
            "think": self.parsed.think,
            "tool_text": self.parsed.tool_text,
            "action": self.action.action if self.action else None,
            "tool_call": call.to_json() if call else None,
            "error": (self.parsed.error.message if self.parsed.error else None)
            or (self.action_error.message if self.action_error else None),
            "result_text": self.result.text if self.result else None,
            "result_images": len(self.result.images) if self.result else 0,
            "xml_score": self.parsed.xml_score,
            "env_seconds": round(self.env_seconds, 6),
        }


@dataclass(slots=True)
class EpisodeRecord:
    """Everything the environment learned during one rollout."""

    task_id: str
    turns: list[TurnRecord] = field(default_factory=list)
    setup_results: list[ToolResult] = field(default_factory=list)
    evaluate_results: list[ToolResult] = field(default_factory=list)
    grade: Grade | None = None
    infra_error: str | None = None
    task_error: str | None = None  # the row could not run as written (`TaskDefinitionError`)
    evaluation_error: str | None = None  # the evaluation failed: the evaluator's message (`EvaluationError`)
    truncation: str | None = None  # why the episode was cut short while the model was generating (rollout_s)
    setup_seconds: float = 0.0
    env_seconds: float = 0.0
    evaluate_seconds: float = 0.0

    @property
    def attempted_turns(self) -> list[TurnRecord]:
        """Turns the environment acted on."""
        return [turn for turn in self.turns if turn.attempted]

    def count(self, outcome: TurnOutcome) -> int:
        """How many turns ended with `outcome`."""
        return sum(1 for turn in self.turns if turn.outcome is outcome)

    def first_action(self) -> MappedAction | None:
        """The first action the environment executed (or tried to), if any."""
        return next((turn.action for turn in self.turns if turn.action is not None), None)

    def to_json(self) -> dict[str, Any]:
        """Return a JSON-ready summary for results files."""
        grade = self.grade
        return {
            "task_id": self.task_id,
            "turns": [turn.to_json() for turn in self.turns],
            "grade": None
            if grade is None
            else {
                "reward": grade.reward,
                "done": grade.done,
                "content": grade.content,
                "info": dict(grade.info),
                "is_error": grade.is_error,
                "source": grade.source,
            },
            "infra_error": self.infra_error,
            "task_error": self.task_error,
            "evaluation_error": self.evaluation_error,
            "truncation": self.truncation,
            "timing": {
                "setup_s": round(self.setup_seconds, 6),
                "env_s": round(self.env_seconds, 6),
                "evaluate_s": round(self.evaluate_seconds, 6),
            },
        }
