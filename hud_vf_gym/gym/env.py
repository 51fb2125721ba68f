"""HUDTaskEnv: any HUD task as a `gymnasium.Env` whose actions are the model's text and whose observations are text.

The environment is a thin shell over the one turn loop (`Harness` and `TaskEpisode` in `core/harness.py`): `reset` opens
the task's MCP session and runs its setup, `step` parses, maps and executes one model message, and the end of an
episode runs the task's evaluate tool(s) and scores the record with the rubric's own functions (`score_episode`).
Nothing here parses model text or speaks MCP itself.

The MCP work is asynchronous; the environment runs it on a private event loop in a background thread that it starts
on the first `reset` and stops in `close()`. So the same object works from plain synchronous code and from inside a
running asyncio program (where `asyncio.run` would fail): each call blocks its caller until the loop thread answers.
"""

from __future__ import annotations

import difflib
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import gymnasium
from gymnasium.error import ResetNeeded

from hud_vf_gym.config import EnvConfig, load_config
from hud_vf_gym.core.harness import Harness, Observation, TaskEpisode
from hud_vf_gym.core.record import EpisodeRecord, TurnOutcome
from hud_vf_gym.core.rubric import score_episode
from hud_vf_gym.errors import ConfigError, MCPServerError, TaskError
from hud_vf_gym.gym.spaces import MAX_TEXT_LENGTH, UnicodeText
from hud_vf_gym.runtime.loop_thread import EventLoopThread
from hud_vf_gym.runtime.session import CLOSE_TIMEOUT_S, FORCED_CLOSE_TIMEOUT_S
from hud_vf_gym.tasks.loading import TaskSet, load_taskset
from hud_vf_gym.tasks.task import Task

if TYPE_CHECKING:
    import datasets

    # everything `HUDTaskEnv(taskset=...)` takes: what `load_taskset` reads, or Task objects
    TasksetSource: TypeAlias = (
        str
        | Path
        | Task
        | TaskSet
        | Sequence[Task]
        | Sequence[Mapping[str, Any]]
        | Mapping[str, Any]
        | datasets.Dataset
    )

__all__ = ["HUDTaskEnv", "UnicodeText"]

RENDER_FPS = 1  # nominal: turns are paced by the model, not a clock, but Gymnasium's checker wants a number
# Added to the MCP timeouts (which fire first) to bound every wait on the loop thread; only a stuck loop reaches it.
LOOP_BACKSTOP_MARGIN_S = 10.0
LOOP_JOIN_TIMEOUT_S = 5.0  # how long close() waits for the loop thread to exit once its loop has stopped
RESET_OPTIONS = ("task_id", "task_index")
_NAMES_SHOWN = 20  # task ids listed in an "unknown task id" message

_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------------------------------------
# The private event loop


class _Runtime:
    """The env's loop thread and the episode whose MCP session is open on it.

    The episode is held here, strongly, because the harness keeps only weak references to open sessions: an episode
    the env let go of would otherwise leave its session (server process, stderr capture file) beyond `close_all`.
    """

    def __init__(self, harness: Harness) -> None:
        """Start the loop thread; no episode is open yet."""
        self.loop = EventLoopThread(name="hud-vf-gym-env-loop", join_timeout_s=LOOP_JOIN_TIMEOUT_S)
        self.harness = harness
        self.open_episode: TaskEpisode | None = None

    def close_episode(self, episode: TaskEpisode) -> None:
        """Close one episode's session (ungraded unless it was evaluated first)."""
        if self.open_episode is episode:
            self.open_episode = None
        self.loop.run(episode.close(), what="closing the MCP session", timeout_s=_close_timeout_s())

    def shut_down(self) -> None:
        """Close the open episode and every other session, then stop the loop thread (also run at exit or on GC)."""
        try:
            if self.open_episode is not None:
                self.close_episode(self.open_episode)
            self.loop.run(self.harness.close_all(), what="closing the MCP sessions", timeout_s=_close_timeout_s())
        finally:
            self.loop.close()


def _close_timeout_s() -> float:
    return CLOSE_TIMEOUT_S + FORCED_CLOSE_TIMEOUT_S + LOOP_BACKSTOP_MARGIN_S


# ---------------------------------------------------------------------------------------------------------------------
# The environment


class HUDTaskEnv(gymnasium.Env[str, str]):
    r"""Any HUD task (an MCP server with setup and evaluate tools) as a Gymnasium environment with text spaces.

    ## Description
    Each episode is one task of the taskset: `reset` starts the task's MCP server(s) (`mcp_config`) and runs its
    setup call(s); each `step` takes one raw model message (`<think>...</think><tool>left()</tool>`), parses it,
    maps the call to an MCP tool call with the config's `action_mappings`, executes it and returns the result as
    text. When the episode ends, the task's evaluate call(s) grade it, the rubric scores it, and the server is shut
    down, so no server stays up between episodes. The turn loop is the one `HUDGym` (verifiers) uses, so a policy
    gets the same observations and, for an episode that ends with `done()`, the same reward in both.

    ## Action Space
    `UnicodeText(1_000_000)`: any string, the model's whole reply. A reply without a valid call is not an error;
    it is a turn whose observation explains the mistake (see Observation Space).

    ## Observation Space
    `UnicodeText(1_000_000)`: any string. After `reset`, the task prompt followed by the setup output (a blank line
    between them), exactly the first user message `HUDGym` sends. After `step`, the tool's text inside
    `<result>...</result>`, or an explanation the model can learn from: no tool call, bad syntax, an unknown action
    or bad arguments, a tool that reported an error. Screenshots are never part of the observation: they are in
    `info["images"]` (a tuple of `ImageData`, base64 with a MIME type; `.data_url()` gives an OpenAI `image_url`).

    The system prompt (the config's `system_prompt`, plus the task's own after a blank line) is
    `info["system_prompt"]` after `reset`; build the model's messages as
    `[{"role": "system", ...}, {"role": "user", "content": obs}, {"role": "assistant", "content": action}, ...]`.

    `UnicodeText` accepts any characters: Gymnasium's `Text` checks each character against a charset (62
    alphanumerics by default), which no real reply or tool output fits.

    Every info has `task_id`, `turn` (steps taken) and `images`; `reset` adds `task_index` and `system_prompt`,
    `step` adds `outcome` ("executed", "tool_error", "parse_error", "action_error", "done", or "not_executed" when
    the server failed first). Step infos hold no timings, so the same seed and actions give equal infos.

    ## Starting State
    The task is `options["task_id"]`, else `options["task_index"]`, else drawn with `self.np_random` (so
    `reset(seed=...)` is reproducible; a single-task env always gets its task). Whatever the task's setup leaves.

    ## Rewards
    0.0 on every step but the last. The last step's reward is the rubric's weighted total (`HUDRubric`'s functions
    and the config's `rubric.weights`: task_completion, tool_execution, format_compliance, screenshot_behavior,
    thinking_quality). That step's info holds `reward_components` (all five), `metrics` (the counts behind them),
    `grade` (the evaluate tool's `Grade`) and `episode_record` (the `EpisodeRecord`: every turn as parsed, mapped
    and executed).

    An infrastructure failure (the server died, timed out or stopped answering: an `MCPServerError`) is not a
    result: the episode ends with `truncated=True`, reward 0.0, an empty observation when the failing call was the
    step's own (`terminated` stays True when `done()` came first and the evaluation failed), and
    `info["infra_error"]` (the error as text), with no `reward_components` and no `grade`; the record's
    `infra_error` says the same. Drop such episodes from training instead of learning from the 0.0. A failed
    evaluation (the evaluate tool answered isError, or with no usable grade) ends the same way, with
    `info["evaluation_error"]` (the evaluator's message) instead, unless `rubric.score_failed_evaluations: true`
    scores it with task_completion 0.

    A task row that cannot run as written (a setup or evaluate tool or hub function its server lacks, an
    `mcp_config` refused once resolved) makes `reset` raise `TaskDefinitionError` naming the row, the field and the
    fix; nothing is left running and the next `reset` works as usual.

    ## Episode End
    - Termination: the agent called `done()`.
    - Truncation: the `max_turns`-th step (config `defaults.max_turns`, or the `max_turns` argument), or an
      infrastructure failure (see Rewards). Unlike a verifiers rollout, whose turn at the limit is recorded but never
      executed, the step at the limit executes its action, as under Gymnasium's `TimeLimit`; a truncated episode can
      so score differently here and in `HUDGym`.
    After the end, `step` raises `ResetNeeded` until the next `reset`.

    ## Arguments
    - `taskset`: a built-in name ("2048"), a `.json`/`.jsonl` file, a saved dataset folder, a hub id, task rows,
      or `Task` objects (anything `load_taskset` reads, see `tasks.py`).
    - `config_path`: a built-in config name ("2048", "default"), a YAML file, or an `EnvConfig`.
    - `max_turns`: replaces the config's `defaults.max_turns`. `system_prompt`: replaces the config's.
    - `num_tasks`: keep the first N tasks. `split`: the split of a dataset folder or hub id.
    - `render_mode`: None, or "ansi" (`render()` returns the latest observation).
    - `environ`: where `${VAR}` values in `mcp_config` come from (default `os.environ`).

    ```python
    import gymnasium, hud_vf_gym
    env = gymnasium.make("hud_vf_gym/2048-v0")  # or "hud_vf_gym/HUD-v0", taskset=..., config_path=...
    obs, info = env.reset(seed=0, options={"task_id": "2048_target_64"})
    obs, reward, terminated, truncated, info = env.step("<tool>left()</tool>")
    env.close()
    ```

    Vector environments: `gymnasium.vector.SyncVectorEnv` works as is. `AsyncVectorEnv` needs
    `shared_memory=False`: its shared memory keeps a `Text` observation as a fixed-size buffer of charset indices,
    and what comes back is not the text (in gymnasium 1.4 a toy env's "obs 1" came back as fifty "0"s); it could
    not encode a character outside the sampling charset anyway. Each sub-env runs its own servers. A worker started
    with "spawn" or "forkserver" must make the env by `"hud_vf_gym:hud_vf_gym/2048-v0"` (see `registration.py`).

    Calls block their caller until the MCP work is done (on the env's own loop thread); inside an asyncio program
    that pauses the caller's loop for a step. For many concurrent episodes use `HUDGym` or `Harness` directly.

    ## Version History
    - v0: first version (hud_vf_gym 0.2.0).
    """

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": RENDER_FPS}

    def __init__(
        self,
        taskset: TasksetSource,
        config_path: str | Path | EnvConfig,
        *,
        max_turns: int | None = None,
        system_prompt: str | None = None,
        num_tasks: int | None = None,
        split: str = "train",
        render_mode: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Load the config and tasks and declare the spaces; no server is started and no thread until `reset`."""
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.config = _resolve_config(config_path, max_turns=max_turns, system_prompt=system_prompt)
        self.tasks = _resolve_tasks(taskset, split=split, num_tasks=num_tasks)
        self.max_turns = self.config.max_turns
        self.render_mode = render_mode
        self.harness = Harness(self.config, environ=environ)
        self.observation_space = UnicodeText(MAX_TEXT_LENGTH)
        self.action_space = UnicodeText(MAX_TEXT_LENGTH)
        self._runtime: _Runtime | None = None  # started by the first reset, stopped by close()
        self._shut_down: weakref.finalize[[], HUDTaskEnv] | None = None
        self._episode: TaskEpisode | None = None  # the running episode; None before reset and after the end
        self._record: EpisodeRecord | None = None  # the latest episode's record, kept after the end
        self._last_observation = ""

    @property
    def episode_record(self) -> EpisodeRecord | None:
        """The latest episode's record (every turn as parsed, mapped and executed); None before the first reset."""
        return self._record

    # -- reset ----------------------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode: pick the task, open its MCP session, run setup; return the first observation.

        Args:
            seed: seeds `self.np_random`, which picks the task when `options` names none.
            options: `{"task_id": id}` or `{"task_index": i}` picks the task.

        Raises:
            MCPServerError: the server could not be started or its setup failed (nothing is left running).
            TaskDefinitionError: the task's row cannot run as written (nothing is left running).
            ConfigError: the config's action mappings do not fit the server's tools, or bad `options`.
            TaskError: no task has that id or index.
        """
        super().reset(seed=seed)
        task_index = self._choose_task(options or {})
        task = self.tasks[task_index]
        self._end_running_episode()
        # the caller paces the steps, so timeouts.rollout_s (wall-clock time of a whole episode) does not apply here;
        # every wait on the server is still bounded by its own timeout
        episode = self.harness.episode(task, bounded=False)
        setup = self._start(episode)
        self._episode, self._record = episode, episode.record
        observation = "\n\n".join(part for part in (task.prompt, setup.text) if part)
        self._last_observation = observation
        info = {
            "task_id": task.id,
            "task_index": task_index,
            "system_prompt": self._system_prompt(task),
            "turn": 0,
            "images": setup.images,
        }
        return observation, info

    def _choose_task(self, options: Mapping[str, Any]) -> int:
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ConfigError(
                f"reset(options=...): unknown key(s) {', '.join(map(repr, unknown))}; "
                f"expected {' or '.join(RESET_OPTIONS)}"
            )
        if "task_id" in options and "task_index" in options:
            raise ConfigError("reset(options=...): give task_id or task_index, not both")
        if "task_id" in options:
            return self._index_of(options["task_id"])
        if "task_index" in options:
            index = options["task_index"]
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.tasks):
                raise TaskError(
                    f"reset(options=...): task_index must be an int from 0 to {len(self.tasks) - 1}, got {index!r}"
                )
            return index
        return int(self.np_random.integers(len(self.tasks)))

    def _index_of(self, task_id: Any) -> int:
        ids = [task.id for task in self.tasks]
        if task_id in ids:
            return ids.index(task_id)
        shown = ", ".join(ids[:_NAMES_SHOWN]) + (f", ... ({len(ids)} in all)" if len(ids) > _NAMES_SHOWN else "")
        close = difflib.get_close_matches(str(task_id), ids, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TaskError(f"reset(options=...): no task with id {task_id!r}{hint}; expected one of {shown}")

    def _start(self, episode: TaskEpisode) -> Observation:
        timeouts = self.config.timeouts
        timeout_s = timeouts.connect_s + timeouts.tool_call_s * len(episode.task.setup_calls) + LOOP_BACKSTOP_MARGIN_S
        self._started_runtime().open_episode = episode  # from here on, close() shuts its session down
        try:
            return self._run(episode.start(), what=f"starting task {episode.task.id!r}", timeout_s=timeout_s)
        except BaseException:
            self._close_episode(episode)
            raise

    def _system_prompt(self, task: Task) -> str:
        """The config's system prompt, then the task's own after a blank line, as HUDGym builds it."""
        if not task.system_prompt:
            return self.config.system_prompt
        return f"{self.config.system_prompt}\n\n{task.system_prompt}"

    # -- step -----------------------------------------------------------------------------------------------------

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Act on one model message; at the episode's end, grade it, score it and shut its server down.

        Args:
            action: the model's whole reply, e.g. `"<think>I should merge</think><tool>left()</tool>"`.

        Returns:
            The observation, the reward (0.0 until the end), terminated (`done()`), truncated (`max_turns` or an
            infrastructure failure) and info (see the class docstring, Rewards).

        Raises:
            ResetNeeded: no episode is running (reset was not called, or the episode has ended).
            TypeError: `action` is not a str.
        """
        episode = self._require_running_episode()
        if not isinstance(action, str):
            raise TypeError(
                f"HUDTaskEnv.step: expects the model's reply as a str, actual type: {type(action).__name__}"
            )
        try:
            turn, observation = self._run(
                episode.step(action),
                what="a tool call",
                timeout_s=self.config.timeouts.tool_call_s + LOOP_BACKSTOP_MARGIN_S,
            )
        except MCPServerError as exc:
            return self._end_with_infra_error(episode, exc, "", self._turn_info(episode, TurnOutcome.NOT_EXECUTED, ()))
        self._last_observation = observation.text
        info = self._turn_info(episode, turn.outcome, observation.images)
        terminated = episode.is_done
        truncated = not terminated and len(episode.record.turns) >= self.max_turns
        if not (terminated or truncated):
            return observation.text, 0.0, False, False, info
        return self._finish(episode, observation.text, terminated, info)

    def _require_running_episode(self) -> TaskEpisode:
        if self._episode is not None:
            return self._episode
        if self._record is None:
            raise ResetNeeded("HUDTaskEnv.step: call reset() before step()")
        raise ResetNeeded("HUDTaskEnv.step: the episode has ended (terminated or truncated); call reset() first")

    def _turn_info(self, episode: TaskEpisode, outcome: TurnOutcome, images: Sequence[Any]) -> dict[str, Any]:
        return {
            "task_id": episode.task.id,
            "turn": len(episode.record.turns),
            "outcome": outcome.value,
            "images": tuple(images),
        }

    # -- episode end ----------------------------------------------------------------------------------------------

    def _finish(
        self, episode: TaskEpisode, observation: str, terminated: bool, info: dict[str, Any]
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Grade and score the episode, then close its session."""
        timeout_s = self.config.timeouts.tool_call_s * max(1, len(episode.task.evaluate_calls)) + LOOP_BACKSTOP_MARGIN_S
        try:
            grade = self._run(episode.evaluate(), what=f"evaluating task {episode.task.id!r}", timeout_s=timeout_s)
        except MCPServerError as exc:
            return self._end_with_infra_error(episode, exc, observation, info, terminated=terminated)
        if grade is None:  # no session to grade (a dead server raised above, as an infrastructure error)
            error = f"task {episode.task.id!r}: the MCP session was closed before evaluation"
            return self._end_with_infra_error(episode, error, observation, info, terminated=terminated)
        failure = episode.evaluation_failure()
        if failure is not None:  # a crashed evaluator says nothing about the model: no reward to learn from
            self._close_episode(episode)
            info.update(evaluation_error=str(failure), episode_record=episode.record)
            return observation, 0.0, terminated, True, info
        self._close_episode(episode)
        score = score_episode(episode.record, self.config)
        info.update(
            reward_components=dict(score.components),
            metrics=dict(score.metrics),
            grade=grade,
            episode_record=episode.record,
        )
        return observation, score.reward, terminated, not terminated, info

    def _end_with_infra_error(
        self,
        episode: TaskEpisode,
        error: MCPServerError | str,
        observation: str,
        info: dict[str, Any],
        *,
        terminated: bool = False,
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """End the episode on an infrastructure failure: truncated, reward 0.0, flagged so training can drop it."""
        message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        episode.record.infra_error = message
        self._close_episode(episode)
        info.update(infra_error=message, episode_record=episode.record)
        return observation, 0.0, terminated, True, info

    def _close_episode(self, episode: TaskEpisode) -> None:
        """Shut the episode's session down (without grading it); the episode is over either way."""
        if self._episode is episode:
            self._episode = None
        if self._runtime is not None:
            self._runtime.close_episode(episode)

    def _end_running_episode(self) -> None:
        """Abandon an episode that has not ended (a reset mid-episode): close its session, no grade."""
        if self._episode is not None:
            self._close_episode(self._episode)

    # -- render and close -----------------------------------------------------------------------------------------

    def render(self) -> str | None:
        """With `render_mode="ansi"`, the latest observation text; otherwise None."""
        return self._last_observation if self.render_mode == "ansi" else None

    def close(self) -> None:
        """Close the running episode's session (ungraded) and stop the loop thread; safe to call any number of times."""
        self._episode = None
        shut_down, self._shut_down, self._runtime = self._shut_down, None, None
        if shut_down is not None:
            shut_down()
        super().close()

    # -- the loop thread ------------------------------------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, _T], *, what: str, timeout_s: float) -> _T:
        """Run a coroutine on the env's loop thread."""
        return self._started_runtime().loop.run(coroutine, what=what, timeout_s=timeout_s)

    def _started_runtime(self) -> _Runtime:
        """The loop thread, started on first use."""
        if self._runtime is None:
            self._runtime = _Runtime(self.harness)
            # also runs at interpreter exit, or when the env is garbage-collected without close()
            self._shut_down = weakref.finalize(self, self._runtime.shut_down)
        return self._runtime


def _resolve_config(
    config_path: str | Path | EnvConfig, *, max_turns: int | None, system_prompt: str | None
) -> EnvConfig:
    if not isinstance(config_path, EnvConfig):
        return load_config(config_path, max_turns=max_turns, system_prompt=system_prompt)
    config = config_path
    if max_turns is not None:
        if isinstance(max_turns, bool) or not isinstance(max_turns, int) or max_turns < 1:
            raise ConfigError(f"max_turns must be a positive integer or None (the config's), got {max_turns!r}")
        config = config.model_copy(update={"defaults": config.defaults.model_copy(update={"max_turns": max_turns})})
    if system_prompt is not None:
        if not system_prompt.strip():
            raise ConfigError("system_prompt must be a non-empty string or None (the config's)")
        config = config.model_copy(update={"system_prompt": system_prompt})
    return config


def _resolve_tasks(taskset: TasksetSource, *, split: str, num_tasks: int | None) -> tuple[Task, ...]:
    if isinstance(taskset, Task):
        tasks: tuple[Task, ...] = (taskset,)
    elif isinstance(taskset, TaskSet):
        tasks = taskset.tasks
    elif (
        isinstance(taskset, Sequence)
        and not isinstance(taskset, str)
        and taskset
        and all(isinstance(task, Task) for task in taskset)
    ):
        tasks = tuple(task for task in taskset if isinstance(task, Task))
    else:
        return load_taskset(taskset, split=split, num_tasks=num_tasks).tasks
    duplicates = sorted({task.id for task in tasks if sum(other.id == task.id for other in tasks) > 1})
    if duplicates:
        raise TaskError(f"task ids must be unique; found duplicates: {', '.join(duplicates)}")
    return tasks[:num_tasks] if num_tasks is not None else tasks
