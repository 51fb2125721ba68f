"""`python -m hud_vf_gym.integrations.art`: train (or gather and RULER-score) on a HUD environment with ART.

Each step prints one line per group: the task, each rollout's own reward (`hud_reward`, the rubric's total) and,
with RULER, the judge's scores. User errors (a bad option, an unknown environment, a backend that cannot run here)
end with one `error:` line and exit status 2; a RULER run whose judge could not score any group exits with 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from hud_vf_gym.cli.flags import add_dataclass_arguments, given_values
from hud_vf_gym.errors import HUDGymError
from hud_vf_gym.integrations.art.options import ARTOptions
from hud_vf_gym.integrations.art.report import StepReport, render_step

__all__ = ["main"]

PROG = "python -m hud_vf_gym.integrations.art"
USAGE_ERROR = 2
RULER_FAILED = 1
EXAMPLES = """\
examples:
  # GPU machine: train Qwen on the built-in 2048 tasks with ART's LocalBackend
  python -m hud_vf_gym.integrations.art --env 2048 --base-model Qwen/Qwen2.5-3B-Instruct --scenarios 20 \\
      --steps 10 --learning-rate 1e-5
  # no GPU: train on W&B Training (WANDB_API_KEY), RULER-scored by an API judge
  python -m hud_vf_gym.integrations.art --env browser --backend serverless --base-model Qwen/Qwen2.5-7B-Instruct \\
      --use-ruler --judge-model openai/o4-mini
  # offline, CPU: gather and RULER-score one step from any OpenAI-compatible endpoint, train nothing
  python -m hud_vf_gym.integrations.art --env 2048 --backend ruler-only --base-url http://127.0.0.1:8000/v1 \\
      --base-model SmolLM2-135M-Instruct --scenarios 4 --rollouts-per-group 4
"""


def make_parser() -> argparse.ArgumentParser:
    """The parser: one flag per `ARTOptions` field."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Train an agent on a HUD environment with OpenPipe ART (GRPO; optional RULER rewards).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add_dataclass_arguments(parser, ARTOptions)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the flags, run, print each step's groups; return the exit status."""
    namespace = make_parser().parse_args(argv)
    try:
        options = ARTOptions(**given_values(namespace, ARTOptions))
        from hud_vf_gym.integrations.art.training import run_sync

        def show(report: StepReport) -> None:
            sys.stdout.write(render_step(report, ruler=options.ruler) + "\n")
            sys.stdout.flush()

        report = run_sync(options, on_step=show)
    except HUDGymError as exc:  # a user error (or an infrastructure failure that stops the run): one clear line
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        return USAGE_ERROR
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    sys.stdout.write(f"run {report.run_name}: {len(report.steps)} step(s), backend {report.backend}\n")
    if options.ruler and report.ruler_failed_everywhere:
        sys.stderr.write(f"{PROG}: RULER could not score any group; see the reasons above\n")
        return RULER_FAILED
    return 0
