"""The questions `hud-vf-gym train` asks on a terminal: make what is missing, then start or not.

Only when stdin and stdout are both terminals and neither --yes nor --plan was given; otherwise nothing is asked
(a missing input is then an error naming the command that creates it, and a complete plan starts at once).
For a missing config it offers `hud-vf-gym init PROJECT` (the lock's tools, or its image); for a lock without
`primary_dataset` it offers `hud-vf-gym dataset TASKS --name NAME` into PROJECT/datasets/NAME.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TextIO

from hud_vf_gym.cli.train.inputs import ProjectInputs
from hud_vf_gym.cli.train.options import TrainOptions

__all__ = ["ask", "ask_yes", "is_interactive", "offer_fixes"]

_TASK_FILES = ("tasks.json", "tasks.jsonl")


def is_interactive(options: TrainOptions, stdin: TextIO | None = None, stdout: TextIO | None = None) -> bool:
    """Whether to ask: both ends are terminals, and neither --yes nor --plan was given."""
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    return not options.yes and not options.plan and stdin.isatty() and stdout.isatty()


def ask(question: str, default: str = "") -> str:
    """One line of input; the default when the answer is empty (or stdin ends)."""
    suffix = f" [{default}]" if default else ""
    try:
        answer = input(f"{question}{suffix}: ").strip()
    except EOFError:
        answer = ""
    return answer or default


def ask_yes(question: str, default: bool = True) -> bool:
    """A yes/no question; Enter gives the default."""
    hint = "Y/n" if default else "y/N"
    while True:
        try:
            answer = input(f"{question} [{hint}] ").strip().lower()
        except EOFError:
            return False
        if not answer:
            return default
        if answer in ("y", "yes", "n", "no"):
            return answer.startswith("y")
        print("please answer y or n")


def offer_fixes(inputs: ProjectInputs) -> bool:
    """Offer the command that creates each missing input the command can make; True when something was created."""
    created = False
    for missing in inputs.missing:
        print(f"missing: {missing.message}")
        if missing.fix == "init" and missing.target is not None:
            created |= _offer_init(inputs.project, missing.target)
        elif missing.fix == "dataset" and inputs.lock is not None:
            created |= _offer_dataset(inputs.project, inputs.lock)
    return created


def _offer_init(project: Path, target: Path) -> bool:
    from hud_vf_gym.cli.init.command import InitOptions, write_config

    shown = target.relative_to(project) if target.is_relative_to(project) else target
    if not ask_yes(f"Write {shown} now with `hud-vf-gym init {project}`?"):
        return False
    result = write_config(InitOptions(server=str(project), output=str(target), kind="lock"))
    print(f"wrote {result.path}: actions {', '.join(result.actions)} (from {result.tool_count} tools)")
    return True


def _offer_dataset(project: Path, lock: Path) -> bool:
    from hud_vf_gym.cli.dataset.command import DatasetOptions, make_dataset

    guesses = [name for name in _TASK_FILES if (project / name).is_file()]
    guesses += sorted(path.name for path in project.glob("*tasks*.json*") if path.name not in guesses)
    tasks = ask("Tasks file to save as the dataset (- to skip)", guesses[0] if guesses else "-")
    if tasks == "-":
        return False
    default_name = re.sub(r"[^\w.-]+", "-", project.name).strip("-.") or "tasks"
    name = ask("Dataset name", default_name)
    tasks_path = Path(tasks) if Path(tasks).is_absolute() else project / tasks
    options = DatasetOptions(tasks=str(tasks_path), name=name, output=str(project / "datasets" / name), lock=str(lock))
    result = make_dataset(options)
    print(f"wrote {result.folder} ({result.task_count} tasks); {lock.name} primary_dataset is now {name}")
    return True
