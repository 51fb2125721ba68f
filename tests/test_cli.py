"""The `hud-vf-gym` command: the README's first command with the real embedded SmolLM2, help, and user errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hud_vf_gym.cli.app import SUBCOMMANDS, main, make_parser
from hud_vf_gym.local_model.model import embedded_gguf, ensure_converted

README_RUN_TIMEOUT_S = 900  # 2 rollouts of 2 turns on a 2-core CPU take about a minute; a busy machine is slower


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted-model cache the whole session shares (see test_local_model.py)."""
    return tmp_path_factory.getbasetemp() / "hud-vf-gym-cache" / "models"


def test_cli_readme_command_runs_the_embedded_model(model_cache: Path, tmp_path: Path) -> None:
    ensure_converted(embedded_gguf(), cache=model_cache)  # converted once per session, shared with other tests
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


def test_cli_help_lists_every_eval_option_with_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--help"])
    assert exit_info.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    for flag in ("--taskset", "--config", "--num-tasks", "--rollouts-per-task", "--max-turns", "--concurrency",
                 "--temperature", "--max-tokens", "--seed", "--model-path", "--base-url", "--model", "--api-key-env",
                 "--output", "--resume", "--dry-run"):  # fmt: skip
        assert flag in printed
    assert (
        "Model turns per rollout before truncation (replaces the config's defaults.max_turns). (default: 10)" in printed
    )


def test_cli_subcommands_are_a_registry() -> None:
    assert list(SUBCOMMANDS) == ["eval", "init", "dataset"]
    assert make_parser().prog == "hud-vf-gym"


@pytest.mark.parametrize("command", ["init", "dataset"], ids=["init", "dataset"])
def test_cli_module_subcommands_have_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"usage: hud-vf-gym {command}" in capsys.readouterr().out


def test_cli_user_error_is_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--config", "no-such-config", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("hud-vf-gym eval: error: config 'no-such-config' is neither a YAML file nor a built-in")
    assert "Traceback" not in error


def test_cli_bad_number_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--num-tasks", "many"])
    assert exit_info.value.code == 2
    assert "argument --num-tasks: expected int or none, got 'many'" in capsys.readouterr().err


def test_cli_resume_of_a_folder_without_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--resume", str(tmp_path)]) == 2
    message = (
        f"hud-vf-gym eval: error: --resume {str(tmp_path)!r}: no run.json there; expected the --output folder of "
        "an earlier `hud-vf-gym eval` run"
    )
    assert capsys.readouterr().err.strip() == message


def test_cli_runs_as_a_module() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "hud_vf_gym.cli.app", "--help"], capture_output=True, text=True, timeout=60
    )
    assert completed.returncode == 0 and "eval" in completed.stdout
