"""The built-in environments table (hud_vf_gym/environments/registry.py): the shipped rows, and a throwaway one.

The throwaway environment is what a new built-in environment is: a package with a thin MCP server on the shared
hub helper (here written into a temporary folder instead of `hud_vf_gym/environments/`), a taskset file, a config
file and one row, registered through the table alone. It then runs through `load_environment` with a scripted model
and through `gymnasium.make`, on a real stdio server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path

import gymnasium
import pytest

import hud_vf_gym
from hud_vf_gym import ConfigError
from hud_vf_gym.config import builtin_config_names, load_config, resolve_config_path
from hud_vf_gym.core.chat import SUMMARY_KEY
from hud_vf_gym.environments.registry import (
    BUILTINS,
    BuiltinEnvironment,
    register_builtin,
    shipped_config_dirs,
    shipped_tasksets_dir,
    unregister_builtin,
)
from hud_vf_gym.gym.registration import ENTRY_POINT, gym_env_ids
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.testing import FixedRepliesPolicy
from hud_vf_gym.testing.evaluate import evaluate_outputs
from hud_vf_gym.types import Grade
from tests.support import Serve

pytestmark = pytest.mark.usefixtures("no_child_process_left")

# -- the shipped rows -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("row", list(BUILTINS.values()), ids=list(BUILTINS))
def test_builtin_table_row_is_installed_registered_and_resolves(row: BuiltinEnvironment) -> None:
    assert row.is_installed()
    assert row.gym_id is not None
    spec = gymnasium.spec(row.gym_id)
    assert (spec.entry_point, spec.kwargs) == (ENTRY_POINT, row.make_kwargs())
    assert row.make_kwargs()["taskset"] in row.taskset_names
    assert row.make_kwargs()["config_path"] in row.config_names
    for name in row.taskset_names:
        commands = {tuple(entry["args"]) for task in load_taskset(name) for entry in task.mcp_config.values()}
        assert commands == {("-m", row.module)}, name  # every task of the row's tasksets runs the row's server
    for name in row.config_names:
        assert resolve_config_path(name).stem == name
        load_config(name)


def test_builtin_table_claims_every_shipped_taskset_and_config_once() -> None:
    shipped_tasksets = sorted(Path(entry.name).stem for entry in shipped_tasksets_dir().iterdir() if _is_taskset(entry))
    shipped_configs = sorted({path.stem for folder in shipped_config_dirs() for path in folder.glob("*.yaml")})
    assert sorted(name for row in BUILTINS.values() for name in row.taskset_names) == shipped_tasksets
    assert sorted(name for row in BUILTINS.values() for name in row.config_names) == shipped_configs
    assert {"2048", "browser", "miniwob"} <= set(shipped_tasksets)


def test_builtin_table_gym_ids_are_the_table_plus_hud_v0() -> None:
    assert gym_env_ids() == {
        "hud_vf_gym/HUD-v0": {},
        "hud_vf_gym/2048-v0": {"taskset": "2048", "config_path": "2048"},
        "hud_vf_gym/Browser-v0": {"taskset": "browser", "config_path": "browser-text"},
    }


def _is_taskset(entry: Traversable) -> bool:
    return entry.is_file() and Path(entry.name).suffix in (".json", ".jsonl")


# -- a throwaway environment ------------------------------------------------------------------------------------------

# The server, as a built-in one is written: a thin MCP module (mcp_compat.create_server) on the shared hub helper.
SERVER_SOURCE = '''
"""A counter the agent presses: `press()`, a `setup` hub (`reset`) and an `evaluate` hub (`reached`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from mcp.types import CallToolResult
from pydantic import Field

from hud_vf_gym.environments import SETUP_RESETS_STATE_META
from hud_vf_gym.environments.hub import (
    ARGUMENTS_DESCRIPTION, NAME_DESCRIPTION, Hub, HubArguments, HubFunction, evaluation_result,
    serve_function_lists, text_result,
)
from hud_vf_gym.environments.stdio import run_stdio
from hud_vf_gym.runtime.mcp_compat import create_server


@dataclass
class State:
    count: int = 0


class ResetArguments(HubArguments):
    start: int = 0


class ReachedArguments(HubArguments):
    target: int = Field(gt=0)


def reset(state: State, arguments: ResetArguments) -> CallToolResult:
    state.count = arguments.start
    return text_result(f"Counter at {state.count}")


def reached(state: State, arguments: ReachedArguments) -> CallToolResult:
    count, target = state.count, arguments.target
    return evaluation_result({"reward": min(1.0, count / target), "done": count >= target,
                              "content": f"count {count} of {target}", "info": {"count": count}, "isError": False})


STATE = State()
SETUP_HUB = Hub("setup", {"reset": HubFunction(ResetArguments, reset)})
EVALUATE_HUB = Hub("evaluate", {"reached": HubFunction(ReachedArguments, reached)})
mcp = create_server("throwaway-counter", log_level="ERROR")


@mcp.tool()
def press() -> CallToolResult:
    """Add one to the counter."""
    STATE.count += 1
    return text_result(f"Pressed; the counter shows {STATE.count}")


@mcp.tool(meta={SETUP_RESETS_STATE_META: True})
async def setup(
    name: Annotated[str, Field(description=NAME_DESCRIPTION, json_schema_extra={"enum": SETUP_HUB.names})],
    arguments: Annotated[dict[str, Any] | str, Field(description=ARGUMENTS_DESCRIPTION)] = "",
) -> CallToolResult:
    """Run a setup function by name: `reset` sets the counter."""
    return await SETUP_HUB.call(STATE, name, arguments)


@mcp.tool()
async def evaluate(
    name: Annotated[str, Field(description=NAME_DESCRIPTION, json_schema_extra={"enum": EVALUATE_HUB.names})],
    arguments: Annotated[dict[str, Any] | str, Field(description=ARGUMENTS_DESCRIPTION)] = "",
) -> CallToolResult:
    """Run an evaluate function by name: `reached` grades the count against a target."""
    return await EVALUATE_HUB.call(STATE, name, arguments)


serve_function_lists(mcp, SETUP_HUB, EVALUATE_HUB)


def main() -> None:
    run_stdio(mcp)
'''

CONFIG_SOURCE = """
system_prompt: |
  Press the button with press() until the counter shows the target, then call done().
  Reply with one action inside <tool></tool>.
defaults:
  max_turns: 5
parser:
  use_thinking: false
action_mappings:
  press: {}
rubric:
  weights: {task_completion: 0.8, tool_execution: 0.1, format_compliance: 0.1}
sessions:
  reuse: auto  # the server declares that setup resets it, so a warm server serves the next rollout
"""

PRESS_TWICE = ["<tool>press()</tool>", "<tool>press()</tool>", "<tool>done()</tool>"]


@dataclass(frozen=True)
class Throwaway:
    """The throwaway environment's row, and the name its taskset and config load by."""

    row: BuiltinEnvironment
    name: str


def _task_row(package: str, folder: Path, target: int) -> dict[str, object]:
    return {
        "id": f"press-to-{target}",
        "prompt": f"Press until the counter shows {target}.",
        # `python` is run as this interpreter because the taskset is a built-in one; PYTHONPATH finds the package
        "mcp_config": {"counter": {"command": "python", "args": ["-m", package], "env": {"PYTHONPATH": str(folder)}}},
        "setup_tool": {"name": "setup", "arguments": {"name": "reset", "arguments": {"start": 0}}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"name": "reached", "arguments": {"target": target}}},
    }


@pytest.fixture
def throwaway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Throwaway]:
    """Write the throwaway environment's package, taskset and config under tmp_path and register its row."""
    suffix = uuid.uuid4().hex[:8]
    package, name = f"throwaway_counter_{suffix}", f"throwaway-{suffix}"
    folder = tmp_path / "packages"
    (folder / package).mkdir(parents=True)
    (folder / package / "__init__.py").write_text('"""A throwaway built-in environment."""\n', encoding="utf-8")
    (folder / package / "__main__.py").write_text("from .server import main\n\nmain()\n", encoding="utf-8")
    (folder / package / "server.py").write_text(SERVER_SOURCE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))  # register_builtin checks that the module can be imported
    taskset = tmp_path / f"{name}.json"
    taskset.write_text(json.dumps([_task_row(package, folder, target) for target in (2, 4)]), encoding="utf-8")
    config = tmp_path / f"{name}.yaml"
    config.write_text(textwrap.dedent(CONFIG_SOURCE), encoding="utf-8")
    row = BuiltinEnvironment(
        name=f"throwaway_{suffix}",
        module=package,
        tasksets=(taskset,),
        configs=(config,),
        gym_id=f"hud_vf_gym/Throwaway{suffix}-v0",
    )
    register_builtin(row)
    yield Throwaway(row, name)
    unregister_builtin(row.name)


def test_builtin_table_row_makes_names_and_gym_id(throwaway: Throwaway) -> None:
    assert throwaway.name in builtin_config_names()
    assert resolve_config_path(throwaway.name) == throwaway.row.configs[0]
    assert load_taskset(throwaway.name).source == f"built-in taskset {throwaway.name!r}"
    assert throwaway.row.make_kwargs() == {"taskset": throwaway.name, "config_path": throwaway.name}
    assert throwaway.row.gym_id is not None
    assert gymnasium.spec(throwaway.row.gym_id).kwargs == throwaway.row.make_kwargs()


@pytest.mark.anyio
@pytest.mark.classic
async def test_builtin_table_row_runs_through_load_environment(throwaway: Throwaway, serve: Serve) -> None:
    env = hud_vf_gym.load_environment(taskset=throwaway.name, config_path=throwaway.name)
    try:
        outputs = await evaluate_outputs(
            env, serve(FixedRepliesPolicy(PRESS_TWICE)).base_url, concurrency=1, state_columns=[SUMMARY_KEY]
        )
    finally:
        await env.harness.close_all()  # `reuse: auto` keeps a warm server until then
    by_target = {output[SUMMARY_KEY]["task_id"]: output for output in outputs}
    assert sorted(by_target) == ["press-to-2", "press-to-4"]
    for task_id, completion in [("press-to-2", 1.0), ("press-to-4", 0.5)]:
        output = by_target[task_id]
        assert output["error"] is None
        assert output["metrics"]["task_completion"] == completion  # the server's own count / target
        assert output["metrics"]["tool_execution"] == 1.0
        assert output["reward"] == pytest.approx(0.8 * completion + 0.1 + 0.1)
        assert "Counter at 0" in output["prompt"][-1]["content"]  # the setup hub's answer opens the episode


def test_builtin_table_row_runs_through_gymnasium_make(throwaway: Throwaway) -> None:
    assert throwaway.row.gym_id is not None
    env = gymnasium.make(throwaway.row.gym_id)
    try:
        observation, info = env.reset(options={"task_id": "press-to-2"})
        assert observation == "Press until the counter shows 2.\n\nCounter at 0"
        assert info["task_id"] == "press-to-2"
        observation, reward, terminated, truncated, _ = env.step("<tool>press()</tool>")
        assert (observation, reward, terminated, truncated) == (
            "<result>\nPressed; the counter shows 1\n</result>",
            0.0,
            False,
            False,
        )
        env.step("<tool>press()</tool>")
        _, reward, terminated, truncated, info = env.step("<tool>done()</tool>")
        assert (terminated, truncated) == (True, False)
        assert isinstance(info["grade"], Grade)
        assert (info["grade"].reward, info["grade"].done) == (1.0, True)
        assert reward == pytest.approx(1.0)
        observation, _ = env.reset(options={"task_id": "press-to-4"})  # setup resets the (possibly warm) server
        assert observation.endswith("Counter at 0")
    finally:
        env.close()


def test_builtin_table_unregister_removes_names_and_gym_id(throwaway: Throwaway) -> None:
    row = unregister_builtin(throwaway.row.name)
    try:
        assert row is throwaway.row
        assert throwaway.name not in builtin_config_names()
        assert throwaway.row.gym_id not in gymnasium.registry
        with pytest.raises(ConfigError, match=re.escape(f"config {throwaway.name!r} is neither a YAML file")):
            resolve_config_path(throwaway.name)
    finally:
        register_builtin(row)  # for the fixture's own unregister


def test_builtin_table_register_reports_every_problem(throwaway: Throwaway, tmp_path: Path) -> None:
    clash = tmp_path / "2048.json"
    clash.write_text("[]", encoding="utf-8")
    row = BuiltinEnvironment(
        name=throwaway.row.name,
        module="no_such_package_here.server",
        tasksets=(clash, "no-such-taskset"),
        configs=(tmp_path / "missing.yml",),
        gym_id="hud_vf_gym/2048-v0",
    )
    message = (
        f"built-in environment {throwaway.row.name!r} cannot be registered:\n"
        f"  name: {throwaway.row.name!r} is taken; unregister_builtin({throwaway.row.name!r}) first\n"
        "  module: 'no_such_package_here.server' cannot be imported; put its folder on sys.path\n"
        "  gym_id: 'hud_vf_gym/2048-v0' is taken\n"
        f"  tasksets: the name '2048' ({clash}) is already taken; rename the file\n"
        "  tasksets: 'no-such-taskset' is not shipped; name a file by Path instead\n"
        f"  configs: {tmp_path / 'missing.yml'} does not exist"
    )
    with pytest.raises(ConfigError, match=re.escape(message) + "$"):
        register_builtin(row)
    assert BUILTINS[throwaway.row.name] is throwaway.row


def test_builtin_table_row_registered_before_gymnasium_is_imported(tmp_path: Path) -> None:
    config = tmp_path / "later-config.yaml"
    config.write_text("system_prompt: x\n", encoding="utf-8")
    code = (
        "import sys, hud_vf_gym\n"
        "from pathlib import Path\n"
        "from hud_vf_gym.environments.registry import BuiltinEnvironment, register_builtin\n"
        "register_builtin(BuiltinEnvironment(name='later', module='hud_vf_gym.environments.text_2048',\n"
        f"    tasksets=('2048',), configs=(Path({str(config)!r}),), gym_id='hud_vf_gym/Later-v0'))\n"
        "assert 'gymnasium' not in sys.modules\n"
        "import gymnasium\n"
        "spec = gymnasium.spec('hud_vf_gym/Later-v0')\n"
        "assert spec.kwargs == {'taskset': '2048', 'config_path': 'later-config'}, spec.kwargs\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)
