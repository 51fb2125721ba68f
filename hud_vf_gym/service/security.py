"""What a request may make the service run or read: the stdio command allow-list, variables, paths, secrets.

A request's tasks name MCP servers. A URL server is only a connection and is always allowed. A stdio server is a
command this machine runs, so it must be one of:

- a built-in environment: `python -m <its module>` for a row of `hud_vf_gym.environments.registry.BUILTINS` (any of
  `python`, `python3` or this interpreter; it is run with this interpreter, which has the package);
- a command line starting with one of the prefixes the operator allowed (`hud-vf-gym serve --allow-commands`),
  compared word by word, the executable exactly as written (no PATH lookup: `/tmp/x/docker` is not `docker`).

Any other command, a `cwd`, or an `env` entry that changes how programs load (`LD_PRELOAD`, `PYTHONPATH`, ...) is
refused with `NotAllowedError` (HTTP 403) naming the setting that would allow it. `${VAR}` templates may name only
the variables the operator allowed (`--allow-env`), plus `HUD_API_KEY` in entries that go to HUD's own hub: a
template sent to any other URL would hand the service's secrets to whoever runs that URL.

Secrets never leave the service: `redact_spec` hides values under secret-looking keys before a request is stored
or returned, and `SecretFilter` removes known secret values from every log line before it becomes an event.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hud_vf_gym.errors import NotAllowedError
from hud_vf_gym.runtime.servers import HUB_HOSTS
from hud_vf_gym.runtime.variables import redact, redact_text, template_variables
from hud_vf_gym.service.settings import ServiceSettings
from hud_vf_gym.tasks.task import Task

__all__ = [
    "HUB_KEY_VARIABLE",
    "SecretFilter",
    "builtin_environment_modules",
    "check_env_variable",
    "check_tasks",
    "redact_spec",
    "resolve_request_path",
]

HUB_KEY_VARIABLE = "HUD_API_KEY"
_PYTHON_NAMES = re.compile(r"^python(?:3(?:\.\d+)?)?$")
# env entries that change which code a program loads or runs: never settable from a request
_LOADER_VARIABLES = re.compile(r"^(?:LD_|DYLD_|PYTHON|PERL5|RUBY|NODE_OPTIONS$|BASH_ENV$|ENV$|PATH$)")
# Variables whose values are secrets, filtered out of log lines (names like the ones runtime.variables redacts).
_SECRET_NAME = re.compile(r"token|secret|passw(?:or)?d|key|credential", re.IGNORECASE)
_MIN_SECRET_CHARS = 8  # shorter values are not filtered: replacing "1" in every log line garbles it


def builtin_environment_modules() -> frozenset[str]:
    """The server module of every built-in environment (the table in `hud_vf_gym.environments.registry`)."""
    from hud_vf_gym.environments.registry import BUILTINS

    return frozenset(row.module for row in BUILTINS.values())


def _is_builtin_server(command: str, args: Sequence[str]) -> bool:
    is_python = command == sys.executable or bool(_PYTHON_NAMES.match(command))
    return is_python and len(args) >= 2 and args[0] == "-m" and args[1] in builtin_environment_modules()


def _allowed_prefix(words: Sequence[str], settings: ServiceSettings) -> bool:
    return any(tuple(words[: len(prefix)]) == prefix for prefix in settings.allowed_commands)


def _check_stdio(where: str, entry: Mapping[str, Any], settings: ServiceSettings) -> dict[str, Any]:
    """A stdio entry as it may run (built-in servers on this interpreter), or NotAllowedError."""
    command = str(entry.get("command", ""))
    args = [str(arg) for arg in entry.get("args") or entry.get("arguments") or []]
    if entry.get("cwd") is not None:
        raise NotAllowedError(f"{where}: cwd is not allowed in requests; the service runs servers in its own folder")
    loaders = sorted(name for name in (entry.get("env") or {}) if _LOADER_VARIABLES.match(str(name)))
    if loaders:
        raise NotAllowedError(
            f"{where}: env {', '.join(loaders)} would change which code the server runs; requests cannot set it"
        )
    if _is_builtin_server(command, args):
        return {**entry, "command": sys.executable}
    if _allowed_prefix([command, *args], settings):
        return dict(entry)
    shown = " ".join([command, *args])[:200]
    raise NotAllowedError(
        f"{where}: the command {shown!r} is not on this service's allow-list (setting: allowed_commands). "
        f"Built-in environments ({', '.join(sorted(builtin_environment_modules()))}) are always allowed; the "
        f"operator can allow this one with: hud-vf-gym serve --allow-commands {shown!r}"
    )


def _check_templates(where: str, entry: Mapping[str, Any], settings: ServiceSettings) -> None:
    """Refuse `${VAR}` templates naming variables the operator did not allow."""
    names = template_variables(entry)
    url_host = urlsplit(str(entry.get("url", ""))).hostname
    allowed = set(settings.allowed_env)
    if url_host in HUB_HOSTS:
        allowed.add(HUB_KEY_VARIABLE)  # the hub is where HUD_API_KEY belongs
    refused = sorted(names - allowed)
    if refused:
        raise NotAllowedError(
            f"{where}: ${{{refused[0]}}} names an environment variable of the service that requests may not use "
            f"(setting: allowed_env); the operator can allow it with: hud-vf-gym serve --allow-env {','.join(refused)}"
        )


def check_tasks(tasks: Iterable[Task], settings: ServiceSettings) -> list[Task]:
    """The tasks with every stdio server allowed (built-in ones set to run on this interpreter).

    Raises:
        NotAllowedError: a server, variable, cwd or env entry is not allowed; the message names the task, the
            server and the setting that would allow it.
    """
    checked = []
    for task in tasks:
        servers: dict[str, Any] = {}
        for name, entry in task.mcp_config.items():
            where = f"task {task.id!r}: mcp_config server {name!r}"
            _check_templates(where, entry, settings)
            servers[name] = entry if "url" in entry else _check_stdio(where, entry, settings)
        checked.append(dataclasses.replace(task, mcp_config=servers))
    return checked


def check_env_variable(field: str, name: str | None, settings: ServiceSettings) -> None:
    """Refuse an API-key variable (`api_key_env`) the operator did not allow.

    Raises:
        NotAllowedError: the message names the field and the setting.
    """
    if name is not None and name not in settings.allowed_env and name != settings.default_api_key_env:
        raise NotAllowedError(
            f"{field}: the service's environment variable {name!r} may not be used by requests (setting: "
            f"allowed_env); the operator can allow it with: hud-vf-gym serve --allow-env {name}"
        )


def resolve_request_path(field: str, value: str, settings: ServiceSettings) -> str:
    """A taskset or config value as given, unless it is a path outside the service's working directory.

    Names (`2048`, `org/dataset`) pass through; anything that exists as a file or folder, or looks like a path
    (`.json`, `.jsonl`, `.yaml`, `/`-rooted, `..`), must resolve inside `settings.work_dir`.

    Raises:
        NotAllowedError: the path leaves the working directory (the message names the field and the setting).
    """
    looks_like_path = value.startswith(("/", "~", ".")) or value.endswith((".json", ".jsonl", ".yaml", ".yml"))
    candidate = (settings.work_dir / Path(value).expanduser()).resolve()
    if not looks_like_path and not candidate.exists():
        return value
    root = settings.work_dir.resolve()
    if candidate != root and root not in candidate.parents:
        raise NotAllowedError(
            f"{field}: {value!r} is outside the service's working directory (setting: work_dir, {root}); "
            "put the file there and give its relative path"
        )
    return str(candidate) if candidate.exists() else value


def redact_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A request body safe to store and return: values under secret-looking keys become `***`."""
    redacted: dict[str, Any] = redact(dict(spec))
    return redacted


class SecretFilter:
    """Removes the service's secrets from text: its token, secret-named variables, a request's literal secrets."""

    def __init__(self, settings: ServiceSettings, environ: Mapping[str, str] | None = None) -> None:
        """Collect the secret values once (the service's environment does not change while it runs)."""
        environ = os.environ if environ is None else environ
        values = {value for name, value in environ.items() if _SECRET_NAME.search(name)}
        values.update(environ.get(name, "") for name in settings.allowed_env)
        if settings.token:
            values.add(settings.token)
        self._secrets = frozenset(value for value in values if len(value) >= _MIN_SECRET_CHARS)

    def with_spec(self, spec: Mapping[str, Any]) -> SecretFilter:
        """A filter that also hides the literal secrets of one request (values under secret-looking keys)."""
        extra = _values_under_secret_keys(spec)
        clone = object.__new__(SecretFilter)
        clone._secrets = self._secrets | {value for value in extra if len(value) >= _MIN_SECRET_CHARS}
        return clone

    def __call__(self, text: str) -> str:
        """`text` with every known secret replaced by `***`."""
        return redact_text(text, self._secrets) if self._secrets else text


def _values_under_secret_keys(value: Any) -> set[str]:
    """Strings that `redact` would hide in `value`, and their last word (the token of `Bearer <token>`)."""
    found: set[str] = set()
    original, redacted = value, redact(value)
    _collect_differences(original, redacted, found)
    return found | {word for item in found for word in item.split()[-1:]}


def _collect_differences(original: Any, redacted: Any, found: set[str]) -> None:
    if isinstance(original, str) and original != redacted:
        found.add(original)
    elif isinstance(original, Mapping) and isinstance(redacted, Mapping):
        for key, item in original.items():
            _collect_differences(item, redacted.get(key), found)
    elif isinstance(original, list | tuple) and isinstance(redacted, list | tuple):
        for item, redacted_item in zip(original, redacted, strict=False):
            _collect_differences(item, redacted_item, found)
