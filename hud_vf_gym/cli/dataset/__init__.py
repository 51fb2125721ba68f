"""`hud-vf-gym dataset`: check a task file and save it as a dataset with HUD's columns."""
