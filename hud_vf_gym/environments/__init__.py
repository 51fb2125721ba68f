"""Built-in MCP servers, each runnable as `python -m hud_vf_gym.environments.<name>`."""
