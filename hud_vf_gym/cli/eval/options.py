"""The options of `hud-vf-gym eval`, one dataclass field per command-line flag (`num_tasks` is `--num-tasks`)."""

from __future__ import annotations

import dataclasses
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hud_vf_gym.errors import ConfigError

__all__ = ["EvalOptions", "is_local_url"]

DEFAULT_RESULTS_DIR = "results"  # ./results/<timestamp> when --output is not given
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def is_local_url(url: str) -> bool:
    """Whether an endpoint URL points at this machine (so it may go without an API key)."""
    return (urllib.parse.urlsplit(url).hostname or "") in _LOCAL_HOSTS


def _without_credentials(url: str | None) -> str | None:
    """The URL with any `user:password@` removed, so run.json never holds a secret."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass
class EvalOptions:
    """Options of `hud-vf-gym eval`; every field is a flag of the same name with dashes.

    With no options it evaluates the embedded SmolLM2-135M-Instruct on 5 tasks of the built-in 2048 taskset,
    one rollout each, 10 turns at most: a few minutes on a 2-core CPU.
    """

    # What to evaluate
    taskset: str = field(
        default="2048",
        metadata={"help": "Taskset: a built-in name, a .json/.jsonl file, a saved dataset folder or an HF hub id."},
    )
    config: str = field(default="2048", metadata={"help": "Environment config: a built-in name or a YAML file."})
    num_tasks: int | None = field(
        default=5, metadata={"help": "Evaluate the first N tasks of the taskset ('none': every task)."}
    )
    rollouts_per_task: int = field(default=1, metadata={"help": "Rollouts of each task."})
    max_turns: int = field(
        default=10,
        metadata={"help": "Model turns per rollout before truncation (replaces the config's defaults.max_turns)."},
    )
    # 8 runs the default job's 5 rollouts at once: the in-process model decodes concurrent turns as one batch, so a
    # rollout left waiting for a slot costs its whole length in wall time, and one more batch row costs little
    concurrency: int = field(default=8, metadata={"help": "Rollouts that run at the same time."})

    # Sampling
    temperature: float = field(default=0.0, metadata={"help": "Sampling temperature; 0 is greedy."})
    max_tokens: int = field(default=64, metadata={"help": "Most tokens the model may write per turn."})
    seed: int | None = field(
        default=0,
        metadata={"help": "Sampling seed sent with every request, plus the rollout index ('none': no seed)."},
    )

    # The model: the embedded default, a local folder, or an endpoint
    model_path: str | None = field(
        default=None,
        metadata={"help": "A local Hugging Face model folder to run in process (default: the embedded SmolLM2)."},
    )
    base_url: str | None = field(
        default=None, metadata={"help": "An OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1."}
    )
    model: str | None = field(default=None, metadata={"help": "The model name to ask the --base-url endpoint for."})
    api_key_env: str | None = field(
        default=None,
        metadata={"help": "The environment variable holding the endpoint's API key (needed unless it is local)."},
    )
    max_batch_size: int = field(
        default=16,
        metadata={"help": "In-process model only: concurrent requests decoded together (1: one reply at a time)."},
    )
    cache_tokens: int = field(
        default=16384,
        metadata={
            "help": "In-process model only: tokens of earlier turns kept as a key/value cache, so each turn reads "
            "only its new tokens (0: none)."
        },
    )

    # Results
    output: str | None = field(default=None, metadata={"help": "Results folder (default: ./results/<date>-<time>)."})
    resume: str | None = field(
        default=None,
        metadata={"help": "Finish an earlier run in this folder: only its missing rollouts run, with its options."},
    )
    dry_run: bool = field(
        default=False,
        metadata={"help": "Check the config, the taskset and every task's server and tools; run no model."},
    )

    def __post_init__(self) -> None:
        """Reject bad values and combinations, all of them at once."""
        problems = [*self._range_problems(), *self._model_problems()]
        if self.resume is not None and self.output is not None and Path(self.output) != Path(self.resume):
            problems.append("--output and --resume name different folders; --resume writes into its own folder")
        if problems:
            count = len(problems)
            header = f"{count} invalid option{'s' if count != 1 else ''} for hud-vf-gym eval"
            raise ConfigError("\n  ".join([header, *problems]))

    def _range_problems(self) -> list[str]:
        at_least_one = {
            "--num-tasks": self.num_tasks,
            "--rollouts-per-task": self.rollouts_per_task,
            "--max-turns": self.max_turns,
            "--concurrency": self.concurrency,
            "--max-tokens": self.max_tokens,
            "--max-batch-size": self.max_batch_size,
        }
        problems = [
            f"{flag} must be at least 1, got {value}"
            for flag, value in at_least_one.items()
            if value is not None and value < 1
        ]
        if self.cache_tokens < 0:
            problems.append(f"--cache-tokens must be 0 (no cache) or more, got {self.cache_tokens}")
        if self.temperature < 0:
            problems.append(f"--temperature must be 0 (greedy) or more, got {self.temperature}")
        return problems

    def _model_problems(self) -> list[str]:
        problems = []
        if self.model_path is not None and self.base_url is not None:
            problems.append("--model-path and --base-url exclude each other: run a local folder or call an endpoint")
        if self.base_url is not None and not self.model:
            problems.append("--base-url needs --model NAME, the model the endpoint serves")
        if self.base_url is None and self.model is not None:
            problems.append(
                "--model names an endpoint's model; give the endpoint with --base-url (or use --model-path)"
            )
        if self.base_url is None and self.api_key_env is not None:
            problems.append("--api-key-env is only used with --base-url")
        return problems

    @property
    def output_path(self) -> Path:
        """The results folder: --resume, else --output, else ./results/<date>-<time>."""
        chosen = self.resume or self.output
        if chosen is not None:
            return Path(chosen)
        return Path(DEFAULT_RESULTS_DIR) / time.strftime("%Y%m%d-%H%M%S")

    def to_json(self) -> dict[str, Any]:
        """The options as run.json keeps them: no secret (the API key is only named), no resume/dry-run flags."""
        values = dataclasses.asdict(self)
        values["base_url"] = _without_credentials(self.base_url)
        for transient in ("resume", "dry_run", "output"):
            values.pop(transient)
        return values

    @classmethod
    def from_run(cls, saved: dict[str, Any], overrides: dict[str, Any]) -> EvalOptions:
        """The options of a run being resumed: those it was started with, then any flag given again now."""
        names = {item.name for item in dataclasses.fields(cls)}
        unknown = sorted(set(saved) - names)
        if unknown:
            raise ConfigError(
                f"run.json has unknown option(s) {', '.join(unknown)}; was it written by hud-vf-gym eval?"
            )
        return cls(**{**saved, **overrides})
