"""Fixtures shared by every test folder; paths and plain helpers live in `tests/support.py`."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hud_vf_gym.testing import Policy, ScriptedChatServer
from tests.support import live_children, new_marker, processes_with

# verifiers 0.3.x has the classic API (HUDGym's base); 0.4 removed it and a venv may have no verifiers at all
CLASSIC_VERIFIERS = importlib.util.find_spec("verifiers") is not None and (
    importlib.util.find_spec("verifiers.legacy") is not None
)
NO_CLASSIC = "needs verifiers' classic API (0.3.x): pip install -e '.[classic]'"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"classic: {NO_CLASSIC}; skipped where it is missing")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CLASSIC_VERIFIERS:
        return
    for item in items:
        if "classic" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=NO_CLASSIC))


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Run `@pytest.mark.anyio` tests on asyncio only: verifiers, TRL and `MCPSession` all need asyncio.

    Session-scoped so that module-scoped async fixtures (a shared MCP session) may use it too.
    """
    return "asyncio"


@pytest.fixture
def marker() -> str:
    """A unique command-line marker, so a test can find the server processes it started (`support.processes_with`)."""
    return new_marker()


@pytest.fixture
def serve() -> Iterator[Callable[[Policy], ScriptedChatServer]]:
    """Start scripted OpenAI-compatible chat servers on 127.0.0.1 (`serve(policy).base_url`); all stop afterwards."""
    servers: list[ScriptedChatServer] = []

    def start(policy: Policy) -> ScriptedChatServer:
        server = ScriptedChatServer(policy).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def no_marked_process_left(marker: str) -> Iterator[None]:
    """Fail the test if a process whose command line carries `marker` still runs when it ends.

    Opt in with `pytestmark = pytest.mark.usefixtures("no_marked_process_left")`.
    """
    yield
    assert processes_with(marker) == []


@pytest.fixture
def no_child_process_left() -> Iterator[None]:
    """Fail the test if a process it started (a server, a browser) still runs when it ends.

    Opt in with `pytestmark = pytest.mark.usefixtures("no_child_process_left")`. Processes that were running before
    the test (a module-scoped server) do not count.
    """
    before = live_children()
    yield
    assert live_children() - before == set()


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted-model cache every test of the session shares: the embedded model is converted once."""
    return tmp_path_factory.getbasetemp() / "hud-vf-gym-cache" / "models"


@pytest.fixture(scope="session")
def embedded_model_folder(model_cache: Path) -> Path:
    """The embedded SmolLM2 converted to a plain Hugging Face folder in `model_cache` (about 30 s, once)."""
    from hud_vf_gym.local_model.model import embedded_gguf, ensure_converted

    return ensure_converted(embedded_gguf(), cache=model_cache)
