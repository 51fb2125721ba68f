"""What requests may make the service run, and who may ask: the command allow-list, variables, paths, the token,
and secrets kept out of responses, stored rows and events."""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.cli.app import main
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.service.jobs import JobPaths
from hud_vf_gym.service.settings import ServiceSettings
from hud_vf_gym.service.store import JobRow

from .conftest import TOKEN, read_events

SECRET = "sk-live-secret-value-0123456789"


def task(server: dict[str, Any], task_id: str = "t1") -> dict[str, Any]:
    return {
        "id": task_id,
        "prompt": "Play.",
        "mcp_config": {"game": server},
        "setup_tool": {"name": "setup", "arguments": {"name": "board", "arguments": {"board_size": 3, "seed": 1}}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 16}}},
    }


BUILTIN = {"command": "python", "args": ["-m", "hud_vf_gym.environments.text_2048"]}


@pytest.fixture
def paused(settings: ServiceSettings) -> ServiceSettings:
    return dataclasses.replace(settings, paused=True)  # accepted jobs stay queued: nothing runs


def train(client: Any, server: dict[str, Any], **fields: Any) -> Any:
    return client.post("/train", json={"model_name": "m", "tasks": [task(server)], **fields})


def test_security_builtin_environment_is_allowed(paused: ServiceSettings, make_client: Any) -> None:
    client = make_client(paused)
    assert train(client, BUILTIN).status_code == 202


@pytest.mark.parametrize("endpoint", ["/train", "/rollout"])
def test_security_unlisted_command_is_refused_naming_the_setting(
    paused: ServiceSettings, make_client: Any, endpoint: str
) -> None:
    client = make_client(paused)
    body = {"tasks": [task({"command": "bash", "args": ["-c", "echo hi"]})]}
    response = client.post(endpoint, json={**body, "model_name": "m"} if endpoint == "/train" else body)
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "task 't1': mcp_config server 'game': the command 'bash -c echo hi' is not on this service's allow-list "
        "(setting: allowed_commands). Built-in environments (hud_vf_gym.environments.browser, "
        "hud_vf_gym.environments.text_2048) are always allowed; the operator can allow this one with: "
        "hud-vf-gym serve --allow-commands 'bash -c echo hi'"
    )
    assert client.get("/jobs").json() == {"jobs": []}  # nothing was queued


@pytest.mark.parametrize(
    ("server", "allowed"),
    [
        ({"command": "my-server", "args": ["--port", "1"]}, True),
        ({"command": "my-server", "args": ["--other"]}, False),
        ({"command": "/tmp/bin/my-server", "args": ["--port", "1"]}, False),
        ({"command": "my-server", "args": ["--port", "1"], "cwd": "/tmp"}, False),
        ({"command": "my-server", "args": ["--port", "1"], "env": {"LD_PRELOAD": "/tmp/x.so"}}, False),
        (
            {"command": "python", "args": ["-m", "hud_vf_gym.environments.text_2048"], "env": {"PYTHONPATH": "/x"}},
            False,
        ),
    ],
    ids=["allowed-prefix", "other-args", "other-path", "cwd", "ld-preload", "pythonpath"],
)
def test_security_operator_allow_list_matches_word_by_word(
    paused: ServiceSettings, make_client: Any, server: dict[str, Any], allowed: bool
) -> None:
    client = make_client(dataclasses.replace(paused, allowed_commands=(("my-server", "--port"),)))
    response = train(client, server)
    assert response.status_code == (202 if allowed else 403), response.json()


@pytest.mark.parametrize(
    ("url", "variable", "allow_env", "status"),
    [
        ("https://mcp.example.invalid/mcp", "OPENAI_API_KEY", frozenset(), 403),
        ("https://mcp.example.invalid/mcp", "OPENAI_API_KEY", frozenset({"OPENAI_API_KEY"}), 202),
        ("https://mcp.hud.ai/v3/mcp", "HUD_API_KEY", frozenset(), 202),
        ("https://mcp.example.invalid/mcp", "HUD_API_KEY", frozenset(), 403),
    ],
    ids=["unlisted", "allowed", "hub-key-to-hub", "hub-key-elsewhere"],
)
def test_security_templates_name_only_allowed_variables(
    paused: ServiceSettings, make_client: Any, url: str, variable: str, allow_env: frozenset[str], status: int
) -> None:
    client = make_client(dataclasses.replace(paused, allowed_env=allow_env))
    response = train(client, {"url": url, "headers": {"Authorization": f"Bearer ${{{variable}}}"}})
    assert response.status_code == status
    if status == 403:
        assert (
            f"(setting: allowed_env); the operator can allow it with: hud-vf-gym serve --allow-env {variable}"
            in (response.json()["detail"])
        )


def test_security_api_key_variable_must_be_allowed(paused: ServiceSettings, make_client: Any) -> None:
    client = make_client(paused)
    endpoint = {"base_url": "https://api.example.invalid/v1", "model": "x", "api_key_env": "HOME"}
    response = client.post("/rollout", json={"endpoint": endpoint, "tasks": [task(BUILTIN)]})
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "endpoint.api_key_env: the service's environment variable 'HOME' may not be used by requests (setting: "
        "allowed_env); the operator can allow it with: hud-vf-gym serve --allow-env HOME"
    )


@pytest.mark.parametrize("taskset", ["/etc/hosts.json", "../outside.jsonl"])
def test_security_paths_stay_inside_the_working_directory(
    paused: ServiceSettings, make_client: Any, taskset: str
) -> None:
    client = make_client(paused)
    response = client.post("/train", json={"model_name": "m", "taskset": taskset})
    assert response.status_code == 403
    assert "is outside the service's working directory (setting: work_dir" in response.json()["detail"]


def test_security_literal_secrets_never_leave_the_service(
    paused: ServiceSettings, make_client: Any, tmp_path: Path
) -> None:
    settings = dataclasses.replace(paused, paused=False)
    client = make_client(settings, raise_server_exceptions=True)
    service = client.app.state.service

    def build(job: JobRow, paths: JobPaths, resume: bool) -> tuple[list[str], dict[str, str]]:
        # the job prints the request's secret, as a crashing MCP client might print a header
        script = f"print('connecting with Authorization: Bearer {SECRET}')"
        return [sys.executable, "-c", script], dict(os.environ)

    service.runner.build_command = build
    server = {"url": "https://mcp.example.invalid/mcp", "headers": {"Authorization": f"Bearer {SECRET}"}}
    accepted = train(client, server)
    job_id = accepted.json()["job_id"]
    events = read_events(client, job_id)
    texts = [accepted.text, client.get(f"/jobs/{job_id}").text, client.get("/jobs").text, str(events)]
    texts.append(client.get("/models").text)
    assert {"connecting with Authorization: ***"} <= {event["data"].get("line") for event in events}
    stored = b"".join(path.read_bytes() for path in settings.state_dir.glob("service.db*"))
    for text in texts:
        assert SECRET not in text
    assert SECRET.encode() not in stored  # the database and its WAL


def test_security_token_protects_every_route_but_health(settings: ServiceSettings, make_client: Any) -> None:
    client = make_client(dataclasses.replace(settings, token=TOKEN))
    assert client.get("/health").status_code == 200
    assert client.get("/health").json()["auth"] is True
    for method, path in [("GET", "/jobs"), ("GET", "/models"), ("GET", "/"), ("POST", "/train")]:
        response = client.request(method, path, json={"model_name": "m"})
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/jobs", headers={"Authorization": "Bearer wrong-token-0123456789"}).status_code == 401
    assert client.get("/jobs", headers={"Authorization": f"Bearer {TOKEN}"}).json() == {"jobs": []}
    login = client.get("/", params={"token": TOKEN}, follow_redirects=False)
    assert (login.status_code, login.headers["location"]) == (303, "/")
    assert client.get("/").status_code == 200  # the cookie the redirect set


def test_security_non_loopback_bind_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("--host 0.0.0.0 is reachable from other machines, so the service")):
        ServiceSettings(state_dir=tmp_path, host="0.0.0.0")
    ServiceSettings(state_dir=tmp_path, host="0.0.0.0", token=TOKEN)  # with a token it may


def test_security_serve_command_refuses_an_open_bind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUD_VF_GYM_SERVICE_TOKEN", raising=False)
    assert main(["serve", "--host", "0.0.0.0", "--state-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hud-vf-gym serve: error: 1 invalid setting\n  --host 0.0.0.0 is reachable")
    assert "export HUD_VF_GYM_SERVICE_TOKEN=<a long random secret>" in error


def test_security_bad_bodies_are_4xx_naming_the_field_without_echoing_it(
    paused: ServiceSettings, make_client: Any
) -> None:
    client = make_client(paused)
    malformed = client.post("/train", content=b'{"model_name": ', headers={"content-type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.json()["detail"][0]["type"] == "json_invalid"
    extra = client.post("/train", json={"model_name": "m", "api_key": SECRET})
    assert extra.status_code == 422
    assert extra.json() == {
        "detail": [{"loc": ["body", "api_key"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}]
    }
    bad_row = client.post("/train", json={"model_name": "m", "tasks": [{"id": "x", "prompt": "p"}]})
    assert bad_row.status_code == 422
    assert bad_row.json()["detail"][0]["loc"] == ["body", "tasks"]
    assert "mcp_config" in bad_row.json()["detail"][0]["msg"]
