"""Does GRPO on CPU teach the embedded SmolLM2 something? Evaluate held-out 2048 tasks, train, evaluate again.

    python bench/learn_cpu.py                       # defaults: ~10 minutes on 2 cores
    python bench/learn_cpu.py --steps 40 --eval-rollouts 4 --output outputs/learn-cpu

In one process, in order:

1. load the embedded SmolLM2-135M-Instruct (converted once by `hud_vf_gym.local_model.model`);
2. evaluate it on held-out 2048 tasks through `HUDGym` and the in-process OpenAI endpoint the eval CLI uses
   (`hud_vf_gym.local_model.endpoint`), so training and evaluation share nothing but the model;
3. train it with GRPO (`HUDRollout` + TRL) on other 2048 tasks for a fixed number of steps;
4. evaluate the trained model on the same held-out tasks with the same sampling seeds;
5. print both tables (mean of every rubric component), the per-step training curve and the time per step, and
   write them to `--output` as JSON.

Held-out means different tasks (other targets, other board sizes), not only other seeds.

Measured with the defaults on the project machine (2 cores), seed 0, 12 held-out rollouts at T=1.0, the same in
every session: format_compliance 0.337 -> 0.989, tool_execution 0.222 -> 0.972, task_completion 0.065 -> 0.294,
reward 0.114 -> 0.432 (success 0/12 both times: the model learns the format and valid moves, not yet good play).
32 s per step at load ~2 and 3.01 GiB peak RSS for the whole process (about 10 minutes in all); before the packed
log-probability pass and the memory work, 55-73 s per step and 14.3 GB.
Entropy falls from 2.1 to 0.1 over the 12 steps and the last groups have identical rewards (frac_reward_zero_std
1), so longer runs want a lower learning rate or beta > 0. Without the few-shot turns SmolLM2 writes no tool call
at all, every reward is 0 and GRPO has nothing to learn from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

from lib.grpo import FEW_SHOT, TRAIN_TASKS, TrainSettings, build_trainer, instrument, load_tasks
from lib.memory import GIB, PhaseMeter

HELD_OUT_TASKS = ("2048_3x3_target_256", "2048_target_16", "2048_target_32", "2048_target_64")


def parse_args() -> argparse.Namespace:
    """The bench's options (defaults sized for about 10-15 minutes on 2 idle cores)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=12, help="GRPO optimizer steps.")
    parser.add_argument("--num-generations", type=int, default=4, help="Rollouts per task in a GRPO group.")
    parser.add_argument("--batch", type=int, default=4, help="Rollouts per step (a multiple of --num-generations).")
    parser.add_argument("--learning-rate", type=float, default=2e-5, help="AdamW learning rate.")
    parser.add_argument("--max-turns", type=int, default=4, help="Model turns per episode.")
    parser.add_argument("--turn-tokens", type=int, default=12, help="New tokens per model turn.")
    parser.add_argument("--eval-rollouts", type=int, default=3, help="Sampled rollouts per held-out task.")
    parser.add_argument("--eval-temperature", type=float, default=1.0, help="Sampling temperature for evaluation.")
    parser.add_argument("--few-shot", type=Path, default=FEW_SHOT, help="Example turns (JSON); 'none' for none.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for training and evaluation sampling.")
    parser.add_argument("--output", type=Path, default=Path("outputs/learn-cpu"), help="Folder for results.")
    return parser.parse_args()


async def evaluate(
    model: Any, tokenizer: Any, folder: Path, config: Any, tasks: list[Any], few_shot: list[Any], args: Any
) -> dict[str, Any]:
    """Roll every held-out task `--eval-rollouts` times through HUDGym and the in-process endpoint; summarise."""
    import verifiers as vf

    from hud_vf_gym.cli.eval.summary import summarize
    from hud_vf_gym.env import SUMMARY_KEY, HUDGym
    from hud_vf_gym.local_model.endpoint import local_openai_client
    from hud_vf_gym.local_model.model import LocalChatModel

    model.eval()
    env = HUDGym(config, tasks, few_shot=few_shot or None)
    local_model = LocalChatModel(model, tokenizer, name="smollm2", folder=folder)
    openai_client = local_openai_client(local_model)
    client = vf.OpenAIChatCompletionsClient(openai_client)
    slots = asyncio.Semaphore(4)  # the endpoint decodes the concurrent rollouts' turns together

    async def one(row: dict[str, Any], index: int) -> dict[str, Any]:
        sampling = {"temperature": args.eval_temperature, "max_tokens": args.turn_tokens, "seed": args.seed + index}
        async with slots:
            output = await env.run_rollout(row, client, "smollm2", sampling, max_retries=0, state_columns=[SUMMARY_KEY])
        return {**dict(output), "task_id": tasks[int(row["example_id"])].id, "rollout_index": index}

    rows = env.get_eval_dataset().to_list()
    try:
        results = await asyncio.gather(*(one(row, index) for row in rows for index in range(args.eval_rollouts)))
    finally:
        await env.harness.close_all()
        await openai_client.close()
        local_model.close()  # frees its prefix cache before training starts
    return summarize(results)


def component_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Before/after means of every rubric component and the reward, with the change."""
    lines = [f"{'held-out mean':<22}{'before':>9}{'after':>9}{'change':>9}"]
    rows = [("reward", before["mean_reward"], after["mean_reward"])]
    rows += [(name, value, after["components"][name]) for name, value in before["components"].items()]
    rows += [("success_rate", before["success_rate"], after["success_rate"])]
    rows += [("turns", before["mean_turns"], after["mean_turns"])]
    for name, old, new in rows:
        lines.append(f"{name:<22}{old:>9.3f}{new:>9.3f}{new - old:>+9.3f}")
    return "\n".join(lines)


def train(
    model: Any, tokenizer: Any, config: Any, tasks: list[Any], few_shot: list[Any], args: Any, meter: PhaseMeter
) -> tuple[Any, list[float]]:
    """GRPO with HUDRollout for `--steps` steps; returns the trainer and each step's wall time."""
    settings = TrainSettings(
        steps=args.steps,
        num_generations=args.num_generations,
        batch=args.batch,
        learning_rate=args.learning_rate,
        max_turns=args.max_turns,
        turn_tokens=args.turn_tokens,
        seed=args.seed,
        output=args.output,
    )
    trainer, rollout, clock = build_trainer(model, tokenizer, config, tasks, few_shot, settings)
    instrument(trainer, rollout, meter)
    try:
        trainer.train()
    finally:
        rollout.close()
    return trainer, clock.wall


def training_curve(trainer: Any) -> str:
    """Reward and format compliance of every step's rollouts."""
    lines = [f"{'step':>4}{'reward':>9}{'format':>9}{'task':>9}{'tool_exec':>10}{'turns':>7}{'infra':>7}"]
    for entry in trainer.state.log_history:
        if "reward" not in entry:
            continue
        lines.append(
            f"{entry['step']:>4}{entry['reward']:>9.3f}{entry['rewards/format_compliance/mean']:>9.3f}"
            f"{entry['rewards/task_completion/mean']:>9.3f}{entry['rewards/tool_execution/mean']:>10.3f}"
            f"{entry.get('turns', 0.0):>7.2f}{entry.get('infra_errors', 0.0):>7.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    """Evaluate, train, evaluate; print and save the comparison."""
    args = parse_args()
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers' gradient_checkpointing rename notices
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hud_vf_gym.config import load_config
    from hud_vf_gym.local_model.model import resolve_model_folder
    from hud_vf_gym.training import load_few_shot

    meter = PhaseMeter()
    torch.manual_seed(args.seed)
    args.output.mkdir(parents=True, exist_ok=True)
    folder = resolve_model_folder(None)
    with meter.phase("load model"):
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
    config = load_config("2048", max_turns=args.max_turns)
    train_tasks, held_out = load_tasks(TRAIN_TASKS), load_tasks(HELD_OUT_TASKS)
    few_shot = [] if str(args.few_shot) == "none" else load_few_shot(args.few_shot)

    results: dict[str, Any] = {"args": {key: str(value) for key, value in vars(args).items()}}
    started = time.perf_counter()
    with meter.phase("evaluate before"):
        results["before"] = before = asyncio.run(evaluate(model, tokenizer, folder, config, held_out, few_shot, args))
    eval_before_s = time.perf_counter() - started
    save(args.output, results)  # kept even if training fails
    print(f"evaluated before training in {eval_before_s:.0f} s (peak RSS so far {meter.peak() / GIB:.2f} GiB)")
    started = time.perf_counter()
    with meter.phase("train"):
        trainer, step_times = train(model, tokenizer, config, train_tasks, few_shot, args, meter)
    train_s = time.perf_counter() - started
    results.update(log_history=trainer.state.log_history, step_times_s=step_times)
    save(args.output, results)
    release_training_state(trainer)
    with meter.phase("evaluate after"):
        results["after"] = after = asyncio.run(
            evaluate(trainer.model, tokenizer, folder, config, held_out, few_shot, args)
        )
    results["memory"] = meter.as_dict()
    save(args.output, results)

    from hud_vf_gym.cli.eval.summary import render_table

    print("\n== training curve (training tasks, sampled at T=1) ==")
    print(training_curve(trainer))
    print(f"\n== held-out tasks before training ({args.eval_rollouts} rollouts each, T={args.eval_temperature}) ==")
    print(render_table(before))
    print("\n== held-out tasks after training ==")
    print(render_table(after))
    print(f"\n== held-out overall: {', '.join(HELD_OUT_TASKS)} ==")
    print(component_table(before, after))
    print(
        f"\nsteps: {len(step_times)}, time per step: mean {statistics.mean(step_times):.1f} s, "
        f"median {statistics.median(step_times):.1f} s (train total {train_s:.0f} s; evaluation {eval_before_s:.0f} s)"
    )
    print("\n== time and peak resident memory per phase (training phases: every step together) ==")
    print(meter.table())


def release_training_state(trainer: Any) -> None:
    """Free AdamW's moments and the gradients (1.5 GB here): evaluating the trained model needs neither."""
    import gc

    trainer.optimizer.state.clear()
    trainer.model.zero_grad(set_to_none=True)
    gc.collect()


def save(folder: Path, results: dict[str, Any]) -> None:
    """Write what the run has so far to `folder/learn_cpu.json`."""
    (folder / "learn_cpu.json").write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
