"""The built-in environments, one row each: server module, tasksets, configs and Gymnasium id.

- `text_2048`: `python -m hud_vf_gym.environments.text_2048`; taskset `2048`; config `2048`; Gym id
  `hud_vf_gym/2048-v0` (taskset 2048, config 2048).
- `browser`: `python -m hud_vf_gym.environments.browser`; tasksets `browser`, `miniwob`; configs `browser-text`,
  `default`; Gym id `hud_vf_gym/Browser-v0` (taskset browser, config browser-text).

Who reads the table:

- `hud_vf_gym.gym.registration` registers every row's Gym id whose row is installed (its module can be imported and
  its tasksets exist), with the row's `gymnasium.make` keyword arguments.
- `hud_vf_gym.tasks.loading` and `hud_vf_gym.config` resolve short taskset and config names: the files shipped with
  the package (`shipped_tasksets_dir()`, `shipped_config_dirs()`), plus the files a row names by path.

A row names its tasksets and configs by short name (a file shipped in `hud_vf_gym/tasksets/` or `configs/`) or by
path (a `Path` to a file anywhere; its name is the file's stem). Paths let an environment that lives outside the
package (a test, a notebook, a plugin) join the table at run time with `register_builtin(...)`, without writing into
the repository.

Adding a built-in environment to the package:

1. the folder `hud_vf_gym/environments/<name>/`: pure logic, a thin MCP `server.py` whose `setup`/`evaluate`
   tools call `hub.Hub`s, and a `__main__.py`, so `python -m hud_vf_gym.environments.<name>` serves it;
2. its row in `BUILTINS` below: name, module, tasksets, configs, Gym id (and make() kwargs if not the first ones);
3. its taskset `hud_vf_gym/tasksets/<taskset>.json`: HUD task rows whose `mcp_config` runs `python -m <module>`;
4. its config `configs/<config>.yaml`;
5. nothing else: loading, configs, Gymnasium and the tests over the table (tests/environments/) pick it up.

Importing this module loads the standard library only: `hud_vf_gym.gym.registration` reads it when gymnasium is
imported, and nothing here may pull verifiers, pydantic or numpy into a built-in server's start.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hud_vf_gym.errors import ConfigError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

__all__ = [
    "BUILTINS",
    "CONFIG_SUFFIXES",
    "TASKSET_SUFFIXES",
    "BuiltinEnvironment",
    "builtin_config_files",
    "builtin_taskset_files",
    "register_builtin",
    "shipped_config_dirs",
    "shipped_tasksets_dir",
    "unregister_builtin",
]

TASKSET_SUFFIXES = (".json", ".jsonl")
CONFIG_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True)
class BuiltinEnvironment:
    """One built-in environment: its server, the tasksets and configs written for it, and its Gymnasium id.

    Attributes:
        name: the environment's name, by convention its folder under `hud_vf_gym/environments/`.
        module: the server module, run as `python -m <module>` by the tasksets' `mcp_config`.
        tasksets: its tasksets: a short name (a file shipped in `hud_vf_gym/tasksets/`) or a `Path` to a .json or
            .jsonl file anywhere, known by its stem.
        configs: its configs, likewise: a short name (a file in `configs/`) or a `Path` to a .yaml file.
        gym_id: the id `gymnasium.make` takes, e.g. "hud_vf_gym/2048-v0"; None registers none.
        gym_kwargs: the keyword arguments `gymnasium.make(gym_id)` passes to the env; None means the first taskset
            and the first config, `{"taskset": ..., "config_path": ...}`.
    """

    name: str
    module: str
    tasksets: tuple[str | Path, ...] = ()
    configs: tuple[str | Path, ...] = ()
    gym_id: str | None = None
    gym_kwargs: Mapping[str, Any] | None = None

    @property
    def taskset_names(self) -> list[str]:
        """The short names its tasksets load by."""
        return [_entry_name(entry) for entry in self.tasksets]

    @property
    def config_names(self) -> list[str]:
        """The short names its configs load by."""
        return [_entry_name(entry) for entry in self.configs]

    def make_kwargs(self) -> dict[str, Any]:
        """The keyword arguments `gymnasium.make(self.gym_id)` passes to the env."""
        if self.gym_kwargs is not None:
            return dict(self.gym_kwargs)
        kwargs = {}
        if self.tasksets:
            kwargs["taskset"] = self.taskset_names[0]
        if self.configs:
            kwargs["config_path"] = self.config_names[0]
        return kwargs

    def is_installed(self) -> bool:
        """Whether its server module can be imported here and every one of its tasksets exists.

        A wheel built without the browser server, or without its taskset, then registers no Browser-v0 that could
        not be made. Optional dependencies (Playwright) are checked when the server starts, not here.
        """
        if not _importable(self.module):
            return False
        shipped = shipped_tasksets_dir()
        for entry in self.tasksets:
            if isinstance(entry, Path):
                if not entry.is_file():
                    return False
            elif not any((shipped / f"{entry}{suffix}").is_file() for suffix in TASKSET_SUFFIXES):
                return False
        return True


def _entry_name(entry: str | Path) -> str:
    return entry.stem if isinstance(entry, Path) else entry


def _importable(module: str) -> bool:
    """Whether `python -m <module>` would find it here (imports only its parent packages, not the module)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


BUILTINS: dict[str, BuiltinEnvironment] = {
    row.name: row
    for row in (
        BuiltinEnvironment(
            name="text_2048",
            module="hud_vf_gym.environments.text_2048",
            tasksets=("2048",),
            configs=("2048",),
            gym_id="hud_vf_gym/2048-v0",
            gym_kwargs={"taskset": "2048", "config_path": "2048"},
        ),
        BuiltinEnvironment(
            name="browser",
            module="hud_vf_gym.environments.browser",
            tasksets=("browser", "miniwob"),
            configs=("browser-text", "default"),  # "default": HUD's computer-use config, with screenshots
            gym_id="hud_vf_gym/Browser-v0",
            # the screen as text: a Gymnasium observation is text (screenshots still reach `info["images"]`)
            gym_kwargs={"taskset": "browser", "config_path": "browser-text"},
        ),
    )
}
"""Every built-in environment by name. Add a shipped environment here; add one kept elsewhere with
`register_builtin`."""


# -- where shipped files live -----------------------------------------------------------------------------------------


def shipped_tasksets_dir() -> Traversable:
    """The folder of the tasksets shipped inside the package, `hud_vf_gym/tasksets/`."""
    return resources.files("hud_vf_gym") / "tasksets"


def shipped_config_dirs() -> list[Path]:
    """The folders of the shipped configs that exist: `hud_vf_gym/_configs` in a wheel, `configs/` in a checkout."""
    packaged = Path(str(resources.files("hud_vf_gym") / "_configs"))  # the wheel force-includes configs/ here
    checkout = Path(__file__).resolve().parents[2] / "configs"  # <repo>/hud_vf_gym/environments/registry.py
    return [path for path in (packaged, checkout) if path.is_dir()]


def builtin_taskset_files() -> dict[str, Path]:
    """The tasksets that rows name by path, by short name (the shipped ones are found in `shipped_tasksets_dir`)."""
    return {entry.stem: entry for row in BUILTINS.values() for entry in row.tasksets if isinstance(entry, Path)}


def builtin_config_files() -> dict[str, Path]:
    """The configs that rows name by path, by short name (the shipped ones are found in `shipped_config_dirs`)."""
    return {entry.stem: entry for row in BUILTINS.values() for entry in row.configs if isinstance(entry, Path)}


# -- rows added at run time -------------------------------------------------------------------------------------------


def register_builtin(environment: BuiltinEnvironment) -> None:
    """Add a row to `BUILTINS`: its tasksets and configs load by short name, and its Gym id can be made.

    The Gym id is registered at once if gymnasium is imported, else when it is. Undo with `unregister_builtin`.

    Raises:
        ConfigError: the name or Gym id is taken, a taskset or config name is already known, a file is missing or
            has the wrong suffix, or the module cannot be imported here.
    """
    problems = _registration_problems(environment)
    if problems:
        details = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"built-in environment {environment.name!r} cannot be registered:\n{details}")
    BUILTINS[environment.name] = environment
    if environment.gym_id is not None and "gymnasium" in sys.modules:
        from hud_vf_gym.gym.registration import register_gym_envs

        register_gym_envs()


def unregister_builtin(name: str) -> BuiltinEnvironment:
    """Remove the row `name` from `BUILTINS`, and its Gym id from gymnasium's registry; return the row.

    Raises:
        KeyError: no row has this name.
    """
    environment = BUILTINS.pop(name)
    gymnasium = sys.modules.get("gymnasium")
    if environment.gym_id is not None and gymnasium is not None:
        gymnasium.registry.pop(environment.gym_id, None)
    return environment


def _registration_problems(environment: BuiltinEnvironment) -> list[str]:
    """Everything wrong with a row that is about to be registered, one line each."""
    problems = []
    if environment.name in BUILTINS:
        problems.append(f"name: {environment.name!r} is taken; unregister_builtin({environment.name!r}) first")
    if not _importable(environment.module):
        problems.append(f"module: {environment.module!r} cannot be imported; put its folder on sys.path")
    taken_ids = {row.gym_id for row in BUILTINS.values()}
    if environment.gym_id is not None and environment.gym_id in taken_ids:
        problems.append(f"gym_id: {environment.gym_id!r} is taken")
    folder = shipped_tasksets_dir()
    shipped_tasksets = {
        Path(entry.name).stem for entry in folder.iterdir() if Path(entry.name).suffix in TASKSET_SUFFIXES
    }
    known_tasksets = shipped_tasksets | {name for row in BUILTINS.values() for name in row.taskset_names}
    known_configs = {path.stem for folder in shipped_config_dirs() for path in folder.glob("*.yaml")}
    known_configs |= {name for row in BUILTINS.values() for name in row.config_names}
    for kind, entries, suffixes, known in [
        ("tasksets", environment.tasksets, TASKSET_SUFFIXES, known_tasksets),
        ("configs", environment.configs, CONFIG_SUFFIXES, known_configs),
    ]:
        for entry in entries:
            problems.extend(_entry_problems(kind, entry, suffixes, known))
    return problems


def _entry_problems(kind: str, entry: str | Path, suffixes: tuple[str, ...], known: set[str]) -> list[str]:
    """What is wrong with one taskset or config entry of a row being registered."""
    if not isinstance(entry, Path):
        return [] if entry in known else [f"{kind}: {entry!r} is not shipped; name a file by Path instead"]
    problems = []
    if entry.stem in known:
        problems.append(f"{kind}: the name {entry.stem!r} ({entry}) is already taken; rename the file")
    if entry.suffix not in suffixes:
        problems.append(f"{kind}: {entry} should end with {' or '.join(suffixes)}")
    if not entry.is_file():
        problems.append(f"{kind}: {entry} does not exist")
    return problems
