"""Small decisions the training script makes before it builds the trainer, kept here so they are typed and tested.

- `resolve_model`: "embedded" (or nothing) means the embedded SmolLM2, converted once to a local HF folder.
- `resolve_report_to`: W&B when `WANDB_API_KEY` is set and nothing else was asked for; `none` otherwise, so an
  offline machine never waits for a login.
- `load_few_shot`: example turns from a JSON file, placed between the system prompt and the task.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from hud_vf_gym.errors import ConfigError

__all__ = ["EMBEDDED_MODEL", "load_few_shot", "resolve_model", "resolve_report_to"]

EMBEDDED_MODEL = "embedded"  # the model name that means hud_vf_gym.local_model.model's SmolLM2-135M-Instruct


def resolve_model(name: str | None) -> str:
    """An HF model id or local folder as given; "embedded" or None becomes the embedded model's local folder.

    Raises:
        DependencyNotInstalled: the embedded model is asked for and its packages are missing (the message has the
            pip command).
    """
    if name is None or name == EMBEDDED_MODEL:
        from hud_vf_gym.local_model.model import resolve_model_folder

        return str(resolve_model_folder(None))
    return str(Path(name).expanduser()) if name.startswith(("~", ".", "/")) else name


def resolve_report_to(report_to: str | Sequence[str] | None, environ: Mapping[str, str]) -> str | list[str]:
    """Where the trainer reports: as asked, except that the default ("none") becomes W&B when WANDB_API_KEY is set.

    Returns the string "none" (transformers refuses it inside a list) or the list of integrations.

    Raises:
        ConfigError: W&B is asked for without WANDB_API_KEY and without WANDB_MODE=offline (it would wait for a
            login that an offline machine cannot give).
    """
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    names = [name for name in names if name != "none"]
    has_key = bool(environ.get("WANDB_API_KEY"))
    if not names and has_key:
        return ["wandb"]
    wants_wandb = "wandb" in names or "all" in names
    if wants_wandb and not has_key and environ.get("WANDB_MODE") not in ("offline", "disabled"):
        raise ConfigError(
            "report_to wandb needs WANDB_API_KEY; export it, or set WANDB_MODE=offline to log to ./wandb locally, "
            "or leave report_to at none"
        )
    return names or "none"


def load_few_shot(path: str | Path) -> list[dict[str, str]]:
    """Example messages from a JSON file: a list of {"role": "user"|"assistant", "content": text}.

    Raises:
        ConfigError: the file cannot be read, is not JSON, or holds anything but such messages (all problems listed).
    """
    try:
        messages = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the few-shot file: {exc.strerror}") from exc
    except json.JSONDecodeError as exc:
        detail = f"{exc.msg} at line {exc.lineno}"
        raise ConfigError(f"{path}: not valid JSON ({detail}); expected a list of messages") from exc
    if not isinstance(messages, list):
        raise ConfigError(f"{path}: expected a JSON list of messages, found {type(messages).__name__}")
    problems = [
        f"[{index}]: expected {{'role': 'user' or 'assistant', 'content': text}}, found {str(message)[:80]!r}"
        for index, message in enumerate(messages)
        if not isinstance(message, dict)
        or message.get("role") not in ("user", "assistant")
        or not isinstance(message.get("content"), str)
        or set(message) != {"role", "content"}
    ]
    if problems:
        count = len(problems)
        header = f"{path}: {count} invalid few-shot message{'s' if count != 1 else ''}"
        raise ConfigError("\n  ".join([header, *problems]))
    return [{"role": message["role"], "content": message["content"]} for message in messages]
