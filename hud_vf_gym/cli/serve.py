"""`hud-vf-gym serve`: the training service, an HTTP API for training jobs, rollouts and evaluation on HUD tasks.

Only the options live here (this module stays cheap to import); the service is `hud_vf_gym.service`, and FastAPI
and uvicorn (the `service` extra) are imported when the command runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from hud_vf_gym.cli.command import Command

__all__ = ["COMMAND", "ServeOptions", "run_serve"]

HELP = "Serve the training API: POST /train, /rollout, /evaluate, job event streams and a status page at /."
EXAMPLES = """\
examples:
  hud-vf-gym serve                                   # http://127.0.0.1:8000, state in ./.hud-vf-gym
  hud-vf-gym serve --allow-commands 'docker run --rm -i my-env:latest'
  HUD_VF_GYM_SERVICE_TOKEN=$(openssl rand -hex 24) hud-vf-gym serve --host 0.0.0.0
"""


@dataclass
class ServeOptions:
    """Options of `hud-vf-gym serve`; every field is a flag of the same name with dashes."""

    # Where it listens and keeps its state
    host: str = field(
        default="127.0.0.1", metadata={"help": "Address to bind; any non-loopback address needs a token."}
    )
    port: int = field(default=8000, metadata={"help": "Port to bind."})
    state_dir: str = field(
        default=".hud-vf-gym", metadata={"help": "Job store, job logs and trained models live here."}
    )

    # Safety
    token_env: str = field(
        default="HUD_VF_GYM_SERVICE_TOKEN",
        metadata={"help": "Environment variable holding the Bearer token requests must send (unset: no token)."},
    )
    allow_commands: str | None = field(
        default=None,
        metadata={
            "help": "stdio MCP server commands requests may start besides the built-in environments: command-line "
            "prefixes separated by ';', e.g. 'docker run --rm -i my-env; npx -y my-server'."
        },
    )
    allow_env: str | None = field(
        default=None,
        metadata={"help": "Environment variables requests may reference (API keys, ${VAR}), comma-separated."},
    )

    # Defaults for requests
    default_base_url: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible endpoint /rollout and /evaluate use by default (default: embedded)."},
    )
    default_model: str | None = field(default=None, metadata={"help": "The model name at --default-base-url."})
    default_api_key_env: str | None = field(
        default=None, metadata={"help": "Environment variable holding --default-base-url's API key."}
    )
    max_rollouts: int = field(default=64, metadata={"help": "Most rollouts one /rollout request may run."})
    paused: bool = field(default=False, metadata={"help": "Accept and queue training jobs but start none."})
    log_level: str = field(
        default="info",
        metadata={"help": "uvicorn's log level.", "choices": ("critical", "error", "warning", "info", "debug")},
    )


def run_serve(options: ServeOptions) -> int:
    """Check the settings, then serve until interrupted; return the exit status."""
    from hud_vf_gym.service.server import serve
    from hud_vf_gym.service.settings import ServiceSettings, parse_allowed_commands, parse_allowed_env

    settings = ServiceSettings(
        state_dir=Path(options.state_dir).resolve(),
        host=options.host,
        port=options.port,
        token=os.environ.get(options.token_env) or None,
        allowed_commands=parse_allowed_commands(options.allow_commands),
        allowed_env=parse_allowed_env(options.allow_env),
        paused=options.paused,
        default_base_url=options.default_base_url,
        default_model=options.default_model,
        default_api_key_env=options.default_api_key_env,
        max_rollouts=options.max_rollouts,
    )
    serve(settings, log_level=options.log_level)
    return 0


COMMAND = Command(name="serve", help=HELP, options=ServeOptions, run=run_serve, examples=EXAMPLES)
