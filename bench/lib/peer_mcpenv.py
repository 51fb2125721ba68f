"""The peer for bench/rollouts.py: verifiers' own MCPEnv (0.3.1) on the same text-2048 server, policy and seeds.

MCPEnv starts one stdio server per environment, in its constructor, on a background event loop, and shares it with
every rollout ("intended for globally available, read-only MCP servers"). It has no setup or evaluate step, so the
glue is the research notes' (perf-baseline.md): `setup_state` calls the server's setup tool and shows the board in
the prompt, and a rubric function calls evaluate. MCPEnv reads only native OpenAI tool calls, so the policy is
`NativeTools2048Policy`: Play2048Policy's moves sent as `tool_calls`, and "done" as plain text (no tool call ends an
MCPEnv rollout). At concurrency > 1 every rollout moves the one shared game: the rewards are wrong, and the bench's
reward check says so.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import datasets
import verifiers as vf

from hud_vf_gym.testing import Play2048Policy, ToolCallReply, message_text

__all__ = ["NativeTools2048Policy", "Peer2048Env", "peer_dataset"]

SERVER_ARGS = ["-m", "hud_vf_gym.environments.text_2048"]
# MCPEnv checks max_turns before executing the last turn's tool calls: 10 moves + the "done" reply + one spare.
PEER_MAX_TURNS = 12
_MOVE_CALL = re.compile(r"<tool>\s*(left|right|up|down)\(\s*\)\s*</tool>")


class NativeTools2048Policy:
    """Play2048Policy over native tool calls: `move(direction)` as `tool_calls`, then "done" as text."""

    def __init__(self, inner: Play2048Policy) -> None:
        """Wrap an XML-format 2048 policy."""
        self.inner = inner

    def __call__(self, messages: list[dict[str, Any]], /) -> str | ToolCallReply:
        """Translate the history to the XML format, ask the inner policy, translate its move back."""
        reply = self.inner([_as_xml_turn(message) for message in messages])
        move = _MOVE_CALL.search(reply)
        return ToolCallReply("move", {"direction": move.group(1)}) if move else "done"


def _as_xml_turn(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant message's native move call rewritten as `<tool>left()</tool>` text (what Play2048Policy reads)."""
    calls = message.get("tool_calls") or []
    if message.get("role") != "assistant" or not calls:
        return message
    arguments = json.loads(calls[0]["function"]["arguments"] or "{}")
    return {**message, "content": f"<tool>{arguments.get('direction', '')}()</tool>"}


def peer_dataset(seeds: list[int]) -> datasets.Dataset:
    """One row per seed, in the order the HUDGym bench uses."""
    return datasets.Dataset.from_list(
        [{"question": "Play 2048 and reach 64.", "answer": "", "info": {"seed": seed}} for seed in seeds]
    )


class Peer2048Env(vf.MCPEnv):  # type: ignore[misc]  # verifiers ships no type information
    """MCPEnv with the minimal setup/evaluate glue; one server for the whole environment (built in __init__)."""

    def __init__(self, seeds: list[int]) -> None:
        """Start MCPEnv's one shared server (synchronously, as MCPEnv does)."""
        server = {"name": "text_2048", "command": sys.executable, "args": SERVER_ARGS}
        super().__init__(
            mcp_servers=[server],
            eval_dataset=peer_dataset(seeds),
            max_turns=PEER_MAX_TURNS,
            rubric=vf.Rubric(funcs=[self.game_reward]),
        )

    async def setup_state(self, state: vf.State) -> vf.State:
        """Start the rollout's seeded game on the shared server and show the board after the question."""
        state = await super().setup_state(state)
        arguments = {"board_size": 4, "seed": state["info"]["seed"]}
        board = await self.tool_map["setup"](name="board", arguments=arguments)
        prompt = list(state["prompt"])
        prompt[-1] = vf.UserMessage(content=f"{message_text(_as_dict(prompt[-1]))}\n\n{board}")
        state["prompt"] = prompt
        return state

    async def game_reward(self, state: vf.State, **kwargs: Any) -> float:
        """The max_number(64) grade of whatever game the shared server holds now."""
        text = await self.tool_map["evaluate"](name="max_number", arguments={"target": 64})
        return float(json.loads(text).get("reward", 0.0))


def _as_dict(message: Any) -> dict[str, Any]:
    return message if isinstance(message, dict) else {"content": getattr(message, "content", "")}


def moves_of(output: dict[str, Any]) -> int:
    """Move calls the peer executed in one rollout (tool messages in its completion)."""
    completion = output.get("completion") or []
    return sum(1 for message in completion if _role(message) == "tool")


def _role(message: Any) -> str:
    return str(message.get("role") if isinstance(message, dict) else getattr(message, "role", ""))
