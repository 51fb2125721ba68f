"""Run a `TrainPlan`: in this process (`execute`), or as a process of its own with a log file (`start`).

`execute` is what `hud-vf-gym train` does after the plan: the local command with the terminal's output, or the
SkyPilot sequence (the task YAML is written into the output folder first). Ctrl-C stops it cleanly: the local
command gets the SIGINT from the terminal and has time to stop its vLLM server; a cloud run cancels its job, copies
the outputs back and tears the cluster down (see `hud_vf_gym.training.placement.sky_run`).

`start` is for programs that drive training (an HTTP service): it runs `plan.argv` (`python -m hud_vf_gym.cli
train --yes ...` with every input the plan found) in a new session, stdout and stderr into one log file. Stop it
as a terminal would: `os.killpg(process.pid, signal.SIGINT)` reaches the command and everything it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from hud_vf_gym.training.placement.sky_run import INTERRUPTED, run_sky
from hud_vf_gym.training.placement.steps import run_step

if TYPE_CHECKING:
    from hud_vf_gym.cli.train.planning import TrainPlan

__all__ = ["execute", "start"]


def execute(plan: TrainPlan) -> int:
    """Run the plan to the end here; return its exit status (130 after Ctrl-C).

    Raises:
        ConfigError: the plan has blockers (each listed with its fix).
    """
    plan.check_ready()
    if plan.sky is not None and plan.sky_task is not None:
        plan.sky.task_yaml.parent.mkdir(parents=True, exist_ok=True)
        plan.sky.task_yaml.write_text(plan.sky_task.to_yaml(), encoding="utf-8")
        return run_sky(plan.sky, environ=plan.environ)
    assert plan.step is not None
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        return run_step(plan.step, plan.environ)
    except KeyboardInterrupt:
        sys.stderr.write("hud-vf-gym train: interrupted; the last checkpoint stays in the output folder\n")
        return INTERRUPTED


def start(plan: TrainPlan, log: Path, *, environ: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `plan.argv` in a new session (its own process group), writing stdout and stderr to `log`.

    The child loads the project's `.env` itself, so `environ` (default: this process's) should not carry it.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        return subprocess.Popen(
            list(plan.argv),
            cwd=plan.project,
            env=dict(os.environ if environ is None else environ),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
