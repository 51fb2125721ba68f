"""What the operator of `hud-vf-gym serve` chose, checked once when the service starts.

The service runs commands on its machine (training processes, stdio MCP servers), so its safety settings live here:

- it binds 127.0.0.1 unless told otherwise, and refuses any other address unless a token is set (the token comes from
  an environment variable, never from the command line, where `ps` would show it);
- requests may start stdio MCP servers only for the built-in environments and the command prefixes the operator
  allowed (`allowed_commands`); URL servers are always allowed;
- requests may reference only the environment variables the operator allowed (`allowed_env`), as an endpoint's API
  key or as `${VAR}` in an `mcp_config`; `HUD_API_KEY` may always go to HUD's own hub.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from hud_vf_gym.errors import ConfigError

__all__ = ["DEFAULT_TOKEN_ENV", "ServiceSettings", "is_loopback", "parse_allowed_commands", "parse_allowed_env"]

DEFAULT_TOKEN_ENV = "HUD_VF_GYM_SERVICE_TOKEN"  # the variable the Bearer token is read from
DEFAULT_PORT = 8000
MIN_TOKEN_CHARS = 16  # a shorter token can be guessed; the check is about typos like an empty or placeholder value
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to any interface


def parse_allowed_commands(text: str | None) -> tuple[tuple[str, ...], ...]:
    """`--allow-commands "docker run --rm -i img; npx -y server"` as command-line prefixes (shell words).

    Raises:
        ConfigError: a prefix is empty or not valid shell syntax.
    """
    if not text:
        return ()
    prefixes = []
    for index, part in enumerate(text.split(";")):
        try:
            words = tuple(shlex.split(part))
        except ValueError as exc:
            raise ConfigError(f"--allow-commands: entry {index + 1} ({part.strip()!r}) is not valid: {exc}") from exc
        if not words:
            raise ConfigError(
                f"--allow-commands: entry {index + 1} is empty; separate command prefixes with ';', e.g. "
                "'docker run --rm -i my-image; npx -y my-server'"
            )
        prefixes.append(words)
    return tuple(prefixes)


def parse_allowed_env(text: str | None) -> frozenset[str]:
    """`--allow-env "OPENAI_API_KEY,MY_TOKEN"` as a set of variable names.

    Raises:
        ConfigError: a name is not a valid environment variable name.
    """
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    bad = [name for name in names if not _ENV_NAME.match(name)]
    if bad:
        raise ConfigError(f"--allow-env: {', '.join(map(repr, bad))} are not environment variable names; e.g. A_B,C")
    return frozenset(names)


@dataclass(frozen=True)
class ServiceSettings:
    """Everything the running service needs to know from its operator.

    Attributes:
        state_dir: where the job store (`service.db`), job folders and trained models live.
        host, port: the address uvicorn binds.
        token: the Bearer token every request but `GET /health` must carry; None means no authentication (only
            allowed on a loopback address).
        allowed_commands: stdio `mcp_config` command prefixes requests may use, besides the built-in environments.
        allowed_env: environment variables a request may reference (an API key's variable, `${VAR}` templates).
        paused: accept and queue training jobs, but start none (maintenance; the schema tests use it).
        default_base_url, default_model, default_api_key_env: the model `/rollout` and `/evaluate` use when a
            request names none; unset means the embedded SmolLM2, in process.
        max_rollouts: the most rollouts (tasks x rollouts per task) one `/rollout` request may ask for.
        work_dir: relative taskset and config paths in requests are resolved here, and must stay inside it.
        poll_interval_s: how often running jobs' logs are read (the event latency is about this long).
    """

    state_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = field(default=None, repr=False)
    allowed_commands: tuple[tuple[str, ...], ...] = ()
    allowed_env: frozenset[str] = frozenset()
    paused: bool = False
    default_base_url: str | None = None
    default_model: str | None = None
    default_api_key_env: str | None = None
    max_rollouts: int = 64
    work_dir: Path = field(default_factory=Path.cwd)
    poll_interval_s: float = 0.05

    def __post_init__(self) -> None:
        """Refuse settings that would make the service unsafe or unusable, all problems at once."""
        problems = []
        if not is_loopback(self.host) and not self.token:
            problems.append(
                f"--host {self.host} is reachable from other machines, so the service needs a token: export "
                f"{DEFAULT_TOKEN_ENV}=<a long random secret> (or name another variable with --token-env), and send "
                "it as 'Authorization: Bearer <token>'"
            )
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            problems.append(f"the service token is {len(self.token)} characters; use at least {MIN_TOKEN_CHARS}")
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be 0-65535, got {self.port}")
        if self.max_rollouts < 1:
            problems.append(f"--max-rollouts must be at least 1, got {self.max_rollouts}")
        if (self.default_base_url is None) != (self.default_model is None):
            problems.append("--default-base-url and --default-model go together: give both, or neither")
        if problems:
            count = len(problems)
            raise ConfigError("\n  ".join([f"{count} invalid setting{'s' if count != 1 else ''}", *problems]))

    @property
    def db_path(self) -> Path:
        """The SQLite job store."""
        return self.state_dir / "service.db"

    @property
    def jobs_dir(self) -> Path:
        """One folder per job: its tasks, log and exit status."""
        return self.state_dir / "jobs"

    @property
    def models_dir(self) -> Path:
        """Trained models: `models/<project>/<model_name>/` with their checkpoints."""
        return self.state_dir / "models"

    @property
    def rollouts_dir(self) -> Path:
        """One results folder per `/rollout` request (the `hud-vf-gym eval` layout)."""
        return self.state_dir / "rollouts"

    @property
    def datasets_dir(self) -> Path:
        """Rollouts stored as datasets: `datasets/<name>.jsonl`."""
        return self.state_dir / "datasets"
