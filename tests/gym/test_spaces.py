"""The Gym env's text space (hud_vf_gym/gym/spaces.py): any Unicode string up to a length, unlike gymnasium's Text."""

from __future__ import annotations

import pytest
from gymnasium.spaces import Text

from hud_vf_gym.gym.spaces import MAX_TEXT_LENGTH, UnicodeText


@pytest.mark.parametrize(
    "text",
    ["", "<think>merge</think>\n<tool>left()</tool>", "+---+\n| 2 |\t", "中文 😀 é → ✓", "\x1b[0m"],
    ids=["empty", "xml", "board", "unicode", "control"],
)
def test_unicode_text_contains_any_string(text: str) -> None:
    assert text in UnicodeText(MAX_TEXT_LENGTH)


def test_unicode_text_rejects_non_strings_and_overlong_text() -> None:
    space = UnicodeText(5)
    assert 3 not in space
    assert b"abc" not in space
    assert "123456" not in space
    assert "<tool>left()</tool>" not in Text(100)  # why the default Text cannot be used


def test_unicode_text_samples_are_in_the_space() -> None:
    space = UnicodeText(200, seed=0)
    assert all(space.sample() in space for _ in range(20))
    assert space != Text(200, min_length=0, charset=space.characters)
