"""Remember the signatures of the hooks verifiers calls by keyword.

verifiers passes only the keyword arguments a stop condition, cleanup handler or reward function accepts, and finds
out which by calling `inspect.signature` on every call: five stop conditions are checked before every turn, about
120 us per check on this machine. `inspect.signature` returns a function's `__signature__` when it has one, so
storing the signature it would compute makes each later lookup an attribute read (a bound method still strips
`self`, about 30 us for all five).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any


def cache_signatures(hooks: Iterable[Callable[..., Any]]) -> None:
    """Store each hook's signature on its function, as `__signature__`, where it has none yet."""
    for hook in hooks:
        function: Any = getattr(hook, "__func__", hook)  # a bound method takes no attributes; its function does
        if getattr(function, "__signature__", None) is not None:
            continue
        try:
            function.__signature__ = inspect.signature(function)
        except (TypeError, ValueError, AttributeError):  # no signature, or an object that takes no attributes
            continue
