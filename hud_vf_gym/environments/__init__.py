"""Built-in MCP servers, each runnable as `python -m hud_vf_gym.environments.<name>`.

- `registry.py`: the table of built-in environments (`BUILTINS`: server module, tasksets, configs, Gym id);
- `hub.py`: HUD's `setup`/`evaluate` hub dispatch and `EvaluationResult`, shared by the servers;
- `stdio.py`: the stdio transport the servers run on;
- `text_2048/`, `browser/`: one folder per environment, its pure logic apart from its thin MCP server.

This module imports none of them: every built-in server imports it when it starts, once per episode.
"""

__all__ = ["SETUP_RESETS_STATE_META"]

# What a server puts in its setup tool's `_meta` to say that setup resets all of its state, so that one server process
# may serve rollout after rollout (`sessions.reuse: per_slot`). Both built-in servers set it. Kept here, not in the
# session pool, so a server can import it without importing the client side.
SETUP_RESETS_STATE_META = "hud_vf_gym/setup_resets_state"
