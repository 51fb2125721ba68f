"""`hud-vf-gym eval`: run a taskset against a model, write one results row per rollout, summarise."""
