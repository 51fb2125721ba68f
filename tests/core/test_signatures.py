"""Tests for cache_signatures: the signatures verifiers reads stay the same, only the lookup gets cheaper."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest
from verifiers.legacy.utils.async_utils import maybe_call_with_named_args

from hud_vf_gym import load_environment
from hud_vf_gym.core.signatures import cache_signatures


class Hooks:
    async def stop_when(self, state: dict[str, Any]) -> bool:
        return bool(state.get("done"))

    def cleanup(self, state: dict[str, Any], *, env: object = None) -> None:
        state["cleaned_by"] = env


def plain(state: dict[str, Any], task: str = "") -> str:
    return f"{task}:{len(state)}"


def decorated(function: Any) -> Any:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return wrapper


def test_the_cached_signature_is_the_one_inspect_computed() -> None:
    hooks = Hooks()
    wrapped = decorated(plain)
    callables = [hooks.stop_when, hooks.cleanup, plain, wrapped]
    before = [inspect.signature(hook) for hook in callables]
    cache_signatures(callables)
    assert [inspect.signature(hook) for hook in callables] == before
    # stored on the functions: a bound method's `self` is still stripped per instance
    assert "__signature__" in vars(Hooks.stop_when)
    assert list(inspect.signature(Hooks().stop_when).parameters) == ["state"]
    assert list(inspect.signature(wrapped).parameters) == ["state", "task"]


def test_builtins_are_skipped_and_partials_cached() -> None:
    partial = functools.partial(plain, task="t")
    before = inspect.signature(partial)
    cache_signatures([len, partial])  # a builtin takes no attributes: skipped, no error
    assert not hasattr(len, "__signature__")
    assert vars(partial)["__signature__"] == before


@pytest.mark.anyio
async def test_verifiers_still_passes_only_the_accepted_keywords() -> None:
    hooks = Hooks()
    cache_signatures([hooks.stop_when, hooks.cleanup, plain])
    state: dict[str, Any] = {"done": True}
    assert await maybe_call_with_named_args(hooks.stop_when, state=state, env="E", task="T") is True
    await maybe_call_with_named_args(hooks.cleanup, state=state, env="E", task="T")
    assert state["cleaned_by"] == "E"
    assert await maybe_call_with_named_args(plain, state=state, env="E", task="T") == "T:2"


def test_hudgym_caches_every_hook_verifiers_inspects() -> None:
    env = load_environment(num_tasks=1)
    hooks = [*env._stop_conditions, *env._cleanup_handlers, *env.rubric.funcs, *env.rubric._cleanup_handlers]
    assert hooks
    for hook in hooks:
        function = getattr(hook, "__func__", hook)
        assert isinstance(vars(function).get("__signature__"), inspect.Signature), hook
