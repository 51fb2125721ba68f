"""Run the browser MCP server over stdio: `python -m hud_vf_gym.environments.browser [--width W] [--height H] ...`."""

from hud_vf_gym.environments.browser.server import main

if __name__ == "__main__":
    main()
