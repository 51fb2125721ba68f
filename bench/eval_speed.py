"""`hud-vf-gym eval`'s main job with the embedded model: batched generation against the serialised endpoint.

    python bench/eval_speed.py                 # the default job: 5 tasks x 1 rollout, 10 turns, concurrency 8
    python bench/eval_speed.py --repeats 2 --num-tasks 8

Each variant runs the real command path (`run_eval`: HUDGym, the in-process endpoint, the 2048 servers) into its
own results folder, one after the other in this process, greedy as the default is:

- `serialised`: `--max-batch-size 1 --cache-tokens 0`: one reply at a time, each turn reading the whole
  conversation again (what the endpoint did before);
- `batched`: the defaults: concurrent requests decoded together, each turn reading only its new tokens.

It prints wall time, model turns, completion tokens and tokens/s per run, the speed-up, and whether every rollout
got the same reward and the same replies in both variants (greedy decoding: they should).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

VARIANTS = {"serialised": (1, 0), "batched": (16, 16384)}  # name -> (--max-batch-size, --cache-tokens)


def parse_args() -> argparse.Namespace:
    """The bench's options (defaults: the eval command's own defaults)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    from hud_vf_gym.cli.eval.options import EvalOptions

    defaults = EvalOptions()
    parser.add_argument("--num-tasks", type=int, default=defaults.num_tasks, help="Tasks of the 2048 taskset.")
    parser.add_argument("--max-turns", type=int, default=defaults.max_turns, help="Model turns per rollout.")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="Rollouts at once.")
    parser.add_argument("--repeats", type=int, default=1, help="Runs of each variant (alternating).")
    parser.add_argument("--json", type=Path, default=None, help="Write the numbers here.")
    return parser.parse_args()


def run(variant: str, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One eval run; its wall time and what its results folder holds."""
    from hud_vf_gym.cli.eval.evaluation import run_eval
    from hud_vf_gym.cli.eval.options import EvalOptions

    options = EvalOptions(
        num_tasks=args.num_tasks,
        max_turns=args.max_turns,
        concurrency=args.concurrency,
        max_batch_size=VARIANTS[variant][0],
        cache_tokens=VARIANTS[variant][1],
        output=str(folder),
    )
    started = time.perf_counter()
    run_eval(options, log=lambda message: None)
    wall = time.perf_counter() - started
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines() if line.strip()]
    rows.sort(key=lambda row: (row["task_id"], row["rollout_index"]))
    turns = sum(len(row["hud_episode"]["turns"]) for row in rows)
    tokens = sum(int((row.get("token_usage") or {}).get("output_tokens", 0)) for row in rows)
    return {
        "variant": variant,
        "wall_s": wall,
        "turns": turns,
        "completion_tokens": tokens,
        "tokens_per_s": tokens / wall if wall else 0.0,
        "rewards": [row["reward"] for row in rows],
        "replies": [[m["content"] for m in row["completion"] or [] if m.get("role") == "assistant"] for row in rows],
    }


def main() -> None:
    """Run the variants (alternating), print the table and the comparison."""
    args = parse_args()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="eval-speed-") as scratch:
        for repeat in range(args.repeats):
            for variant in VARIANTS:
                result = run(variant, Path(scratch) / f"{variant}-{repeat}", args)
                results.append(result)
                print(
                    f"{variant:<11} run {repeat + 1}: {result['wall_s']:7.1f} s, {result['turns']} turns, "
                    f"{result['completion_tokens']} tokens, {result['tokens_per_s']:.1f} tok/s",
                    flush=True,
                )
    by_variant = {name: [result for result in results if result["variant"] == name] for name in VARIANTS}
    serial_wall = statistics.median(result["wall_s"] for result in by_variant["serialised"])
    lines = [f"\n{'variant':<12}{'wall s':>9}{'x serial':>10}{'tok/s':>8}{'turns':>7}{'mean reward':>13}"]
    for name, runs in by_variant.items():
        wall = statistics.median(result["wall_s"] for result in runs)
        rate = statistics.median(result["tokens_per_s"] for result in runs)
        reward = statistics.mean(value or 0.0 for value in runs[0]["rewards"])
        lines.append(
            f"{name:<12}{wall:>9.1f}{serial_wall / wall:>10.2f}{rate:>8.1f}{runs[0]['turns']:>7}{reward:>13.3f}"
        )
    serial, batched = by_variant["serialised"][0], by_variant["batched"][0]
    lines.append(f"same rewards per rollout: {serial['rewards'] == batched['rewards']}")
    lines.append(f"same replies per turn (greedy): {serial['replies'] == batched['replies']}")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
