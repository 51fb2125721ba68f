"""Request size of a long computer-use episode: every screenshot in the history against the `images` defaults.

    python bench/screenshots.py                  # 30 turns on the built-in browser server (real Chromium)
    python bench/screenshots.py --turns 15

One episode per variant through HUDGym (the path `hud-vf-gym eval` and `vf-eval` take) on the `scroll-to-find`
task, with a scripted model (`ScriptedChatServer`, 127.0.0.1) that alternates scrolling and looking, so every turn
returns a different 1280x800 screenshot. The server records every request; the bench prints, at turns 5, 15 and
30, the request's bytes, its images and an estimate of its prompt tokens for a vision model (text: 4 characters a
token; an image: OpenAI's high-detail count, 85 + 170 per 512-pixel tile after scaling to fit 2048x2048 with the
short side at most 768).

Variants (`images` config section):
- `all images`: `keep_recent: null` (what HUDGym sent before: the baseline);
- `default (3)`: `keep_recent: 3`, the default;
- `3 + 640px JPEG`: `keep_recent: 3, max_width: 640, jpeg_quality: 70` (coordinates scaled back, see
  `hud_vf_gym.core.images`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import math
import sys
from pathlib import Path
from typing import Any

import verifiers as vf
from openai import AsyncOpenAI

from hud_vf_gym import HUDGym, load_config, load_taskset
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer

TASK = "scroll-to-find-seed-0"
CHECKPOINTS = (5, 15, 30)
VARIANTS: dict[str, dict[str, Any]] = {
    "all images": {"keep_recent": None},
    "default (3)": {"keep_recent": 3},
    "3 + 640px JPEG": {"keep_recent": 3, "max_width": 640, "jpeg_quality": 70},
}


def parse_args() -> argparse.Namespace:
    """The bench's options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=30, help="Model turns in the episode (the last is done()).")
    parser.add_argument("--json", type=Path, default=None, help="Write the numbers here.")
    return parser.parse_args()


def replies(turns: int) -> list[str]:
    """Scroll down, look, scroll up, look, ... then done(): a new screenshot every turn."""
    moves = ['<tool>scroll("down", 2)</tool>', "<tool>screenshot()</tool>", '<tool>scroll("up", 1)</tool>']
    return [moves[index % len(moves)] for index in range(turns - 1)] + ["<tool>done()</tool>"]


def image_tokens(data_url: str) -> int:
    """OpenAI's high-detail token count for one image."""
    from PIL import Image

    width, height = Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).size
    scale = min(1.0, 2048 / max(width, height))
    width, height = width * scale, height * scale
    scale = min(1.0, 768 / min(width, height))
    width, height = width * scale, height * scale
    return 85 + 170 * math.ceil(width / 512) * math.ceil(height / 512)


def measure(request: dict[str, Any]) -> dict[str, int]:
    """Bytes, images and estimated prompt tokens of one chat request body."""
    images, text_chars, tokens = 0, 0, 0
    for message in request["messages"]:
        content = message.get("content")
        parts = content if isinstance(content, list) else [{"type": "text", "text": content or ""}]
        for part in parts:
            if part.get("type") == "image_url":
                images += 1
                tokens += image_tokens(part["image_url"]["url"])
            else:
                text_chars += len(part.get("text") or "")
    return {"bytes": len(json.dumps(request)), "images": images, "tokens": tokens + text_chars // 4}


async def episode(variant: dict[str, Any], turns: int) -> list[dict[str, int]]:
    """One episode with the variant's `images` settings; the measurements of every request, in order."""
    base = load_config("default", max_turns=turns)
    config = base.model_copy(update={"images": base.images.model_copy(update=variant)})
    [task] = [task for task in load_taskset("browser").tasks if task.id == TASK]
    env = HUDGym(config, [task])
    with ScriptedChatServer(FixedRepliesPolicy(replies(turns))) as chat:
        async with AsyncOpenAI(base_url=chat.base_url, api_key="x", max_retries=0) as client:
            try:
                await env.evaluate(
                    vf.OpenAIChatCompletionsClient(client),
                    "scripted",
                    sampling_args={"temperature": 0.0, "max_tokens": 32},
                    num_examples=-1,
                    rollouts_per_example=1,
                    max_concurrent=1,
                )
            finally:
                await env.harness.close_all()
        requests = [item["json"] for item in chat.requests if item["path"].endswith("/chat/completions")]
    return [measure(request) for request in requests]


def main() -> None:
    """Run each variant, print the table and the last request's ratio against all images."""
    args = parse_args()
    results = {name: asyncio.run(episode(variant, args.turns)) for name, variant in VARIANTS.items()}
    checkpoints = [turn for turn in CHECKPOINTS if turn <= args.turns]
    header = f"{'variant':<16}" + "".join(f"{f'turn {turn}: KiB / images / tokens':>36}" for turn in checkpoints)
    lines = [header]
    for name, measured in results.items():
        cells = []
        for turn in checkpoints:
            row = measured[turn - 1]
            cells.append(f"{row['bytes'] / 1024:>16.0f} / {row['images']:>6} / {row['tokens']:>7}")
        lines.append(f"{name:<16}" + "".join(f"{cell:>36}" for cell in cells))
    baseline = results["all images"][-1]
    for name, measured in results.items():
        last = measured[-1]
        lines.append(
            f"last request, {name}: {baseline['bytes'] / last['bytes']:.1f}x fewer bytes, "
            f"{baseline['tokens'] / last['tokens']:.1f}x fewer estimated tokens than all images"
        )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
