"""The Gymnasium space of HUDTaskEnv's actions and observations: any unicode text of bounded length."""

from __future__ import annotations

import string
from typing import Any

from gymnasium import spaces

__all__ = ["MAX_TEXT_LENGTH", "SAMPLE_CHARSET", "UnicodeText"]

MAX_TEXT_LENGTH = 1_000_000  # characters; far beyond any context window, so no real reply or observation is cut off
SAMPLE_CHARSET = string.printable  # what `sample()` draws from: ASCII letters, digits, punctuation and whitespace


class UnicodeText(spaces.Text):
    """A `Text` space of any Python string from `min_length` to `max_length` characters.

    Gymnasium's `Text.contains` requires every character to be in `charset`, and its default charset is the 62
    ASCII letters and digits: no space, no newline, no `<` or `(`, so no model reply (`<tool>left()</tool>`) and no
    observation would be in it. A charset cannot fix that either: MCP servers return any unicode (box drawing, emoji,
    page text in any script), and a set of every code point costs hundreds of megabytes. So `contains` checks the
    type and length only; `charset` (default `string.printable`) is used for sampling alone.

    Flattening (`spaces.flatten`, `FlattenObservation`) and `AsyncVectorEnv`'s shared memory encode characters by
    their index in `charset` and fail on any other character; use `AsyncVectorEnv(..., shared_memory=False)`.
    """

    def __init__(
        self,
        max_length: int = MAX_TEXT_LENGTH,
        *,
        min_length: int = 0,
        charset: frozenset[str] | str = SAMPLE_CHARSET,
        seed: int | None = None,
    ) -> None:
        """Accept any string of `min_length`..`max_length` characters; sample from `charset`."""
        super().__init__(max_length, min_length=min_length, charset=charset, seed=seed)

    def contains(self, x: Any) -> bool:
        """Return whether `x` is a str of an allowed length (any characters)."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        """Show the length bounds; the charset only shapes samples."""
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object, /) -> bool:
        """Equal to another UnicodeText of the same bounds and sampling charset (never to a plain Text)."""
        return type(other) is UnicodeText and super().__eq__(other)

    def __hash__(self) -> int:
        """Hash by identity, as `Space` does (the charset makes a value hash costly)."""
        return id(self)
