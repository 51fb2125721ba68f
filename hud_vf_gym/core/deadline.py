"""`timeouts.rollout_s` as one deadline that every server wait of an episode shares: setup, turns, evaluate, close.

Each call still has its own timeout (`timeouts.tool_call_s`); the deadline cuts whichever wait it falls in, so a
blocked server can no longer stretch a rollout by a call timeout per phase. Closing gets what is left of the deadline
for the polite shutdown (at most the session's own `CLOSE_TIMEOUT_S`) plus a small fixed grace in which the
process group is killed (`FORCED_CLOSE_TIMEOUT_S`): a rollout ends within `rollout_s` + that grace.

Where the time ran out decides what the rollout is:

- during a wait on the server (a tool call, setup, evaluate): `RolloutTimeoutError`, an infrastructure error;
- while the model was generating (no server wait in progress): a truncation, its reason in the record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hud_vf_gym.errors import RolloutTimeoutError
from hud_vf_gym.runtime.connection import CLOSE_TIMEOUT_S

__all__ = ["RolloutDeadline"]


class RolloutDeadline:
    """The deadline of one episode, started when its session starts opening.

    Args:
        rollout_s: the whole episode's budget in seconds (`timeouts.rollout_s`).
        task_id: named in the errors.
    """

    def __init__(self, rollout_s: float, task_id: str) -> None:
        """Start the clock now (on the running event loop's clock)."""
        self.rollout_s = rollout_s
        self.task_id = task_id
        self._at = asyncio.get_running_loop().time() + rollout_s
        self.waiting_on: str | None = None
        """The server wait in progress (`the call to tool 'x'`), or None while the model has the turn."""
        self.cut_during: str | None = None
        """The server wait the rollout was cut in (by this deadline or by the caller's own timeout)."""

    def remaining_s(self) -> float:
        """Seconds left (negative once past)."""
        return self._at - asyncio.get_running_loop().time()

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.remaining_s() <= 0

    def close_timeout_s(self) -> float:
        """How long closing may wait politely: what is left of the deadline, at most `CLOSE_TIMEOUT_S`."""
        return min(CLOSE_TIMEOUT_S, max(0.0, self.remaining_s()))

    def error(self, operation: str) -> RolloutTimeoutError:
        """The infrastructure error of a rollout cut during `operation`."""
        return RolloutTimeoutError(
            f"task {self.task_id!r}: the rollout ran past timeouts.rollout_s ({self.rollout_s:g} s) while waiting "
            f"for {operation}; raise timeouts.rollout_s if the task legitimately needs longer"
        )

    def truncation(self) -> str:
        """The record's reason for a rollout whose time ran out while the model was generating."""
        return f"timeouts.rollout_s ({self.rollout_s:g} s) ran out while the model was generating"

    @asynccontextmanager
    async def bound(self, operation: str) -> AsyncIterator[None]:
        """Run a server wait within the deadline; a cut (here or by the caller) is remembered as `cut_during`.

        Raises:
            RolloutTimeoutError: the deadline passed before or during the wait.
        """
        if self.expired:
            self.cut_during = operation
            raise self.error(operation)
        self.waiting_on = operation
        timeout = asyncio.timeout_at(self._at)
        try:
            async with timeout:
                yield
        except TimeoutError:
            if not timeout.expired():  # not this deadline's (the session's own call timeouts raise our errors)
                raise
            self.cut_during = operation
            raise self.error(operation) from None
        except asyncio.CancelledError:  # the caller's own timeout (verifiers' timeout_seconds) cut the wait
            self.cut_during = operation
            raise
        finally:
            self.waiting_on = None
