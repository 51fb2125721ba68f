"""Tests for server-entry validation and the HUD hub API-key check (hud_vf_gym/runtime/servers.py)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.runtime.servers import RemoteServer, StdioServer, check_hub_credentials, parse_mcp_config
from hud_vf_gym.runtime.variables import resolve_templates


def test_parse_mcp_config_stdio_entry() -> None:
    entries = parse_mcp_config(
        {"local": {"command": "docker", "args": ["run", "--rm", "-i", "hud-text-2048"], "env": {"A": "1"}, "cwd": "/"}}
    )
    assert entries == {
        "local": StdioServer(command="docker", args=["run", "--rm", "-i", "hud-text-2048"], env={"A": "1"}, cwd="/")
    }


def test_parse_mcp_config_accepts_arguments_typo_for_args() -> None:
    # hud-python's Oct-2025 fix renamed every "args" key in its task JSON, the docker launch included
    entries = parse_mcp_config({"local": {"command": "docker", "arguments": ["run", "-i", "img"]}})
    assert entries["local"] == StdioServer(command="docker", args=["run", "-i", "img"])


@pytest.mark.parametrize(
    ("entry", "uses_sse"),
    [
        ({"url": "https://mcp.hud.ai/v3/mcp"}, False),
        ({"url": "http://localhost:8765/sse"}, True),
        ({"url": "http://localhost:8765/sse/"}, True),
        ({"url": "http://localhost:8765/sse/messages"}, True),
        ({"url": "http://localhost:8765/ssexyz"}, False),
        ({"url": "http://localhost:8765/mcp?via=/sse"}, False),
        ({"url": "http://localhost:8765/sse", "transport": "http"}, False),
        ({"url": "http://localhost:8765/mcp", "transport": "sse"}, True),
        ({"url": "http://localhost:8765/mcp", "transport": "streamable-http"}, False),
    ],
    ids=[
        "hub",
        "sse-path",
        "sse-trailing-slash",
        "sse-subpath",
        "sse-prefix-only",
        "sse-in-query",
        "explicit-http",
        "explicit-sse",
        "explicit-streamable",
    ],
)
def test_remote_server_transport_inference(entry: dict[str, Any], uses_sse: bool) -> None:
    assert RemoteServer.model_validate(entry).uses_sse is uses_sse


def test_parse_mcp_config_reports_every_problem_at_once() -> None:
    config = {
        "a": {"command": "x", "foo": 1, "args": "not-a-list"},
        "b": {"url": "ftp://host", "transport": "ws", "headers": {"Authorization": "Bearer secret-value-1"}},
        "c": 3,
        "d": {},
        "e": {"command": "x", "url": "http://x"},
        "f": {"command": "x", "args": ["ok"], "arguments": ["typo beside args"]},
        "g": {"command": ""},
    }
    message = (
        "9 problems in mcp_config\n"
        "  server 'a': args: Input should be a valid list; expected a list of strings, e.g. "
        '["run", "--rm", "-i", "<image>"]\n'
        "  server 'a': foo: unknown key; expected one of args, command, cwd, env, transport\n"
        "  server 'b': url: expected an http:// or https:// URL (an MCP endpoint, e.g. https://mcp.hud.ai/v3/mcp), "
        "found the scheme 'ftp'\n"
        "  server 'b': transport: Input should be 'http', 'streamable-http' or 'sse'\n"
        "  server 'c': expected a mapping with 'command' (stdio) or 'url' (HTTP/SSE), got a value of type int\n"
        "  server 'd': has neither 'command' nor 'url'; give 'command' for a stdio server or 'url' for a remote one\n"
        "  server 'e': has both 'command' and 'url'; give 'command' for a stdio server or 'url' for a remote one\n"
        "  server 'f': arguments: unknown key; expected one of args, command, cwd, env, transport "
        "(did you mean 'args'?)\n"
        "  server 'g': command: String should have at least 1 character"
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$") as caught:
        parse_mcp_config(config)
    assert "secret-value-1" not in str(caught.value)


@pytest.mark.parametrize(
    ("config", "found"),
    [({}, "an empty mapping"), ([], "a value of type list"), ("Bearer sk-secret", "a value of type str")],
    ids=["empty", "list", "string"],
)
def test_parse_mcp_config_refuses_non_mapping(config: Any, found: str) -> None:
    message = (
        'mcp_config must map server names to server entries, e.g. {"local": {"command": "docker", "args": '
        f'["run", "--rm", "-i", "<image>"]}}}}; got {found}'
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_mcp_config(config)


HUB_CONFIG = {
    "hud": {
        "url": "https://mcp.hud.ai/v3/mcp",
        "headers": {"Authorization": "Bearer ${HUD_API_KEY}", "Mcp-Image": "hudevals/hud-text-2048:0.1.3"},
    }
}


@pytest.mark.parametrize(
    ("config", "environ", "message"),
    [
        (
            HUB_CONFIG,
            {},
            "mcp_config server 'hud' (https://mcp.hud.ai/v3/mcp): the Authorization header resolves to an empty bearer "
            "token ('Bearer '), which the HUD hub refuses; set the key before starting: export HUD_API_KEY=... "
            "(your HUD API key)",
        ),
        (
            {"hud": {"url": "https://mcp.hud.so/v3/mcp", "headers": {"authorization": "${HUB_AUTH}"}}},
            {},
            "mcp_config server 'hud' (https://mcp.hud.so/v3/mcp): the Authorization header resolves to an empty bearer "
            "token (''), which the HUD hub refuses; set the key before starting: export HUB_AUTH=... "
            "(your HUD API key)",
        ),
        (
            {"hud": {"url": "https://mcp.hud.ai/v3/mcp"}},
            {"HUD_API_KEY": "sk-set-but-unused"},
            "mcp_config server 'hud' (https://mcp.hud.ai/v3/mcp): has no Authorization header; add "
            '"Authorization": "Bearer ${HUD_API_KEY}" to its headers and export HUD_API_KEY=... (your HUD API key)',
        ),
        (
            {"mine": {"url": "${HUD_MCP_URL}", "headers": {"Authorization": "Bearer $HUD_API_KEY"}}},
            {"HUD_MCP_URL": "https://hub.example.com/mcp", "HUD_API_KEY": ""},
            "mcp_config server 'mine' (${HUD_MCP_URL}): the Authorization header resolves to an empty bearer "
            "token ('Bearer '), which the HUD hub refuses; set the key before starting: export HUD_API_KEY=... "
            "(your HUD API key)",
        ),
    ],
    ids=["hub-missing-key", "hub-so-other-variable", "hub-no-header", "custom-url-using-hud-api-key"],
)
def test_check_hub_credentials_refuses_empty_bearer(
    config: dict[str, Any], environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_hub_credentials(resolve_templates(config, environ), config)


@pytest.mark.parametrize(
    ("config", "environ"),
    [
        (HUB_CONFIG, {"HUD_API_KEY": "sk-hud-123456"}),
        ({"local": {"url": "http://localhost:8765/mcp"}}, {}),
        ({"local": {"command": "docker", "args": ["run", "-i", "img"]}}, {}),
        ({"other": {"url": "https://example.com/mcp", "headers": {"Authorization": "Bearer ${OTHER_KEY}"}}}, {}),
    ],
    ids=["hub-with-key", "local-url", "stdio", "non-hub-empty-bearer"],
)
def test_check_hub_credentials_accepts(config: dict[str, Any], environ: dict[str, str]) -> None:
    check_hub_credentials(resolve_templates(config, environ), config)
