"""The turn loop every consumer shares: parse, map to a tool call, record the turn, grade and score the episode."""
