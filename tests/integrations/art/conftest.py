"""Fixtures for the ART integration tests: scripted endpoints on 127.0.0.1, built-in 2048 tasks on marked servers.

Nothing here imports ART, so collecting this folder on Python 3.11 (where openpipe-art 0.5.23 cannot install)
costs nothing; each test module skips itself there with `pytest.importorskip("art")`.
"""

from __future__ import annotations

import dataclasses
import itertools
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import pytest

from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import NonsensePolicy, Play2048Policy, ScriptedChatServer
from tests.support import processes_with

ART_MISSING = "openpipe-art 0.5.23+ needs Python 3.12: .ci/run runs this folder in its own venv (.venv-art)"
EXIT_TIMEOUT_S = 30.0  # servers whose session closed see stdin close and exit within seconds
# The built-in 2048 server, started by this interpreter (so it runs this checkout's code); the trailing marker
# lands in the process's command line, where `processes_with` finds it.
SERVE_2048 = "from hud_vf_gym.environments.text_2048.server import main; main([])"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def marker() -> str:
    """A unique command-line marker, so a test counts only the server processes it started."""
    return f"hud-vf-gym-test-{uuid.uuid4().hex[:12]}"


def wait_until_gone(marker: str) -> list[psutil.Process]:
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_with(marker)


def server_2048(marker: str) -> dict[str, Any]:
    return {"text_2048": {"command": sys.executable, "args": ["-c", SERVE_2048, marker]}}


def tasks_2048(marker: str, count: int) -> list[Task]:
    """The first `count` built-in 2048 tasks (3x3 boards), their server started with `marker` in its command line."""
    tasks = load_taskset("2048", num_tasks=count).tasks
    return [dataclasses.replace(task, mcp_config=server_2048(marker)) for task in tasks]


class MixedPolicy:
    """Plays 2048, but every third request (in arrival order) gets nonsense, so the rollouts of one task differ."""

    def __init__(self, max_moves: int = 4) -> None:
        self._play = Play2048Policy(max_moves=max_moves)
        self._nonsense = NonsensePolicy(seed=3)
        self._calls = itertools.count()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "MixedPolicy()"

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        with self._lock:
            call = next(self._calls)
        return self._nonsense(messages) if call % 3 == 2 else self._play(messages)


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedChatServer]]:
    """Start scripted chat servers on 127.0.0.1; every one is stopped after the test."""
    servers: list[ScriptedChatServer] = []

    def start(policy: Any, **kwargs: Any) -> ScriptedChatServer:
        server = ScriptedChatServer(policy, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
