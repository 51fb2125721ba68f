"""The README's first command, `hud-vf-gym eval` with no model flags: the real embedded SmolLM2 plays two tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

README_RUN_TIMEOUT_S = 900  # 2 rollouts of 2 turns on a 2-core CPU take about a minute; a busy machine is slower


@pytest.mark.usefixtures("embedded_model_folder")  # converted once per session; the run below must not convert again
def test_cli_readme_command_runs_the_embedded_model(model_cache: Path, tmp_path: Path) -> None:
    output = tmp_path / "results"
    command = [
        str(Path(sys.executable).parent / "hud-vf-gym"), "eval",
        "--num-tasks", "2",  # two tasks, one rollout each: the smallest run that shows a per-task table
        "--max-turns", "2",  # the model is slow on a CPU; two turns exercise the whole loop
        "--max-tokens", "48",
        "--output", str(output),
    ]  # fmt: skip
    environment = {**os.environ, "HUD_VF_GYM_CACHE": str(model_cache.parent), "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=README_RUN_TIMEOUT_S, env=environment, cwd=tmp_path
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "| **overall** | 2 |" in completed.stdout
    assert "converting" not in completed.stderr  # the session's cache already held the converted model
    rows = [json.loads(line) for line in (output / "results.jsonl").read_text().splitlines()]
    assert sorted(row["task_id"] for row in rows) == ["2048_3x3_target_16", "2048_3x3_target_32"]
    for row in rows:
        assert row["model"] == "SmolLM2-135M-Instruct"
        assert row["error"] is None or row["error"]["error"] in ("EmptyModelResponseError",)
        assert 1 <= len(row["hud_episode"]["turns"]) <= 2
        assert all(
            0 < usage <= 48 for usage in [row["token_usage"]["output_tokens"] / len(row["hud_episode"]["turns"])]
        )
    summary = json.loads((output / "summary.json").read_text())
    assert summary["infra_errors"] == 0 and summary["rollouts"] == 2
    run = json.loads((output / "run.json").read_text())
    assert run["options"]["model_path"] is None and run["options"]["base_url"] is None
