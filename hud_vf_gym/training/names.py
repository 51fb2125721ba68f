"""The names the GRPO launcher and the GPU placement accept, in a module that imports nothing.

`hud-vf-gym train --help` lists them as the choices of `--accelerate` and `--provider` without importing the
training code; `training.launch` and `training.placement.gpus` read them from here.
"""

from __future__ import annotations

__all__ = ["ACCELERATE_CONFIGS", "PROVIDERS"]

ACCELERATE_CONFIGS = ("single_gpu", "zero2", "zero3")  # files in configs/accelerate/
PROVIDERS = ("local", "skypilot", "prime")  # where `hud-vf-gym train` runs
