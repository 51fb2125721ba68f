"""`hud-vf-gym eval` on real endpoints (127.0.0.1) and real stdio MCP servers: results, images, resume, dry run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from hud_vf_gym.cli.app import main
from hud_vf_gym.cli.eval.options import EvalOptions
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.testing import FixedRepliesPolicy, NonsensePolicy, Play2048Policy
from tests.support import (
    ACT_THREE_TIMES,
    COUNTER_CONFIG,
    ECHO_SERVER,
    REPO_ROOT,
    counter_row,
    processes_with,
)

KILL_TIMEOUT_S = 120.0  # bound on waiting for a subprocess run to write its first results (a few seconds normally)
EXIT_TIMEOUT_S = 30.0  # servers of a killed run see their stdin close and exit within seconds


def wait_until_gone(marker: str) -> list[psutil.Process]:
    deadline = time.monotonic() + EXIT_TIMEOUT_S
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_with(marker)


def write_taskset(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def read_rows(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]


def test_eval_endpoint_run_writes_results_summary_and_table(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(Play2048Policy(max_moves=5, look_ahead=True))
    output = tmp_path / "run"
    argv = [
        "eval",
        "--base-url",
        server.base_url,
        "--model",
        "scripted",
        "--num-tasks",
        "2",
        "--rollouts-per-task",
        "2",
    ]
    assert main([*argv, "--max-turns", "8", "--output", str(output)]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "| 2048_3x3_target_16 | 2 |" in printed and "| **overall** | 4 |" in printed
    assert "success = grade done, or task_completion >= 1.0" in printed

    rows = read_rows(output)
    assert sorted((row["task_id"], row["rollout_index"]) for row in rows) == [
        ("2048_3x3_target_16", 0), ("2048_3x3_target_16", 1), ("2048_3x3_target_32", 0), ("2048_3x3_target_32", 1),
    ]  # fmt: skip
    row = rows[0]
    assert row["error"] is None and row["model"] == "scripted"
    assert {"prompt", "completion", "reward", "metrics", "timing", "hud_episode", "token_usage"} <= set(row)
    turn = row["hud_episode"]["turns"][0]
    assert turn["outcome"] == "executed" and turn["tool_call"]["name"] == "move" and "Score" in turn["result_text"]
    assert row["prompt"][0] == {"role": "system", "content": row["prompt"][0]["content"]}  # plain dicts, not reprs

    summary = json.loads((output / "summary.json").read_text())
    assert summary["rollouts"] == summary["planned"] == summary["scored"] == 4
    assert summary["infra_errors"] == 0
    assert summary["mean_reward"] > 0
    assert summary["components"]["tool_execution"] == 1.0
    assert [task["task_id"] for task in summary["tasks"]] == ["2048_3x3_target_16", "2048_3x3_target_32"]
    assert (output / "summary.md").read_text().strip() in printed
    run = json.loads((output / "run.json").read_text())
    assert run["options"]["base_url"] == server.base_url and run["planned_rollouts"] == 4
    # the progress lines showed every model reply as it came (plain lines: stderr is not a terminal here), not only
    # the finished rollouts
    total_turns = sum(len(row["hud_episode"]["turns"]) for row in rows)
    assert captured.err.count(": turn ") == total_turns
    assert "turn 1/8 " in captured.err.split("1/4 finished")[0]  # shown before any rollout had finished
    assert captured.err.count(" turn(s), reward ") == 4 and "tokens/s" in captured.err


def image_config(path: Path) -> Path:
    config = {
        "system_prompt": "Take a screenshot, then call done().",
        "defaults": {"max_turns": 3},
        "parser": {"use_thinking": False},
        "action_mappings": {"shot": {"_tool": "image"}},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_eval_writes_images_as_files_referenced_by_relative_path(serve: Any, tmp_path: Path, marker: str) -> None:
    task = {
        "id": "screenshot/task 1",
        "prompt": "Take a screenshot.",
        "mcp_config": {"echo": {"command": sys.executable, "args": [str(ECHO_SERVER), f"--marker={marker}"]}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"reward": 1.0}},
    }
    server = serve(FixedRepliesPolicy(["<tool>shot()</tool>", "<tool>done()</tool>"]))
    output = tmp_path / "run"
    argv = ["eval", "--base-url", server.base_url, "--model", "scripted", "--output", str(output)]
    argv += [
        "--taskset",
        str(write_taskset(tmp_path / "tasks.json", [task])),
        "--config",
        str(image_config(tmp_path / "c.yaml")),
    ]
    assert main(argv) == 0
    [row] = read_rows(output)
    observation = row["completion"][1]
    [image_part] = [part for part in observation["content"] if part["type"] == "image_url"]
    relative = image_part["image_url"]["url"]
    assert relative == "images/screenshot_task_1/r0/completion1-1.png"
    assert (output / relative).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "base64" not in (output / "results.jsonl").read_text()
    assert row["metrics"]["task_completion"] == 1.0
    assert processes_with(marker) == []


def test_eval_infra_errors_are_listed_and_kept_out_of_the_means(
    serve: Any, tmp_path: Path, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = [counter_row(marker, "counts"), counter_row(marker, "crashes")]
    server = serve(
        lambda messages: (
            "<tool>crash()</tool>"
            if "crashes" in json.dumps(messages)
            else ACT_THREE_TIMES[sum(1 for message in messages if message["role"] == "assistant")]
        )
    )
    tasks[1]["prompt"] = "This task crashes its server."
    output = tmp_path / "run"
    argv = ["eval", "--base-url", server.base_url, "--model", "scripted", "--output", str(output)]
    argv += ["--taskset", str(write_taskset(tmp_path / "tasks.json", tasks)), "--config", str(COUNTER_CONFIG)]
    assert main(argv) == 0
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["rollouts"], summary["scored"], summary["infra_errors"]) == (2, 1, 1)
    assert summary["mean_reward"] == pytest.approx(1.0)  # only the rollout that ran counts
    [error] = summary["errors"]
    assert (error["task_id"], error["kind"], error["type"]) == ("crashes", "infra", "ServerConnectionError")
    assert "- infra error in crashes rollout 0: ServerConnectionError:" in capsys.readouterr().out
    assert wait_until_gone(marker) == []


def test_eval_resume_after_a_killed_run_runs_only_the_missing_rollouts(serve: Any, tmp_path: Path, marker: str) -> None:
    def slow_policy(messages: list[dict[str, Any]]) -> str:
        time.sleep(0.3)  # slow enough that the run can be killed between rollouts
        return ACT_THREE_TIMES[min(3, sum(1 for message in messages if message["role"] == "assistant"))]

    server = serve(slow_policy)
    tasks = [counter_row(marker, f"task-{index}") for index in range(6)]
    output = tmp_path / "run"
    argv = [sys.executable, "-m", "hud_vf_gym.cli.app", "eval", "--base-url", server.base_url, "--model", "scripted"]
    argv += ["--taskset", str(write_taskset(tmp_path / "tasks.json", tasks)), "--config", str(COUNTER_CONFIG)]
    argv += ["--num-tasks", "none", "--concurrency", "1", "--output", str(output)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while time.monotonic() < deadline and len(_lines(output)) < 2:
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=EXIT_TIMEOUT_S)
    before = _lines(output)
    assert 2 <= len(before) < 6
    assert wait_until_gone(marker) == []

    requests_before = server.request_count
    assert main(["eval", "--resume", str(output)]) == 0
    rows = read_rows(output)
    assert sorted(row["task_id"] for row in rows) == [f"task-{index}" for index in range(6)]
    assert _lines(output)[: len(before)] == before  # finished rollouts were kept as they were, not rerun
    # each resumed rollout asks the model four times (three act() turns and done()); none was asked twice
    assert server.request_count - requests_before == 4 * (6 - len(before))
    summary = json.loads((output / "summary.json").read_text())
    assert (summary["rollouts"], summary["planned"], summary["mean_reward"]) == (6, 6, pytest.approx(1.0))
    assert wait_until_gone(marker) == []


def _lines(folder: Path) -> list[str]:
    results = folder / "results.jsonl"
    if not results.is_file():
        return []
    return [line for line in results.read_text().splitlines() if line.endswith("}")]


def test_eval_resume_of_a_finished_run_runs_nothing(serve: Any, tmp_path: Path) -> None:
    server = serve(Play2048Policy(max_moves=2))
    output = tmp_path / "run"
    assert (
        main(["eval", "--base-url", server.base_url, "--model", "m", "--num-tasks", "1", "--output", str(output)]) == 0
    )
    count = server.request_count
    assert main(["eval", "--resume", str(output)]) == 0
    assert server.request_count == count
    assert len(read_rows(output)) == 1


def test_eval_torn_last_line_is_dropped_and_rerun(serve: Any, tmp_path: Path) -> None:
    server = serve(Play2048Policy(max_moves=2))
    output = tmp_path / "run"
    assert (
        main(["eval", "--base-url", server.base_url, "--model", "m", "--num-tasks", "2", "--output", str(output)]) == 0
    )
    results = output / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # a run killed mid-write
    assert main(["eval", "--resume", str(output)]) == 0
    assert sorted(row["example_id"] for row in read_rows(output)) == [0, 1]


def test_eval_refuses_an_output_folder_that_holds_results(
    serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(Play2048Policy(max_moves=1))
    argv = ["eval", "--base-url", server.base_url, "--model", "m", "--num-tasks", "1", "--output", str(tmp_path)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(argv) == 2
    message = (
        f"hud-vf-gym eval: error: --output {str(tmp_path)!r} already holds 1 results; pass --resume {tmp_path} to "
        "finish that run, or choose another --output folder"
    )
    assert capsys.readouterr().err.strip() == message


def test_eval_dry_run_names_each_broken_task_and_fails(
    tmp_path: Path, marker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks = [
        counter_row(marker, "works"),
        counter_row(marker, "no-server", mcp_config={"counter": {"command": "hud-vf-gym-no-such-command"}}),
        counter_row(
            marker,
            "wrong-tools",
            mcp_config={"echo": {"command": sys.executable, "args": [str(ECHO_SERVER), f"--marker={marker}"]}},
        ),
    ]
    taskset = write_taskset(tmp_path / "t.json", tasks)
    argv = ["eval", "--dry-run", "--taskset", str(taskset), "--config", str(COUNTER_CONFIG)]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert re.search(r"^ok      works: tools .*\bact\b", printed, re.MULTILINE)
    assert "BROKEN  no-server:\n          ServerStartError:" in printed and "hud-vf-gym-no-such-command" in printed
    assert "BROKEN  wrong-tools:\n          action 'act': the server has no tool 'act'" in printed
    # the total names what to fix by the option that names it: the config's mappings, the taskset's mcp_config
    verdict = (
        f"dry run: 1 of 3 task(s) ok, 2 broken, 0 invalid row(s) skipped; fix the action_mappings of --config "
        f"{COUNTER_CONFIG} (they do not fit the tools of 1 task(s)); and the mcp_config of 1 task(s) in --taskset "
        f"{taskset}"
    )
    assert re.search(f"^{re.escape(verdict)}$", printed, re.MULTILINE)
    assert not (tmp_path / "out").exists()  # a dry run writes no results
    assert wait_until_gone(marker) == []


def test_eval_dry_run_of_the_builtin_taskset_passes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--dry-run", "--num-tasks", "3"]) == 0
    assert (
        "dry run: 3 of 3 task(s) ok, 0 broken, 0 invalid row(s) skipped; every task can run" in capsys.readouterr().out
    )


def test_eval_nonsense_model_scores_near_zero_without_errors(serve: Any, tmp_path: Path) -> None:
    server = serve(NonsensePolicy(seed=2))
    output = tmp_path / "run"
    assert (
        main(
            [
                "eval",
                "--base-url",
                server.base_url,
                "--model",
                "m",
                "--num-tasks",
                "2",
                "--max-turns",
                "3",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    summary = json.loads((output / "summary.json").read_text())
    assert summary["errors"] == [] and summary["components"]["tool_execution"] == 0.0
    assert summary["success_rate"] == 0.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--base-url", "https://api.example.invalid/v1", "--model", "m"],
            "--base-url https://api.example.invalid/v1 is not on this machine, so it needs an API key: pass "
            "--api-key-env VAR, naming the environment variable that holds the key",
        ),
        (
            ["--base-url", "https://api.example.invalid/v1", "--model", "m", "--api-key-env", "HUD_VF_GYM_UNSET_KEY"],
            "--api-key-env HUD_VF_GYM_UNSET_KEY: the environment variable HUD_VF_GYM_UNSET_KEY is not set; "
            "export it first",
        ),
    ],
    ids=["remote-without-key", "key-variable-unset"],
)
def test_eval_endpoint_key_problems_are_one_clear_error(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUD_VF_GYM_UNSET_KEY", raising=False)
    assert main(["eval", *argv, "--num-tasks", "1", "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.strip() == f"hud-vf-gym eval: error: {message}"


def test_eval_api_key_is_read_from_the_named_variable_and_never_written(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"sk-{uuid.uuid4().hex}"
    monkeypatch.setenv("HUD_VF_GYM_TEST_KEY", secret)
    server = serve(Play2048Policy(max_moves=1))
    output = tmp_path / "run"
    argv = ["eval", "--base-url", server.base_url, "--model", "m", "--api-key-env", "HUD_VF_GYM_TEST_KEY"]
    assert main([*argv, "--num-tasks", "1", "--output", str(output)]) == 0
    assert server.requests[-1]["headers"]["authorization"] == f"Bearer {secret}"
    assert all(secret not in path.read_text() for path in output.rglob("*") if path.is_file())


def test_eval_options_report_every_problem_at_once() -> None:
    message = "\n  ".join(
        [
            "3 invalid options for hud-vf-gym eval",
            "--num-tasks must be at least 1, got 0",
            "--model-path and --base-url exclude each other: run a local folder or call an endpoint",
            "--base-url needs --model NAME, the model the endpoint serves",
        ]
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        EvalOptions(num_tasks=0, model_path="m", base_url="http://127.0.0.1:1/v1")


def test_eval_options_keep_no_credentials_from_the_url() -> None:
    options = EvalOptions(base_url="https://user:secret@example.invalid:8443/v1", model="m", api_key_env="KEY")
    assert options.to_json()["base_url"] == "https://example.invalid:8443/v1"
    assert "secret" not in json.dumps(options.to_json())


def test_compare_two_result_folders_prints_intervals_and_writes_a_plot(serve: Any, tmp_path: Path) -> None:
    folders = []
    for name, policy in (
        ("scripted", Play2048Policy(max_moves=5, look_ahead=True)),
        ("nonsense", NonsensePolicy(seed=1)),
    ):
        server = serve(policy)
        folder = tmp_path / name
        argv = ["eval", "--base-url", server.base_url, "--model", name, "--num-tasks", "3", "--rollouts-per-task", "2"]
        assert main([*argv, "--max-turns", "6", "--output", str(folder)]) == 0
        folders.append(str(folder))
    plot = tmp_path / "plots" / "comparison.png"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "eval" / "compare.py"),
            *folders,
            "--labels",
            "play,noise",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    assert lines[0] == "| measure | play (n=6) | noise (n=6) |"
    reward = next(line for line in lines if line.startswith("| reward |"))
    cells = re.fullmatch(
        r"\| reward \| (0\.\d{3}) \[0\.\d{3}, 0\.\d{3}\] \| (0\.\d{3}) \[0\.\d{3}, 0\.\d{3}\] \|", reward
    )
    assert cells is not None, reward
    assert float(cells[1]) > float(cells[2])  # the scripted player beats the nonsense one
    assert "| tool_execution | 1.000 [1.000, 1.000] | 0.000 [0.000, 0.000] |" in lines
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_compare_names_a_folder_without_results(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "eval" / "compare.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 1
    message = f"compare: {tmp_path}: no results.jsonl; expected the --output folder of `hud-vf-gym eval`"
    assert completed.stderr.strip() == message
