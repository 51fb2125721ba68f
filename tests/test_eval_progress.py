"""`hud-vf-gym eval`'s per-turn progress: turns and tokens per second as replies arrive, on the rollouts bar."""

from __future__ import annotations

from typing import Any

from hud_vf_gym.cli.eval.progress import TurnProgress


class RecordingBar:
    """Keeps what a tqdm bar would show (the postfix), in order."""

    def __init__(self) -> None:
        self.shown: list[dict[str, Any]] = []

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        self.shown.append(dict(ordered_dict or {}, **kwargs))


def test_turns_and_tokens_per_second_are_shown_as_replies_arrive() -> None:
    now = [100.0]
    bar = RecordingBar()
    progress = TurnProgress(bar, clock=lambda: now[0])
    assert progress.tokens_per_second == 0.0  # nothing asked yet
    progress.request_started()
    now[0] = 102.0
    progress.turn_done(30)
    progress.request_started()  # a later request does not restart the clock
    now[0] = 104.0
    progress.turn_done(50)
    progress.rollout_done(0.5)
    progress.rollout_done(0.0)
    assert bar.shown[0] == {"turns": "1", "tok/s": "15.0"}
    assert bar.shown[1] == {"turns": "2", "tok/s": "20.0"}
    assert bar.shown[-1] == {"turns": "2", "tok/s": "20.0", "mean_reward": "0.250"}
