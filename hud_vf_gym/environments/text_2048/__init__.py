"""HUD's text 2048 environment as a built-in stdio MCP server: `python -m hud_vf_gym.environments.text_2048`.

`game.py` holds the pure game and evaluators, `server.py` the MCP server. This package module imports neither,
so importing it stays cheap.
"""
