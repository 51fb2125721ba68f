"""Time and peak memory of CPU GRPO steps, per phase, for the learning check's setup: a baseline and the defaults.

    python bench/grpo_step.py                      # 3 steps per variant, each variant in its own process
    python bench/grpo_step.py --steps 2 --variants defaults

Each variant runs in a fresh child process, one after the other (never two at once: each holds a model and its
training state), so its peak resident set is its own. Per variant it prints the per-phase table of
`bench.lib.grpo.instrument` (rollout / generate / loss forward / backward / optimizer; seconds and peak RSS) and
the time per step; at the end one line per variant with the ratios against the first one. The first step of a
process is slower (threads warm up), so the step time is the median of the steps after the first.

Variants (`--variants`, in order; the first is the baseline):

- `baseline`: the settings the learning check had before the memory and speed work (no activation checkpointing,
  every turn re-reads the whole context, TRL's per-row log-probability pass);
- `per-row`: the previous defaults: one rollout per micro-batch (accumulated), activation checkpointing, the KV
  cache kept across turns, TRL's per-row pass (each rollout reads the shared prompt again);
- `keep-freed`: the defaults without `release_host_memory` (glibc keeps what PyTorch frees; less CPU, more RSS);
- `defaults`: what `bench/learn_cpu.py` and configs/train/2048-cpu.yaml use now: `HUDGRPOTrainer` scoring the
  whole group in one packed sequence that reads the prompt once, checkpointed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

# variant -> GRPOConfig overrides and whether the generator keeps its KV cache between turns
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {
        "grpo": {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 1, "gradient_checkpointing": False},
        "reuse_cache": False,
        "share_prompts": False,
        "release_host_memory": False,
    },
    "per-row": {  # the defaults before prompt sharing: one rollout per micro-batch, checkpointed
        "grpo": {"per_device_train_batch_size": 1, "gradient_accumulation_steps": 4},
        "reuse_cache": True,
        "share_prompts": False,
        "release_host_memory": False,
    },
    "keep-freed": {"grpo": {}, "reuse_cache": True, "share_prompts": True, "release_host_memory": False},
    "defaults": {"grpo": {}, "reuse_cache": True, "share_prompts": True, "release_host_memory": None},
}


def parse_args() -> argparse.Namespace:
    """The bench's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps per variant.")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), help="In order.")
    parser.add_argument("--json", type=Path, default=None, help="Write every variant's numbers here.")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: run one variant
    parser.add_argument("--seed", type=int, default=0, help="Training seed.")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's). 1 makes CPU seconds count work only: idle OpenMP threads spin, "
        "and on a busy machine their spinning can double the CPU time of a step.",
    )
    return parser.parse_args()


def run_variant(name: str, steps: int, seed: int, threads: int | None) -> dict[str, Any]:
    """Train `steps` steps with the variant's settings in this process; return its phase table and step times."""
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hud_vf_gym.config import load_config
    from hud_vf_gym.local_model.model import resolve_model_folder
    from hud_vf_gym.training import load_few_shot

    from lib.grpo import FEW_SHOT, TRAIN_TASKS, TrainSettings, build_trainer, instrument, load_tasks
    from lib.memory import PhaseMeter

    meter = PhaseMeter()
    torch.manual_seed(seed)
    folder = resolve_model_folder(None)
    with meter.phase("load model"):
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    variant = VARIANTS[name]
    settings = TrainSettings(
        steps=steps,
        seed=seed,
        output=Path("outputs/grpo-step") / name,
        grpo_overrides=dict(variant["grpo"]),
        reuse_cache=bool(variant["reuse_cache"]),
        share_prompts=bool(variant["share_prompts"]),
        release_host_memory=variant["release_host_memory"],
    )
    config = load_config("2048", max_turns=settings.max_turns)
    with meter.phase("build trainer"):
        trainer, rollout, clock = build_trainer(
            model, tokenizer, config, load_tasks(TRAIN_TASKS), load_few_shot(FEW_SHOT), settings
        )
    instrument(trainer, rollout, meter)
    try:
        with meter.phase("train"):
            trainer.train()
    finally:
        rollout.close()
    rewards = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    print(f"\n== {name} ==\n{meter.table()}", flush=True)
    return {
        "variant": name,
        "phases": meter.as_dict(),
        "step_times_s": clock.wall,
        "step_cpu_s": clock.cpu,
        "rewards": rewards,
        "losses": losses,
    }


def main() -> None:
    """Run each variant in a child process, then print the comparison."""
    args = parse_args()
    if args.child:
        result = run_variant(args.child, args.steps, args.seed, args.threads)
        print("RESULT " + json.dumps(result), flush=True)
        return
    results = []
    for name in args.variants:
        command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps), "--seed", str(args.seed)]
        command += [] if args.threads is None else ["--threads", str(args.threads)]
        result = None
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as child:  # stderr passes through
            assert child.stdout is not None
            for line in child.stdout:  # streamed, so a long run shows its progress
                if line.startswith("RESULT "):
                    result = json.loads(line[len("RESULT ") :])
                else:
                    sys.stdout.write(line)
                    sys.stdout.flush()
        if child.returncode != 0 or result is None:
            raise SystemExit(f"variant {name} failed (exit {child.returncode})")
        results.append(result)
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


def _step(result: dict[str, Any], key: str) -> float:
    times = result[key]
    return statistics.median(times[1:] if len(times) > 1 else times)


def summary(results: list[dict[str, Any]]) -> str:
    """Per variant: step wall and CPU time, CPU per phase and step, peak RSS; ratios against the first variant.

    CPU seconds (every thread of the process) are the fairer comparison on a shared machine: wall time also
    counts the time other processes held the cores.
    """
    header = f"{'variant':<12}{'wall s':>8}{'CPU s':>8}{'x base (CPU)':>13}{'rollout':>9}{'generate':>10}"
    header += f"{'fwd':>7}{'bwd':>7}{'optim':>7}{'peak GiB':>10}"
    lines = ["\n== per step (median after the first; phases: CPU s per step) ==", header]
    base = results[0]
    for result in results:
        phases, steps = result["phases"], max(1, len(result["step_times_s"]))

        def per_step(name: str, phases: dict[str, Any] = phases, steps: int = steps) -> float:
            return float(phases.get(name, {}).get("cpu_seconds", 0.0)) / steps

        ratio = _step(base, "step_cpu_s") / _step(result, "step_cpu_s")
        lines.append(
            f"{result['variant']:<12}{_step(result, 'step_times_s'):>8.1f}{_step(result, 'step_cpu_s'):>8.1f}"
            f"{ratio:>13.2f}{per_step('rollout'):>9.1f}{per_step('  generate'):>10.1f}"
            f"{per_step('loss forward'):>7.1f}{per_step('backward'):>7.1f}{per_step('optimizer'):>7.1f}"
            f"{phases['overall']['peak_gib']:>10.2f}"
        )
    lines.append("\nrewards per step: " + "; ".join(f"{r['variant']}: {r['rewards']}" for r in results))
    lines.append("losses per step: " + "; ".join(f"{r['variant']}: {r['losses']}" for r in results))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
