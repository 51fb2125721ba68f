"""Progress of `hud-vf-gym eval` per model turn, not only per finished rollout.

A rollout of a small local model can take minutes, and the rollouts of a run tend to finish together, so a bar
that moves only when a rollout finishes shows `0/5` for most of the run. `TurnProgress` counts every model reply
as it arrives (any endpoint: the usage of each chat completion) and shows, on the rollouts bar:

    rollouts:  40%|████      | 2/5 [01:02<01:33, turns=23, tok/s=41.7, mean_reward=0.210]

`turns` counts model replies, `tok/s` is completion tokens per second of wall time since the first request.
`CountingClient` is the verifiers chat client that reports each reply to it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import verifiers as vf

__all__ = ["CountingClient", "TurnProgress"]


class TurnProgress:
    """Turns, completion tokens and rewards of a run so far, shown as the postfix of a tqdm bar.

    Args:
        bar: a tqdm bar counting rollouts (anything with `set_postfix(ordered_dict=None, refresh=True, **kw)`).
        clock: seconds, for tokens per second.
    """

    def __init__(self, bar: Any, *, clock: Callable[[], float] = time.perf_counter) -> None:
        """Start counting; the rate counts from the first request."""
        self.bar = bar
        self.clock = clock
        self.turns = 0
        self.completion_tokens = 0
        self.rewards: list[float] = []
        self._started: float | None = None

    def request_started(self) -> None:
        """A model request went out (the first one starts the clock)."""
        if self._started is None:
            self._started = self.clock()

    def turn_done(self, completion_tokens: int) -> None:
        """A model reply arrived with this many completion tokens."""
        self.turns += 1
        self.completion_tokens += max(0, completion_tokens)
        self._show()

    def rollout_done(self, reward: float) -> None:
        """A rollout finished with this reward (the bar's own count is advanced by the caller)."""
        self.rewards.append(reward)
        self._show()

    @property
    def tokens_per_second(self) -> float:
        """Completion tokens per second since the first request (0 before any reply)."""
        if self._started is None:
            return 0.0
        elapsed = self.clock() - self._started
        return self.completion_tokens / elapsed if elapsed > 0 else 0.0

    def postfix(self) -> dict[str, str]:
        """What the bar shows after its counts."""
        shown = {"turns": str(self.turns), "tok/s": f"{self.tokens_per_second:.1f}"}
        if self.rewards:
            shown["mean_reward"] = f"{sum(self.rewards) / len(self.rewards):.3f}"
        return shown

    def _show(self) -> None:
        self.bar.set_postfix(self.postfix())


class CountingClient(vf.OpenAIChatCompletionsClient):  # type: ignore[misc]  # verifiers ships no type information
    """verifiers' OpenAI chat client that reports each reply's completion tokens to a `TurnProgress`."""

    def __init__(self, client: Any, progress: TurnProgress) -> None:
        """Wrap an `AsyncOpenAI` client."""
        super().__init__(client)
        self.progress = progress

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        """Ask the model as the plain client does, then count the reply."""
        self.progress.request_started()
        response = await super().get_response(*args, **kwargs)
        usage = getattr(response, "usage", None)
        self.progress.turn_done(int(getattr(usage, "completion_tokens", 0) or 0))
        return response
