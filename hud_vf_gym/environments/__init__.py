"""Built-in MCP servers, each runnable as `python -m hud_vf_gym.environments.<name>`."""

__all__ = ["SETUP_RESETS_STATE_META"]

# What a server puts in its setup tool's `_meta` to say that setup resets all of its state, so that one server process
# may serve rollout after rollout (`sessions.reuse: per_slot`). Both built-in servers set it. Kept here, not in the
# session pool, so a server can import it without importing the client side.
SETUP_RESETS_STATE_META = "hud_vf_gym/setup_resets_state"
