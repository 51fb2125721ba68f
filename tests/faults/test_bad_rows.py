"""Issue 15: a bad row never sinks the run, and a crashed evaluator is never trained on.

Rows here pass `Task.from_row` (the load-time checks are in tests/tasks/test_task.py) but cannot run: a setup or
evaluate tool the server lacks, a hub function the hub does not dispatch, an `mcp_config` whose `${VAR}` resolves
to a URL of the wrong scheme. Each must end its own rollouts with a `TaskDefinitionError` naming the row, the task,
the field and the fix (never retried as infrastructure), while the other rows' results are kept: through verifiers
(`HUDGym`), the eval CLI, the trainer and the Gymnasium env. Real stdio servers and a real scripted endpoint on
127.0.0.1 throughout.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import verifiers as vf
import yaml

from hud_vf_gym.classic import as_verifiers_error
from hud_vf_gym.cli.app import main
from hud_vf_gym.config import load_config, parse_config
from hud_vf_gym.core.harness import Harness
from hud_vf_gym.env import SUMMARY_KEY, HUDGym
from hud_vf_gym.errors import EvaluationError, TaskDefinitionError
from hud_vf_gym.gym.env import HUDTaskEnv
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import FixedRepliesPolicy
from hud_vf_gym.testing.evaluate import evaluate_outputs
from tests.support import ACT_THREE_TIMES, COUNTER_CONFIG, TEXT_2048_MODULE, counter_row, processes_with

HANG_GUARD_S = 60  # a counter server starts in about a second; only a hang gets near this
COUNTER_TOOLS = "act, crash, evaluate, fail, hang, setup"


def bad_rows(marker: str) -> list[dict[str, Any]]:
    """A good row, then three rows that only fail once their server runs (or their ${VAR}s resolve)."""
    return [
        counter_row(marker, "good"),
        counter_row(marker, "bad-setup", setup_tool={"name": "setpu", "arguments": {}}),
        counter_row(marker, "bad-url", mcp_config={"remote": {"url": "${COUNTER_URL}"}}),
        counter_row(marker, "bad-evaluate", evaluate_tool={"name": "grade", "arguments": {}}),
    ]


EXPECTED_ERRORS = {
    "bad-setup": (
        1,
        "setup_tool",
        "row 1 (id 'bad-setup'): setup_tool: no MCP server of the task offers a tool named 'setpu' (did you mean "
        f"'setup'?); its tools: {COUNTER_TOOLS}; fix the tool name in the row",
    ),
    "bad-url": (
        2,
        "mcp_config",
        "row 2 (id 'bad-url'): mcp_config: 1 problem in mcp_config\n  server 'remote': url: expected an http:// or "
        "https:// URL (an MCP endpoint, e.g. https://mcp.hud.ai/v3/mcp), found the scheme 'ftp'",
    ),
    "bad-evaluate": (
        3,
        "evaluate_tool",
        "row 3 (id 'bad-evaluate'): evaluate_tool: no MCP server of the task offers a tool named 'grade'; its tools: "
        f"{COUNTER_TOOLS}; fix the tool name in the row",
    ),
}
ENVIRON = {"COUNTER_URL": "ftp://127.0.0.1/counter"}  # resolves to a scheme no MCP transport speaks


def counter_tasks(rows: list[dict[str, Any]]) -> list[Task]:
    return [Task.from_row(row, index=index) for index, row in enumerate(rows)]


def test_task_definition_error_is_a_recorded_error_never_retried_as_infrastructure() -> None:
    # the core's errors import no verifiers; the classic adapter hands them to verifiers as plain vf.Errors
    error = TaskDefinitionError("row 1 (id 'x'): setup_tool: ...", task_id="x", row_index=1, field="setup_tool")
    assert not isinstance(error, vf.Error)
    bridged = as_verifiers_error(error)
    assert isinstance(bridged, vf.Error) and not isinstance(bridged, vf.InfraError)  # verifiers records, never retries
    assert isinstance(bridged, TaskDefinitionError) and type(bridged).__name__ == "TaskDefinitionError"
    assert (str(bridged), bridged.task_id, bridged.row_index, bridged.field) == (str(error), "x", 1, "setup_tool")
    evaluation = as_verifiers_error(EvaluationError("x"))
    assert isinstance(evaluation, vf.Error) and not isinstance(evaluation, vf.InfraError)
    assert isinstance(evaluation, EvaluationError) and str(evaluation) == "x"


@pytest.mark.anyio
async def test_hudgym_bad_rows_fail_alone_and_the_good_row_is_scored(serve: Any, marker: str) -> None:
    env = HUDGym(load_config(COUNTER_CONFIG), counter_tasks(bad_rows(marker)), environ=ENVIRON)
    outputs = await evaluate_outputs(
        env, serve(FixedRepliesPolicy(ACT_THREE_TIMES)).base_url, max_retries=2, state_columns=[SUMMARY_KEY]
    )
    by_task = {env.tasks[output["example_id"]].id: output for output in outputs}
    assert by_task["good"]["error"] is None
    assert by_task["good"]["reward"] == pytest.approx(1.0)
    for task_id, (_, _, message) in EXPECTED_ERRORS.items():
        output = by_task[task_id]
        assert (output["error"]["error"], output["error"]["message"]) == ("TaskDefinitionError", message)
        assert output[SUMMARY_KEY]["task_error"] == message
        assert output[SUMMARY_KEY]["grade"] is None
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_harness_bad_rows_raise_task_definition_errors_with_row_task_and_field(marker: str) -> None:
    harness = Harness(load_config(COUNTER_CONFIG), environ=ENVIRON)
    for task in counter_tasks(bad_rows(marker))[1:]:
        row_index, field, message = EXPECTED_ERRORS[task.id]
        episode = harness.episode(task)
        with anyio.fail_after(HANG_GUARD_S):
            with pytest.raises(TaskDefinitionError, match=f"^{re.escape(message)}$") as caught:
                await episode.start()
            await episode.close()
        assert (caught.value.task_id, caught.value.row_index, caught.value.field) == (task.id, row_index, field)
        assert episode.record.task_error == message
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_unknown_hub_function_is_a_task_error_with_the_functions_it_could_mean() -> None:
    row = {
        "id": "2048-typo",
        "prompt": "Play.",
        "mcp_config": {"text_2048": {"command": sys.executable, "args": ["-m", TEXT_2048_MODULE]}},
        "setup_tool": {"name": "setup", "arguments": {"name": "boards", "arguments": {}}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 8}}},
    }
    episode = Harness(load_config("2048")).episode(Task.from_row(row, index=5))
    message = (
        "row 5 (id '2048-typo'): setup_tool: tool 'setup' has no function 'boards' (did you mean 'board'?); "
        "expected one of: board; fix the function name in the row"
    )
    with anyio.fail_after(HANG_GUARD_S):
        with pytest.raises(TaskDefinitionError, match=f"^{re.escape(message)}$"):
            await episode.start()
        await episode.close()


def test_eval_cli_lists_task_errors_and_keeps_the_other_rows(
    serve: Any, tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COUNTER_URL", ENVIRON["COUNTER_URL"])
    server = serve(FixedRepliesPolicy(ACT_THREE_TIMES))
    taskset = tmp_path / "tasks.json"
    taskset.write_text(json.dumps(bad_rows(marker)))
    output = tmp_path / "run"
    argv = ["eval", "--base-url", server.base_url, "--model", "scripted", "--output", str(output)]
    assert main([*argv, "--taskset", str(taskset), "--config", str(COUNTER_CONFIG)]) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["rollouts"], summary["scored"], summary["task_errors"], summary["infra_errors"]) == (4, 1, 3, 0)
    assert summary["mean_reward"] == pytest.approx(1.0)  # the good row alone
    listed = {(error["task_id"], error["kind"], error["type"], error["message"]) for error in summary["errors"]}
    expected = {
        (task_id, "task", "TaskDefinitionError", message) for task_id, (_, _, message) in EXPECTED_ERRORS.items()
    }
    assert listed == expected
    assert processes_with(marker) == []


def test_gym_env_reset_on_a_bad_row_raises_it_and_the_env_stays_usable(marker: str) -> None:
    # the env itself: gymnasium 1.4's passive checker cannot follow a reset that raised (it then fails on the
    # next step, unpacking the missing first reset's data), which says nothing about this env
    env = HUDTaskEnv(counter_tasks(bad_rows(marker)[:2]), COUNTER_CONFIG)
    try:
        with pytest.raises(TaskDefinitionError, match=re.escape(EXPECTED_ERRORS["bad-setup"][2])):
            env.reset(options={"task_id": "bad-setup"})
        assert processes_with(marker) == []  # nothing of the bad row is left running
        observation, _ = env.reset(options={"task_id": "good"})
        assert "Counter reset to 0" in observation
        assert env.step("<tool>act(3)</tool>")[4]["outcome"] == "executed"
    finally:
        env.close()


# -- a crashed evaluator is never trained on --------------------------------------------------------------------------


BROKEN_EVALUATOR = {"name": "evaluate", "arguments": {"target": 3, "broken": True}}


@pytest.mark.anyio
async def test_failed_evaluation_is_an_evaluation_error_unless_the_config_scores_it(serve: Any, marker: str) -> None:
    # Before issue 15 this rollout had error None and was scored (0.2 from the other components): a crashed
    # evaluator became a training signal. Now it is recorded apart; `rubric.score_failed_evaluations` restores scoring.
    row = counter_row(marker, evaluate_tool=BROKEN_EVALUATOR)
    server = serve(FixedRepliesPolicy(ACT_THREE_TIMES))
    [output] = await evaluate_outputs(
        HUDGym(load_config(COUNTER_CONFIG), counter_tasks([row])), server.base_url, state_columns=[SUMMARY_KEY]
    )
    assert output["error"]["error"] == "EvaluationError"
    assert output["error"]["message"] == (
        "task 'count-to-3': the evaluation failed: the evaluator reported isError: true: count 3 of 3"
    )
    assert output[SUMMARY_KEY]["evaluation_error"] == "the evaluator reported isError: true: count 3 of 3"

    raw = yaml.safe_load(COUNTER_CONFIG.read_text(encoding="utf-8"))
    raw["rubric"]["score_failed_evaluations"] = True
    scoring = parse_config(raw, source=str(COUNTER_CONFIG))
    [scored] = await evaluate_outputs(HUDGym(scoring, counter_tasks([row])), server.base_url)
    assert scored["error"] is None
    assert scored["metrics"]["task_completion"] == 0.0 and scored["metrics"]["evaluation_failed"] == 1.0
    assert processes_with(marker) == []
