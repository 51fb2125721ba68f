"""`hud-vf-gym init`: write an environment config for an MCP server by listing its tools."""
