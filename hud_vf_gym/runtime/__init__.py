"""The MCP client runtime: server specs, ${VAR} resolution and redaction, connections, sessions and the warm pool."""
