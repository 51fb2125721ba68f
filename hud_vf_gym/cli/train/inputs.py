"""What `hud-vf-gym train` trains on, found the way seed 001's `hud rl` finds it, and the keys it needs.

In the project folder (`--project`, default the current one):

- environment config: `--config`; else with a hud.lock.yaml `configs/<env>.yaml` (`<env>` as `hud-vf-gym init`
  names it from the lock's image) or the only YAML in `configs/`; without a lock the built-in `2048`;
- tasks: `--dataset`; else the lock's `primary_dataset` (its `local_path`, else its hub `name`); without a lock the
  built-in `2048` tasks;
- keys: the environment, then `.env` (python-dotenv), which never overrides a variable already set.

A missing input becomes a `Missing` naming the file or key and the command that creates it; the interactive
command offers to run that command (`fix`). Keys are needed by the tasks' `mcp_config` templates (`${HUD_API_KEY}`);
`WANDB_API_KEY` and `HF_TOKEN` are optional and forwarded to cloud runs when set. Values are never printed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from hud_vf_gym.errors import HUDGymError

__all__ = [
    "LOCK_FILE",
    "OPTIONAL_KEYS",
    "Choice",
    "EnvFile",
    "Key",
    "Missing",
    "ProjectInputs",
    "find_inputs",
    "find_keys",
    "find_source_root",
    "load_env_file",
    "unset_keys",
]

LOCK_FILE = "hud.lock.yaml"
ENV_FILE = ".env"
BUILTIN = "2048"  # the config and taskset a project without hud.lock.yaml trains on
OPTIONAL_KEYS = {"WANDB_API_KEY": "W&B logging", "HF_TOKEN": "gated or private Hugging Face models and datasets"}
CLONE = "git clone https://github.com/hud-evals/hud_vf_gym && cd hud_vf_gym && pip install -e '.[train]'"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+(:[\w.-]+)?$")


@dataclass(frozen=True, slots=True)
class Choice:
    """One input: the value train/grpo.py gets, how it was found, and the local file or folder it names, if any."""

    value: str
    origin: str
    path: Path | None = None


@dataclass(frozen=True, slots=True)
class Missing:
    """A missing input: one line naming the file or key and the command that creates it; `fix` is what to offer."""

    message: str
    fix: str | None = None  # "init" or "dataset": the interactive command can run it
    target: Path | None = None  # where that command writes


@dataclass(frozen=True, slots=True)
class ProjectInputs:
    """The project's config and tasks (None where missing) and what is missing."""

    project: Path
    lock: Path | None
    config: Choice | None
    dataset: Choice | None
    missing: tuple[Missing, ...] = ()


@dataclass(frozen=True, slots=True)
class Key:
    """An environment variable the run needs or uses: where its value comes from (None: unset)."""

    name: str
    needed_by: str
    required: bool
    source: str | None  # "environment", ".env" or None


@dataclass(frozen=True, slots=True)
class EnvFile:
    """The environment a run sees: the caller's, plus the `.env` values of variables it did not set."""

    environ: Mapping[str, str]
    path: Path | None
    added: frozenset[str]


def find_source_root() -> Path | None:
    """The hud-vf-gym checkout this package runs from (it holds train/grpo.py), or None for an installed wheel."""
    import hud_vf_gym

    root = Path(hud_vf_gym.__file__).resolve().parent.parent
    return root if (root / "train" / "grpo.py").is_file() else None


def load_env_file(project: Path, environ: Mapping[str, str]) -> EnvFile:
    """`environ` plus the project's `.env` values for variables `environ` does not set (it always wins)."""
    path = project / ENV_FILE
    if not path.is_file():
        return EnvFile(dict(environ), None, frozenset())
    from dotenv import dotenv_values

    merged = dict(environ)
    added = set()
    for name, value in dotenv_values(path).items():
        if value is not None and name not in merged:
            merged[name] = value
            added.add(name)
    return EnvFile(merged, path, frozenset(added))


def find_inputs(project: Path, *, config: str | None = None, dataset: str | None = None) -> ProjectInputs:
    """Find the config and tasks as the table in the module docstring says; nothing is created."""
    lock = project / LOCK_FILE
    missing: list[Missing] = []
    config_choice: Choice | None
    dataset_choice: Choice | None
    if not lock.is_file():
        builtin = Choice(BUILTIN, f"built-in; no {LOCK_FILE} in {project}")
        config_choice = _given_config(project, config, missing) if config else builtin
        dataset_choice = _given_dataset(project, dataset) if dataset else builtin
        return ProjectInputs(project, None, config_choice, dataset_choice, tuple(missing))
    lock_data = _read_lock(lock, missing)
    config_choice = _given_config(project, config, missing) if config else _lock_config(project, lock, missing)
    if dataset:
        dataset_choice = _given_dataset(project, dataset)
    else:
        dataset_choice = _lock_dataset(lock, lock_data, missing) if lock_data is not None else None
    return ProjectInputs(project, lock, config_choice, dataset_choice, tuple(missing))


def _read_lock(lock: Path, missing: list[Missing]) -> dict[str, object] | None:
    import yaml

    from hud_vf_gym.cli.dataset.command import check_lock

    try:
        check_lock(lock)  # its messages name the line, never quote it: lock files hold keys
    except HUDGymError as exc:
        missing.append(Missing(str(exc)))
        return None
    data = yaml.safe_load(lock.read_text(encoding="utf-8"))
    return dict(data)


def _given_config(project: Path, config: str, missing: list[Missing]) -> Choice | None:
    from hud_vf_gym.config import resolve_config_path

    for path in (project / config, Path(config).expanduser()):
        if path.is_file():
            return Choice(str(path.resolve()), "--config", path.resolve())
    try:
        resolve_config_path(config)  # a built-in name, or a ConfigError listing them
    except HUDGymError as exc:
        missing.append(Missing(f"--config {config}: {exc}; or write one with `hud-vf-gym init SERVER -o {config}`"))
        return None
    return Choice(config, "--config (built-in)")


def _given_dataset(project: Path, dataset: str) -> Choice:
    path = project / dataset
    if path.exists():
        return Choice(str(path.resolve()), "--dataset", path.resolve())
    return Choice(dataset, "--dataset")


def _lock_config(project: Path, lock: Path, missing: list[Missing]) -> Choice | None:
    from hud_vf_gym.cli.init.command import resolve_server

    try:
        environment = resolve_server(str(project), kind="lock", no_connect=True).environment
    except HUDGymError:
        environment = project.resolve().name  # the lock names no usable image; init would say why
    expected = project / "configs" / f"{environment}.yaml"
    if expected.is_file():
        return Choice(str(expected.resolve()), f"configs/{environment}.yaml (for {LOCK_FILE}'s environment)", expected)
    found = sorted((project / "configs").glob("*.yaml")) if (project / "configs").is_dir() else []
    if len(found) == 1:
        return Choice(str(found[0].resolve()), f"configs/{found[0].name} (the only config in configs/)", found[0])
    held = f"configs/ holds {', '.join(path.name for path in found)}" if found else "configs/ has no config"
    missing.append(
        Missing(
            f"configs/{environment}.yaml: no environment config for {lock} ({held}); create it with "
            f"`hud-vf-gym init {project}` (it reads {LOCK_FILE}), or pass --config PATH",
            fix="init",
            target=expected,
        )
    )
    return None


def _lock_dataset(lock: Path, data: Mapping[str, object], missing: list[Missing]) -> Choice | None:
    record = data.get("primary_dataset")
    create = "`hud-vf-gym dataset TASKS.json --name NAME` (it records primary_dataset in hud.lock.yaml)"
    if not isinstance(record, Mapping) or not isinstance(record.get("name"), str):
        missing.append(
            Missing(f"{lock}: no primary_dataset; create it with {create}, or pass --dataset", fix="dataset")
        )
        return None
    name = str(record["name"])
    local = record.get("local_path")
    if isinstance(local, str):
        path = (lock.parent / local).resolve()
        if path.exists():
            return Choice(str(path), f"{LOCK_FILE} primary_dataset {name!r} ({local})", path)
        missing.append(
            Missing(
                f"{path}: {LOCK_FILE}'s primary_dataset.local_path does not exist; recreate it with "
                f"`hud-vf-gym dataset TASKS.json --name {name}`, or pass --dataset",
                fix="dataset",
            )
        )
        return None
    return Choice(name, f"{LOCK_FILE} primary_dataset (a Hugging Face dataset)")


def find_keys(dataset: Choice, project: Path, env: EnvFile) -> tuple[list[Key], list[Missing]]:
    """The keys the run uses, with their sources, and the tasks' problems (a taskset that cannot be read).

    Required: the variables the tasks' `mcp_config` templates use. Optional: `OPTIONAL_KEYS`.
    Local and built-in tasksets are read (and checked); a hub dataset is not fetched here, so its keys are not known.
    """
    from hud_vf_gym.runtime.variables import template_variables
    from hud_vf_gym.tasks.loading import load_taskset

    problems: list[Missing] = []
    needed: dict[str, str] = {}
    suffix = Path(dataset.value).suffix
    hub = dataset.path is None and _HUB_ID.match(dataset.value) is not None and suffix not in (".json", ".jsonl")
    if not hub:
        try:
            tasks = load_taskset(dataset.value, base_dir=project).tasks
        except HUDGymError as exc:
            create = "create a dataset with `hud-vf-gym dataset TASKS.json --name NAME`, or pass --dataset"
            problems.append(Missing(f"tasks {dataset.value}: {exc}; {create}"))
            tasks = ()
        for task in tasks:
            for name in sorted(template_variables(task.mcp_config)):
                needed.setdefault(name, f"the tasks' mcp_config (task {task.id!r})")
    keys = [Key(name, why, True, _source(name, env)) for name, why in sorted(needed.items())]
    keys += [Key(name, why, False, _source(name, env)) for name, why in OPTIONAL_KEYS.items() if name not in needed]
    return keys, problems


def unset_keys(keys: list[Key], project: Path) -> list[str]:
    """One line per required key that is not set, naming what uses it and where to set it."""
    return [
        f"{key.name}: not set; {key.needed_by} uses ${{{key.name}}}: add {key.name}=... to {project / ENV_FILE} "
        "or export it"
        for key in keys
        if key.required and key.source is None
    ]


def _source(name: str, env: EnvFile) -> str | None:
    if not env.environ.get(name):
        return None
    return ENV_FILE if name in env.added else "environment"
