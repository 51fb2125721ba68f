"""Tests for `${VAR}` resolution and redaction (hud_vf_gym/runtime/variables.py)."""

from __future__ import annotations

import copy
import logging

import pytest

from hud_vf_gym.runtime.variables import (
    install_log_redaction,
    redact,
    redact_text,
    redact_urls,
    resolve_templates,
    secret_values,
    template_variables,
)

ENVIRON = {"HOME": "/home/agent", "IMAGE": "hud-text-2048", "EMPTY": "", "HUD_API_KEY": "sk-hud-123456"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${IMAGE}", "hud-text-2048"),
        ("$IMAGE", "hud-text-2048"),
        ("$HOME/bin", "/home/agent/bin"),
        ("Bearer ${HUD_API_KEY}", "Bearer sk-hud-123456"),
        ("$$HOME", "$HOME"),
        ("cost: $$5", "cost: $5"),
        ("${MISSING:-https://mcp.hud.ai/v3/mcp}", "https://mcp.hud.ai/v3/mcp"),
        ("${MISSING:https://mcp.hud.ai/v3/mcp}", "https://mcp.hud.ai/v3/mcp"),
        ("${EMPTY:-fallback}", "fallback"),
        ("${IMAGE:-fallback}", "hud-text-2048"),
        ("${MISSING:-}", ""),
        ("${MISSING}", ""),
        ("$MISSING", ""),
        ("a $5 bill", "a $5 bill"),
        ("trailing $", "trailing $"),
        ("${ unclosed", "${ unclosed"),
        ("${5}", "${5}"),
        ("no templates", "no templates"),
    ],
    ids=[
        "braced",
        "bare",
        "bare-then-path",
        "inside-text",
        "escaped-dollar",
        "escaped-dollar-then-digit",
        "default-dash",
        "default-colon-hud-docs",
        "default-when-empty",
        "default-unused",
        "empty-default",
        "missing-braced",
        "missing-bare",
        "stray-dollar-digit",
        "stray-trailing-dollar",
        "stray-unclosed-brace",
        "stray-braced-digit",
        "plain",
    ],
)
def test_resolve_templates_string(template: str, expected: str) -> None:
    assert resolve_templates(template, ENVIRON) == expected


def test_resolve_templates_walks_dicts_and_lists_but_not_keys() -> None:
    config = {
        "local": {"command": "docker", "args": ["run", "-i", "${IMAGE}"], "env": {"$IMAGE": "$HOME"}, "port": 8765},
        "flags": [True, None, 1.5],
    }
    assert resolve_templates(config, ENVIRON) == {
        "local": {
            "command": "docker",
            "args": ["run", "-i", "hud-text-2048"],
            "env": {"$IMAGE": "/home/agent"},
            "port": 8765,
        },
        "flags": [True, None, 1.5],
    }


def test_resolve_templates_never_mutates_input() -> None:
    config = {"hud": {"headers": {"Authorization": "Bearer ${HUD_API_KEY}"}}, "list": ["$IMAGE"]}
    original = copy.deepcopy(config)
    resolved = resolve_templates(config, ENVIRON)
    assert config == original
    assert resolved["hud"]["headers"]["Authorization"] == "Bearer sk-hud-123456"


def test_template_variables_lists_every_referenced_name() -> None:
    config = {"a": {"url": "${URL:-http://x}", "args": ["$IMAGE", "$$NOT_A_VAR", "$5"]}, "b": "${HUD_API_KEY}"}
    assert template_variables(config) == {"URL", "IMAGE", "HUD_API_KEY"}


def test_redact_hides_secret_headers_and_env_entries() -> None:
    config = {
        "hud": {
            "url": "https://mcp.hud.ai/v3/mcp",
            "headers": {
                "Authorization": "Bearer sk-hud-123456",
                "proxy-authorization": "Basic abc",
                "X-Api-Key": "k1",
                "Api-Key": "k2",
                "X-Session-Token": "t",
                "Client-Secret": "s",
                "Cookie": "c=1",
                "Env-Openai-Api-Key": "sk-openai",
                "Mcp-Image": "hudevals/hud-text-2048:0.1.3",
            },
        },
        "local": {"command": "docker", "env": {"GITHUB_TOKEN": "ghp", "LOG_LEVEL": "info"}},
    }
    assert redact(config) == {
        "hud": {
            "url": "https://mcp.hud.ai/v3/mcp",
            "headers": {
                "Authorization": "***",
                "proxy-authorization": "***",
                "X-Api-Key": "***",
                "Api-Key": "***",
                "X-Session-Token": "***",
                "Client-Secret": "***",
                "Cookie": "***",
                "Env-Openai-Api-Key": "***",
                "Mcp-Image": "hudevals/hud-text-2048:0.1.3",
            },
        },
        "local": {"command": "docker", "env": {"GITHUB_TOKEN": "***", "LOG_LEVEL": "info"}},
    }


def test_redact_replaces_given_secrets_anywhere() -> None:
    config = {"local": {"command": "ssh", "args": ["host", "--key=sk-hud-123456", "docker run -e K=sk-hud-123456"]}}
    assert redact(config, ["sk-hud-123456"]) == {
        "local": {"command": "ssh", "args": ["host", "--key=***", "docker run -e K=***"]}
    }


def test_redact_text_ignores_empty_and_tiny_secrets() -> None:
    # an empty secret would match everywhere; a one-letter one would garble every message
    assert redact_text("token abcd in x", ["", "x", "abcd"]) == "token *** in x"


def test_secret_values_are_every_resolved_value_header_key_and_url_credential() -> None:
    unresolved = {
        "hud": {"url": "${HUD_URL}", "headers": {"Authorization": "Bearer ${KEY_FROM_ELSEWHERE}", "Mcp-Image": "$IMG"}},
        "local": {"command": "x", "env": {"OPENAI_API_KEY": "${OPENAI_API_KEY}"}},
    }
    environ = {
        "HUD_URL": "http://localhost:8765/mcp",
        "KEY_FROM_ELSEWHERE": "k-98765",
        "IMG": "img",
        "OPENAI_API_KEY": "sk-o-1",
    }
    resolved = resolve_templates(unresolved, environ)
    # issue 15: HUD_URL counts although its name does not look secret (a ${DB_URL} can hold a password); "img" is
    # too short to hide without garbling messages
    expected = {"Bearer k-98765", "k-98765", "sk-o-1", "http://localhost:8765/mcp"}
    assert secret_values(unresolved, resolved, environ) == expected


def test_secret_values_take_url_passwords_and_secret_query_values() -> None:
    resolved = {
        "db": {"command": "x", "args": ["postgres://app:pa55word@db/x", "https://h/mcp?api_key=k-1234&page=1234"]}
    }
    assert secret_values({}, resolved, {}) == {"pa55word", "k-1234"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://app:pa55word@db:5432/x failed", "postgres://app:***@db:5432/x failed"),
        ("GET https://h/mcp?api_key=k-1&page=2#top 200", "GET https://h/mcp?api_key=***&page=***#top 200"),
        ("'http://user@h/p' and http://h/p?", "'http://user@h/p' and http://h/p?"),
        ("no url: a=b?c=d", "no url: a=b?c=d"),
    ],
    ids=["userinfo-password", "query-values", "no-credentials", "not-a-url"],
)
def test_redact_urls_hides_passwords_and_query_values(text: str, expected: str) -> None:
    assert redact_urls(text) == expected


def test_log_redaction_hides_secrets_and_url_credentials_in_mcp_and_httpx_records(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_redaction(["sk-logged-123"])
    caplog.set_level(logging.DEBUG)
    logging.getLogger("httpx").info('HTTP Request: %s %s "%s"', "POST", "https://h/mcp?api_key=k-55555", "200 OK")
    logging.getLogger("mcp.client.streamable_http").debug("Sending client message with sk-logged-123")
    logging.getLogger("hud_vf_gym.runtime.connection").warning("target postgres://app:pa55word@db/x")
    assert [record.getMessage() for record in caplog.records] == [
        'HTTP Request: POST https://h/mcp?api_key=*** "200 OK"',
        "Sending client message with ***",
        "target postgres://app:***@db/x",
    ]
