"""`ARTTrainingAgent`: one HUD task episode, played through the project's `Harness`, as an `art.Trajectory`.

The episode runs exactly as in `HUDGym`, `hud-vf-gym eval` and the TRL rollout, in order:

1. `episode.start()` opens the task's MCP session (or takes a warm one from the pool), checks the action mappings
   and runs setup; the first messages are `initial_messages` (config system prompt plus the task's, the task prompt
   plus the setup output), as the trainer builds them, with any setup screenshots as image parts;
2. each turn: the model answers through any OpenAI-compatible client (ART's `model.openai_client()`, the embedded
   model's endpoint, an API); the returned `Choice` is kept as it came (with logprobs when the server sent them);
   `episode.record_turn` parses it once and `episode.act` maps, executes and observes it;
3. the episode ends on done(), or after `max_turns` turns (the last one recorded but not acted on, as in HUDGym);
4. `episode.evaluate()` grades it; the session is always closed (or handed back to the pool).

The trajectory's `reward` is the rubric's weighted total (or `reward_fn`'s value, with the rubric's total kept in
`metrics["hud_reward"]`); `metrics` holds every rubric component, turn and error counts; `metadata` the task id,
the taskset and the rollout index. An infrastructure failure (an MCP server that failed, a model endpoint that
failed) is raised, never scored: `rollout_group` turns it into one of the group's `exceptions`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hud_vf_gym.config import EnvConfig
from hud_vf_gym.core.chat import user_message
from hud_vf_gym.core.harness import Harness, Observation, TaskEpisode
from hud_vf_gym.core.record import EpisodeRecord, TurnOutcome
from hud_vf_gym.core.rubric import score_episode
from hud_vf_gym.errors import InferenceError, MCPServerError, ServerConnectionError
from hud_vf_gym.integrations.art._art import require_art
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.training.rewards import TOTAL_KEY
from hud_vf_gym.training.rollout import initial_messages

__all__ = ["INFRA_ERRORS", "ARTTrainingAgent", "RewardFn", "Sampling", "user_message"]

logger = logging.getLogger(__name__)

INFRA_ERRORS: tuple[type[BaseException], ...] = (MCPServerError, InferenceError)
"""The failures that keep a rollout out of training (a group exception), instead of scoring it."""

RewardFn = Callable[[Any, EpisodeRecord], float]
"""A custom reward: `(trajectory, episode record) -> reward`; the rubric's total stays in `metrics["hud_reward"]`."""

_OUTCOME_METRICS = {
    "executed_turns": TurnOutcome.EXECUTED,
    "parse_errors": TurnOutcome.PARSE_ERROR,
    "action_errors": TurnOutcome.ACTION_ERROR,
    "tool_errors": TurnOutcome.TOOL_ERROR,
}


@dataclass(frozen=True, slots=True)
class Sampling:
    """The sampling fields sent with every chat request.

    Attributes:
        temperature: sampling temperature; RL wants the policy's own samples, so 1.0 by default.
        max_tokens: most tokens per turn.
        logprobs: ask the server for token logprobs (ART trains only on choices that carry them).
        seed: a sampling seed; rollout `i` of a group sends `seed + i`, so the rollouts differ. None: no seed.
    """

    temperature: float = 1.0
    max_tokens: int = 256
    logprobs: bool = False
    seed: int | None = None

    def request_fields(self, rollout_index: int) -> dict[str, Any]:
        """The keyword arguments for `chat.completions.create` in rollout `rollout_index`."""
        fields: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.logprobs:
            fields["logprobs"] = True
        if self.seed is not None:
            fields["seed"] = self.seed + rollout_index
        return fields


class ARTTrainingAgent:
    """Plays HUD tasks through the project's harness with an OpenAI-compatible client, returning ART trajectories.

    Args:
        config: the environment config (prompt, actions, rubric weights, max_turns, timeouts, session reuse).
        client: an `openai.AsyncOpenAI` (or ART's wrapper of one, `model.openai_client()`).
        model: the model name to request, or a function returning it (ART's name changes with each checkpoint).
        harness: the harness to play through; by default one of the agent's own (closed by `aclose`).
        sampling: temperature, tokens per turn, logprobs, seed.
        taskset: the taskset's name, written into every trajectory's metadata.
        few_shot: example messages between the system prompt and the task, as `HUDGym(few_shot=...)` places them.
        reward_fn: a custom reward replacing the rubric's total (which stays in `metrics["hud_reward"]`).
        max_concurrent_sessions: how many MCP sessions may be open at once (for the agent's own harness).
    """

    def __init__(
        self,
        config: EnvConfig,
        client: Any,
        model: str | Callable[[], str],
        *,
        harness: Harness | None = None,
        sampling: Sampling | None = None,
        taskset: str = "",
        few_shot: Sequence[Mapping[str, str]] = (),
        reward_fn: RewardFn | None = None,
        max_concurrent_sessions: int | None = None,
    ) -> None:
        """Declare the agent; no server is started and nothing is requested here."""
        self.config = config
        self.client = client
        self._model = model
        self._owns_harness = harness is None
        self.harness = harness or Harness(config, max_concurrent_sessions=max_concurrent_sessions)
        self.sampling = sampling or Sampling()
        self.taskset = taskset
        self.few_shot = tuple(few_shot)
        self.reward_fn = reward_fn

    @classmethod
    def for_model(cls, model: Any, config: EnvConfig, **kwargs: Any) -> ARTTrainingAgent:
        """An agent sampling from a registered ART model (`model.openai_client()`, its current checkpoint's name)."""
        return cls(config, model.openai_client(), model.get_inference_name, **kwargs)

    @property
    def model_name(self) -> str:
        """The model name the next request sends."""
        return self._model() if callable(self._model) else self._model

    async def run_with_trajectory(self, task: Task, rollout_index: int = 0) -> Any:
        """Play one episode of `task` and return it as an `art.Trajectory` (see the module docstring).

        Raises:
            MCPServerError: the task's server failed (did not start, died, timed out, setup failed).
            InferenceError: the model endpoint failed (unreachable, timed out, an error status, no choice).
            ConfigError: the config does not fit the server's tools (every rollout would fail the same way).
        """
        art = require_art()
        started = time.perf_counter()
        episode = self.harness.episode(task)
        try:
            setup = await episode.start()
            history: list[Any] = _first_messages(self.config, task, setup, self.few_shot)
            stop_reason = await self._play(episode, history, rollout_index)
            if await episode.evaluate() is None:
                raise ServerConnectionError(f"task {task.id!r}: the server was gone before its evaluate call")
        finally:
            await episode.close()
        record = episode.record
        trajectory = art.Trajectory(
            messages_and_choices=history,
            reward=0.0,
            metrics=self._metrics(record, episode, time.perf_counter() - started),
            metadata={
                "task_id": task.id,
                "taskset": self.taskset,
                "rollout_index": rollout_index,
                "stop_reason": stop_reason,
                "model": self.model_name,
            },
        )
        trajectory.reward = float(trajectory.metrics[TOTAL_KEY])
        if self.reward_fn is not None:
            trajectory.reward = float(self.reward_fn(trajectory, record))
        if record.grade is not None and record.grade.content:
            trajectory.log(f"grade: {record.grade.content}")
        return trajectory

    async def rollout_group(self, task: Task, rollouts: int) -> Any:
        """`rollouts` episodes of `task` at once, as one `art.TrajectoryGroup` (one GRPO group).

        A rollout that failed for infrastructure reasons becomes one of the group's `exceptions` (kept out of
        training); any other error (a config that does not fit, a bug) is raised once every rollout has ended.
        """
        art = require_art()
        results = await asyncio.gather(
            *(self.run_with_trajectory(task, index) for index in range(rollouts)), return_exceptions=True
        )
        trajectories, failures = [], []
        for result in results:
            if isinstance(result, INFRA_ERRORS):
                logger.warning(
                    "rollout of task %r left out of training: %s: %s", task.id, type(result).__name__, result
                )
                failures.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                trajectories.append(result)
        return await art.trajectory_group(
            trajectories,
            exceptions=failures,
            metadata={"task_id": task.id, "taskset": self.taskset},
            metrics={"infra_errors": len(failures)},
        )

    async def aclose(self) -> None:
        """Close every session the agent's own harness still holds (warm pool included)."""
        if self._owns_harness:
            await self.harness.close_all()

    async def __aenter__(self) -> ARTTrainingAgent:
        """Use the agent as an async context manager that closes its sessions."""
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Close the agent's sessions."""
        await self.aclose()

    # -- the turn loop ---------------------------------------------------------------------------------------------

    async def _play(self, episode: TaskEpisode, history: list[Any], rollout_index: int) -> str:
        """Run model turns until done() or max_turns; append each Choice and observation to `history`."""
        while True:
            choice = await self._sample(history, rollout_index)
            history.append(choice)
            turn = episode.record_turn(choice.message.content or "")
            if len(episode.record.turns) >= self.config.max_turns:
                return "max_turns"  # as in HUDGym: the last turn is recorded, not acted on
            history.append(user_message(await episode.act(turn)))
            if episode.is_done:
                return "done"

    async def _sample(self, history: Sequence[Any], rollout_index: int) -> Any:
        """One chat completion for the conversation so far; its first Choice, as the server returned it."""
        import openai

        messages = [_as_message(item) for item in history]
        try:
            response = await self.client.chat.completions.create(
                model=self.model_name, messages=messages, **self.sampling.request_fields(rollout_index)
            )
        except openai.APIError as exc:  # the endpoint boundary: a failed request is infrastructure, not the model
            raise InferenceError(f"the model endpoint failed: {type(exc).__name__}: {exc}") from exc
        if not response.choices:
            raise InferenceError(f"the model endpoint answered without a choice (response id {response.id!r})")
        return response.choices[0]

    def _metrics(self, record: EpisodeRecord, episode: TaskEpisode, seconds: float) -> dict[str, float | int | bool]:
        score = score_episode(record, self.config)
        metrics: dict[str, float | int | bool] = dict(score.components)
        metrics[TOTAL_KEY] = score.reward
        metrics["turns"] = len(record.turns)
        for name, outcome in _OUTCOME_METRICS.items():
            metrics[name] = record.count(outcome)
        metrics["done"] = episode.is_done
        if record.grade is not None:
            metrics["grade_reward"] = record.grade.reward
            metrics["evaluate_error"] = record.grade.is_error
        metrics["env_seconds"] = record.setup_seconds + record.env_seconds + record.evaluate_seconds
        metrics["episode_seconds"] = seconds
        return metrics


def _first_messages(
    config: EnvConfig, task: Task, setup: Observation, few_shot: Sequence[Mapping[str, str]]
) -> list[Any]:
    """The trainer's first messages (`initial_messages`), with the setup's screenshots in the task's message."""
    messages: list[Any] = initial_messages(config, task, setup, few_shot)
    if setup.images:
        messages[-1] = user_message(Observation(messages[-1]["content"], setup.images))
    return messages


def _as_message(item: Any) -> Any:
    """A history item as a request message: a kept `Choice` becomes the assistant message it holds."""
    message = getattr(item, "message", None)
    if message is None:
        return item
    return {"role": "assistant", "content": message.content or ""}
