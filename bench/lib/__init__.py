"""Helpers the bench entry scripts share; nothing here is run on its own except policy_server."""
