"""`hud-vf-gym init SERVER`: list an MCP server's tools and write an environment config that works unchanged.

SERVER is read as the first of these that fits (`--kind` forces one):

1. `url`: `http://...` or `https://...`, over streamable HTTP (SSE when the path ends in `/sse`).
2. `lock`: a directory holding `hud.lock.yaml`, or that file. Its `tools` are used without connecting when every
   tool has an `inputSchema` (hud >= 0.4.19); otherwise its `image` is started. Only `image` and `tools` are read;
   the rest of the lock (secrets under `environment.variables`) is never printed.
3. `mcp-config`: a `.json` file holding an `mcp_config`, a `{"mcpServers": ...}` file, or a task file (its first
   task's `mcp_config`). With several servers the actions are named `<server>_<tool>`.
4. `command`: a command line of several words, or one word found on PATH, started as a stdio server. `python`
   and `python3` run as this interpreter, so a server installed in this environment is found.
5. `image`: anything else shaped like an image name, started as `docker run --rm -i IMAGE`.

The config is built by `config_generation.generate_config`, checked with `parse_config` and
`ActionMapper.check_tools` against the tools it was made from, and only then written.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hud_vf_gym.cli.command import Command
from hud_vf_gym.cli.init.generation import generate_config, lifecycle_tool_names
from hud_vf_gym.cli.init.sources import KINDS, LOCK_FILE, ServerSource, resolve_server
from hud_vf_gym.cli.init.yaml_writer import GeneratedConfig, dump_config_yaml
from hud_vf_gym.config import parse_config
from hud_vf_gym.core.actions import ActionMapper
from hud_vf_gym.errors import ConfigError, ServerStartError
from hud_vf_gym.types import ToolSpec

__all__ = [
    "COMMAND",
    "HELP",
    "InitOptions",
    "InitResult",
    "ServerSource",
    "list_tools",
    "resolve_server",
    "run_init",
    "write_config",
]

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
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")


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


@dataclass(frozen=True, slots=True)
class InitResult:
    """What `write_config` wrote."""

    path: Path
    actions: tuple[str, ...]
    tool_count: int
    left_out: tuple[str, ...]


# ---------------------------------------------------------------------------------------------------------------------
# Listing tools and writing the config


async def _fetch_tools(source: ServerSource, connect_timeout_s: float) -> tuple[dict[str, ToolSpec], tuple[str, ...]]:
    from hud_vf_gym.config import Timeouts
    from hud_vf_gym.runtime.session import MCPSession

    assert source.mcp_config is not None  # resolve_server gives tools or an mcp_config
    session = await MCPSession.open(source.mcp_config, timeouts=Timeouts(connect_s=connect_timeout_s))
    try:
        return dict(session.tools), session.server_names
    finally:
        await session.aclose()


def list_tools(source: ServerSource, *, connect_timeout_s: float) -> tuple[dict[str, ToolSpec], tuple[str, ...]]:
    """The source's tools by agent-visible name, and its server names (connecting when needed).

    Raises:
        ServerStartError: the server could not be started or reached; the message says what to check.
    """
    if source.tools is not None:
        return dict(source.tools), ("local",)
    try:
        return asyncio.run(_fetch_tools(source, connect_timeout_s))
    except ServerStartError as exc:
        raise ServerStartError(f"{exc}\n{_connect_hint(source)}") from exc


def _connect_hint(source: ServerSource) -> str:
    if source.kind in ("image", "lock"):
        image = source.metadata.get("image", "IMAGE")
        lock_note = (
            f" (its {LOCK_FILE} lists tools without inputSchema, so the image must run; --no-connect uses the "
            "tool names alone)"
            if source.kind == "lock"
            else ""
        )
        return (
            f"hud-vf-gym init starts the image with `docker run --rm -i {image}`{lock_note}: check that docker is "
            f"installed and its daemon running and that the image exists (`docker pull {image}`), or pass the "
            "server's command line or URL instead"
        )
    if source.kind == "url":
        return "check that the server is running and that the URL is its MCP endpoint (often /mcp, or /sse for SSE)"
    return "check that the command starts an MCP server on stdio (run it in a terminal to see its output)"


def write_config(options: InitOptions) -> InitResult:
    """Resolve SERVER, list its tools, generate the config, check it, and write it.

    Raises:
        ConfigError: SERVER cannot be used, the output exists (without `force`), or the config does not check.
        ServerStartError: the server could not be started or reached.
    """
    source = resolve_server(options.server, kind=options.kind, no_connect=options.no_connect)
    path = Path(options.output) if options.output else Path("configs") / f"{source.environment}.yaml"
    _check_output(path, force=options.force)
    tools, server_names = list_tools(source, connect_timeout_s=options.connect_timeout_s)
    lifecycle = lifecycle_tool_names(server_names)
    generated = generate_config(
        tools,
        environment=source.environment,
        lifecycle_tools=lifecycle,
        max_turns=options.max_turns,
        metadata={**source.metadata, "generated_by": "hud-vf-gym init"},
    )
    text = _render(generated, source, path)
    _check_generated(text, tools, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return InitResult(path, generated.actions, len(tools), tuple(sorted(set(tools) & lifecycle)))


def _check_output(path: Path, *, force: bool) -> None:
    if path.is_dir():
        raise ConfigError(f"{path} is a directory; give -o a file name such as {path / 'env.yaml'}")
    if path.exists() and not force:
        raise ConfigError(f"{path} already exists; pass --force to overwrite it, or -o to write somewhere else")


def _render(generated: GeneratedConfig, source: ServerSource, path: Path) -> str:
    from hud_vf_gym import __version__

    header = [
        f"Generated by `hud-vf-gym init` (hud-vf-gym {__version__}) from {source.kind} {source.label}",
        f"Actions: {', '.join(generated.actions)}. Edit freely; `hud-vf-gym init --force` regenerates it.",
        f"Check it without a model: hud-vf-gym eval --config {path} --taskset TASKS --dry-run",
    ]
    return dump_config_yaml(generated, header)


def _check_generated(text: str, tools: Mapping[str, ToolSpec], path: Path) -> None:
    """Load the YAML as `load_config` would and check its mappings against the tools it was made from."""
    config = parse_config(yaml.safe_load(text), source=str(path))
    problems = ActionMapper(config.action_mappings, config.passthrough_tools).check_tools(tools)
    if problems:
        lines = "\n  ".join(problems)
        raise ConfigError(
            f"the generated config does not fit the server's tools (a bug in hud-vf-gym init; please report it "
            f"with the server's tool list):\n  {lines}"
        )


# ---------------------------------------------------------------------------------------------------------------------
# Command line


def run_init(options: InitOptions) -> int:
    """Run `hud-vf-gym init`; print what was written and return the exit status."""
    result = write_config(options)
    left_out = f"; left out {', '.join(result.left_out)}" if result.left_out else ""
    sys.stdout.write(
        f"wrote {result.path}: actions {', '.join(result.actions)} (from {result.tool_count} tools{left_out})\n"
        f"next: hud-vf-gym eval --config {result.path} --taskset TASKS --dry-run\n"
    )
    return 0


COMMAND = Command(name="init", help=HELP, options=InitOptions, run=run_init, examples=EXAMPLES)
