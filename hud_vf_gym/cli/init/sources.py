"""What `hud-vf-gym init SERVER` names, and how to reach it: a URL, a lock file, an `mcp_config`, a command or an image.

Nothing here starts a server: `resolve_server` reads the text (and a lock or JSON file it names) and returns a
`ServerSource`, either an `mcp_config` to connect to or the tools a lock file lists.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from hud_vf_gym.cli.init.options import KINDS
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.types import ToolSpec

__all__ = ["KINDS", "LOCK_FILE", "ServerSource", "resolve_server"]

LOCK_FILE = "hud.lock.yaml"

_PYTHON_NAMES = frozenset({"python", "python3"})
# launchers whose first non-option argument names the server (`uvx mcp-server-git`, `npx -y @org/server`)
_LAUNCHERS = frozenset({"npx", "uvx", "uv", "pipx", "bunx", "node", "deno", "docker", "podman"})
_LAUNCHERS = frozenset({"npx", "uvx", "uv", "pipx", "bunx", "node", "deno", "docker", "podman"})
_LAUNCHER_WORDS = frozenset({"run", "tool", "exec", "--rm", "-i"})
_LAUNCHER_WORDS = frozenset({"run", "tool", "exec", "--rm", "-i"})
_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|key|secret|passw(or)?d|auth)[\w-]*", re.IGNORECASE)
_SECRET_FLAG = re.compile(r"^--?[\w-]*(token|key|secret|passw(or)?d|auth)[\w-]*", re.IGNORECASE)
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]*(:[\w.-]+)?(@sha256:[0-9a-f]{64})?$")


@dataclass(frozen=True, slots=True)
class ServerSource:
    """Where the tools come from: an `mcp_config` to connect to, or tools read from a lock file."""

    kind: str
    label: str  # how SERVER is named in messages and the header; never holds a secret
    environment: str  # a short name: job.name and the default file name
    mcp_config: dict[str, Any] | None = None
    tools: dict[str, ToolSpec] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    tasks_file: str | None = None  # SERVER was a task file: the taskset to check the new config against


def resolve_server(server: str, *, kind: str = "auto", no_connect: bool = False) -> ServerSource:
    """Decide what SERVER names and how to reach it; reads a lock or JSON file, starts nothing.

    Raises:
        ConfigError: SERVER fits none of the kinds, or its file cannot be used.
    """
    text = server.strip()
    if not text:
        raise ConfigError("SERVER is empty; give a URL, a directory with hud.lock.yaml, a command or an image name")
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r} is not one of {', '.join(KINDS)}")
    chosen = _detect_kind(text) if kind == "auto" else kind
    if no_connect and chosen != "lock":
        raise ConfigError(f"--no-connect only applies to a hud.lock.yaml; {text!r} was read as a {chosen}")
    readers = {
        "url": _url_source,
        "lock": lambda value: _lock_source(value, no_connect=no_connect),
        "mcp-config": _mcp_config_source,
        "command": _command_source,
        "image": _image_source,
    }
    return readers[chosen](text)


def _detect_kind(text: str) -> str:
    if re.match(r"^https?://", text):
        return "url"
    path = Path(text).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix in (".yaml", ".yml")):
        return "lock"
    if path.is_file() and path.suffix == ".json":
        return "mcp-config"
    words = _split_command(text)
    if len(words) > 1 or path.is_file() or shutil.which(words[0]) or words[0] in _PYTHON_NAMES:
        return "command"
    if _IMAGE.match(text):
        return "image"
    raise ConfigError(
        f"SERVER {text!r} is not a URL, a directory or file, a command on PATH or a docker image name; "
        "give one of them, or say which with --kind"
    )


def _split_command(text: str) -> list[str]:
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"SERVER {text!r} is not a valid command line ({exc}); check its quotes") from exc
    return words or [text]


def _slug(text: str) -> str:
    """A short file-name-safe name: `hud_vf_gym.environments.text_2048` -> `text-2048`."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower().replace("_", "-")).strip("-.") or "mcp-server"


def _url_source(url: str) -> ServerSource:
    parts = urlsplit(url)
    netloc = f"{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
    shown = parts._replace(netloc=netloc, query="", fragment="").geturl()  # no user:password@, no ?token=
    name = _slug(parts.hostname or "server")
    return ServerSource("url", shown, name, mcp_config={name: {"url": url}})


def _command_source(text: str) -> ServerSource:
    words = _split_command(text)
    if Path(words[0]).suffix == ".py" and Path(words[0]).is_file():
        words = [sys.executable, *words]  # a server script given by its path
    elif words[0] in _PYTHON_NAMES:
        words = [sys.executable, *words[1:]]  # the interpreter (and environment) this command runs in
    if not shutil.which(words[0]) and not Path(words[0]).is_file():
        raise ConfigError(
            f"{words[0]!r} is not a file and not on PATH; install it, activate the environment it is installed in, "
            "or give its full path"
        )
    name = _command_name(words)
    return ServerSource(
        "command", _redacted_command(text), name, mcp_config={name: {"command": words[0], "args": words[1:]}}
    )


def _command_name(words: Sequence[str]) -> str:
    if "-m" in words[:-1]:
        return _slug(words[words.index("-m") + 1].rsplit(".", 1)[-1])
    program = Path(words[0]).name
    if program.startswith("python") and len(words) > 1 and words[1].endswith(".py"):
        return _slug(Path(words[1]).stem)
    if program in _LAUNCHERS:
        named = [word for word in words[1:] if not word.startswith("-") and word not in _LAUNCHER_WORDS]
        if named:
            return _slug(named[0].rsplit("/", 1)[-1].split("@")[0].split(":")[0])
    return _slug(Path(program).stem)


def _redacted_command(text: str) -> str:
    """The command line with the values of secret-looking flags (`--api-key X`, `--token=X`) replaced by ***."""
    words = _split_command(text)
    shown: list[str] = []
    hide_next = False
    for word in words:
        if hide_next:
            shown.append("***")
            hide_next = False
        elif _SECRET_FLAG.match(word):
            if "=" in word:
                shown.append(word.split("=", 1)[0] + "=***")
            else:
                shown.append(word)
                hide_next = True
        else:
            shown.append(word)
    return shlex.join(shown)


def _image_source(image: str) -> ServerSource:
    name = _image_name(image)
    config = {name: {"command": "docker", "args": ["run", "--rm", "-i", image]}}
    return ServerSource("image", image, name, mcp_config=config, metadata={"image": image})


def _mcp_config_source(text: str) -> ServerSource:
    path = Path(text).expanduser()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(
            f"{text}: cannot be read as JSON ({exc}); fix the file or pass the server another way"
        ) from exc
    config = _find_mcp_config(data)
    if config is None:
        raise ConfigError(
            f"{text}: expected an mcp_config (server name -> {{command/args or url}}), an mcpServers file or task "
            "rows with an mcp_config; found none of them"
        )
    # as with a command line: `python` runs as this interpreter (built-in tasksets start their servers that way)
    config = {
        server: {**entry, "command": sys.executable}
        if isinstance(entry, Mapping) and entry.get("command") in _PYTHON_NAMES
        else entry
        for server, entry in config.items()
    }
    tasks_file = text if _is_task_rows(data) else None
    return ServerSource("mcp-config", text, _slug(path.stem), mcp_config=config, tasks_file=tasks_file)


def _is_task_rows(data: Any) -> bool:
    """Whether a JSON file holds task rows (a list of them, or one), not a bare mcp_config."""
    first = data[0] if isinstance(data, list) and data else data
    return isinstance(first, Mapping) and "mcp_config" in first and "prompt" in first


def _find_mcp_config(data: Any) -> dict[str, Any] | None:
    if isinstance(data, list) and data:
        data = data[0]  # a taskset: its first task
    if not isinstance(data, Mapping):
        return None
    for key in ("mcpServers", "mcp_config"):
        if key in data:
            inner = data[key]
            if isinstance(inner, str):  # a Hugging Face row stores it as a JSON string
                inner = json.loads(inner)
            return dict(inner) if isinstance(inner, Mapping) else None
    entries = list(data.values())
    if entries and all(isinstance(entry, Mapping) and ("command" in entry or "url" in entry) for entry in entries):
        return dict(data)
    return None


def _lock_source(text: str, *, no_connect: bool) -> ServerSource:
    path = Path(text).expanduser()
    lock_path = path / LOCK_FILE if path.is_dir() else path
    if not lock_path.is_file():
        raise ConfigError(
            f"{text} has no {LOCK_FILE}; run `hud build` there first, or pass the server's command line, URL or image"
        )
    lock = _read_lock(lock_path)
    image = lock["image"] if isinstance(lock.get("image"), str) else None
    tools, complete = _lock_tools(lock.get("tools"))
    name = _image_name(image) if image else _slug(lock_path.resolve().parent.name)
    metadata = {"image": image} if image else {}
    if complete or (no_connect and tools):
        return ServerSource("lock", str(lock_path), name, tools=tools, metadata=metadata)
    if image is None:
        raise ConfigError(
            f"{lock_path}: its tools lack inputSchema and it names no image to start; rebuild it with a newer "
            "`hud build`, or pass the server's command line or URL"
        )
    config = {name: {"command": "docker", "args": ["run", "--rm", "-i", image]}}
    return ServerSource("lock", str(lock_path), name, mcp_config=config, metadata=metadata)


def _lock_tools(raw_tools: Any) -> tuple[dict[str, ToolSpec], bool]:
    """The lock's `tools` as specs, and whether every one has an inputSchema (hud < 0.4.19 wrote none)."""
    entries = [tool for tool in raw_tools or [] if isinstance(tool, Mapping) and isinstance(tool.get("name"), str)]
    tools = {}
    for tool in entries:
        schema, meta = tool.get("inputSchema"), tool.get("meta")
        tools[tool["name"]] = ToolSpec(
            name=tool["name"],
            description=str(tool.get("description") or ""),
            input_schema=schema if isinstance(schema, Mapping) else {},
            meta=meta if isinstance(meta, Mapping) else None,
        )
    complete = bool(entries) and all(isinstance(tool.get("inputSchema"), Mapping) for tool in entries)
    return tools, complete


def _image_name(image: str) -> str:
    """`docker.io/hudevals/hud-text-2048:0.1.3@sha256:...` -> `hud-text-2048`."""
    return _slug(image.split("@")[0].rsplit("/", 1)[-1].split(":")[0])


def _read_lock(lock_path: Path) -> dict[str, Any]:
    """The lock as a mapping; a YAML error names the line only (the line itself may hold a secret)."""
    try:
        data = yaml.safe_load(lock_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{lock_path}: not valid YAML{where}; fix the file or run `hud build` again") from None
    except OSError as exc:
        raise ConfigError(f"{lock_path}: cannot be read ({exc.strerror})") from exc
    if not isinstance(data, Mapping):
        raise ConfigError(f"{lock_path}: expected a mapping with image and tools; run `hud build` again")
    return dict(data)
