"""Schemathesis over the service's whole OpenAPI schema, in process: every response matches its documentation.

The app runs with real components: the built-in 2048 MCP server for rollouts, and a scripted OpenAI-compatible
server on 127.0.0.1 as the default model (`--default-base-url`), so that generated `/rollout` and `/evaluate`
requests finish in seconds instead of running the embedded model. Training jobs are accepted but held (`paused`):
generated `POST /train` requests must not start hundreds of training processes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="the schema tests need: pip install -e '.[service-test]'")

from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.specs.openapi.checks import positive_data_acceptance  # noqa: E402

from hud_vf_gym.service.app import create_app  # noqa: E402
from hud_vf_gym.service.settings import ServiceSettings  # noqa: E402
from hud_vf_gym.testing import Play2048Policy, ScriptedChatServer  # noqa: E402

from .conftest import TOKEN, kill_job_processes  # noqa: E402

AUTHORIZATION = {"Authorization": f"Bearer {TOKEN}"}
REQUEST_TIMEOUT_S = 300  # a /rollout starts `hud-vf-gym eval` (seconds of imports) and plays up to 2 short games

pytestmark = [
    # schemathesis' own ASGI transport and hypothesis warn about internals we do not control
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


# schemathesis' lazy fixture loader (`schemathesis.pytest.from_fixture`) does not run under pytest 9, so the app is
# built when the module is imported, and the module fixture below stops what it started.
_WORK_DIR = Path(tempfile.mkdtemp(prefix="hud-vf-gym-schema-"))
_CHAT = ScriptedChatServer(Play2048Policy(max_moves=2))
_CHAT.start()
_SETTINGS = ServiceSettings(
    state_dir=_WORK_DIR / "state",
    work_dir=_WORK_DIR,
    paused=True,
    default_base_url=_CHAT.base_url,
    default_model="scripted",
    max_rollouts=2,  # two short rollouts per generated request at most
    token=TOKEN,  # the schema declares Bearer auth: schemathesis checks that requests without it are refused
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(_SETTINGS))


@pytest.fixture(scope="module", autouse=True)
def _stop_what_the_module_started() -> Iterator[None]:
    yield
    _CHAT.stop()
    kill_job_processes(_SETTINGS.state_dir)
    shutil.rmtree(_WORK_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_schema_every_response_matches_the_documentation(case: Any) -> None:
    # positive_data_acceptance expects every schema-valid body to succeed; ours also has checks JSON Schema cannot
    # state (a taskset name that exists, task rows validated by Task.from_row, taskset/tasks exclusive, batch_size
    # divisible by num_generations), answered with the documented 422 naming the field. Every other check runs.
    case.call_and_validate(headers=AUTHORIZATION, excluded_checks=[positive_data_acceptance], timeout=REQUEST_TIMEOUT_S)
