"""Scripted policies for `ScriptedChatServer`: pure functions of the conversation, no network, no hidden state.

Each policy is stateless: it reads everything it needs from the messages, so the same history always gets the same
reply and one policy can serve many concurrent rollouts.

- `Play2048Policy` plays text-2048 through the XML tool format (`<tool>down()</tool>`, then `<tool>done()</tool>`).
- `NonsensePolicy` never makes a valid tool call (a model that ignores the format).
- `FixedRepliesPolicy` replays a fixed list of replies, one per assistant turn.

`make_policy(name, **kwargs)` builds one by name: "2048", "nonsense" or "fixed".
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hud_vf_gym.testing.chat_server import Policy, ToolCallReply, message_text

__all__ = [
    "DIRECTIONS",
    "FixedRepliesPolicy",
    "NonsensePolicy",
    "POLICIES",
    "Play2048Policy",
    "make_policy",
]

DIRECTIONS = ("down", "left", "right", "up")  # Play2048Policy's default preference: keep big tiles in a corner

# A move the policy made, as it wrote it (`<tool>left()</tool>`).
_MOVE_CALL = re.compile(r"<tool>\s*(left|right|up|down)\(\s*\)\s*</tool>")
# The 2048 server's answer to a move that changes nothing.
_CANNOT_MOVE = re.compile(r"ERROR: Cannot move (left|right|up|down)", re.IGNORECASE)
_ERROR_MARK = "ERROR:"  # every 2048 error result starts with this; results are never flagged isError
_GAME_OVER_MARK = "GAME OVER"

_NONSENSE_WORDS = (
    "banana", "cloud", "maybe", "tile", "seven", "purple", "board", "quietly", "left", "merge",
    "tomorrow", "sure", "the", "a", "of", "grid", "number", "slide", "wait", "hmm",
)  # fmt: skip
# Broken tool-call fragments: each looks like a call but none is one. At most one goes into a reply, and the words
# around it hold no brackets, so a reply can never contain a well-formed `<tool>name(...)</tool>`.
_BROKEN_FRAGMENTS = (
    "<tool>left(",
    "<tol>up()</tol>",
    "<tool>right()",
    "down()</tool>",
    "<tool>up(</tool>",
    "<tool>",
    "tool: left()",
)
_NONSENSE_MIN_WORDS, _NONSENSE_MAX_WORDS = 3, 12
_BROKEN_FRAGMENT_PROBABILITY = 0.5  # "sometimes": about every other reply carries a broken tag
_SEED_STRIDE = 1_000_003  # a prime, so (seed, history length) pairs map to distinct RNG seeds


def _role(message: dict[str, Any]) -> str:
    """Return a message's role ("" when it has none)."""
    role = message.get("role")
    return role if isinstance(role, str) else ""


@dataclass(frozen=True, slots=True)
class _GameProgress:
    """What a 2048 conversation tells the policy: moves that worked and directions that failed since the last one."""

    successful_moves: int
    failed_since_last_move: frozenset[str]
    game_over: bool


def _read_progress(messages: list[dict[str, Any]]) -> _GameProgress:
    """Replay the conversation: pair each move the assistant made with the observation that answered it."""
    successful_moves = 0
    failed: set[str] = set()
    game_over = False
    awaiting: str | None = None  # the direction of the last move not yet answered by an observation
    for message in messages:
        role, text = _role(message), message_text(message)
        if role == "assistant":
            match = _MOVE_CALL.search(text)
            awaiting = match.group(1) if match else None
        elif role in ("user", "tool") and awaiting is not None:
            cannot_move = _CANNOT_MOVE.search(text)
            if cannot_move is not None:
                failed.add(cannot_move.group(1).lower())
            elif _ERROR_MARK in text:
                failed.add(awaiting)  # another error (bad direction, game not set up): don't repeat that move
            else:
                successful_moves += 1
                failed.clear()
            game_over = _GAME_OVER_MARK in text
            awaiting = None
    return _GameProgress(successful_moves, frozenset(failed), game_over)


class Play2048Policy:
    """Plays text-2048 with the XML tool format: a fixed preference order that skips directions that failed.

    Each reply is one action, `<tool>down()</tool>` (the 2048 config maps `left()`, `right()`, `up()` and `down()`
    to its `move` tool), or `<tool>done()</tool>` to finish. The policy replays the conversation to decide:
    after a successful move it tries the first direction of `order` again; after "ERROR: Cannot move <dir>" it tries
    the next direction that has not failed since the last successful move. It answers `done()` after `max_moves`
    successful moves, when every direction has failed, or when the last observation says "GAME OVER".

    Args:
        thinking: put a `<think>...</think>` line before each tool call.
        max_moves: successful moves before `done()`; None plays until no direction works.
        order: the preference order, some or all of "down", "left", "right", "up", without repeats.
        look_ahead: read the last board in the conversation and skip directions that would not move it, so
            every move succeeds (tool_execution 1.0); without it the policy learns only from "Cannot move" errors.
    """

    def __init__(
        self,
        thinking: bool = False,
        *,
        max_moves: int | None = None,
        order: Sequence[str] = DIRECTIONS,
        look_ahead: bool = False,
    ) -> None:
        """Check and store the settings."""
        if max_moves is not None and max_moves < 0:
            raise ValueError(f"max_moves must be None or >= 0, got {max_moves}")
        unknown = [direction for direction in order if direction not in DIRECTIONS]
        if not order or unknown or len(set(order)) != len(order):
            raise ValueError(
                f"order must be distinct directions from {', '.join(DIRECTIONS)}, got {list(order)!r}"
                " (at least one direction, none repeated)"
            )
        self.thinking = thinking
        self.max_moves = max_moves
        self.order = tuple(order)
        self.look_ahead = look_ahead

    def __repr__(self) -> str:
        """Show the settings."""
        return (
            f"Play2048Policy(thinking={self.thinking}, max_moves={self.max_moves}, order={self.order}, "
            f"look_ahead={self.look_ahead})"
        )

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        """Return the next action for the game in `messages`."""
        progress = _read_progress(messages)
        if self.look_ahead:
            board = _latest_board(messages)
            if board is not None:
                stuck = {direction for direction in DIRECTIONS if not _moves_board(board, direction)}
                progress = replace(progress, failed_since_last_move=progress.failed_since_last_move | stuck)
        action, reason = self._choose(progress)
        call = f"<tool>{action}()</tool>"
        if not self.thinking:
            return call
        return f"<think>{progress.successful_moves} moves made; {reason}.</think>\n{call}"

    def _choose(self, progress: _GameProgress) -> tuple[str, str]:
        """Return the action to take and the reason, in words, for the thinking variant."""
        if progress.game_over:
            return "done", "the game is over"
        if self.max_moves is not None and progress.successful_moves >= self.max_moves:
            return "done", f"that is the {self.max_moves} I planned"
        remaining = [direction for direction in self.order if direction not in progress.failed_since_last_move]
        if not remaining:
            return "done", "no direction moves the board"
        if progress.failed_since_last_move:
            failed = ", ".join(sorted(progress.failed_since_last_move))
            return remaining[0], f"{failed} did not move the board, so I try {remaining[0]}"
        return remaining[0], f"{remaining[0]} is my preferred move"


class NonsensePolicy:
    """Answers with random words and sometimes a broken tag, never a well-formed XML tool call.

    The reply depends only on `seed` and the number of messages, so a rerun gets the same conversation.

    Args:
        seed: varies the replies between policies.
    """

    def __init__(self, seed: int = 0) -> None:
        """Store the seed."""
        self.seed = seed

    def __repr__(self) -> str:
        """Show the seed."""
        return f"NonsensePolicy(seed={self.seed})"

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        """Return a reply with no valid tool call."""
        rng = random.Random(self.seed * _SEED_STRIDE + len(messages))
        words = [rng.choice(_NONSENSE_WORDS) for _ in range(rng.randint(_NONSENSE_MIN_WORDS, _NONSENSE_MAX_WORDS))]
        if rng.random() < _BROKEN_FRAGMENT_PROBABILITY:
            words.insert(rng.randint(0, len(words)), rng.choice(_BROKEN_FRAGMENTS))
        return " ".join(words)


class FixedRepliesPolicy:
    """Replays fixed replies: the i-th assistant turn gets `replies[i]`, and every later turn the last reply.

    Args:
        replies: the replies in order (text, or `ToolCallReply` native calls); at least one.
    """

    def __init__(self, replies: Sequence[str | ToolCallReply]) -> None:
        """Check and store the replies."""
        if isinstance(replies, str) or not replies:
            raise ValueError(f"replies must be a non-empty sequence of strings, got {replies!r}")
        self.replies = tuple(replies)

    def __repr__(self) -> str:
        """Show how many replies there are."""
        return f"FixedRepliesPolicy(<{len(self.replies)} replies>)"

    def __call__(self, messages: list[dict[str, Any]], /) -> str | ToolCallReply:
        """Return the reply for the next assistant turn."""
        turn = sum(1 for message in messages if _role(message) == "assistant")
        return self.replies[min(turn, len(self.replies) - 1)]


_BOARD_ROW = re.compile(r"^\|(?:[^|\n]*\|)+\s*$")


def _latest_board(messages: list[dict[str, Any]]) -> list[list[int]] | None:
    """The last board text-2048 showed in the conversation, as rows of ints (0 for an empty cell)."""
    for message in reversed(messages):
        if _role(message) == "assistant":
            continue
        rows = [line for line in message_text(message).splitlines() if _BOARD_ROW.match(line.strip())]
        if rows:
            return [[int(cell) if cell.strip() else 0 for cell in row.strip().strip("|").split("|")] for row in rows]
    return None


def _moves_board(board: list[list[int]], direction: str) -> bool:
    """Whether sliding `board` towards `direction` changes it (merging or moving any tile)."""
    lines = board if direction in ("left", "right") else [list(column) for column in zip(*board, strict=True)]
    for line in lines:
        ordered = line[::-1] if direction in ("right", "down") else line
        tiles = [value for value in ordered if value]
        merges = any(first == second for first, second in zip(tiles, tiles[1:], strict=False))
        if merges or tiles != ordered[: len(tiles)]:
            return True
    return False


# name -> policy factory, for benchmarks and CLIs that pick a policy by name
POLICIES: dict[str, Callable[..., Policy]] = {
    "2048": Play2048Policy,
    "fixed": FixedRepliesPolicy,
    "nonsense": NonsensePolicy,
}


def make_policy(name: str, **kwargs: Any) -> Policy:
    """Build a registered policy by name, passing `kwargs` to its constructor.

    Raises:
        ValueError: `name` is not registered; the message lists the valid names.
    """
    factory = POLICIES.get(name)
    if factory is None:
        raise ValueError(f"unknown policy {name!r}; expected one of {', '.join(sorted(POLICIES))}")
    return factory(**kwargs)
