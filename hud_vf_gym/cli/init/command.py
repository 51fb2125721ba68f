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
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from hud_vf_gym.cli.init.generation import generate_config, lifecycle_tool_names
from hud_vf_gym.cli.init.options import COMMAND, HELP, InitOptions
from hud_vf_gym.cli.init.sources import LOCK_FILE, ServerSource, resolve_server
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


@dataclass(frozen=True, slots=True)
class InitResult:
    """What `write_config` wrote."""

    path: Path
    actions: tuple[str, ...]
    tool_count: int
    left_out: tuple[str, ...]
    source: ServerSource


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
    return InitResult(path, generated.actions, len(tools), tuple(sorted(set(tools) & lifecycle)), source)


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
        next_step(source, path),
    ]
    return dump_config_yaml(generated, header)


def next_step(source: ServerSource, path: Path) -> str:
    """What to run next, as a command that works verbatim when a taskset for the server is known.

    Known: SERVER was a task file, or it runs a built-in environment (whose tasksets ship with the package).
    Otherwise the user has no tasks yet, and the next step is to write them.
    """
    taskset = source.tasks_file or _builtin_taskset(source)
    if taskset is None:
        return (
            "write tasks for this server (a .json list of rows with id, prompt, mcp_config, setup_tool and "
            f"evaluate_tool; the README's Tasks section has one), then check them against {path} without a model: "
            f"hud-vf-gym eval --config {path} --taskset <your tasks file> --dry-run"
        )
    command = f"hud-vf-gym eval --config {path} --taskset {taskset} --dry-run"
    return f"check every task of {taskset} against {path} without a model: {command}"


def _builtin_taskset(source: ServerSource) -> str | None:
    """The first taskset of the built-in environment SERVER runs (`python -m <its module>`), if it is one."""
    from hud_vf_gym.environments.registry import BUILTINS

    modules: set[str] = set()
    for entry in (source.mcp_config or {}).values():
        args = [str(arg) for arg in entry.get("args", [])] if isinstance(entry, Mapping) else []
        modules.update(args[index + 1] for index, arg in enumerate(args[:-1]) if arg == "-m")
    for environment in BUILTINS.values():
        if environment.module in modules and environment.taskset_names:
            return environment.taskset_names[0]
    return None


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
        f"next: {next_step(result.source, result.path)}\n"
    )
    return 0
