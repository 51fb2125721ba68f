"""The environments ART can train on, by name: the built-in ones, and those a `config.yaml` adds (seed 000's shape).

```yaml
environments:
  my_env:                          # a taskset, on its own servers or on the server(s) named here
    taskset: tasks.jsonl           # a built-in name, a .json/.jsonl file, a dataset folder or a hub id
    config_path: configs/my.yaml   # the environment config (actions, prompt, rubric): a built-in name or a YAML
    mcp_config:                    # optional: replaces every task's mcp_config (e.g. the same tasks on a remote host)
      remote: {command: ssh, args: [user@host, docker, run, -i, my-mcp-server]}
    max_turns: 15
  my_server:                       # an MCP server without tasks: scenarios are generated from its tools
    mcp_config: {local: {command: docker, args: [run, -i, my-mcp-server]}}
    config_path: configs/my-server.yaml   # write one with `hud-vf-gym init`
training:
  default: {learning_rate: 1e-5, rollouts_per_group: 4}
  my_env: {scenarios: 8}           # per environment, over `default`
```

An entry named like a built-in environment (2048, browser, miniwob) changes only the fields it gives.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hud_vf_gym.environments.registry import BUILTINS
from hud_vf_gym.errors import ConfigError

__all__ = ["BUILTIN_ENVIRONMENTS", "ArtConfigFile", "EnvironmentSpec", "TrainingDefaults", "resolve_environment"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EnvironmentSpec(_Strict):
    """One environment: where its tasks come from, which config plays them, and how long an episode may run."""

    taskset: str | None = Field(default=None, description="The tasks; None: generated from the server's tools.")
    config_path: str | None = Field(default=None, description="The environment config YAML or built-in name.")
    mcp_config: dict[str, Any] | None = Field(default=None, description="Server(s) replacing the tasks' own.")
    max_turns: int | None = Field(default=None, ge=1, description="Model turns per episode (config's default).")

    @field_validator("mcp_config")
    @classmethod
    def _servers_are_mappings(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and (not value or not all(isinstance(entry, Mapping) for entry in value.values())):
            raise ValueError("expected server name -> {command, args} or {url} entries, e.g. {local: {command: ...}}")
        return value


class TrainingDefaults(_Strict):
    """Training settings a config file may set; a command-line flag or a function argument wins over them."""

    base_model: str | None = None
    scenarios: int | None = Field(default=None, ge=1)
    steps: int | None = Field(default=None, ge=1)
    groups_per_step: int | None = Field(default=None, ge=1)
    rollouts_per_group: int | None = Field(default=None, ge=1)
    learning_rate: float | None = Field(default=None, gt=0)
    use_ruler: bool | None = None
    judge_model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0)


def _builtin_environments() -> dict[str, EnvironmentSpec]:
    """One environment per built-in taskset, played with its row's Gym config (text-only: `browser-text` for pages)."""
    specs = {}
    for row in BUILTINS.values():
        config = row.make_kwargs().get("config_path") or (row.config_names[0] if row.configs else None)
        for taskset in row.taskset_names:
            specs[taskset] = EnvironmentSpec(taskset=taskset, config_path=config)
    return specs


# From the built-in environments table, so a new built-in environment is known here without another edit.
BUILTIN_ENVIRONMENTS: dict[str, EnvironmentSpec] = _builtin_environments()


class ArtConfigFile(_Strict):
    """A `config.yaml` for the ART integration: environments by name and training defaults."""

    environments: dict[str, EnvironmentSpec] = Field(default_factory=dict)
    training: dict[str, TrainingDefaults] = Field(default_factory=dict)

    @field_validator("environments", "training", mode="before")
    @classmethod
    def _empty_sections(cls, value: Any) -> Any:
        """A section or an entry written with nothing under it (`default:`) is empty, not an error."""
        if value is None:
            return {}
        if isinstance(value, Mapping):
            return {key: {} if entry is None else entry for key, entry in value.items()}
        return value

    @classmethod
    def load(cls, path: str | Path) -> ArtConfigFile:
        """Read and validate the file; every problem is named with its field.

        Raises:
            ConfigError: the file is missing, not YAML, or has a bad field.
        """
        file = Path(path).expanduser()
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"--config {str(path)!r}: cannot be read ({exc.strerror})") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
        try:
            loaded = cls.model_validate(raw or {})
        except ValidationError as exc:
            problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
            raise ConfigError("\n  ".join([f"{file}: {len(problems)} invalid field(s)", *problems])) from None
        return loaded.relative_to(file.parent)

    def relative_to(self, folder: Path) -> ArtConfigFile:
        """A copy whose relative taskset and config paths that name files in `folder` are made absolute.

        Paths in a config file are read from the file's own folder, so it works from any working directory; a
        name that is no file there (a built-in like "2048", a hub id) is kept as written.
        """
        environments = {}
        for name, spec in self.environments.items():
            update = {}
            for key in ("taskset", "config_path"):
                value = getattr(spec, key)
                if value is not None and not Path(value).is_absolute() and (folder / value).exists():
                    update[key] = str((folder / value).resolve())
            environments[name] = spec.model_copy(update=update)
        return self.model_copy(update={"environments": environments})

    def defaults_for(self, name: str) -> TrainingDefaults:
        """`training.default`, overridden field by field by `training.<name>`."""
        base = self.training.get("default", TrainingDefaults()).model_dump(exclude_none=True)
        base.update(self.training.get(name, TrainingDefaults()).model_dump(exclude_none=True))
        return TrainingDefaults(**base)


def resolve_environment(name: str, config_file: ArtConfigFile | None = None) -> EnvironmentSpec:
    """The environment called `name`: a config file's entry (over a built-in of that name) or a built-in.

    Raises:
        ConfigError: no such environment (the message lists the known ones), or an entry that cannot run.
    """
    entries = config_file.environments if config_file is not None else {}
    builtin = BUILTIN_ENVIRONMENTS.get(name)
    if name not in entries and builtin is None:
        known = [*BUILTIN_ENVIRONMENTS, *(entry for entry in entries if entry not in BUILTIN_ENVIRONMENTS)]
        hint = "" if config_file is not None else "; add your own in a config.yaml (--config) under environments:"
        raise ConfigError(f"unknown environment {name!r}; known environments: {', '.join(known)}{hint}")
    spec = builtin or EnvironmentSpec()
    if name in entries:
        spec = spec.model_copy(update=entries[name].model_dump(exclude_unset=True))
    if spec.taskset is None and spec.mcp_config is None:
        raise ConfigError(f"environments.{name}: give a taskset, or an mcp_config whose tools scenarios are made from")
    if spec.config_path is None:
        raise ConfigError(
            f"environments.{name}: config_path is missing: the environment config that maps the model's actions to "
            "the server's tools; write one with `hud-vf-gym init SERVER -o configs/NAME.yaml`"
        )
    return spec
