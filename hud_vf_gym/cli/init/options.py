"""The options of `hud-vf-gym init` and its `COMMAND`, kept apart from the work so that help stays cheap.

`hud-vf-gym --help` imports every command's module (`hud_vf_gym.cli.app.COMMAND_MODULES`); the work of `init`
(`hud_vf_gym.cli.init.command`) needs pydantic, yaml and the MCP runtime, so it is imported only when init runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.cli.command import Command

__all__ = ["COMMAND", "DEFAULT_CONNECT_TIMEOUT_S", "EXAMPLES", "HELP", "KINDS", "InitOptions"]

KINDS = ("auto", "url", "lock", "mcp-config", "command", "image")  # how SERVER may be read (`--kind`)
DEFAULT_CONNECT_TIMEOUT_S = 60.0  # start + initialise + list tools; a docker image may be pulled on first start

HELP = "Write an environment config (YAML) for an MCP server by listing its tools."
EXAMPLES = """\
examples:
  hud-vf-gym init "python -m hud_vf_gym.environments.text_2048"
  hud-vf-gym init "mcp-server-git --repository ." -o configs/git.yaml
  hud-vf-gym init http://localhost:8765/mcp
  hud-vf-gym init hudevals/hud-text-2048:0.1.3          # docker run --rm -i IMAGE
  hud-vf-gym init environments/my-env                   # reads environments/my-env/hud.lock.yaml
  hud-vf-gym init mcp_config.json --force               # several servers: actions named <server>_<tool>

SERVER is a URL, a directory with hud.lock.yaml (or the file), a .json mcp_config or task file, a command line,
or a docker image name, tried in that order (--kind forces one). The config is written to configs/<name>.yaml
unless -o says otherwise; an existing file is kept unless --force is given.
"""


@dataclass
class InitOptions:
    """Options of `hud-vf-gym init`; each field is the flag of the same name."""

    server: str = field(
        metadata={
            "help": "The MCP server: a URL, lock directory, .json file, command or image.",
            "positional": True,
            "metavar": "SERVER",
        }
    )
    output: str | None = field(
        default=None,
        metadata={"help": "Where to write the config (configs/<name>.yaml).", "short": "-o", "metavar": "PATH"},
    )
    force: bool = field(default=False, metadata={"help": "Overwrite the output file if it exists."})
    kind: str = field(default="auto", metadata={"help": "How to read SERVER.", "choices": KINDS})
    max_turns: int = field(default=30, metadata={"help": "defaults.max_turns of the config.", "metavar": "N"})
    connect_timeout_s: float = field(
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metadata={"help": "Seconds to start the server and list its tools.", "metavar": "SECONDS"},
    )
    no_connect: bool = field(
        default=False,
        metadata={"help": "With a hud.lock.yaml whose tools lack inputSchema: use the names alone, do not connect."},
    )


def _run_init(options: Any) -> int:
    from hud_vf_gym.cli.init.command import run_init

    return run_init(options)


COMMAND = Command(name="init", help=HELP, options=InitOptions, run=_run_init, examples=EXAMPLES)
