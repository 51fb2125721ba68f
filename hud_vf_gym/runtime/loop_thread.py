"""A private asyncio event loop in a daemon thread, for synchronous callers of the async MCP runtime.

The Gymnasium env and the TRL rollout are called synchronously (from plain code, or from inside a running asyncio
program where `asyncio.run` would fail), while sessions, the pool and the harness are async. Each owns one
`EventLoopThread`: it submits a coroutine, blocks until the loop thread answers or a bound passes, and closes the
loop when done. Sessions must be closed on the loop that opened them, which is why one loop serves an owner's life.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from hud_vf_gym.errors import ServerTimeoutError

__all__ = ["EventLoopThread"]

DEFAULT_JOIN_TIMEOUT_S = 5.0  # how long close() waits for the thread once its loop has stopped

_T = TypeVar("_T")


class EventLoopThread:
    """An asyncio loop running in its own daemon thread; `run` submits a coroutine and waits for it (bounded).

    Args:
        name: the thread's name (shown by py-spy and in thread dumps).
        join_timeout_s: how long `close` waits for the thread to finish cancelling and closing.
    """

    def __init__(self, *, name: str, join_timeout_s: float = DEFAULT_JOIN_TIMEOUT_S) -> None:
        """Start the thread and its loop."""
        self._loop = asyncio.new_event_loop()
        self._join_timeout_s = join_timeout_s
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T], *, what: str, timeout_s: float) -> _T:
        """Run `coroutine` on the loop and return its result, waiting at most `timeout_s` seconds.

        Args:
            coroutine: the work to run on the loop.
            what: names the work in the timeout message ("closing the MCP session").
            timeout_s: the backstop; the MCP timeouts inside the work should fire first.

        Raises:
            ServerTimeoutError: the coroutine was still running after `timeout_s` (it is cancelled).
        """
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            concurrent.futures.wait([future], timeout=timeout_s)
        finally:
            if not future.done():  # timed out, or the caller was interrupted: don't leave it running
                future.cancel()
        if future.cancelled():
            raise ServerTimeoutError(
                f"{what} did not finish within {timeout_s:g} s although every MCP call inside it is bounded (the "
                "config's `timeouts` section should have fired first)"
            )
        return future.result()

    def close(self) -> None:
        """Stop the loop (cancelling whatever is left on it), wait for the thread and close the loop; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(self._join_timeout_s)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            try:
                _cancel_remaining_tasks(self._loop)
                self._loop.run_until_complete(self._loop.shutdown_asyncgens())
                self._loop.run_until_complete(self._loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                self._loop.close()


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task still on the loop and let each finish its cleanup (as `asyncio.run` does)."""
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
