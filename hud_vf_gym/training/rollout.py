"""TRL's `rollout_func` for HUD tasks: multi-turn episodes through the same `Harness` as evaluation.

`GRPOTrainer(rollout_func=HUDRollout(config, tasks, turn_tokens=64), ...)` calls the rollout once per generation
round with this process's prompts, already repeated `num_generations` times. For each prompt the rollout, in
order:

1. finds the task (the dataset from `training_dataset` puts its id in the prompt message), opens a `TaskEpisode`
   and runs its setup (`episode.start()`), concurrently for every row;
2. templates the first messages exactly as `HUDGym` builds them (config system prompt plus the task's, task
   prompt plus setup output) into the prompt ids;
3. turn by turn, for every row still running at once: generates the model's turn from the token ids so far,
   records it (`episode.record_turn`, the one parse), acts on it (`episode.act`) and appends the observation's
   tokens, masked (see `hud_vf_gym.training.sequence` for the exact rule);
4. grades every episode (`episode.evaluate()`), closes every session, and computes the rubric's components with
   the rubric's functions.

An episode ends when the model calls done(), after `max_turns` turns (the last one is recorded but not acted on,
as in `HUDGym`), or when the next turn or observation would not fit in `max_completion_length` tokens. A rollout
that fails is kept out of training: its completion is a single masked EOS and every reward is None (see
`hud_vf_gym.training.rewards`). That is a rollout whose MCP server fails (`MCPServerError`: it did not start, died,
timed out, or its setup failed), whose row cannot run as written (`TaskDefinitionError`: a tool or hub function its
server lacks), or whose evaluation failed (`EvaluationError`, unless `rubric.score_failed_evaluations`). When every
rollout of a call failed there is nothing to train on (TRL's loss would be 0/0), so the call raises instead
(`MCPServerError` when all were infrastructure failures). Any other exception (a config that does not fit the
server, a bug) stops training with its message.

TRL calls the rollout synchronously; the episodes' async work runs on an event loop the rollout owns, in a
thread of its own, so it works whether or not the caller runs a loop. Call `close()` when training ends.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from hud_vf_gym.config import EnvConfig
from hud_vf_gym.core.harness import Harness, Observation, TaskEpisode
from hud_vf_gym.core.record import EpisodeRecord
from hud_vf_gym.core.rubric import score_episode
from hud_vf_gym.errors import ConfigError, EvaluationError, HUDGymError, MCPServerError, TaskDefinitionError, TaskError
from hud_vf_gym.runtime.loop_thread import EventLoopThread
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.training.generation import Generator, select_generator
from hud_vf_gym.training.rewards import COMPONENT_NAMES, EVALUATION_ERROR_KEY, INFRA_KEY, TASK_ERROR_KEY, TOTAL_KEY
from hud_vf_gym.training.sequence import ChatFormat, TokenLimits

if TYPE_CHECKING:
    import datasets

__all__ = ["EpisodeResult", "HUDRollout", "initial_messages", "training_dataset"]

logger = logging.getLogger(__name__)

TASK_ID_KEY = "task_id"  # the prompt message key (and dataset column) that names the row's task
LOOP_STOP_TIMEOUT_S = 10.0  # joining the rollout's loop thread at close; it only has to finish closing sessions
_T = TypeVar("_T")


def training_dataset(tasks: Sequence[Task]) -> datasets.Dataset:
    """The GRPO dataset: one row per task, `prompt` = [{"role": "user", "content": prompt, "task_id": id}].

    The prompt message carries the task id because TRL passes the rollout only the prompts; the rollout builds the
    real first messages (system prompt, setup output) itself.

    Raises:
        TaskError: there are no tasks, or two tasks share an id (the rollout could not tell them apart).
    """
    import datasets

    if not tasks:
        raise TaskError("training needs at least one task; the taskset is empty")
    counts = collections.Counter(task.id for task in tasks)
    duplicates = sorted(task_id for task_id, count in counts.items() if count > 1)
    if duplicates:
        raise TaskError(f"task ids must be unique for training; repeated: {', '.join(duplicates)}")
    return datasets.Dataset.from_dict(
        {
            "prompt": [[{"role": "user", "content": task.prompt, TASK_ID_KEY: task.id}] for task in tasks],
            TASK_ID_KEY: [task.id for task in tasks],
        }
    )


def initial_messages(
    config: EnvConfig, task: Task, setup: Observation | None, few_shot: Sequence[Mapping[str, str]] = ()
) -> list[dict[str, str]]:
    """The episode's first messages, as `HUDGym.setup_state` builds them (images left out: text models only).

    Args:
        config: gives the system prompt (the task's own system prompt is appended to it).
        task: gives the prompt; the setup output follows it in the same user message.
        setup: the setup output (None when setup failed).
        few_shot: example messages between the system prompt and the task, as `HUDGym(few_shot=...)` places them.
    """
    system = config.system_prompt if not task.system_prompt else f"{config.system_prompt}\n\n{task.system_prompt}"
    setup_text = setup.text if setup is not None else ""
    user = "\n\n".join(part for part in (task.prompt, setup_text) if part)
    examples = [{"role": str(message["role"]), "content": str(message["content"])} for message in few_shot]
    return [{"role": "system", "content": system}, *examples, {"role": "user", "content": user}]


@dataclass(frozen=True, slots=True)
class EpisodeResult:
    """One finished rollout, for inspection (`HUDRollout.last_episodes`).

    Attributes:
        task_id: the task played.
        record: the episode record (turns as parsed and executed, grade, infra error).
        prompt_messages: the first messages the prompt ids were templated from.
        observations: the observation texts placed in the completion, in order (each one masked).
        stop_reason: "done", "max_turns", "episode_tokens", "rollout_s" (time ran out while the model generated),
            "infra_error", "task_error" or "evaluation_error".
    """

    task_id: str
    record: EpisodeRecord
    prompt_messages: tuple[Mapping[str, str], ...]
    observations: tuple[str, ...]
    stop_reason: str


@dataclass(slots=True)
class _Row:
    """One rollout in progress: its episode and the token sequence built so far."""

    task: Task
    episode: TaskEpisode
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    logprobs: list[float] | None = field(default_factory=list)
    observations: list[str] = field(default_factory=list)
    stop_reason: str | None = None
    error: HUDGymError | None = None

    @property
    def active(self) -> bool:
        return self.stop_reason is None

    def append(self, token_ids: Sequence[int], *, trained: bool, logprobs: Sequence[float] | None = None) -> None:
        self.completion_ids.extend(token_ids)
        self.env_mask.extend([1 if trained else 0] * len(token_ids))
        if self.logprobs is None:
            return
        if trained and logprobs is None:  # the backend reports no logprobs: the rollout returns none
            self.logprobs = None
        else:  # environment tokens get 0.0, as in TRL's own tool loop
            self.logprobs.extend(logprobs if trained and logprobs is not None else [0.0] * len(token_ids))

    def fail(self, error: MCPServerError | TaskDefinitionError | EvaluationError) -> None:
        """Keep the rollout out of training; the record says why (the harness fills task and evaluation errors)."""
        self.error = error
        if isinstance(error, MCPServerError):
            self.stop_reason = "infra_error"
            self.episode.record.infra_error = f"{type(error).__name__}: {error}"
        else:
            self.stop_reason = "task_error" if isinstance(error, TaskDefinitionError) else "evaluation_error"
        logger.warning("rollout of task %r left out of training: %s: %s", self.task.id, type(error).__name__, error)

    def close_sequence(self, chat: ChatFormat) -> None:
        """End the row on EOS; an infrastructure failure leaves only a masked EOS (nothing to train on)."""
        if self.error is not None:
            self.completion_ids, self.env_mask = [chat.eos_token_id], [0]
            self.logprobs = None if self.logprobs is None else [0.0]
        elif not chat.ends_turn(self.completion_ids):
            self.append([chat.eos_token_id], trained=False)

    def result(self) -> EpisodeResult:
        return EpisodeResult(
            self.task.id, self.episode.record, tuple(self.messages), tuple(self.observations), self.stop_reason or ""
        )


class HUDRollout:
    """TRL `rollout_func` that plays HUD tasks turn by turn through the evaluation `Harness` (see module docs).

    Args:
        config: the environment config (system prompt, actions, rubric weights, max_turns, timeouts).
        tasks: the tasks the training dataset names (`training_dataset(tasks)`).
        turn_tokens: new tokens the model may write per turn; the episode's cap is the trainer's
            `max_completion_length`.
        generator: the generation backend; by default the trainer's model, or its vLLM server when `use_vllm`.
        few_shot: example messages placed between the system prompt and the task (as `HUDGym(few_shot=...)`).
        environ: where `${VAR}` values in `mcp_config` come from (default `os.environ`).
    """

    def __init__(
        self,
        config: EnvConfig,
        tasks: Sequence[Task],
        *,
        turn_tokens: int = 64,
        generator: Generator | None = None,
        few_shot: Sequence[Mapping[str, str]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Declare the harness and the task lookup; no server or thread is started here."""
        self.config = config
        self.harness = Harness(config, environ=environ)  # no session limit: each call opens one per row
        self.tasks = {task.id: task for task in tasks}
        self.turn_tokens = turn_tokens
        self.few_shot = tuple(few_shot)
        self.last_episodes: tuple[EpisodeResult, ...] = ()
        self._generator = generator
        self._chat: ChatFormat | None = None
        self._loop: EventLoopThread | None = None

    @property
    def generator(self) -> Generator | None:
        """The generation backend (None until the first call picks the trainer's, unless one was given)."""
        return self._generator

    @generator.setter
    def generator(self, generator: Generator) -> None:
        self._generator = generator

    # -- the call TRL makes ------------------------------------------------------------------------------------------

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        """Play one episode per prompt (in order) and return TRL's rollout output with the rubric's components."""
        chat = self._chat_format(trainer)
        limits = TokenLimits(self.turn_tokens, int(trainer.args.max_completion_length))
        if self._generator is None:
            self._generator = select_generator(trainer)
        rows = [_Row(task, self.harness.episode(task)) for task in self._tasks_of(prompts)]
        try:
            self._run(self._start_all(rows, chat))
            with self._generator.session():
                while any(row.active for row in rows):
                    acting = self._model_turns([row for row in rows if row.active], self._generator, chat, limits)
                    self._run(self._act_all(acting, chat, limits))
            self._run(self._evaluate_all(rows))
        finally:
            self._run(self._close_all(rows))
        for row in rows:
            row.close_sequence(chat)
        self.last_episodes = tuple(row.result() for row in rows)
        _check_something_trains(rows)
        return self._outputs(rows)

    def close(self) -> None:
        """Close any session still open and stop the rollout's event loop; safe to call again."""
        loop, self._loop = self._loop, None
        if loop is not None:
            try:
                loop.run(
                    self.harness.close_all(), what="closing the MCP sessions", timeout_s=self.config.timeouts.rollout_s
                )
            finally:
                loop.close()

    def __enter__(self) -> HUDRollout:
        """Use the rollout as a context manager that closes it."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close the rollout."""
        self.close()

    # -- one phase each ------------------------------------------------------------------------------------------------

    async def _start_all(self, rows: Sequence[_Row], chat: ChatFormat) -> None:
        await _gather_all(self._start(row, chat) for row in rows)

    async def _start(self, row: _Row, chat: ChatFormat) -> None:
        setup: Observation | None = None
        try:
            setup = await row.episode.start()
        except (MCPServerError, TaskDefinitionError) as exc:  # the rollout boundary: this row only, not trained on
            row.fail(exc)
        row.messages = initial_messages(self.config, row.task, setup, self.few_shot)
        row.prompt_ids = chat.prompt_ids(row.messages)

    def _model_turns(
        self, rows: Sequence[_Row], generator: Generator, chat: ChatFormat, limits: TokenLimits
    ) -> list[_Row]:
        """Generate one turn for every row with room left, record it, and return the rows to act on."""
        ready: list[tuple[_Row, int]] = []
        for row in rows:
            room = limits.episode_tokens - len(row.completion_ids) - 1  # one token is kept for the closing EOS
            if room < limits.min_turn_tokens:
                row.stop_reason = "episode_tokens"
            else:
                ready.append((row, min(limits.turn_tokens, room)))
        if not ready:
            return []
        contexts = [row.prompt_ids + row.completion_ids for row, _ in ready]
        outputs = generator.generate(contexts, max(cap for _, cap in ready))
        acting = []
        for (row, cap), output in zip(ready, outputs, strict=True):
            tokens = chat.model_turn(output.token_ids, cap)
            logprobs = None if output.logprobs is None else output.logprobs[: len(tokens)]
            row.append(tokens, trained=True, logprobs=logprobs)
            row.episode.record_turn(chat.decode(tokens))
            if len(row.episode.record.turns) >= self.config.max_turns:
                row.stop_reason = "max_turns"  # as in HUDGym: the last turn is recorded, not acted on
            else:
                acting.append(row)
        return acting

    async def _act_all(self, rows: Sequence[_Row], chat: ChatFormat, limits: TokenLimits) -> None:
        await _gather_all(self._act(row, chat, limits) for row in rows)

    async def _act(self, row: _Row, chat: ChatFormat, limits: TokenLimits) -> None:
        try:
            observation = await row.episode.act(row.episode.record.turns[-1])
        except MCPServerError as exc:  # the rollout boundary: an infrastructure failure, kept out of training
            row.fail(exc)
            return
        if row.episode.is_done:
            row.stop_reason = "done"
            return
        if row.episode.is_truncated:  # timeouts.rollout_s ran out while the model generated (record.truncation)
            row.stop_reason = "rollout_s"
            return
        env_ids = chat.environment_ids(observation.text, model_closed_turn=chat.ends_turn(row.completion_ids))
        if len(row.completion_ids) + len(env_ids) + limits.min_turn_tokens + 1 > limits.episode_tokens:
            row.stop_reason = "episode_tokens"
            return
        row.append(env_ids, trained=False)
        row.observations.append(observation.text)

    async def _evaluate_all(self, rows: Sequence[_Row]) -> None:
        await _gather_all(self._evaluate(row) for row in rows if row.error is None)

    async def _evaluate(self, row: _Row) -> None:
        try:
            await row.episode.evaluate()
        except MCPServerError as exc:  # the rollout boundary: an infrastructure failure, kept out of training
            row.fail(exc)
            return
        failure = row.episode.evaluation_failure()
        if failure is not None:  # a crashed evaluator says nothing about the model
            row.fail(failure)

    async def _close_all(self, rows: Sequence[_Row]) -> None:
        # closing is shielded and bounded inside MCPSession.aclose; one failure must not keep the others open
        await asyncio.gather(*(row.episode.close() for row in rows), return_exceptions=True)

    # -- helpers -------------------------------------------------------------------------------------------------------

    def _outputs(self, rows: Sequence[_Row]) -> dict[str, Any]:
        """TRL's keys, then every rubric component, the weighted total and the episode facts (None when failed)."""
        scores = [None if row.error else score_episode(row.episode.record, self.config) for row in rows]
        logprobs = [row.logprobs for row in rows]
        output: dict[str, Any] = {
            "prompt_ids": [row.prompt_ids for row in rows],
            "completion_ids": [row.completion_ids for row in rows],
            "env_mask": [row.env_mask for row in rows],
            "logprobs": None if any(row_logprobs is None for row_logprobs in logprobs) else logprobs,
        }
        for name in COMPONENT_NAMES:
            output[name] = [None if score is None else score.components[name] for score in scores]
        output[TOTAL_KEY] = [None if score is None else score.reward for score in scores]
        output[INFRA_KEY] = [row.episode.record.infra_error for row in rows]
        output[TASK_ERROR_KEY] = [row.episode.record.task_error for row in rows]
        output[EVALUATION_ERROR_KEY] = [
            str(row.error) if isinstance(row.error, EvaluationError) else None for row in rows
        ]
        output[TASK_ID_KEY] = [row.task.id for row in rows]
        output["num_turns"] = [len(row.episode.record.turns) for row in rows]
        output["stop_reason"] = [row.stop_reason for row in rows]
        return output

    def _tasks_of(self, prompts: Sequence[Any]) -> list[Task]:
        tasks = []
        for index, prompt in enumerate(prompts):
            task_id = _task_id_of(prompt)
            if task_id not in self.tasks:
                known = ", ".join(sorted(self.tasks)[:10])
                raise TaskError(
                    f"prompt {index}: names task {task_id!r}, which this rollout was not given; known tasks: {known} "
                    "(build the dataset with training_dataset() from the same tasks)"
                )
            tasks.append(self.tasks[task_id])
        return tasks

    def _chat_format(self, trainer: Any) -> ChatFormat:
        if self._chat is None:
            processing_class = trainer.processing_class
            tokenizer = getattr(processing_class, "tokenizer", processing_class)  # a processor wraps its tokenizer
            self._chat = ChatFormat(
                tokenizer,
                chat_template=getattr(trainer, "chat_template", None),
                chat_template_kwargs=getattr(trainer, "chat_template_kwargs", None),
                stop_token_ids=getattr(trainer, "eos_token_ids", None) or (),
            )
        return self._chat

    def _run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        if self._loop is None:
            self._loop = EventLoopThread(name="hud-vf-gym-rollout", join_timeout_s=LOOP_STOP_TIMEOUT_S)
        return self._loop.run(
            coroutine, what="a rollout phase (timeouts.rollout_s)", timeout_s=self.config.timeouts.rollout_s
        )


def _check_something_trains(rows: Sequence[_Row]) -> None:
    """Refuse a batch in which every rollout failed: with no trained token, TRL's loss would be 0/0 (NaN weights)."""
    first = rows[0].error if rows else None
    if first is None or any(row.error is None for row in rows):
        return
    if all(isinstance(row.error, MCPServerError) for row in rows):
        raise MCPServerError(
            f"all {len(rows)} rollouts of this batch failed for infrastructure reasons, so nothing can be trained "
            f"(TRL would divide by zero trained tokens); the first failure: {rows[0].episode.record.infra_error}. "
            "Check the task's MCP server, then resume from the last checkpoint"
        ) from first
    raise HUDGymError(
        f"all {len(rows)} rollouts of this batch failed, so nothing can be trained (TRL would divide by zero trained "
        f"tokens); the first failure: {type(first).__name__}: {first}. Fix the taskset or the task's evaluator, "
        "then resume from the last checkpoint"
    ) from first


async def _gather_all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run every row's step to its end, then raise the first unexpected error (no session is left half-open)."""
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def _task_id_of(prompt: Any) -> str:
    """The task id a dataset prompt carries: a message's `task_id`, or the prompt itself when it is a string."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Sequence):
        for message in reversed(prompt):
            if isinstance(message, Mapping) and message.get(TASK_ID_KEY):
                return str(message[TASK_ID_KEY])
    raise ConfigError(
        f"a prompt without a task id reached the rollout: {str(prompt)[:120]!r}; build the training dataset with "
        "hud_vf_gym.training.training_dataset(tasks), whose prompt messages carry task_id"
    )
