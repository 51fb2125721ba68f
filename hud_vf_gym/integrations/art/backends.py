"""ART backends by name, each checked for what it needs before any rollout starts.

- `local`: trains LoRA adapters on this machine with ART's `LocalBackend` (vLLM + Unsloth); needs an NVIDIA GPU,
  Linux and `pip install 'openpipe-art[backend]'`.
- `serverless`: trains on W&B Training (`art.ServerlessBackend`); needs `WANDB_API_KEY`, no GPU.
- `ruler-only`: trains nothing; gathers and RULER-scores one step's groups from `--base-url` (an endpoint serving
  `--base-model`) with a judge.

`art.local` is imported only when `local` is asked for (it imports torch at load); the SkyPilot backend of older
ART releases was removed upstream (run `local` on the remote GPU machine instead).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from hud_vf_gym.errors import ConfigError, DependencyNotInstalled
from hud_vf_gym.integrations.art._art import require_art

__all__ = ["BACKENDS", "RULER_ONLY", "check_backend", "make_backend"]

RULER_ONLY = "ruler-only"
BACKENDS: dict[str, str] = {
    "local": "ART's LocalBackend trains LoRA on this machine's NVIDIA GPU (pip install 'openpipe-art[backend]')",
    "serverless": "W&B Training trains remotely (ServerlessBackend); needs WANDB_API_KEY, no GPU",
    RULER_ONLY: "no training: gathers one step's groups and scores them with RULER (needs --base-url and a judge)",
}
WANDB_KEY = "WANDB_API_KEY"


def check_backend(name: str, environ: Mapping[str, str] | None = None) -> None:
    """Raise one clear line when the backend `name` cannot run here (unknown, no GPU, no key); no import of art.

    Raises:
        ConfigError: an unknown name, no GPU for `local`, no W&B key for `serverless`.
        DependencyNotInstalled: `local` without ART's backend extra (torch).
    """
    env = os.environ if environ is None else environ
    if name not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "serverless" and not env.get(WANDB_KEY):
        raise ConfigError(f"--backend serverless trains on W&B Training and needs {WANDB_KEY}; export it first")
    if name == "local":
        _check_local_gpu()


def _check_local_gpu() -> None:
    if importlib.util.find_spec("torch") is None:
        raise DependencyNotInstalled(
            "--backend local needs an NVIDIA GPU and ART's backend extra (torch, unsloth, vLLM): pip install "
            "'openpipe-art[backend]' on the GPU machine; without a GPU use --backend serverless or ruler-only"
        )
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(
            "--backend local needs an NVIDIA GPU and this machine has none (torch.cuda.is_available() is False); "
            f"use --backend serverless ({WANDB_KEY}) or --backend ruler-only"
        )


def make_backend(name: str) -> Any:
    """The ART backend called `name` (None for `ruler-only`), after `check_backend`."""
    check_backend(name)
    art = require_art()
    if name == RULER_ONLY:
        return None
    if name == "serverless":
        return art.ServerlessBackend()
    from art.local import LocalBackend  # imports torch: only here, only for `local`

    return LocalBackend()
