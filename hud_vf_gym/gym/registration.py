"""The Gymnasium ids of hud_vf_gym, registered as soon as gymnasium is imported, without importing it ourselves.

- `hud_vf_gym/HUD-v0`: any HUD taskset, `gymnasium.make("hud_vf_gym/HUD-v0", taskset=..., config_path=...)`.
- one id per row of the built-in environments table (`hud_vf_gym.environments.registry.BUILTINS`), with that row's
  `gymnasium.make` keyword arguments: `hud_vf_gym/2048-v0` (taskset "2048", config "2048") and
  `hud_vf_gym/Browser-v0` (taskset "browser", config "browser-text": the screen as text, since a Gymnasium
  observation is text; screenshots stay in `info["images"]` with the "default" config). A row's id is registered
  only when the row is installed (its server module can be imported and its tasksets exist), so every registered id
  can be made (Playwright itself is checked at `reset`). A row added later with `register_builtin` is registered then.

Every id's entry point is the string `"hud_vf_gym.gym.env:HUDTaskEnv"`, so nothing heavy (verifiers, mcp) is imported
before `gymnasium.make`.

Why registration waits for gymnasium: `import gymnasium` costs about 90 ms (numpy, mostly), more than ten times the
whole `import hud_vf_gym`, and every built-in MCP server (`python -m hud_vf_gym.environments.text_2048`) imports this
package's `__init__` when it starts, once per episode. So `register_when_gymnasium_is_imported()`, which the package
`__init__` calls, registers at once if gymnasium is already imported, and otherwise puts a one-shot finder at the
front of `sys.meta_path` that lets gymnasium's own loader run and then registers the ids and removes itself (the
post-import hook pattern of `wrapt.register_post_import_hook`). Either import order works:
`import hud_vf_gym, gymnasium` or `import gymnasium, hud_vf_gym`, then `gymnasium.make("hud_vf_gym/2048-v0")`.

A worker process started with the "spawn" or "forkserver" method (`AsyncVectorEnv(context="spawn")`, and the default
from Python 3.14) has not imported hud_vf_gym: there, name the module in the id, `"hud_vf_gym:hud_vf_gym/2048-v0"`,
which gymnasium imports first, or call `register_gym_envs()`.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["ENTRY_POINT", "HUD_GYM_ID", "gym_env_ids", "register_gym_envs", "register_when_gymnasium_is_imported"]

ENTRY_POINT = "hud_vf_gym.gym.env:HUDTaskEnv"
HUD_GYM_ID = "hud_vf_gym/HUD-v0"  # any taskset: taskset= and config_path= are required arguments of make()


def gym_env_ids() -> dict[str, dict[str, Any]]:
    """Return every id this package registers, with the keyword arguments `gymnasium.make` passes for it."""
    from hud_vf_gym.environments.registry import BUILTINS  # read now: rows may have been added since import

    ids: dict[str, dict[str, Any]] = {HUD_GYM_ID: {}}
    for row in BUILTINS.values():
        if row.gym_id is not None and row.is_installed():
            ids[row.gym_id] = row.make_kwargs()
    return ids


def register_gym_envs() -> None:
    """Register every id with gymnasium (this imports gymnasium); an id that is already registered is kept."""
    import gymnasium

    for env_id, kwargs in gym_env_ids().items():
        if env_id not in gymnasium.registry:  # registering twice would warn "Overriding environment"
            gymnasium.register(id=env_id, entry_point=ENTRY_POINT, kwargs=kwargs)


def register_when_gymnasium_is_imported() -> None:
    """Register the ids now if gymnasium is imported, else right after it is imported; never import it here."""
    if "gymnasium" in sys.modules:
        register_gym_envs()
    elif not any(isinstance(finder, _GymnasiumImportHook) for finder in sys.meta_path):
        sys.meta_path.insert(0, _GymnasiumImportHook())


class _GymnasiumImportHook:
    """A `sys.meta_path` finder that hands out gymnasium's own spec with a loader that registers after executing."""

    def __init__(self) -> None:
        self._finding = False  # set while asking the other finders, so this finder does not answer itself

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Return gymnasium's spec with a registering loader; None for every other module."""
        if fullname != "gymnasium" or self._finding:
            return None
        import importlib.util

        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is None or spec.loader is None:
            return None
        spec.loader = _RegisterAfterLoading(spec.loader, self)  # type: ignore[assignment]  # duck-typed Loader
        return spec


class _RegisterAfterLoading:
    """Gymnasium's own loader, plus registration once gymnasium's `__init__` has run without error."""

    def __init__(self, loader: Any, hook: _GymnasiumImportHook) -> None:
        """Wrap `loader`; `hook` is removed from `sys.meta_path` once gymnasium has loaded."""
        self._loader = loader
        self._hook = hook

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """Let gymnasium's loader create the module."""
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Run gymnasium's `__init__`, hand the module its own loader back, then register and remove the hook."""
        self._loader.exec_module(module)  # if this raises, the hook stays and the next import attempt retries
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        if self._hook in sys.meta_path:
            sys.meta_path.remove(self._hook)
        register_gym_envs()

    def __getattr__(self, name: str) -> Any:
        """Answer everything else (`get_source`, `get_resource_reader`, ...) as gymnasium's loader does."""
        return getattr(self._loader, name)
