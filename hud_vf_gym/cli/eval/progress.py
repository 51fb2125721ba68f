"""What `hud-vf-gym eval` shows while it runs: a live frame on a terminal, plain lines anywhere else.

The run reports four events, from three places:

- `rollout_started` / `rollout_finished`: the eval loop, around each (task, rollout) pair;
- `turn`: the harness, after every acted-on turn (`Harness.turn_listeners`, see `turn_listener`), so a turn is
  shown the moment its tool call returns, whatever runs the rollout;
- `tokens`: the model client, after every reply (its `usage.completion_tokens`; `CountingClient`, which wraps the
  `openai.AsyncOpenAI` client `run_chat_episode` asks).

`Progress` keeps the state (per rollout: task, turn n/max, last action, running reward; overall: finished/total,
tokens/s, elapsed, ETA) and hands it to one of two views:

- `LiveView` (stderr is a terminal): a frame redrawn in place with plain ANSI escapes (cursor up, clear to the end
  of the screen), at most every `REFRESH_S` and at least that often while rollouts run, each line cut to the
  terminal's width so nothing wraps;
- `LineView` (stderr is a file or a pipe: CI logs, `2> log`): one line per turn and per finished rollout, no escape
  codes.

The ETA counts progress in turns as well as rollouts (a rollout at turn 4 of 10 is 40% done), so it exists from the
first turn on; rollouts that end early with `done()` make it an upper bound.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from hud_vf_gym.core.harness import TaskEpisode
    from hud_vf_gym.core.record import TurnRecord

__all__ = [
    "CURRENT_ROLLOUT",
    "CountingClient",
    "LineView",
    "LiveView",
    "Progress",
    "RolloutProgress",
    "View",
    "describe_turn",
    "format_duration",
    "open_progress",
    "turn_listener",
]

REFRESH_S = 0.25  # the live frame's redraw interval (4 frames a second is smooth and costs nothing)
ACTION_CHARS = 24  # of the last action in a frame row (a row fits 80 columns)
LABEL_CHARS = 28  # of the task id and rollout index in a frame row

# The (task index, rollout index) of the rollout the current asyncio task runs; set by the eval loop around each
# rollout, read by the turn listener to find the row a turn belongs to (asyncio tasks inherit it).
CURRENT_ROLLOUT: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "hud_vf_gym_current_rollout", default=None
)


@dataclass(slots=True)
class RolloutProgress:
    """One rollout as the display shows it."""

    task_id: str
    rollout_index: int
    turn: int = 0  # acted-on turns so far
    last_action: str = ""
    reward: float | None = None  # running (ungraded until the end), then final
    finished: bool = False
    error: str | None = None

    @property
    def label(self) -> str:
        """The task id and rollout index, as `2048_3x3_target_16 #0`."""
        return f"{self.task_id} #{self.rollout_index}"


def format_duration(seconds: float) -> str:
    """`m:ss` (or `h:mm:ss` past an hour)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def describe_turn(turn: TurnRecord) -> str:
    """A turn's action as the model wrote it, with what went wrong if anything (`left()`, `jump() [action_error]`)."""
    from hud_vf_gym.core.record import TurnOutcome

    call = turn.parsed.call
    text = call.format() if call is not None else "(no valid call)"
    if turn.outcome in (TurnOutcome.ACTION_ERROR, TurnOutcome.TOOL_ERROR):
        text = f"{text} [{turn.outcome.value}]"
    return text


class View(Protocol):
    """Where the progress goes: redrawn in place (`LiveView`) or as lines (`LineView`)."""

    def update(self, progress: Progress, event: str, *, force: bool = False) -> None:
        """Show the new state; `event` is one plain line describing what just happened ("" for a clock tick).

        `force`: a change that must be shown even right after the previous one (a finished rollout).
        """

    def close(self, progress: Progress) -> None:
        """Leave the final state on screen."""


class Progress:
    """The state of a run's rollouts, fed by the eval loop, the harness and the model client.

    Args:
        total: rollouts in the whole run (those finished by an earlier, resumed run included).
        already_finished: rollouts finished before this process started (`--resume`).
        max_turns: the turn limit of every rollout.
        view: where to show it (`open_progress` picks one for the stream).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        total: int,
        already_finished: int,
        max_turns: int,
        view: View,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Nothing is shown, and the clock does not run, until the first rollout starts (after the model loaded)."""
        self.total = total
        self.already_finished = already_finished
        self.max_turns = max_turns
        self.view = view
        self.clock = clock
        self.started: float | None = None
        self.rollouts: dict[tuple[int, int], RolloutProgress] = {}
        self.output_tokens = 0
        self.rewards: list[float] = []

    # -- events -------------------------------------------------------------------------------------------------------

    def rollout_started(self, key: tuple[int, int], task_id: str) -> None:
        """A rollout began (its server starts and its setup runs next)."""
        if self.started is None:
            self.started = self.clock()
        self.rollouts[key] = RolloutProgress(task_id, key[1])
        self.view.update(self, "")

    def turn(self, key: tuple[int, int], turn: int, action: str, reward: float) -> None:
        """A rollout's turn was acted on: `turn` turns so far, the last action, the reward as scored so far."""
        rollout = self.rollouts.get(key)
        if rollout is None:
            return
        rollout.turn, rollout.last_action, rollout.reward = turn, action, reward
        self.view.update(self, f"{rollout.label}: turn {turn}/{self.max_turns} {action}, reward so far {reward:.3f}")

    def tokens(self, count: int) -> None:
        """The model wrote `count` more tokens."""
        self.output_tokens += count

    def rollout_finished(self, key: tuple[int, int], *, reward: float | None, turns: int, error: str | None) -> None:
        """A rollout ended: its final reward (None when an infrastructure error kept it unscored) and turn count."""
        rollout = self.rollouts.get(key)
        if rollout is None:
            return
        rollout.finished, rollout.reward, rollout.turn, rollout.error = True, reward, turns, error
        if reward is not None and error is None:
            self.rewards.append(reward)
        outcome = f"reward {reward:.3f}" if reward is not None else "not scored"
        suffix = f" ({error})" if error else ""
        self.view.update(self, f"{rollout.label}: finished after {turns} turn(s), {outcome}{suffix}", force=True)

    def tick(self) -> None:
        """Let the clock-driven parts (elapsed, ETA) move on."""
        if self.started is not None:
            self.view.update(self, "")

    def close(self) -> None:
        """Show the final state (nothing when no rollout started)."""
        if self.started is not None:
            self.view.close(self)

    # -- derived ------------------------------------------------------------------------------------------------------

    @property
    def finished(self) -> int:
        """Rollouts finished, this run's and a resumed run's."""
        return self.already_finished + sum(1 for rollout in self.rollouts.values() if rollout.finished)

    @property
    def elapsed(self) -> float:
        """Seconds since the first rollout of this run started."""
        return 0.0 if self.started is None else self.clock() - self.started

    @property
    def tokens_per_second(self) -> float:
        """Completion tokens per second of this run."""
        return self.output_tokens / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mean_reward(self) -> float | None:
        """Mean final reward of this run's scored rollouts."""
        return sum(self.rewards) / len(self.rewards) if self.rewards else None

    def eta(self) -> float | None:
        """Seconds left, from the share of this run's work done (finished rollouts, and turns of running ones)."""
        to_run = self.total - self.already_finished
        if to_run <= 0:
            return 0.0
        done = sum(
            1.0 if rollout.finished else min(rollout.turn, self.max_turns) / self.max_turns
            for rollout in self.rollouts.values()
        )
        if done <= 0:
            return None
        return self.elapsed * (to_run - done) / done

    def summary_line(self) -> str:
        """The overall line: finished/total, mean reward, tokens/s, elapsed, ETA."""
        eta = self.eta()
        mean = self.mean_reward
        parts = [
            f"{self.finished}/{self.total} finished",
            f"mean reward {mean:.3f}" if mean is not None else "mean reward -",
            f"{self.tokens_per_second:.1f} tokens/s",
            f"elapsed {format_duration(self.elapsed)}",
            f"ETA {format_duration(eta)}" if eta is not None else "ETA -",
        ]
        return " | ".join(parts)

    def rows(self) -> list[str]:
        """One line per rollout of this run that is running or finished (running ones first), as a table."""
        header = f"  {'task':<{LABEL_CHARS}} {'turn':>7}  {'last action':<{ACTION_CHARS}} {'reward':>7}"
        ordered = sorted(self.rollouts.items(), key=lambda item: (item[1].finished, item[0]))
        lines = [header]
        for _, rollout in ordered:
            if rollout.finished:
                turn = "done" if rollout.error is None else "error"
            elif rollout.turn == 0 and not rollout.last_action:
                turn = "setup"
            else:
                turn = f"{rollout.turn}/{self.max_turns}"
            reward = "-" if rollout.reward is None else f"{rollout.reward:.3f}"
            lines.append(
                f"  {_cut(rollout.label, LABEL_CHARS):<{LABEL_CHARS}} {turn:>7}  "
                f"{_cut(rollout.last_action, ACTION_CHARS):<{ACTION_CHARS}} {reward:>7}"
            )
        return lines


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


class LineView:
    """Plain lines, one per turn and per finished rollout, each ending with the overall line's numbers."""

    def __init__(self, stream: TextIO) -> None:
        """Write to `stream`."""
        self.stream = stream

    def update(self, progress: Progress, event: str, *, force: bool = False) -> None:
        """Write the event (clock ticks and starts write nothing: a log is not a screen)."""
        if event:
            self.stream.write(f"{event} | {progress.summary_line()}\n")
            self.stream.flush()

    def close(self, progress: Progress) -> None:
        """Write the overall line once more."""
        self.stream.write(progress.summary_line() + "\n")
        self.stream.flush()


class LiveView:
    """A frame redrawn in place: the overall line, then one row per rollout (the most recent `max_rows`).

    Args:
        stream: a terminal.
        max_rows: rollout rows shown at most (the rest are counted in one line), so a frame fits the screen.
        width: the terminal's width (default: asked of the terminal at each frame).
        clock: seconds, monotonic; frames closer together than `REFRESH_S` are skipped.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        max_rows: int | None = None,
        width: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Draw nothing yet."""
        self.stream = stream
        self.max_rows = max_rows
        self.width = width
        self.clock = clock
        self._drawn_lines = 0
        self._last_draw = float("-inf")

    def frame(self, progress: Progress) -> list[str]:
        """The lines of one frame, each cut to the terminal's width."""
        size = self._terminal_size()
        width = self.width or size.columns
        max_rows = self.max_rows or max(3, size.lines - 4)
        header, *rows = progress.rows()
        shown = rows[:max_rows]
        lines = [progress.summary_line(), header, *shown]
        if len(rows) > len(shown):
            lines.append(f"  ... and {len(rows) - len(shown)} more")
        return [line[:width] for line in lines]

    def _terminal_size(self) -> os.terminal_size:
        """The size of the terminal this view draws on (not stdout's: stdout may be a pipe or a file).

        A terminal whose size was never set reports 0 x 0 (`script`, `docker exec -t`, some CI consoles): then
        `COLUMNS`/`LINES` or 80 x 24, as for a stream that is no terminal, instead of cutting every line to nothing.
        """
        try:
            size = os.get_terminal_size(self.stream.fileno())
        except (AttributeError, OSError, ValueError):  # not a real file (a test's StringIO)
            return shutil.get_terminal_size()
        return size if size.columns > 0 and size.lines > 0 else shutil.get_terminal_size()

    def update(self, progress: Progress, event: str, *, force: bool = False) -> None:
        """Redraw, unless the last frame is younger than `REFRESH_S` and the change is not `force`d."""
        now = self.clock()
        if now - self._last_draw < REFRESH_S and not force:
            return
        self._draw(self.frame(progress))
        self._last_draw = now

    def close(self, progress: Progress) -> None:
        """Draw the final frame and leave it there."""
        self._draw(self.frame(progress))
        self._drawn_lines = 0

    def _erase(self) -> None:
        if self._drawn_lines:
            # to the start of the frame's first line, then clear to the end of the screen
            self.stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")
            self._drawn_lines = 0

    def _draw(self, lines: list[str]) -> None:
        self._erase()
        self.stream.write("".join(line + "\x1b[K\n" for line in lines))
        self.stream.flush()
        self._drawn_lines = len(lines)


def open_progress(total: int, already_finished: int, max_turns: int, stream: TextIO | None = None) -> Progress:
    """A `Progress` drawn live on `stream` (default: stderr) when it is a terminal, as plain lines otherwise."""
    target = stream if stream is not None else sys.stderr
    view: View = LiveView(target) if target.isatty() else LineView(target)
    return Progress(total, already_finished, max_turns, view)


def turn_listener(progress: Progress) -> Callable[[TaskEpisode, TurnRecord], None]:
    """A `Harness.turn_listeners` entry that reports each acted-on turn of the current rollout to `progress`."""
    from hud_vf_gym.core.rubric import score_episode

    def on_turn(episode: TaskEpisode, turn: TurnRecord) -> None:
        key = CURRENT_ROLLOUT.get()
        if key is None:  # a turn outside the eval loop's rollouts (none today): nothing to attribute it to
            return
        reward = score_episode(episode.record, episode.harness.config).reward  # ungraded so far: completion 0
        progress.turn(key, turn.index + 1, describe_turn(turn), reward)

    return on_turn


class CountingClient:
    """An `openai.AsyncOpenAI` client that reports each chat reply's completion tokens (for tokens/s).

    `run_chat_episode` asks the model through `client.chat.completions.create`; that call is the one counted, and
    every other attribute (`close`, `base_url`, ...) is the wrapped client's.
    """

    def __init__(self, client: Any, on_tokens: Callable[[int], None]) -> None:
        """Wrap an `AsyncOpenAI` client; `on_tokens` gets each reply's completion token count."""
        self.client = client
        self.on_tokens = on_tokens
        self.chat = _CountingChat(self)

    def __getattr__(self, name: str) -> Any:
        """Everything but `chat` is the wrapped client's."""
        return getattr(self.client, name)


class _CountingChat:
    """`client.chat` with a counting `completions`."""

    def __init__(self, owner: CountingClient) -> None:
        self.completions = _CountingCompletions(owner)


class _CountingCompletions:
    """`client.chat.completions` whose `create` counts the reply's completion tokens."""

    def __init__(self, owner: CountingClient) -> None:
        self._owner = owner

    async def create(self, *args: Any, **kwargs: Any) -> Any:
        """Ask the model as the plain client does, then count the reply."""
        response = await self._owner.client.chat.completions.create(*args, **kwargs)
        usage = getattr(response, "usage", None)
        self._owner.on_tokens(int(getattr(usage, "completion_tokens", 0) or 0))
        return response
