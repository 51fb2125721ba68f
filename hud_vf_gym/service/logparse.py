"""Reading a training process's log: which lines are step metrics, and the checkpoints it saved.

transformers' `PrinterCallback` (what a Trainer uses with `disable_tqdm=True`) and `ProgressCallback` print each
`Trainer.log` call as a Python dict, floats already formatted as strings:

    {'loss': '0.0123', 'grad_norm': '1.5', 'learning_rate': '1e-05', 'reward': '0.4', ..., 'epoch': '0.25'}

A dict with `loss` or `reward` is one logging step's metrics; the dict with `train_runtime` is the run's summary.
Anything else is a plain log line. The step number is not in the printed dict: the service counts the metric
lines of an attempt (it sets `logging_steps=1`) and adds the step the attempt resumed from.
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["MAX_LINE_CHARS", "ParsedLine", "finished_checkpoints", "parse_line"]

MAX_LINE_CHARS = 4000  # a longer log line is cut: it is a dump, not a message anyone reads in an event stream
_STEP_KEYS = frozenset({"loss", "reward"})
_SUMMARY_KEY = "train_runtime"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# the file a Trainer writes into a checkpoint folder last (after the weights, optimizer and scheduler)
_CHECKPOINT_COMPLETE_FILE = "trainer_state.json"


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """One log line: a step's metrics, the run's summary, or a plain line."""

    kind: Literal["metric", "summary", "log"]
    text: str
    metrics: dict[str, float]


def _number(value: object) -> float | None:
    """A metric value as a float (they are printed as strings), None for anything not a finite number."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # str, int or float here; anything else raises
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _as_dict(text: str) -> dict[str, float] | None:
    """The numeric entries of a printed dict, or None when the line is not one."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        value = ast.literal_eval(text)  # literals only: a log line can never run code
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        return None
    numbers = {key: _number(item) for key, item in value.items()}
    return {key: number for key, number in numbers.items() if number is not None}


def parse_line(line: str) -> ParsedLine:
    """Classify one log line (without its newline)."""
    text = line.strip()[:MAX_LINE_CHARS]
    metrics = _as_dict(text)
    if metrics is not None:
        if _SUMMARY_KEY in metrics:
            return ParsedLine("summary", text, metrics)
        if _STEP_KEYS & set(metrics):
            return ParsedLine("metric", text, metrics)
    return ParsedLine("log", text, {})


def finished_checkpoints(output_dir: Path) -> dict[int, Path]:
    """The complete `checkpoint-<step>` folders in a training output folder, by step."""
    found: dict[int, Path] = {}
    if not output_dir.is_dir():
        return found
    for entry in output_dir.iterdir():
        match = _CHECKPOINT.match(entry.name)
        if match and (entry / _CHECKPOINT_COMPLETE_FILE).is_file():
            found[int(match.group(1))] = entry
    return found
