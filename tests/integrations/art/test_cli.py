"""`python -m hud_vf_gym.integrations.art` as a user runs it: a subprocess, real servers and endpoints on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ART_MISSING

pytest.importorskip("art", reason=ART_MISSING)

from hud_vf_gym.integrations.art import read_groups  # noqa: E402
from hud_vf_gym.integrations.art.cli import main  # noqa: E402
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer  # noqa: E402
from hud_vf_gym.testing.ruler_judge import JUDGE_MODEL_NAME, RulerJudgePolicy  # noqa: E402

from .conftest import MixedPolicy, server_2048, tasks_2048, wait_until_gone  # noqa: E402

CLI_TIMEOUT_S = 240  # two groups of two short episodes, and ART's import (~10 s on a busy machine)
REPO = Path(__file__).resolve().parents[3]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "hud_vf_gym.integrations.art", *args],
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=environ, cwd=REPO,
    )  # fmt: skip


def config_file(tmp_path: Path, marker: str) -> Path:
    rows = [{**task.to_row(), "mcp_config": server_2048(marker)} for task in tasks_2048(marker, 2)]
    (tmp_path / "tasks.json").write_text(json.dumps(rows))
    path = tmp_path / "config.yaml"
    path.write_text(
        "environments:\n  my_2048:\n    taskset: tasks.json\n    config_path: '2048'\n    max_turns: 4\n"
        "training:\n  default:\n    rollouts_per_group: 2\n"
    )
    return path


def numbers(text: str) -> list[float]:
    return [float(value) for value in text.split(", ")]


def test_ruler_only_prints_each_groups_rewards_and_ruler_scores(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path
) -> None:
    policy = serve(MixedPolicy())
    judge = serve(RulerJudgePolicy(), model_name=JUDGE_MODEL_NAME)
    config = config_file(tmp_path, marker)
    result = run_cli(
        "--env", "my_2048", "--config", str(config), "--backend", "ruler-only", "--base-url", policy.base_url,
        "--base-model", "scripted", "--scenarios", "2", "--judge-model", JUDGE_MODEL_NAME,
        "--judge-base-url", judge.base_url, "--output", str(tmp_path / "groups"), "--run-name", "cli-run",
        env={"PWD": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[0] == "step 1 (gathered and scored, not trained): 2 group(s)"
    assert lines[-1] == "run cli-run: 1 step(s), backend ruler-only"
    printed = {}
    for line in lines[1:3]:
        match = re.fullmatch(r"  (\S+): hud_reward \[(.+)\]  ruler_score \[(.+)\]", line)
        assert match, line
        printed[match[1]] = (numbers(match[2]), numbers(match[3]))
    # what was printed is what was gathered: the step's groups, as written in ART's format
    groups = read_groups(tmp_path / "groups" / "step-0001.jsonl")
    assert {group.metadata["task_id"] for group in groups} == set(printed) == {t.id for t in tasks_2048(marker, 2)}
    for group in groups:
        hud, ruler = printed[group.metadata["task_id"]]
        assert hud == [round(t.metrics["independent_reward"], 3) for t in group.trajectories]
        assert ruler == [round(t.metrics["ruler_score"], 3) for t in group.trajectories]
    assert wait_until_gone(marker) == []


def test_a_judge_that_cannot_score_keeps_the_rewards_and_exits_1(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path
) -> None:
    policy = serve(MixedPolicy())
    chatty = serve(FixedRepliesPolicy(["Both agents did their best."]), model_name="chatty")
    result = run_cli(
        "--env", "my_2048", "--config", str(config_file(tmp_path, marker)), "--backend", "ruler-only",
        "--base-url", policy.base_url, "--base-model", "scripted", "--scenarios", "1",
        "--judge-model", "chatty", "--judge-base-url", chatty.base_url,
    )  # fmt: skip
    assert result.returncode == 1
    assert re.fullmatch(r"  2048_3x3_target_16: hud_reward \[\S+, \S+\]  ruler_score -", result.stdout.splitlines()[1])
    assert result.stdout.splitlines()[2].startswith(
        f"    RULER could not score this group with judge openai/chatty at {chatty.base_url}: ValidationError"
    )
    assert "RULER could not score any group; see the reasons above" in result.stderr
    assert wait_until_gone(marker) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "gmail"], "unknown environment 'gmail'; known environments: 2048, browser, miniwob;"),
        (["--env", "2048", "--backend", "local"], "--backend local needs an NVIDIA GPU"),
        (["--backend", "serverless"], "--backend serverless trains on W&B Training and needs WANDB_API_KEY"),
        (["--backend", "ruler-only"], "--backend ruler-only samples from --base-url"),
        (["--backend", "ruler-only", "--base-url", "http://127.0.0.1:9/v1", "--request-timeout", "0"],
         "--request-timeout must be above 0, got 0.0"),
        (["--backend", "ruler-only", "--base-url", "https://api.example.com/v1", "--judge-model", "openai/o4-mini",
          "--scenarios", "1"], "--base-url https://api.example.com/v1 is not on this machine"),
    ],
)  # fmt: skip
def test_user_errors_are_one_line_with_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(args) == 2  # in process: the two tests above run the module as a subprocess
    captured = capsys.readouterr()
    [line] = [line for line in captured.err.splitlines() if line.strip()]
    assert line.startswith("python -m hud_vf_gym.integrations.art: error: ") and message in line
    assert captured.out == ""
