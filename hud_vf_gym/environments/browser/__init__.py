"""A browser computer-use environment as a built-in stdio MCP server: `python -m hud_vf_gym.environments.browser`.

HUD's `computer` tool over a headless Chromium (driven by Playwright), with our own small HTML tasks and the
MiniWoB++ suite from the `miniwob` package. The modules, from the pure ones to the server:

- `tasks.py`: task instances, the evaluation builder, the page frame every own task is drawn in, the generic checks;
- `pages.py`: the own HTML tasks (seeded page builders and their checks);
- `miniwob.py`: the MiniWoB++ adapter (where the installed package keeps its HTML, how a task starts and scores);
- `describe.py`: the text observation (visible text and clickable elements with their boxes);
- `computer.py`: HUD's `computer` actions, validated and worded as HUD words them, over any `Screen`;
- `browser.py`: the Playwright driver (one Chromium per process, a fresh context per task);
- `session.py`: the server's state and operations (open a task, act, grade), free of MCP wiring;
- `server.py`: the MCP server (tools, the hubs' functions on `environments/hub.py`) and its command line.

This package module imports none of them, so importing it stays cheap; Playwright is imported only when the server
starts a browser (`pip install "hud-vf-gym[browser]"`).
"""
