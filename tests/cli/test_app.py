"""The `hud-vf-gym` command (hud_vf_gym/cli/app.py): the subcommand registry, help, and user errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hud_vf_gym.cli.app import COMMAND_MODULES, commands, main, make_parser


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
    assert list(commands()) == ["eval", "init", "dataset", "train", "serve", "export-art"]
    assert len(COMMAND_MODULES) == 6
    assert make_parser().prog == "hud-vf-gym"


@pytest.mark.parametrize("command", ["init", "dataset", "train", "serve", "export-art"])
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
