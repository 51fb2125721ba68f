"""Tests for the pure 2048 game and its evaluators (no MCP)."""

from __future__ import annotations

import re

import pytest

from hud_vf_gym.environments.text_2048.game import (
    DIRECTIONS,
    Game2048,
    efficiency,
    max_number,
    slide_line,
)

# The 3x3 board text HUD's server printed for this position (research notes, hud.md section 3).
HUD_3X3_BOARD = [[4, 2, 0], [0, 0, 0], [2, 0, 0]]
HUD_3X3_TEXT = (
    "+-------+-------+-------+\n"
    "|   4   |   2   |       |\n"
    "+-------+-------+-------+\n"
    "|       |       |       |\n"
    "+-------+-------+-------+\n"
    "|   2   |       |       |\n"
    "+-------+-------+-------+\n"
    "\n"
    "[ASCII]"
)


def _single_spawn(before: list[list[int]], after: list[list[int]]) -> tuple[int, int]:
    """Return the one cell where `after` has a new tile that `before` lacks; fail unless it is the only change."""
    changed = [
        (row, col) for row in range(len(before)) for col in range(len(before)) if before[row][col] != after[row][col]
    ]
    assert len(changed) == 1, f"expected exactly one spawned tile, board went {before} -> {after}"
    row, col = changed[0]
    assert before[row][col] == 0 and after[row][col] in (2, 4)
    return row, col


@pytest.mark.parametrize(
    ("line", "expected_line", "expected_points"),
    [
        ([2, 2, 2, 2], [4, 4, 0, 0], 8),
        ([2, 0, 2, 0], [4, 0, 0, 0], 4),
        ([2, 2, 4, 4], [4, 8, 0, 0], 12),
        ([4, 4, 4, 0], [8, 4, 0, 0], 8),
        ([4, 4, 8, 0], [8, 8, 0, 0], 8),
        ([8, 0, 8, 8], [16, 8, 0, 0], 16),
        ([0, 0, 0, 2], [2, 0, 0, 0], 0),
        ([2, 4, 8, 16], [2, 4, 8, 16], 0),
        ([0, 0, 0, 0], [0, 0, 0, 0], 0),
    ],
    ids=[
        "four_equal_merge_pairwise",
        "gap_between_equal",
        "two_pairs",
        "three_equal_leading_pair_merges",
        "merged_tile_does_not_merge_again",
        "gap_then_pair",
        "slide_only",
        "no_change",
        "empty",
    ],
)
def test_slide_line_merges_once_from_leading_edge(
    line: list[int], expected_line: list[int], expected_points: int
) -> None:
    assert slide_line(line) == (expected_line, expected_points)


@pytest.mark.parametrize(
    ("direction", "expected_board", "expected_score"),
    [
        ("left", [[4, 0, 0], [2, 4, 0], [4, 0, 0]], 4),
        ("right", [[0, 0, 4], [0, 2, 4], [0, 0, 4]], 4),
        ("up", [[4, 2, 8], [0, 0, 0], [0, 0, 0]], 12),
        ("down", [[0, 0, 0], [0, 0, 0], [4, 2, 8]], 12),
    ],
    ids=["left", "right", "up", "down"],
)
def test_game_move_slides_and_merges_in_each_direction(
    direction: str, expected_board: list[list[int]], expected_score: int
) -> None:
    game = Game2048.from_board([[2, 2, 0], [2, 0, 4], [0, 0, 4]], seed=3)
    assert game.move(direction) is True
    _single_spawn(expected_board, game.board)
    assert (game.score, game.moves) == (expected_score, 1)


def test_game_noop_move_does_not_count_or_spawn() -> None:
    game = Game2048.from_board([[2, 0, 0], [4, 0, 0], [0, 0, 0]], seed=1)
    assert game.move("left") is False
    assert game.board == [[2, 0, 0], [4, 0, 0], [0, 0, 0]]
    assert (game.moves, game.score) == (0, 0)


def test_game_new_game_has_two_tiles_of_two_or_four() -> None:
    game = Game2048(4, seed=0)
    tiles = [value for row in game.board for value in row if value]
    assert len(tiles) == 2 and set(tiles) <= {2, 4}
    assert (game.score, game.moves, game.game_over) == (0, 0, False)


def test_game_spawns_four_about_one_time_in_ten() -> None:
    # Seeded, so the count is fixed; 2,000 first tiles keep it well inside the band.
    first_tiles = [value for seed in range(1000) for row in Game2048(4, seed=seed).board for value in row if value]
    fours = first_tiles.count(4)
    assert len(first_tiles) == 2000
    assert 0.07 < fours / len(first_tiles) < 0.13


def test_game_same_seed_replays_same_tiles() -> None:
    first, second = Game2048(4, seed=7), Game2048(4, seed=7)
    assert first.board == second.board
    for direction in ["left", "up", "right", "down"] * 10:
        assert first.move(direction) == second.move(direction)
        assert first.board == second.board
    assert (first.score, first.moves) == (second.score, second.moves)
    assert Game2048(4, seed=8).board != Game2048(4, seed=7).board


def test_game_over_detected_after_move() -> None:
    # Whatever tile spawns in the freed corner (2 or 4), it sits beside 32 and 16 and cannot merge.
    game = Game2048.from_board([[8, 32], [0, 16]], seed=0)
    assert game.game_over is False
    assert game.move("left") is True
    assert game.game_over is True
    assert game.render().endswith("[ASCII]\nGAME OVER!")
    assert all(game.move(direction) is False for direction in DIRECTIONS)


@pytest.mark.parametrize(
    ("board", "expected_over"),
    [
        ([[2, 4, 2], [4, 2, 4], [2, 4, 8]], True),
        ([[2, 4, 2], [4, 2, 4], [2, 4, 4]], False),
        ([[2, 4, 2], [4, 2, 4], [2, 2, 8]], False),
        ([[2, 4, 2], [4, 0, 4], [2, 4, 8]], False),
    ],
    ids=["full_no_pairs", "horizontal_pair", "vertical_pair", "empty_cell"],
)
def test_game_over_needs_full_board_without_equal_neighbours(board: list[list[int]], expected_over: bool) -> None:
    assert Game2048.from_board(board).game_over is expected_over


def test_game_render_matches_hud_board_text() -> None:
    assert Game2048.from_board(HUD_3X3_BOARD).render() == HUD_3X3_TEXT


@pytest.mark.parametrize(
    ("board", "expected_row", "expected_last_line"),
    [
        ([[16, 2048], [0, 0]], "|  16   | 2048  |", "YOU WIN! (You can keep playing)"),
        ([[2, 4], [4, 2]], "|   2   |   4   |", "GAME OVER!"),
        ([[2048, 4], [4, 2]], "| 2048  |   4   |", "GAME OVER!"),
        ([[128, 0], [0, 0]], "|  128  |       |", "[ASCII]"),
    ],
    ids=["win", "game_over", "game_over_beats_win", "no_status"],
)
def test_game_render_cells_and_status_line(board: list[list[int]], expected_row: str, expected_last_line: str) -> None:
    lines = Game2048.from_board(board).render().split("\n")
    assert lines[1] == expected_row
    assert lines[-1] == expected_last_line


def test_game_state_is_huds_dict() -> None:
    game = Game2048.from_board([[2048, 4], [0, 2]], score=12, moves=3)
    assert game.state() == {
        "board": [[2048, 4], [0, 2]],
        "score": 12,
        "moves": 3,
        "game_over": False,
        "won": True,
        "highest_tile": 2048,
    }


def test_game_invalid_direction_raises() -> None:
    message = "Expects direction to be one of up, down, left, right, actual 'sideways'"
    with pytest.raises(ValueError, match=re.escape(message)):
        Game2048(4, seed=0).move("sideways")


@pytest.mark.parametrize("board_size", [1, 9], ids=["too_small", "too_large"])
def test_game_board_size_out_of_range_raises(board_size: int) -> None:
    message = f"Expects board_size to be an integer from 2 to 8, actual {board_size}"
    with pytest.raises(ValueError, match=re.escape(message)):
        Game2048(board_size)


def test_game_from_board_rejects_non_square_board() -> None:
    with pytest.raises(ValueError, match=re.escape("Expects a square board, actual row lengths [2, 1]")):
        Game2048.from_board([[2, 0], [0]])


def _game_with_highest(highest: int) -> Game2048:
    return Game2048.from_board([[highest, 0], [0, 0]])


@pytest.mark.parametrize(
    ("highest", "target", "exact_target", "expected_reward", "expected_done"),
    [
        (4, 128, False, 0.2264, False),
        (128, 128, False, 0.998, False),
        (256, 128, False, 1.0, True),
        (2, 128, False, 0.0, False),
        (0, 128, False, 0.0, False),
        (64, 0, False, 0.0, True),
        (128, 128, True, 1.0, True),
        (64, 128, True, 0.8571, False),
        (2, 1, False, 1.0, True),
    ],
    ids=[
        "hud_observed_4_of_128",
        "exactly_target_quirk",
        "one_tile_above_target",
        "tile_2_gives_0",
        "empty_board_no_crash",
        "target_0",
        "exact_target_flag",
        "exact_target_below",
        "target_1_no_division_by_zero",
    ],
)
def test_max_number_reward_and_done(
    highest: int, target: int, exact_target: bool, expected_reward: float, expected_done: bool
) -> None:
    result = max_number(_game_with_highest(highest), target, exact_target=exact_target)
    assert result["reward"] == pytest.approx(expected_reward, abs=5e-4)
    assert result["done"] is expected_done


def test_max_number_reports_hud_content_and_info() -> None:
    result = max_number(_game_with_highest(4), 128)
    assert result == {
        "reward": pytest.approx(0.2264, abs=5e-5),
        "done": False,
        "content": "Target: 128, Highest: 3",
        "info": {"target": 128, "highest_tile": 3},
        "isError": False,
    }


def test_max_number_without_target_rewards_highest_tile_unnormalised() -> None:
    result = max_number(_game_with_highest(256), None)
    assert result == {
        "reward": 256.0,
        "done": False,
        "content": "Highest: 256",
        "info": {"highest_tile": 256},
        "isError": False,
    }


@pytest.mark.parametrize(
    ("score", "moves", "min_ratio", "expected_reward", "expected_done", "expected_content"),
    [
        (4, 2, 10, 0.2, False, "Efficiency: 2.00 (target: 10.0)"),
        (20, 2, 10, 1.0, True, "Efficiency: 10.00 (target: 10.0)"),
        (60, 2, 10.0, 1.0, True, "Efficiency: 30.00 (target: 10.0)"),
        (0, 0, 10, 0.0, False, "Efficiency: 0.00 (target: 10.0)"),
        (20, 4, 0, 0.0, True, "Efficiency: 5.00 (target: 0.0)"),
    ],
    ids=["below", "exactly", "capped_at_1", "no_moves", "min_ratio_0"],
)
def test_efficiency_reward_done_and_content(
    score: int, moves: int, min_ratio: float, expected_reward: float, expected_done: bool, expected_content: str
) -> None:
    result = efficiency(Game2048.from_board([[2, 0], [0, 0]], score=score, moves=moves), min_ratio)
    assert result["reward"] == pytest.approx(expected_reward)
    assert result["done"] is expected_done
    assert result["content"] == expected_content
    assert result["info"] == {"score": score, "moves": moves, "ratio": pytest.approx(score / moves if moves else 0.0)}
    assert result["isError"] is False
