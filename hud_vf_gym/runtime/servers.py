"""What an `mcp_config` may say: validated server entries, and the HUD hub's API-key check.

`mcp_config` maps server names to entries in the Cursor/Claude `mcpServers` shape that HUD and fastmcp use:

- stdio: `{"command": "docker", "args": ["run", "--rm", "-i", "<image>"], "env": {...}, "cwd": "..."}`;
- remote: `{"url": "https://mcp.hud.ai/v3/mcp", "headers": {...}, "transport": "http" | "streamable-http" | "sse"}`,
  the transport inferred from the URL when absent.

Entries are validated after `${VAR}` resolution; messages name the server and the field, never a value (values
may be secrets). `entry_problems` checks an entry as written (templates unresolved), so a taskset row with a bad
entry is refused when the taskset loads rather than when its rollout starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hud_vf_gym.errors import ConfigError, MissingCredentialsError
from hud_vf_gym.runtime.variables import has_template, template_variables
from hud_vf_gym.validation import validation_problems

__all__ = [
    "HUB_HOSTS",
    "RemoteServer",
    "ServerEntry",
    "StdioServer",
    "check_hub_credentials",
    "entry_problems",
    "parse_mcp_config",
]

HUB_HOSTS = frozenset({"mcp.hud.so", "mcp.hud.ai"})
"""Hosts of HUD's hosted MCP hub, which needs `Authorization: Bearer <HUD_API_KEY>`."""


class StdioServer(BaseModel):
    """An `mcp_config` entry for a server started as a child process that speaks MCP over stdin/stdout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(min_length=1, description="The executable, e.g. `docker` or `python`.")
    args: list[str] = Field(default_factory=list, description="Its arguments; `arguments` is accepted as a typo.")
    env: dict[str, str] = Field(default_factory=dict, description="Variables added to mcp's safe default set.")
    cwd: str | None = Field(default=None, description="Working directory of the child process.")
    transport: Literal["stdio"] | None = Field(default=None, description="Only `stdio` makes sense here.")


class RemoteServer(BaseModel):
    """An `mcp_config` entry for a server reached by URL, over streamable HTTP or SSE."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="The MCP endpoint, e.g. `https://mcp.hud.ai/v3/mcp`.")
    headers: dict[str, str] = Field(default_factory=dict, description="Sent with every request.")
    transport: Literal["http", "streamable-http", "sse"] | None = Field(
        default=None, description="Inferred when absent: a URL path containing `/sse` means SSE, else HTTP."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        """Accept only http:// and https:// endpoints; the message names the scheme found, never the URL."""
        scheme = urlparse(url).scheme.lower() if "://" in url else ""
        if scheme in ("http", "https"):
            return url
        found = f"the scheme {scheme!r}" if scheme else "no scheme"
        raise ValueError(
            f"expected an http:// or https:// URL (an MCP endpoint, e.g. https://mcp.hud.ai/v3/mcp), found {found}"
        )

    @property
    def uses_sse(self) -> bool:
        """Whether to connect over SSE (explicitly, or inferred from the URL as HUD and fastmcp do)."""
        if self.transport is not None:
            return self.transport == "sse"
        path = urlparse(self.url).path.rstrip("/")
        return path.endswith("/sse") or "/sse/" in path


ServerEntry = StdioServer | RemoteServer
"""One validated server entry of an `mcp_config`."""


def parse_mcp_config(mcp_config: Mapping[str, Any]) -> dict[str, ServerEntry]:
    """Validate every server entry of `mcp_config` and return them by server name.

    Raises:
        ConfigError: listing every problem of every entry at once.
    """
    if not isinstance(mcp_config, Mapping) or not mcp_config:
        raise ConfigError(
            "mcp_config must map server names to server entries, e.g. "
            '{"local": {"command": "docker", "args": ["run", "--rm", "-i", "<image>"]}}; '
            f"got {_kind_of(mcp_config)}"
        )
    entries: dict[str, ServerEntry] = {}
    problems: list[str] = []
    for name, raw_entry in mcp_config.items():
        entry = _parse_entry(str(name), raw_entry, problems)
        if entry is not None:
            entries[str(name)] = entry
    if problems:
        count = len(problems)
        header = f"{count} problem{'s' if count != 1 else ''} in mcp_config"
        raise ConfigError("\n  ".join([header, *problems]))
    return entries


def _parse_entry(name: str, raw_entry: Any, problems: list[str]) -> ServerEntry | None:
    """Validate one entry, appending its problems (with the server's name) to `problems`."""
    entry, entry_lines = _validate_entry(raw_entry)
    problems.extend(f"server {name!r}: {line}" for line in entry_lines)
    return entry


# What a field of an entry must hold, added to pydantic's type errors so the message carries the fix.
_EXPECTED = {
    "command": "the executable as one string, e.g. 'docker' (its arguments go in 'args')",
    "args": 'a list of strings, e.g. ["run", "--rm", "-i", "<image>"]',
    "env": 'a mapping of variable names to string values, e.g. {"DEBUG": "1"} (quote numbers)',
    "cwd": "a folder path as a string",
    "headers": 'a mapping of header names to string values, e.g. {"Authorization": "Bearer ${HUD_API_KEY}"}',
}


def _validate_entry(raw_entry: Any) -> tuple[ServerEntry | None, list[str]]:
    """Validate one entry; return it (None when invalid) and its problems as `location: message` lines."""
    if not isinstance(raw_entry, Mapping):
        return None, [f"expected a mapping with 'command' (stdio) or 'url' (HTTP/SSE), got {_kind_of(raw_entry)}"]
    if ("command" in raw_entry) == ("url" in raw_entry):
        which = "both 'command' and 'url'" if "command" in raw_entry else "neither 'command' nor 'url'"
        return None, [f"has {which}; give 'command' for a stdio server or 'url' for a remote one"]
    model: type[StdioServer] | type[RemoteServer] = StdioServer if "command" in raw_entry else RemoteServer
    data = dict(raw_entry)
    if model is StdioServer and "arguments" in data and "args" not in data:
        data["args"] = data.pop("arguments")  # hud-python's Oct-2025 rename of every "args" key to "arguments"
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        # a resolved entry may hold secrets: locations and messages only, never the input
        return None, [_with_expectation(line) for line in validation_problems(exc, model, quote_input=False)]


def _with_expectation(line: str) -> str:
    """Add what the field must hold to a pydantic type error (`args: Input should be a valid list; expected ...`)."""
    location, _, message = line.partition(": ")
    field = location.split(".")[0]
    if field in _EXPECTED and message.startswith("Input should be"):
        return f"{line}; expected {_EXPECTED[field]}"
    return line


def entry_problems(raw_entry: Any) -> list[str]:
    """The problems of one `mcp_config` entry as written (before `${VAR}` resolution), as `location: message` lines.

    Templates count as the strings they will become; a URL whose scheme is a template (`${HUB_URL}/mcp`) is checked
    only once resolved, by `parse_mcp_config`.
    """
    if isinstance(raw_entry, Mapping) and isinstance(raw_entry.get("url"), str):
        url = raw_entry["url"]
        if has_template(url.split("://", 1)[0]):
            raw_entry = {**raw_entry, "url": "https://template.invalid/"}
    return _validate_entry(raw_entry)[1]


def _kind_of(value: Any) -> str:
    """Name a value's type for a message without quoting it (a resolved value may hold a secret)."""
    return "an empty mapping" if isinstance(value, Mapping) else f"a value of type {type(value).__name__}"


def check_hub_credentials(resolved_config: Mapping[str, Any], unresolved_config: Mapping[str, Any]) -> None:
    """Refuse, before connecting, a HUD hub entry whose Authorization header resolves to an empty bearer token.

    An entry counts as the hub when its URL's host is in `HUB_HOSTS` or its unresolved headers use `HUD_API_KEY`.
    Connecting with `Bearer ` fails with "Illegal header value" and then hangs (hud-python#110).

    Raises:
        MissingCredentialsError: naming each such server and the variable to export.
    """
    problems = []
    for name, entry in resolved_config.items():
        raw_entry = unresolved_config.get(name)
        if (
            not isinstance(entry, Mapping)
            or not isinstance(raw_entry, Mapping)
            or not isinstance(entry.get("url"), str)
        ):
            continue
        raw_headers = _headers_of(raw_entry)
        headers = _headers_of(entry)
        if urlparse(entry["url"]).hostname not in HUB_HOSTS and "HUD_API_KEY" not in template_variables(raw_headers):
            continue
        problem = _hub_authorization_problem(headers, raw_headers)
        if problem:
            problems.append(f"mcp_config server {name!r} ({raw_entry.get('url')}): {problem}")
    if problems:
        raise MissingCredentialsError("\n".join(problems))


def _headers_of(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """An entry's `headers`, or an empty mapping when it has none (or something else under that key)."""
    headers = entry.get("headers")
    return headers if isinstance(headers, Mapping) else {}


def _hub_authorization_problem(headers: Mapping[str, Any], raw_headers: Mapping[str, Any]) -> str | None:
    """Say what is wrong with a hub entry's Authorization header, or None when it carries a token."""
    key = next((header for header in headers if str(header).lower() == "authorization"), None)
    if key is None:
        return (
            'has no Authorization header; add "Authorization": "Bearer ${HUD_API_KEY}" to its headers and '
            "export HUD_API_KEY=... (your HUD API key)"
        )
    value = headers[key]
    if not isinstance(value, str):  # parse_mcp_config reports that
        return None
    words = value.split()
    if words and not (len(words) == 1 and words[0].lower() == "bearer"):
        return None
    variables = sorted(template_variables(raw_headers.get(key, ""))) or ["HUD_API_KEY"]
    exports = " and ".join(f"export {variable}=..." for variable in variables)
    return (
        f"the Authorization header resolves to an empty bearer token ({value!r}), which the HUD hub refuses; "
        f"set the key before starting: {exports} (your HUD API key)"
    )
