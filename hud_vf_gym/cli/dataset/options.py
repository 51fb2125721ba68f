"""The options of `hud-vf-gym dataset` and its `COMMAND`, kept apart from the work so that help stays cheap.

`hud-vf-gym --help` imports every command's module (`hud_vf_gym.cli.app.COMMAND_MODULES`); the work of `dataset`
(`hud_vf_gym.cli.dataset.command`) needs the errors (and so verifiers), yaml and datasets: it is imported only when
the command runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.cli.command import Command

__all__ = ["COMMAND", "EXAMPLES", "HELP", "DatasetOptions"]

HELP = "Check a task file and save it as a dataset with HUD's columns (locally, or pushed to the hub)."
EXAMPLES = """\
examples:
  hud-vf-gym dataset tasks.json --name my-tasks                  # writes datasets/my-tasks
  hud-vf-gym dataset tasks.json --name my-tasks -o data/tasks    # writes data/tasks
  hud-vf-gym dataset tasks.jsonl --name my-org/my-tasks --push --private
  hud-vf-gym dataset tasks.json --name my-org/my-tasks --lock envs/my-env/hud.lock.yaml

Every task is validated first and every problem is listed; nothing is written while any row is invalid.
The saved folder loads with load_environment(taskset="datasets/my-tasks") or `hud-vf-gym eval --taskset ...`.
hud.lock.yaml next to TASKS (or --lock) gets primary_dataset {name, task_count, updated_at}; nothing else in it
changes. --push needs a Hugging Face token (`hf auth login` or HF_TOKEN).
"""


@dataclass
class DatasetOptions:
    """Options of `hud-vf-gym dataset`; each field is the flag of the same name."""

    tasks: str = field(
        metadata={"help": "The task file: a .json array (or one object) or a .jsonl file.", "positional": True}
    )
    name: str = field(
        metadata={"help": "The dataset's name: 'name' or 'org/name' (the hub id with --push).", "short": "-n"}
    )
    push: bool = field(default=False, metadata={"help": "Push the dataset to the Hugging Face hub as NAME."})
    private: bool = field(default=False, metadata={"help": "With --push: make the hub dataset private."})
    output: str | None = field(
        default=None,
        metadata={
            "help": "The folder to save to (default: datasets/NAME; none with --push).",
            "short": "-o",
            "metavar": "DIR",
        },
    )
    lock: str | None = field(
        default=None, metadata={"help": "The hud.lock.yaml to update (default: next to TASKS).", "metavar": "PATH"}
    )
    force: bool = field(default=False, metadata={"help": "Overwrite a dataset folder saved earlier."})


def _run_dataset(options: Any) -> int:
    from hud_vf_gym.cli.dataset.command import run_dataset

    return run_dataset(options)


COMMAND = Command(name="dataset", help=HELP, options=DatasetOptions, run=_run_dataset, examples=EXAMPLES)
