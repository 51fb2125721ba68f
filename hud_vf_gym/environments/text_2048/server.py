r"""The text-2048 MCP server: HUD's text 2048 environment, wire-compatible, with the game kept in this process.

## Description

A stdio MCP server named `text-2048` that plays 2048 on an n x n board (the rules are in `game.py`). Its tools,
texts and rewards match HUD's `hudevals/hud-text-2048:0.1.3` image, so HUD task rows written for that image run
unchanged here, without docker. One process holds one game; `setup` throws the old game away and starts a new one,
so the same process can serve one rollout after another.

Run it with `python -m hud_vf_gym.environments.text_2048 [--exact-target]`.

## Tools

- `move(direction: str)`: slide the tiles `up`, `down`, `left` or `right` (any case).
- `setup(name, arguments)`: HUD hub dispatcher. `name` is one of `["board"]`; `arguments` is an object or a JSON
  string. `board(board_size: int = 4, seed: int | None = None)` starts a new game on a board_size x board_size
  board (2 to 8). With a seed the whole tile sequence is reproducible; without one it is random.
- `evaluate(name, arguments)`: HUD hub dispatcher. `name` is one of `["efficiency", "max_number"]`.
  `max_number(target: int | None = None)` and `efficiency(min_ratio: float)`, see Rewards.
- Resources `file:///setup/functions` and `file:///evaluate/functions`: the JSON list of each hub's function names.

An unknown hub function name, or arguments the function does not take, gives an MCP error result (`isError: true`)
that names the valid choices.

## Observations

Every tool answers with one text block. The board text is HUD's:

```
+-------+-------+-------+
|   4   |   2   |       |
+-------+-------+-------+
|       |       |       |
+-------+-------+-------+
|   2   |       |       |
+-------+-------+-------+

[ASCII]
```

followed by a `GAME OVER!` or `YOU WIN! (You can keep playing)` line when that applies.

- `setup`: `"{n}x{n} game initialized\n\n{board}"`.
- `move`: `"Moved LEFT\nScore: 4\n{board}"`, plus `"\nGAME OVER!"` when the game is over (so, as in HUD, the line
  appears twice). A bad move is not an MCP error (`isError` stays false, as in HUD); its text starts with `ERROR:`:
  `ERROR: Invalid direction: sideways. Use: up, down, left, right`,
  `ERROR: Cannot move left - no valid moves in that direction`, `ERROR: Game not initialized. Run setup first.`
- `evaluate`: HUD's EvaluationResult `{"reward", "done", "content", "info", "isError"}` as `structuredContent` and
  as one text block holding the same JSON. Before `setup` it reports `isError: true` inside that result.

## Rewards

- `max_number(target)`: with h = highest tile - 1 (HUD's quirk; `--exact-target` drops the - 1), reward
  `min(1, ln h / ln target)`, 0 when h <= 1 or target <= 0; done `h >= target`. Reaching exactly the target thus
  gives about 0.998 and done false; one tile above gives 1.0. With no target the reward is the highest tile itself,
  not normalised.
- `efficiency(min_ratio)`: ratio = score / moves (0 before any move); reward `min(1, ratio / min_ratio)`, 0 when
  min_ratio <= 0; done `ratio >= min_ratio`.

## Episode end

The server never ends an episode: the game is over when no move changes the board (the text says `GAME OVER!`), and
the client decides when to stop and call `evaluate`. Reaching 2048 does not stop play.

## Arguments

- `--exact-target`: compare the highest tile itself with the target in `max_number` (default off: HUD-compatible).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field

from hud_vf_gym.environments import SETUP_RESETS_STATE_META
from hud_vf_gym.environments.hub import (
    ARGUMENTS_DESCRIPTION,
    NAME_DESCRIPTION,
    Hub,
    HubArguments,
    HubFunction,
    evaluation_result,
    serve_function_lists,
    text_result,
)
from hud_vf_gym.environments.stdio import run_stdio
from hud_vf_gym.environments.text_2048.game import (
    DEFAULT_BOARD_SIZE,
    DIRECTIONS,
    GAME_OVER_LINE,
    MAX_BOARD_SIZE,
    MIN_BOARD_SIZE,
    Game2048,
    efficiency,
    max_number,
)
from hud_vf_gym.runtime.mcp_compat import create_server

__all__ = ["EVALUATE_HUB", "SETUP_HUB", "main", "mcp"]

logger = logging.getLogger(__name__)

SERVER_NAME = "text-2048"
# HUD's move tool title and description, verbatim, so tool listings match the original image.
MOVE_TITLE = "Move Tiles"
MOVE_DESCRIPTION = "Make a move in the 2048 game by sliding tiles in a direction"
NOT_INITIALISED = "Game not initialized. Run setup first."


@dataclass
class _ServerState:
    """Everything the server remembers: the current game and the process-wide options."""

    game: Game2048 | None = None
    exact_target: bool = False  # set once from --exact-target; setup does not touch it


_state = _ServerState()


class _BoardArguments(HubArguments):
    board_size: int = Field(default=DEFAULT_BOARD_SIZE, ge=MIN_BOARD_SIZE, le=MAX_BOARD_SIZE)
    seed: int | None = None


class _MaxNumberArguments(HubArguments):
    target: int | None = None


class _EfficiencyArguments(HubArguments):
    min_ratio: float


def _not_initialised_evaluation() -> CallToolResult:
    """Report an evaluation asked for before any setup: a failed evaluation, not a protocol error."""
    return evaluation_result({"reward": 0.0, "done": False, "content": NOT_INITIALISED, "info": {}, "isError": True})


def _setup_board(state: _ServerState, arguments: _BoardArguments) -> CallToolResult:
    """Start a new game, dropping every trace of the previous one."""
    state.game = Game2048(arguments.board_size, seed=arguments.seed)
    logger.info("new %sx%s game, seed %s", arguments.board_size, arguments.board_size, arguments.seed)
    size = arguments.board_size
    return text_result(f"{size}x{size} game initialized\n\n{state.game.render()}")


def _evaluate_max_number(state: _ServerState, arguments: _MaxNumberArguments) -> CallToolResult:
    """Score the highest tile against the target (HUD's log scale)."""
    if state.game is None:
        return _not_initialised_evaluation()
    return evaluation_result(max_number(state.game, arguments.target, exact_target=state.exact_target))


def _evaluate_efficiency(state: _ServerState, arguments: _EfficiencyArguments) -> CallToolResult:
    """Score points per move against the minimum ratio."""
    if state.game is None:
        return _not_initialised_evaluation()
    return evaluation_result(efficiency(state.game, arguments.min_ratio))


SETUP_HUB: Hub[_ServerState] = Hub("setup", {"board": HubFunction(_BoardArguments, _setup_board)})
EVALUATE_HUB: Hub[_ServerState] = Hub(
    "evaluate",
    {
        "efficiency": HubFunction(_EfficiencyArguments, _evaluate_efficiency),
        "max_number": HubFunction(_MaxNumberArguments, _evaluate_max_number),
    },
)


def _move_text(direction: str) -> str:
    """Play one move and describe it in HUD's words; a bad move is described, never raised."""
    game = _state.game
    if game is None:
        return f"ERROR: {NOT_INITIALISED}"
    direction = direction.lower()
    if direction not in DIRECTIONS:
        return f"ERROR: Invalid direction: {direction}. Use: {', '.join(DIRECTIONS)}"
    if not game.move(direction):
        return f"ERROR: Cannot move {direction} - no valid moves in that direction"
    text = f"Moved {direction.upper()}\nScore: {game.score}\n{game.render()}"
    if game.game_over:
        text += f"\n{GAME_OVER_LINE}"  # HUD appends it although the board text already ends with it
    return text


# stdout carries the protocol, so the SDK's logging goes to stderr, and only errors by default.
mcp = create_server(SERVER_NAME, log_level="ERROR")


# async although it never awaits: mcp 2 runs a plain function on a worker thread, a thread hop on every move
@mcp.tool(title=MOVE_TITLE, description=MOVE_DESCRIPTION)
async def move(
    direction: Annotated[str, Field(description="The direction to slide the tiles: up, down, left or right.")],
) -> CallToolResult:
    """Make a move in the 2048 game by sliding tiles in a direction."""
    return text_result(_move_text(direction))


# Every setup function starts a new game and nothing else survives it, so one process may serve many rollouts.
@mcp.tool(meta={SETUP_RESETS_STATE_META: True})
async def setup(
    name: Annotated[str, Field(description=NAME_DESCRIPTION, json_schema_extra={"enum": SETUP_HUB.names})],
    arguments: Annotated[dict[str, Any] | str, Field(description=ARGUMENTS_DESCRIPTION)],
) -> CallToolResult:
    """Run a setup function by name: `board` starts a new game."""
    return await SETUP_HUB.call(_state, name, arguments)


@mcp.tool()
async def evaluate(
    name: Annotated[str, Field(description=NAME_DESCRIPTION, json_schema_extra={"enum": EVALUATE_HUB.names})],
    arguments: Annotated[dict[str, Any] | str, Field(description=ARGUMENTS_DESCRIPTION)],
) -> CallToolResult:
    """Run an evaluate function by name: `max_number` or `efficiency` scores the current game."""
    return await EVALUATE_HUB.call(_state, name, arguments)


serve_function_lists(mcp, SETUP_HUB, EVALUATE_HUB)


def _make_parser() -> argparse.ArgumentParser:
    """Build the command-line parser (one flag)."""
    parser = argparse.ArgumentParser(
        prog="python -m hud_vf_gym.environments.text_2048",
        allow_abbrev=False,
        description="Serve HUD's text 2048 environment over stdio MCP.",
    )
    parser.add_argument(
        "--exact-target",
        action="store_true",
        help="max_number compares the highest tile itself with the target (default: highest - 1, as HUD does).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve over stdio until the client closes stdin."""
    options = _make_parser().parse_args(argv)
    _state.exact_target = options.exact_target
    run_stdio(mcp)
