"""Run the text-2048 MCP server over stdio: `python -m hud_vf_gym.environments.text_2048 [--exact-target]`."""

from hud_vf_gym.environments.text_2048.server import main

if __name__ == "__main__":
    main()
