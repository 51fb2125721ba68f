"""Issue 15: every resolved `${VAR}` value is hidden wherever it could surface, whatever the variable's name.

Before, only secret-looking names were redacted: `${DB_URL}` resolved to `postgres://app:pa55word@db/x` appeared in
error messages, stderr tails, results.jsonl, summary.json/.md and exception reprs, and a token in a URL query
appeared in the DEBUG/INFO lines of mcp's streamable-HTTP client and httpx. Real servers (stdio and HTTP on
127.0.0.1) and a real scripted endpoint throughout.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import anyio
import pytest

from hud_vf_gym.cli.app import main
from hud_vf_gym.errors import ServerStartError
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.testing import FixedRepliesPolicy
from tests.support import COUNTER_CONFIG, counter_row, http_echo_server, processes_with

HANG_GUARD_S = 60
DB_URL = "postgres://app:pa55word@db.internal:5432/orders"
TOKEN = "qtok-0123456789"


def leaks(text: str) -> list[str]:
    """The pieces of the secrets found in `text` (the whole URL, its password, the token)."""
    return [piece for piece in (DB_URL, "pa55word", TOKEN) if piece in text]


@pytest.mark.anyio
async def test_start_error_hides_a_resolved_url_and_its_password_everywhere(marker: str) -> None:
    code = "import os, sys; print('connecting to', sys.argv[-1], os.environ['DSN'], file=sys.stderr); sys.exit(3)"
    config = {"db": {"command": sys.executable, "args": ["-c", code, f"--marker={marker}", "${DB_URL}"]}}
    config["db"]["env"] = {"DSN": "${DB_URL}"}
    with anyio.fail_after(HANG_GUARD_S), pytest.raises(ServerStartError) as caught:
        await MCPSession.open(config, environ={"DB_URL": DB_URL})
    printed = "".join(traceback.format_exception(caught.value)) + repr(caught.value)
    assert leaks(printed) == []
    assert "last lines of its stderr:\n  | connecting to *** ***" in str(caught.value)


def test_eval_results_and_summaries_never_hold_a_resolved_value(
    serve: Any, tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DB_URL", DB_URL)
    row = counter_row(marker, "crashes")
    row["mcp_config"]["counter"]["args"].insert(1, "--marker=${DB_URL}")  # argparse keeps the later, real marker
    taskset = tmp_path / "tasks.json"
    taskset.write_text(json.dumps([row]))
    server = serve(FixedRepliesPolicy(["<tool>act()</tool>", "<tool>crash()</tool>"]))
    output = tmp_path / "run"
    argv = ["eval", "--base-url", server.base_url, "--model", "scripted", "--output", str(output)]
    assert main([*argv, "--taskset", str(taskset), "--config", str(COUNTER_CONFIG)]) == 0
    [result] = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    assert result["error"]["error"] == "ServerConnectionError"
    assert "--marker=***" in result["error"]["message"]  # the server is still named, its secret is not
    for name in ("results.jsonl", "summary.json", "summary.md", "run.json"):
        assert leaks((output / name).read_text()) == [], name
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_mcp_and_httpx_log_records_hide_a_query_token(marker: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with http_echo_server(marker, start_timeout_s=HANG_GUARD_S) as (url, _):
        with anyio.fail_after(HANG_GUARD_S):
            config = {"remote": {"url": f"{url}?api_key=${{API_TOKEN}}&client=${{CLIENT}}"}}
            environ = {"API_TOKEN": TOKEN, "CLIENT": "grader-7"}
            async with await MCPSession.open(config, environ=environ) as session:
                assert (await session.call_tool("echo", {"text": "hi"})).text == "hi"
    messages = [record.getMessage() for record in caplog.records]
    requests = [message for message in messages if message.startswith("HTTP Request: POST")]
    assert requests and all("?api_key=***&client=***" in message for message in requests)
    assert [message for message in messages if leaks(message) or "grader-7" in message] == []
