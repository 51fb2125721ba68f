"""The Gymnasium face of a HUD taskset: `HUDTaskEnv` and its registered ids (`hud_vf_gym/2048-v0`, ...)."""
