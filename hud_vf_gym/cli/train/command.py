"""`hud-vf-gym train`: from tasks to a training run, on this machine or on rented GPUs through SkyPilot.

1. Load the project's `.env` (never overriding a variable already set) and find the config and tasks
   (`hud_vf_gym.cli.train.inputs`); on a terminal, offer `init` / `dataset` for what is missing.
2. Plan the run (`hud_vf_gym.cli.train.planning.plan`) and print it; `--plan` also prints the SkyPilot YAML of a
   cloud run and stops there.
3. On a terminal without --yes, ask before starting; then run it (`hud_vf_gym.cli.train.running.execute`).
"""

from __future__ import annotations

import sys

from hud_vf_gym.cli.command import Command
from hud_vf_gym.cli.train.options import TrainOptions

__all__ = ["COMMAND", "EXAMPLES", "HELP", "run_train"]

HELP = "Train a model with GRPO on the project's tasks: on this CPU, local GPUs, or cloud GPUs through SkyPilot."
EXAMPLES = """\
examples:
  hud-vf-gym train                                       # the built-in 2048 tasks, embedded SmolLM2, this CPU
  hud-vf-gym train --yes --max-steps 1                   # one step, no questions
  hud-vf-gym train --gpus 4 --model Qwen/Qwen2.5-1.5B-Instruct        # vLLM on GPU 0, training on GPUs 1-3
  hud-vf-gym train --config configs/2048.yaml --gpus 4xH100 --provider skypilot --infra aws
  hud-vf-gym train --gpus 8xH100 --provider prime --plan            # print the plan and the SkyPilot YAML
  hud-vf-gym train --gpus 8xH100 --nodes 2 --provider skypilot --infra gcp --keep
  hud-vf-gym train --train-args '--beta 0.01 --save_total_limit 5'  # any other train/grpo.py flag

In a project with hud.lock.yaml the config is configs/<env>.yaml and the tasks are its primary_dataset; keys come
from the environment or .env. Cloud runs need SkyPilot as its own tool (uv tool install skypilot) and `sky check`.
"""


def run_train(options: TrainOptions) -> int:
    """Run `hud-vf-gym train`; return the exit status (the training's, or 130 after Ctrl-C)."""
    from pathlib import Path

    from hud_vf_gym.cli.train.inputs import find_inputs
    from hud_vf_gym.cli.train.planning import TASK_FILE, plan
    from hud_vf_gym.cli.train.prompts import ask_yes, is_interactive, offer_fixes
    from hud_vf_gym.cli.train.running import execute

    interactive = is_interactive(options)
    project = Path(options.project)
    if interactive and project.is_dir():
        inputs = find_inputs(project.resolve(), config=options.config, dataset=options.dataset)
        if inputs.missing:
            offer_fixes(inputs)
    the_plan = plan(options)
    sys.stdout.write(the_plan.describe())
    if options.plan:
        if the_plan.sky_task is not None:
            sys.stdout.write(f"\n# SkyPilot task YAML (written to {the_plan.output_dir / TASK_FILE} at launch)\n")
            sys.stdout.write(the_plan.sky_task.to_yaml())
        return 0
    the_plan.check_ready()
    if interactive and not ask_yes("Start training?"):
        sys.stdout.write("not started\n")
        return 0
    sys.stdout.flush()
    return execute(the_plan)


COMMAND = Command(name="train", help=HELP, options=TrainOptions, run=run_train, examples=EXAMPLES)
