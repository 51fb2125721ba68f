"""The embedded model's two CPU hot loops, each against its baseline in this process: decoding steps, packed loss pass.

    python bench/cpu_kernels.py                  # both parts, 4 rounds each
    python bench/cpu_kernels.py --part decode --rounds 6

1. decode: one decoding step of SmolLM2-135M for 4 rows after a 900-token prefill (what a GRPO group's turn and
   the eval endpoint's batch do), averaged over 16 steps: `transformers`' `DynamicCache` and `F.linear` (baseline),
   then `growing_cache` (new positions written in place), then also `skinny_linear` (few-row products as
   `W @ x.T`). The greedy tokens of every variant are compared with the baseline's.
2. packed pass: forward + backward of one packed GRPO group shaped like the learning check's largest (a 655-token
   prompt, segments of 341/245/340/335 tokens), activation checkpointing on as in training: SDPA given the
   group's dense mask (baseline) against the block-wise `shared_prefix_sdpa`; the hidden states and one weight's
   gradient are compared.

Rounds alternate the variants (baseline, variant, baseline, ...) so machine load hits both alike; the tables show
the median and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

PROMPT, SEGMENTS = 655, (341, 245, 340, 335)
DECODE_ROWS, DECODE_CONTEXT, DECODE_STEPS = 4, 900, 16


def parse_args() -> argparse.Namespace:
    """The bench's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["decode", "packed", "both"], default="both")
    parser.add_argument("--rounds", type=int, default=4, help="Timed rounds per variant (alternating).")
    return parser.parse_args()


def load_model() -> Any:
    """SmolLM2-135M-Instruct in fp32, as the CPU recipe trains it."""
    import torch
    from transformers import AutoModelForCausalLM

    from hud_vf_gym.local_model.model import resolve_model_folder

    return AutoModelForCausalLM.from_pretrained(resolve_model_folder(None), dtype=torch.float32, local_files_only=True)


def timed_rounds(variants: dict[str, Callable[[], Any]], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, rounds alternating between them (one untimed warm-up each)."""
    for run in variants.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            started = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def table(title: str, unit: str, seconds: dict[str, list[float]], scale: float, notes: dict[str, str]) -> str:
    """Median per variant and its ratio to the first (the baseline)."""
    base = statistics.median(next(iter(seconds.values())))
    lines = [f"\n== {title} ==", f"{'variant':<44}{unit:>12}{'x baseline':>12}  check"]
    for name, values in seconds.items():
        median = statistics.median(values)
        lines.append(f"{name:<44}{median * scale:>12.1f}{base / median:>11.2f}x  {notes.get(name, '')}")
    return "\n".join(lines)


def decode_part(model: Any, rounds: int) -> str:
    """Decoding steps: DynamicCache + F.linear, growing cache, growing cache + skinny products."""
    import torch
    from transformers import DynamicCache

    from hud_vf_gym.local_model.growing_cache import growing_cache
    from hud_vf_gym.local_model.skinny_linear import skinny_linear

    model.eval()
    prompt = torch.randint(100, 20000, (DECODE_ROWS, DECODE_CONTEXT), generator=torch.Generator().manual_seed(0))
    tokens: dict[str, list[list[int]]] = {}

    def steps(name: str, make_cache: Callable[[], Any], products: Callable[[], Any]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), products():
                cache = make_cache()
                logits = model(input_ids=prompt, cache=cache, use_cache=True, logits_to_keep=1).logits[:, -1]
                mask = torch.ones(DECODE_ROWS, DECODE_CONTEXT, dtype=torch.long)
                chosen = []
                started = time.perf_counter()
                for step in range(DECODE_STEPS):  # greedy, so every variant should write the same tokens
                    token = logits.argmax(-1, keepdim=True)
                    chosen.append(token[:, 0].tolist())
                    mask = torch.cat([mask, torch.ones(DECODE_ROWS, 1, dtype=torch.long)], 1)
                    positions = torch.full((DECODE_ROWS, 1), DECODE_CONTEXT + step)
                    logits = model(
                        input_ids=token, attention_mask=mask, position_ids=positions, cache=cache, use_cache=True
                    ).logits[:, -1]
                tokens[name] = chosen
                timings.setdefault(name, []).append((time.perf_counter() - started) / DECODE_STEPS)

        return run

    timings: dict[str, list[float]] = {}
    plain = contextlib.nullcontext
    variants = {
        "DynamicCache + F.linear (baseline)": steps("base", lambda: DynamicCache(config=model.config), plain),
        "growing cache": steps("grow", lambda: growing_cache(model.config), plain),
        "growing cache + W @ x.T products": steps(
            "skinny", lambda: growing_cache(model.config), lambda: skinny_linear(model)
        ),
    }
    timed_rounds(variants, rounds)  # alternates the variants; only their decoding steps count (`timings`)
    per_step = {name: timings[key][1:] for name, key in zip(variants, ("base", "grow", "skinny"), strict=True)}
    notes = {name: f"greedy tokens {'=' if tokens[key] == tokens['base'] else '!='} baseline" for name, key in
             zip(variants, ("base", "grow", "skinny"), strict=True)}  # fmt: skip
    title = f"decoding step, SmolLM2-135M, {DECODE_ROWS} rows after {DECODE_CONTEXT} tokens ({DECODE_STEPS} steps)"
    return table(title, "ms/step", per_step, 1000, notes)


def packed_group() -> tuple[Any, Any, Any, Any, Any]:
    """A packed group's ids, positions, dense mask, layout and scored positions (the learning check's shapes)."""
    import torch

    from hud_vf_gym.training.shared_prefix_attention import SegmentLayout

    layout = SegmentLayout(PROMPT, SEGMENTS)
    segment_of = [0] * PROMPT
    positions = list(range(PROMPT))
    for index, length in enumerate(SEGMENTS, start=1):
        segment_of += [index] * length
        positions += range(PROMPT, PROMPT + length)
    segments = torch.tensor(segment_of)
    order = torch.arange(layout.length)
    visible = (order[None, :] <= order[:, None]) & ((segments[None, :] == 0) | (segments[None, :] == segments[:, None]))
    ids = torch.randint(100, 20000, (1, layout.length), generator=torch.Generator().manual_seed(1))
    scored = segments > 0
    return ids, torch.tensor([positions]), visible[None, None], layout, scored


def packed_part(model: Any, rounds: int) -> str:
    """Forward + backward of a packed group: dense-mask SDPA against block-wise attention."""
    from hud_vf_gym.training.shared_prefix_attention import LAYOUT_KEYWORD, shared_prefix_attention

    model.train()
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5's name (the old one warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids, positions, visible, layout, scored = packed_group()
    results: dict[str, tuple[Any, Any]] = {}

    def pass_with(name: str, blocks: bool) -> Callable[[], None]:
        def run() -> None:
            model.zero_grad(set_to_none=True)
            switch = shared_prefix_attention(model) if blocks else contextlib.nullcontext()
            extra = {LAYOUT_KEYWORD: layout} if blocks else {}
            with switch:
                hidden = model.base_model(
                    input_ids=ids, attention_mask=visible, position_ids=positions, use_cache=False, **extra
                ).last_hidden_state[0][scored]
                hidden.float().pow(2).mean().backward()
            weight = model.base_model.layers[0].mlp.up_proj.weight.grad
            results[name] = (hidden.detach(), weight.detach().clone())

        return run

    variants = {"SDPA with the dense mask (baseline)": pass_with("dense", False)}
    variants["block-wise shared-prefix attention"] = pass_with("blocks", True)
    seconds = timed_rounds(variants, rounds)
    (dense_hidden, dense_grad), (block_hidden, block_grad) = results["dense"], results["blocks"]
    hidden_gap = float((dense_hidden - block_hidden).abs().max())
    grad_gap = float((dense_grad - block_grad).abs().max() / dense_grad.abs().max())
    notes = {"block-wise shared-prefix attention": f"max |hidden diff| {hidden_gap:.1e}, grad rel {grad_gap:.1e}"}
    title = f"packed loss pass, fwd + bwd, checkpointed ({PROMPT}-token prompt + segments {SEGMENTS})"
    return table(title, "s/pass", seconds, 1, notes)


def main() -> None:
    """Run the chosen parts and print their tables."""
    import torch

    args = parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    model = load_model()
    if args.part in ("decode", "both"):
        print(decode_part(model, args.rounds), flush=True)
    if args.part in ("packed", "both"):
        print(packed_part(model, args.rounds), flush=True)


if __name__ == "__main__":
    main()
