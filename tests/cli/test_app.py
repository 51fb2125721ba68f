"""The `hud-vf-gym` command (hud_vf_gym/cli/app.py): the subcommand registry, help, and user errors."""

from __future__ import annotations

import re
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


# -- mistakes: each answered with the subcommand's own usage and the closest name that exists ------------------------


def usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the command line, expect argparse's usage error (status 2), and return what it printed."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["eval", "--concurency", "2"], "unrecognized arguments: --concurency 2; did you mean --concurrency?"),
        (["eval", "--modelpath", "m"], "unrecognized arguments: --modelpath m; did you mean --model-path?"),
        (["eval", "--max-turn=3"], "unrecognized arguments: --max-turn=3; did you mean --max-turns?"),
        # prefixes are not abbreviations: each is refused and the full flag suggested
        (["eval", "--num-task", "2"], "unrecognized arguments: --num-task 2; did you mean --num-tasks?"),
        (["eval", "--rollouts", "2"], "unrecognized arguments: --rollouts 2; did you mean --rollouts-per-task?"),
        (["eval", "--zzz"], "unrecognized arguments: --zzz"),  # nothing close: no guess
        (["dataset", "t.json", "--name", "n", "--pussh"], "unrecognized arguments: --pussh; did you mean --push?"),
    ],
    ids=["typo", "missing-dash", "equals-form", "prefix", "short-prefix", "no-guess", "dataset"],
)
def test_cli_unknown_flag_gets_the_subcommands_usage_and_a_suggestion(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    printed = usage_error(argv, capsys)
    assert printed.startswith(f"usage: hud-vf-gym {argv[0]} [-h]")
    assert re.search(f"\nhud-vf-gym {argv[0]}: error: {re.escape(message)}\n$", printed)


def test_cli_unknown_subcommand_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    printed = usage_error(["evl", "--num-tasks", "1"], capsys)
    message = (
        "argument COMMAND: invalid choice: 'evl' (choose from eval, init, dataset, train, serve, export-art); "
        "did you mean eval?"
    )
    assert printed == f"usage: hud-vf-gym [-h] COMMAND ...\nhud-vf-gym: error: {message}\n"


def test_cli_bad_choice_suggests_the_closest(capsys: pytest.CaptureFixture[str]) -> None:
    printed = usage_error(["init", "x", "--kind", "uri"], capsys)
    message = (
        "argument --kind: invalid choice: 'uri' (choose from auto, url, lock, mcp-config, command, image); "
        "did you mean url?"
    )
    assert printed.startswith("usage: hud-vf-gym init")
    assert printed.endswith(f"hud-vf-gym init: error: {message}\n")


def test_cli_missing_taskset_names_only_real_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--taskset", "does-not-exist.json", "--dry-run"]) == 2
    message = (
        f"hud-vf-gym eval: error: taskset file 'does-not-exist.json' not found (looked for "
        f"{Path.cwd() / 'does-not-exist.json'}); check the path (a relative path is read from the current directory)"
    )
    assert re.fullmatch(re.escape(message) + "\n", capsys.readouterr().err)


# -- help is cheap: no heavy import before a command runs ------------------------------------------------------------

HEAVY_MODULES = ("verifiers", "pydantic", "yaml", "datasets", "torch", "transformers", "mcp", "openai", "numpy")


@pytest.mark.parametrize("argv", [["--help"], ["eval", "--help"], ["init", "--help"], ["train", "--help"]], ids=str)
def test_cli_help_imports_nothing_heavy(argv: list[str]) -> None:
    # a fresh interpreter: this test process has imported everything already. `--help` is timed by bench/cli_help.py
    script = (
        "import sys\n"
        "from hud_vf_gym.cli.app import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules), file=sys.stderr)\n"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert "usage: hud-vf-gym" in completed.stdout
    assert completed.stderr.strip().splitlines()[-1] == "[]"
