"""The verifiers v1 taskset end to end: `vf-eval hud_vf_gym` under verifiers 0.4 with native tool calls.

Runs where verifiers 0.4 is installed (the v1 venv of .ci/run); skipped beside verifiers 0.3 (whose `vf-eval` is
the classic program). The model is the scripted chat server answering with native function calls; the harness is
verifiers' `null` chat loop in a subprocess runtime; the built-in 2048 server plays. The same moves played as text
on the harness (what HUDGym and `hud-vf-gym eval` run; tests/test_env.py shows those rows equal verifiers' own)
give the reference grades.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.config import load_config
from hud_vf_gym.core.chat import SUMMARY_KEY
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.testing import FixedRepliesPolicy, ToolCallReply
from hud_vf_gym.testing.evaluate import harness_outputs
from tests.support import Serve, run_reaping

verifiers = pytest.importorskip("verifiers")
if not verifiers.__version__.startswith("0.4."):
    pytest.skip("the v1 taskset's vf-eval is verifiers 0.4's", allow_module_level=True)

MOVES = ["left", "down", "right", "up"] * 2
TASKS = 4
ROLLOUTS = 2
VF_EVAL_TIMEOUT_S = 900  # 8 rollouts with a uv-built chat program on 2 busy cores; only a hang gets near it


def run_vf_eval(
    base_url: str, output: Path, *extra: str, tasks: int = TASKS, rollouts: int = ROLLOUTS
) -> list[dict[str, Any]]:
    """`vf-eval hud_vf_gym` with the null harness on this machine; returns each rollout's trace.

    Fails the test if any process vf-eval started (its MCP servers, warm ones included) outlives it.
    """
    vf_eval = str(Path(sys.executable).parent / "vf-eval")
    command = [
        vf_eval, "hud_vf_gym", "-n", str(tasks), "-r", str(rollouts), "-m", "scripted",
        "--client.base-url", base_url, "--no-push", "--env.agent.harness.id", "null",
        "--env.agent.runtime.type", "subprocess", "-o", str(output), *extra,
    ]  # fmt: skip
    environment = {**os.environ, "OPENAI_API_KEY": "x", "PRIME_API_KEY": "x"}
    # under a child subreaper: only the processes this vf-eval started count, whatever else runs on the machine
    completed, left_running = run_reaping(command, env=environment, capture_output=True, timeout=VF_EVAL_TIMEOUT_S)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert left_running == [], f"vf-eval left processes running (MCP servers, warm ones included): {left_running}"
    [traces_file] = output.glob("*/traces.jsonl")
    episodes = [json.loads(line) for line in traces_file.read_text(encoding="utf-8").splitlines()]
    return [trace for episode in episodes for trace in episode["traces"]]


@pytest.mark.anyio
async def test_vf_eval_plays_2048_to_the_classic_grades(serve: Serve, tmp_path: Path) -> None:
    native = serve(
        FixedRepliesPolicy([*(ToolCallReply(f"hud_{move}", {}) for move in MOVES), ToolCallReply("hud_done", {})])
    )
    traces = run_vf_eval(native.base_url, tmp_path / "outputs")

    tasks = load_taskset("2048", num_tasks=TASKS).tasks
    text = serve(FixedRepliesPolicy([*(f"<tool>{move}()</tool>" for move in MOVES), "<tool>done()</tool>"]))
    rows = await harness_outputs(load_config("2048"), tasks, text.base_url, concurrency=2)
    expected = {row[SUMMARY_KEY]["task_id"]: row[SUMMARY_KEY]["grade"] for row in rows}

    assert len(traces) == TASKS * ROLLOUTS
    for trace in traces:
        assert trace["ok"], trace["errors"]
        episode = trace["info"]["hud_episode"]
        assert episode["grade"] == expected[episode["task_id"]]  # the same HUD grade for the same moves
        assert [turn["action"] for turn in episode["turns"]] == [*MOVES, "done"]
        assert trace["stop_condition"] == "hud_episode_over"
        rewards = {name: reward["score"] for name, reward in trace["rewards"].items()}
        assert rewards["task_completion"] == pytest.approx(episode["grade"]["reward"])
        assert rewards["tool_execution"] > 0
        weights = load_config("2048").rubric.weights.model_dump()
        assert {name: reward["weight"] for name, reward in trace["rewards"].items()} == weights


@pytest.mark.anyio
async def test_vf_eval_runs_a_browser_task(serve: Serve, tmp_path: Path) -> None:
    pytest.importorskip("playwright.async_api", reason='needs pip install "hud-vf-gym[browser]"')
    calls = [ToolCallReply("hud_screenshot", {}), ToolCallReply("hud_done", {})]
    model = serve(FixedRepliesPolicy(calls))
    extra = ["--env.taskset.taskset", "browser", "--env.taskset.task.config", "default"]
    [trace] = run_vf_eval(model.base_url, tmp_path / "outputs", *extra, tasks=1, rollouts=1)

    assert trace["ok"], trace["errors"]
    episode = trace["info"]["hud_episode"]
    assert [turn["outcome"] for turn in episode["turns"]] == ["executed", "done"]
    assert episode["grade"]["is_error"] is False and episode["grade"]["reward"] == 0.0  # nothing was clicked
    # the screenshot came back to the model as an image part of the tool result
    assert "image_url" in json.dumps(model.requests[-1]["json"]["messages"])
