"""The README's claims that can be checked without timing anything: its two top commands, counts, flags, benches.

Timed figures (the first run's wall time and memory, --help's speed, rollouts/s) come from the bench scripts the
README names; this test checks that each of those scripts exists, never a time.
"""

from __future__ import annotations

import json
import re

import pytest

from hud_vf_gym.cli.app import commands, make_parser
from tests.support import REPO_ROOT, TASKSETS

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
CODE_BLOCKS = re.findall(r"```[a-z]*\n(.*?)```", README, re.DOTALL)


def commands_of(block: str) -> list[str]:
    """The command lines of a shell block (comments and continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_top_is_two_commands_and_the_second_is_what_ci_runs() -> None:
    top = commands_of(CODE_BLOCKS[0])
    assert len(top) == 2
    assert top[0].endswith("&& hud-vf-gym eval")
    assert top[1] == "bash .ci/run"
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "python -m pytest -q" in ci


@pytest.mark.parametrize(("name", "count"), [("2048", 27), ("browser", 27), ("miniwob", 52)])
def test_readme_taskset_sizes(name: str, count: int) -> None:
    rows = json.loads((TASKSETS / f"{name}.json").read_text(encoding="utf-8"))
    assert len(rows) == count
    assert re.search(rf"`{name}` \({count}\b", README)


def test_readme_names_only_flags_that_exist() -> None:
    parser = make_parser()
    subparsers = next(action for action in parser._actions if action.choices and "eval" in action.choices)
    flags = {
        name: {option for action in sub._actions for option in action.option_strings}
        for name, sub in subparsers.choices.items()
    }
    checked = 0
    for line in [line for block in CODE_BLOCKS for line in commands_of(block)]:
        for segment in line.split("&&"):
            words = segment.split()
            if words[:1] != ["hud-vf-gym"] or len(words) < 2 or words[1] not in commands():
                continue
            for flag in re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", " ".join(words[2:])):
                assert flag in flags[words[1]], f"README: {segment.strip()!r} uses {flag}, which does not exist"
                checked += 1
    assert checked >= 10


def test_readme_benches_exist() -> None:
    scripts = set(re.findall(r"python (bench/\w+\.py)", README))
    assert {"bench/first_run.py", "bench/cli_help.py", "bench/rollouts.py"} <= scripts
    assert all((REPO_ROOT / script).is_file() for script in scripts)
