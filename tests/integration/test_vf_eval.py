"""The seed's user paths: `vf-eval hud_vf_gym` against a real endpoint on 127.0.0.1, `vf-install` in a fresh venv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.testing import NonsensePolicy, Play2048Policy, ScriptedChatServer
from tests.support import REPO_ROOT, Serve, run_reaping

ENV_ARGS = {"taskset": "2048", "config_path": "2048", "num_tasks": 4, "max_turns": 12}
VF_EVAL_TIMEOUT_S = 300  # the env-server mode starts worker processes that import verifiers (seconds each)


def vf_eval(
    server: ScriptedChatServer, output_dir: Path, *extra: str, env_id: str = "hud_vf_gym", bin_dir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run vf-eval; fail the test if any process it started (env-server workers, MCP servers) outlives it."""
    executable = str((bin_dir or Path(sys.executable).parent) / "vf-eval")
    command = [
        executable, env_id, "--env-args", json.dumps(ENV_ARGS),
        "-m", "scripted", "-b", server.base_url, "-k", "HUD_VF_GYM_TEST_KEY",
        "-t", "64", "-T", "0", "-s", "-o", str(output_dir), "-d", *extra,
    ]  # fmt: skip
    environment = {**os.environ, "HUD_VF_GYM_TEST_KEY": "x", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    completed, left_running = run_reaping(
        command, capture_output=True, timeout=VF_EVAL_TIMEOUT_S, cwd=output_dir, env=environment
    )
    assert left_running == [], f"vf-eval left processes running: {left_running}"
    return completed


def read_results(output_dir: Path) -> list[dict[str, Any]]:
    [results_file] = list(output_dir.rglob("results.jsonl"))
    return [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def rewards_by_task(rows: list[dict[str, Any]]) -> dict[int, list[float]]:
    by_task: dict[int, list[float]] = {}
    for row in rows:
        by_task.setdefault(row["example_id"], []).append(row["reward"])
    return {example_id: sorted(rewards) for example_id, rewards in by_task.items()}


@pytest.mark.timeout(2 * VF_EVAL_TIMEOUT_S + 60)  # two vf-eval runs, each allowed VF_EVAL_TIMEOUT_S
def test_vf_eval_plays_2048_in_two_env_server_workers(serve: Serve, tmp_path: Path) -> None:
    policy_server = serve(Play2048Policy(max_moves=10, look_ahead=True))
    # -w 2: two worker processes, each with its own pool of warm servers (the built-in config reuses sessions); the
    # vf_eval helper fails the test if any of them, or any server, outlives vf-eval
    workers_dir, in_process_dir = tmp_path / "workers", tmp_path / "in_process"
    workers_dir.mkdir(), in_process_dir.mkdir()
    completed = vf_eval(policy_server, workers_dir, "-n", "4", "-r", "2", "-c", "4", "-w", "2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = read_results(workers_dir)
    assert len(rows) == 8
    assert all(row["error"] is None for row in rows)
    assert mean([row["task_completion"] for row in rows]) > 0
    assert {row["tool_execution"] for row in rows} == {1.0}
    metadata = json.loads(next(workers_dir.rglob("metadata.json")).read_text())
    assert metadata["env_args"] == ENV_ARGS
    # the same rollouts in one process give the same reward per task: warm sessions in workers did the same work
    completed = vf_eval(policy_server, in_process_dir, "-n", "4", "-r", "2", "-c", "4", "--disable-env-server")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert rewards_by_task(read_results(in_process_dir)) == rewards_by_task(rows)


def test_vf_eval_survives_a_model_that_answers_nonsense(serve: Serve, tmp_path: Path) -> None:
    policy_server = serve(NonsensePolicy(seed=1))
    completed = vf_eval(policy_server, tmp_path, "-n", "2", "-r", "2", "--disable-env-server")
    assert completed.returncode == 0, completed.stderr[-3000:]
    rows = read_results(tmp_path)
    assert len(rows) == 4
    assert mean([row["format_compliance"] for row in rows]) < 0.1
    assert all(row["error"] is None for row in rows)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with only verifiers and uv, as a user of the seed's install path would have."""
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is needed for vf-install; it is in the dev extra: pip install -e '.[dev]'")
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, timeout=120)
    install = [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "verifiers==0.3.1", "uv"]
    subprocess.run(install, check=True, timeout=600)  # from the package registry: the seed's users do the same
    return venv


def test_vf_install_then_vf_eval_by_both_names(fresh_venv: Path, serve: Serve, tmp_path: Path) -> None:
    policy_server = serve(Play2048Policy(max_moves=3, look_ahead=True))
    bin_dir = fresh_venv / "bin"
    environment = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(fresh_venv)}
    installed = subprocess.run(
        [str(bin_dir / "vf-install"), "hud-vf-gym", "-p", str(REPO_ROOT)],
        capture_output=True, text=True, timeout=600, env=environment, cwd=tmp_path,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-3000:]
    for env_id in ("hud_vf_gym", "hud-vf-gym"):
        output_dir = tmp_path / env_id
        output_dir.mkdir()
        completed = vf_eval(
            policy_server, output_dir, "-n", "1", "-r", "1", "--disable-env-server", env_id=env_id, bin_dir=bin_dir
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        [row] = read_results(output_dir)
        assert row["error"] is None
        assert row["task_completion"] > 0
