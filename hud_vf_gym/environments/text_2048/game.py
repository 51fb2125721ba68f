"""The 2048 game and its evaluators, free of MCP so they can be tested (and reused) on their own.

The rules, the board text and the reward formulas reproduce HUD's text-2048 environment (hud-python 0.4.x,
`hudevals/hud-text-2048:0.1.3`), so that rewards from our built-in server match rewards from HUD's image:

- A new game places two random tiles; every spawn is a 2 (90%) or a 4 (10%) on a random empty cell.
- A move slides every row (or column) towards the leading edge, merges equal neighbours once each starting at that
  edge (`[2, 2, 2, 2]` slides left to `[4, 4, 0, 0]`) and adds every merged tile to the score.
- A move counts (one more move, one new tile, a game-over check) only if it changed the board.
- The game is over when no cell is empty and no two horizontal or vertical neighbours are equal.

Unlike HUD's game, the random number generator is a `random.Random(seed)` per game, so a seeded game replays the
same tiles for the same moves.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: the game stays free of MCP and pydantic at run time
    from hud_vf_gym.environments.hub import EvaluationResult

__all__ = [
    "DIRECTIONS",
    "MAX_BOARD_SIZE",
    "MIN_BOARD_SIZE",
    "WIN_TILE",
    "Game2048",
    "efficiency",
    "max_number",
    "slide_line",
]

DIRECTIONS = ("up", "down", "left", "right")
DEFAULT_BOARD_SIZE = 4
MIN_BOARD_SIZE = 2  # the two starting tiles need at least two cells, and a 2x2 game still has moves to make
MAX_BOARD_SIZE = 8  # HUD's later setup clamps to 8; bigger boards make every observation long
WIN_TILE = 2048  # its presence adds "YOU WIN!" to the board text; play goes on
SPAWN_TWO_PROBABILITY = 0.9  # HUD: `2 if random.random() < 0.9 else 4`
STARTING_TILES = 2
CELL_WIDTH = 5  # a tile value is centred in 5 characters, padded by one space each side

GAME_OVER_LINE = "GAME OVER!"
WIN_LINE = "YOU WIN! (You can keep playing)"

Board = list[list[int]]
Cell = tuple[int, int]


def slide_line(line: list[int]) -> tuple[list[int], int]:
    """Slide one line towards index 0 and merge equal neighbours once each, as HUD's `compress` does.

    Args:
        line: tile values from the leading edge outwards; 0 is an empty cell.

    Returns:
        The new line (same length) and the points scored: the sum of the merged tiles.
    """
    tiles = [value for value in line if value != 0]
    merged: list[int] = []
    score = 0
    index = 0
    while index < len(tiles):
        # A merged tile never merges again in the same move, so the pair is consumed whole.
        if index + 1 < len(tiles) and tiles[index] == tiles[index + 1]:
            merged.append(tiles[index] * 2)
            score += tiles[index] * 2
            index += 2
        else:
            merged.append(tiles[index])
            index += 1
    return merged + [0] * (len(line) - len(merged)), score


def _lines_towards(direction: str, size: int) -> list[list[Cell]]:
    """Return the board's lines for a move, each listed from the edge the tiles slide towards."""
    indices = list(range(size))
    if direction == "left":
        return [[(row, col) for col in indices] for row in indices]
    if direction == "right":
        return [[(row, col) for col in reversed(indices)] for row in indices]
    if direction == "up":
        return [[(row, col) for row in indices] for col in indices]
    return [[(row, col) for row in reversed(indices)] for col in indices]


def _render_cell(value: int) -> str:
    """Render one cell as HUD does: the value centred in 5 characters between spaces, then a bar."""
    if value == 0:
        return " " * (CELL_WIDTH + 2) + "|"
    return f" {value:^{CELL_WIDTH}} |"


def _check_board_size(board_size: int) -> None:
    """Reject a board size the game cannot use."""
    if not MIN_BOARD_SIZE <= board_size <= MAX_BOARD_SIZE:
        raise ValueError(
            f"Expects board_size to be an integer from {MIN_BOARD_SIZE} to {MAX_BOARD_SIZE}, actual {board_size!r}"
        )


class Game2048:
    """One game of 2048 on an n x n board, with its own seedable random number generator.

    Attributes:
        board_size: the board is `board_size` x `board_size`.
        board: rows of tile values, 0 for an empty cell.
        score: the sum of every tile made by a merge so far.
        moves: the number of moves that changed the board.
        game_over: no move can change the board any more.
    """

    def __init__(self, board_size: int = DEFAULT_BOARD_SIZE, *, seed: int | None = None) -> None:
        """Start a new game: an empty board with two random tiles.

        Args:
            board_size: the number of rows (and columns), from `MIN_BOARD_SIZE` to `MAX_BOARD_SIZE`.
            seed: seeds the tile sequence; the same seed and the same moves give the same boards.
                None draws a fresh seed from the operating system.

        Raises:
            ValueError: the board size is out of range.
        """
        self._start_empty(board_size, seed)
        for _ in range(STARTING_TILES):
            self.spawn_tile()

    def _start_empty(self, board_size: int, seed: int | None) -> None:
        """Set every attribute for an empty board, before any tile is placed."""
        _check_board_size(board_size)
        self.board_size = board_size
        self.board: Board = [[0] * board_size for _ in range(board_size)]
        self.score = 0
        self.moves = 0
        self.game_over = False
        self._rng = random.Random(seed)

    @classmethod
    def from_board(cls, board: Board, *, score: int = 0, moves: int = 0, seed: int | None = None) -> Game2048:
        """Build a game in a given position (for tests and hand-made puzzles); `seed` fixes the tiles to come.

        Raises:
            ValueError: the board is not square, is out of range, or holds a negative value.
        """
        size = len(board)
        if any(len(row) != size for row in board):
            raise ValueError(f"Expects a square board, actual row lengths {[len(row) for row in board]}")
        if any(value < 0 for row in board for value in row):
            raise ValueError(f"Expects tile values >= 0, actual {board!r}")
        game = cls.__new__(cls)
        game._start_empty(size, seed)
        game.board = [list(row) for row in board]
        game.score = score
        game.moves = moves
        game.game_over = not game.can_move()
        return game

    @property
    def highest_tile(self) -> int:
        """The largest tile on the board (0 on an empty board)."""
        return max(max(row) for row in self.board)

    @property
    def won(self) -> bool:
        """Whether the 2048 tile is on the board."""
        return any(WIN_TILE in row for row in self.board)

    def empty_cells(self) -> list[Cell]:
        """Return the empty cells in row-major order (the order HUD draws spawn positions from)."""
        indices = range(self.board_size)
        return [(row, col) for row in indices for col in indices if self.board[row][col] == 0]

    def spawn_tile(self) -> bool:
        """Put a 2 (90%) or a 4 (10%) on a random empty cell; return False when the board is full."""
        cells = self.empty_cells()
        if not cells:
            return False
        # Same draw order as HUD (cell first, then value), so one seed fixes the whole sequence.
        row, col = self._rng.choice(cells)
        self.board[row][col] = 2 if self._rng.random() < SPAWN_TWO_PROBABILITY else 4
        return True

    def move(self, direction: str) -> bool:
        """Slide the tiles; return whether the board changed (only then does the move count).

        Args:
            direction: one of `DIRECTIONS`, lower case.

        Raises:
            ValueError: the direction is not one of `DIRECTIONS`.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"Expects direction to be one of {', '.join(DIRECTIONS)}, actual {direction!r}")
        if self.game_over:
            return False
        changed = False
        for cells in _lines_towards(direction, self.board_size):
            old_line = [self.board[row][col] for row, col in cells]
            new_line, points = slide_line(old_line)
            if new_line != old_line:
                changed = True
                self.score += points
                for (row, col), value in zip(cells, new_line, strict=True):
                    self.board[row][col] = value
        if changed:
            self.moves += 1
            self.spawn_tile()
            self.game_over = not self.can_move()
        return changed

    def can_move(self) -> bool:
        """Whether some move would change the board: an empty cell or two equal neighbours."""
        size = self.board_size
        for row in range(size):
            for col in range(size):
                value = self.board[row][col]
                if value == 0:
                    return True
                if col + 1 < size and value == self.board[row][col + 1]:
                    return True
                if row + 1 < size and value == self.board[row + 1][col]:
                    return True
        return False

    def state(self) -> dict[str, Any]:
        """Return HUD's state dict: board, score, moves, game_over, won, highest_tile."""
        return {
            "board": [list(row) for row in self.board],
            "score": self.score,
            "moves": self.moves,
            "game_over": self.game_over,
            "won": self.won,
            "highest_tile": self.highest_tile,
        }

    def render(self) -> str:
        """Return the board text exactly as HUD prints it, ending in `[ASCII]` and an optional status line."""
        border = "+" + "-------+" * self.board_size
        lines = [border]
        for row in self.board:
            lines.append("|" + "".join(_render_cell(value) for value in row))
            lines.append(border)
        lines.append("\n[ASCII]")
        if self.game_over:
            lines.append(GAME_OVER_LINE)
        elif self.won:
            lines.append(WIN_LINE)
        return "\n".join(lines)


def _evaluation(reward: float, done: bool, content: str, info: dict[str, Any]) -> EvaluationResult:
    """Build a successful evaluation result."""
    return {"reward": reward, "done": done, "content": content, "info": info, "isError": False}


def _log_progress(value: int, target: int) -> float:
    """Return `min(1, ln value / ln target)`, HUD's scale, made total where HUD's would crash."""
    if target <= 0:
        return 0.0  # HUD's own rule
    if target == 1:
        return 1.0 if value >= 1 else 0.0  # ln 1 = 0 would divide by zero; every tile reaches 1
    if value <= 1:
        return 0.0  # ln 1 = 0; ln 0 and below are undefined (HUD crashes with a math domain error)
    return min(1.0, math.log(value) / math.log(target))


def max_number(game: Game2048, target: int | None = None, exact_target: bool = False) -> EvaluationResult:
    """Score the highest tile against a target on HUD's log scale.

    Args:
        game: the game to score.
        target: the tile to reach. None rewards the highest tile itself, not normalised.
        exact_target: compare the highest tile itself. By default (HUD-compatible) the highest tile minus one is
            compared, so reaching exactly the target gives about 0.998 and `done` false.

    Returns:
        reward `min(1, ln h / ln target)` (0 when h <= 1 or target <= 0) and done `h >= target`.
    """
    highest = game.highest_tile
    if target is None:
        return _evaluation(float(highest), False, f"Highest: {highest}", {"highest_tile": highest})
    if not exact_target:
        highest -= 1  # HUD's deliberate quirk: the reported highest tile is one less than the real one
    return _evaluation(
        _log_progress(highest, target),
        highest >= target,
        f"Target: {target}, Highest: {highest}",
        {"target": target, "highest_tile": highest},
    )


def efficiency(game: Game2048, min_ratio: float) -> EvaluationResult:
    """Score points per move against a minimum ratio, linearly.

    Args:
        game: the game to score.
        min_ratio: the score-per-move ratio that earns the full reward.

    Returns:
        reward `min(1, ratio / min_ratio)` (0 when min_ratio <= 0) and done `ratio >= min_ratio`.
    """
    min_ratio = float(min_ratio)  # HUD's argument is a float, so its content reads "target: 10.0", never "10"
    ratio = game.score / game.moves if game.moves > 0 else 0.0
    reward = min(1.0, ratio / min_ratio) if min_ratio > 0 else 0.0
    return _evaluation(
        reward,
        ratio >= min_ratio,
        f"Efficiency: {ratio:.2f} (target: {min_ratio})",
        {"score": game.score, "moves": game.moves, "ratio": ratio},
    )
