"""HUD tasks as a verifiers v1 taskset: `vf-eval hud_vf_gym` (verifiers 0.4) plays them with native tool calls.

- `HUDTaskset.load()` reads the taskset (`--env.taskset.taskset`, default the built-in 2048 tasks); each HUD row
  becomes a `HUDTask` whose data carries the row.
- `HUDTask.setup` opens the task's MCP session (or checks out a warm one: `sessions.reuse`) through the same
  `Harness` as every other consumer, runs the setup call(s) and puts their output (text and screenshots) after the
  prompt; it registers the episode with this process's action server (`v1/server.py`).
- `HUDTask.toolsets` hands the harness that rollout's URL: the config's mapped actions (`left()`, `click(x, y)`,
  `done()`) as MCP tools whose schemas come from the action mappings (`core/action_tools.py`); each call goes
  through the same `ActionMapper` to the MCP call.
- A `@vf.stop` ends the rollout after `done()`, at `max_turns` actions, or when the environment failed.
- `HUDTask.finalize` runs the evaluate call(s) and closes (or returns) the session. An infrastructure failure
  (server died, timed out, setup failed), a row that cannot run as written (`TaskDefinitionError`) or a failed
  evaluation (`EvaluationError`, unless `rubric.score_failed_evaluations`) raises `vf.ToolsetError`: verifiers
  records the rollout as failed, so it is kept out of training rather than scored 0.
- Rewards: the rubric's five components with the config's weights (their weighted sum is the reward, as in the
  classic `HUDRubric`); metrics: the counts behind them (`core.rubric.METRICS`).

The rollout's route travels from `setup` to `toolsets` in a context variable: verifiers calls both in the rollout's
own task, one after the other (`Rollout.open`), and concurrent rollouts run in separate tasks.
"""

from __future__ import annotations

import atexit
import contextvars
import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from hud_vf_gym.errors import DependencyNotInstalled, EvaluationError, MCPServerError, TaskDefinitionError

try:
    import verifiers.v1 as vf
except ImportError as exc:  # no verifiers
    raise DependencyNotInstalled("the v1 taskset needs verifiers 0.4: pip install 'hud-vf-gym[v1]'") from exc

from hud_vf_gym.config import EnvConfig, load_config
from hud_vf_gym.core.harness import Harness, Observation
from hud_vf_gym.core.rubric import COMPONENTS, METRICS, score_episode
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.v1.server import SERVER_NAME, ActionServer, Rollout, action_server, action_servers

__all__ = ["HUDActions", "HUDTask", "HUDTaskConfig", "HUDTaskData", "HUDTaskset", "HUDTasksetConfig"]

# The config's system prompt teaches the text protocol (`<tool>left()</tool>`); with native tools the model calls
# functions instead, so the v1 taskset sends this, plus the task's own system prompt.
NATIVE_TOOLS_PROMPT = (
    "You act in this environment by calling the tools you are given, one call per turn; each call's result is "
    "the environment's answer. When the task is complete, call the done tool."
)
UNSET_URL = "http://127.0.0.1:9/no-rollout"  # what `toolsets` reports outside a rollout (placement checks only)

_route: contextvars.ContextVar[str | None] = contextvars.ContextVar("hud_vf_gym_v1_rollout", default=None)
_harnesses: dict[tuple[str, int | None], Harness] = {}  # one per config per process: its warm-session pool is shared


class HUDTaskConfig(vf.TaskConfig):  # type: ignore[misc]  # verifiers ships no type information
    """How every task of the run is played (`--env.taskset.task.*`)."""

    config: str = "2048"
    """The environment config: a built-in name (`2048`, `default`, ...) or a YAML file."""
    max_concurrent_sessions: int | None = None
    """At most this many MCP sessions open at once in one process (None: no limit of our own)."""


class HUDTasksetConfig(vf.TasksetConfig):  # type: ignore[misc]
    """Which tasks load (`--env.taskset.*`)."""

    taskset: str = "2048"
    """A built-in taskset name, a .json/.jsonl file, a saved dataset folder or an HF hub id."""
    num_tasks: int | None = None
    """Only the first N valid tasks."""
    split: str = "train"
    """The split for hub ids and saved dataset dicts."""
    task: HUDTaskConfig = HUDTaskConfig()


class HUDTaskData(vf.TaskData):  # type: ignore[misc]
    """One HUD task row (`Task.to_info()`, JSON) with the prompt the model sees."""

    hud_task: str


class HUDActions(vf.Toolset[vf.ToolsetConfig]):  # type: ignore[misc]
    """The rollout's mapped actions, served by this process's action server (the config's `url` points there)."""

    TOOL_PREFIX = SERVER_NAME


class HUDTask(vf.Task[HUDTaskData, vf.State, HUDTaskConfig]):  # type: ignore[misc]
    """One HUD task: setup and evaluate on its MCP servers, the mapped actions as tools, the rubric as rewards."""

    @property
    def key(self) -> str:
        """The HUD task id (unique within a taskset)."""
        return str(json.loads(self.data.hud_task)["id"])

    def harness(self) -> Harness:
        """The process's harness for this task's config (parser, mapper, timeouts, warm sessions)."""
        key = (self.config.config, self.config.max_concurrent_sessions)
        harness = _harnesses.get(key)
        if harness is None:
            harness = _harnesses[key] = Harness(
                load_config(self.config.config), max_concurrent_sessions=self.config.max_concurrent_sessions
            )
        return harness

    async def setup(self, trace: vf.Trace) -> None:
        """Open (or check out) the session, run setup, show its output after the prompt, register the rollout."""
        task = Task.from_info(self.data.hud_task)
        episode = self.harness().episode(task)
        try:
            observation = await episode.start()
        except (MCPServerError, TaskDefinitionError) as exc:  # the row only: kept out of training, not scored 0
            await episode.close()
            raise vf.ToolsetError(f"task {task.id!r}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await episode.close()
            raise
        server = await action_server()
        route = uuid.uuid4().hex
        server.rollouts[route] = Rollout(episode)
        _route.set(route)
        trace.info["hud_route"] = route
        trace.task.data = trace.task.data.model_copy(update={"prompt": _first_prompt(self.data.prompt, observation)})

    @classmethod
    def toolsets(cls, config: HUDTaskConfig) -> list[vf.Toolset]:
        """The current rollout's actions (set by `setup` in this task); a placeholder outside a rollout."""
        route = _route.get()
        url = UNSET_URL
        if route is not None:
            for server in _action_servers():
                if route in server.rollouts:
                    url = server.url(route)
        return [HUDActions(vf.ToolsetConfig(url=url))]

    @vf.stop  # type: ignore[untyped-decorator]
    async def hud_episode_over(self, trace: vf.Trace) -> bool:
        """After done(), at max_turns actions, or once the environment failed."""
        rollout = _rollout_of(trace)
        return rollout is not None and rollout.finished

    async def finalize(self, trace: vf.Trace) -> None:
        """Evaluate (unless the environment failed) and close; an infrastructure failure fails the rollout."""
        rollout = _rollout_of(trace, pop=True)
        if rollout is None:
            return
        episode = rollout.episode
        error: MCPServerError | EvaluationError | None = rollout.infra_error
        try:
            if error is None:
                await episode.evaluate()
        except MCPServerError as exc:
            error = exc
        finally:
            await episode.close()
        if isinstance(error, MCPServerError):
            episode.record.infra_error = str(error)
        elif error is None:
            error = episode.evaluation_failure()  # a crashed evaluator says nothing about the model: never trained on
        trace.info["hud_episode"] = episode.record.to_json()
        _records[trace.id] = episode.record
        if error is not None:
            raise vf.ToolsetError(f"task {episode.task.id!r}: {type(error).__name__}: {error}") from error

    def hooks(self, attr: str) -> list[Callable[..., Any]]:
        """The rubric: each component a reward with the config's weight, each count a metric."""
        if attr not in ("reward", "metric"):
            return list(super().hooks(attr))
        config = self.harness().config
        if attr == "reward":
            weights = config.rubric.weights.model_dump()
            return [_component(name, weights[name], config) for name in COMPONENTS]
        return [_metric(function.__name__, config) for function in METRICS]

    async def score(self, trace: vf.Trace, runtime: Any = None) -> None:
        """Score from the episode record `finalize` kept, then let it go."""
        try:
            await super().score(trace, runtime)
        finally:
            _records.pop(trace.id, None)


class HUDTaskset(vf.Taskset[HUDTask, HUDTasksetConfig]):  # type: ignore[misc]
    """HUD tasks (any taskset `load_taskset` reads) for verifiers v1."""

    def load(self) -> Iterator[HUDTask]:
        """One `HUDTask` per valid row."""
        load_config(self.config.task.config)  # a bad config fails here, before any rollout starts
        taskset = load_taskset(self.config.taskset, split=self.config.split, num_tasks=self.config.num_tasks)
        for index, task in enumerate(taskset.tasks):
            system = NATIVE_TOOLS_PROMPT if not task.system_prompt else f"{NATIVE_TOOLS_PROMPT}\n\n{task.system_prompt}"
            data = HUDTaskData(
                idx=index, name=task.id, prompt=task.prompt, system_prompt=system, hud_task=task.to_info()
            )
            yield HUDTask(data, self.config.task)


# -- scoring --------------------------------------------------------------------------------------------------------

_records: dict[str, Any] = {}  # trace id -> EpisodeRecord, from finalize until scored


def _component(name: str, weight: float, config: EnvConfig) -> Callable[..., Awaitable[float]]:
    async def component(trace: vf.Trace) -> float:
        record = _records.get(trace.id)
        return 0.0 if record is None else float(score_episode(record, config).components[name])

    component.__name__ = name
    component._vf_weight = weight  # type: ignore[attr-defined]  # what verifiers' Task.score reads
    return component


def _metric(name: str, config: EnvConfig) -> Callable[..., Awaitable[float]]:
    async def metric(trace: vf.Trace) -> float:
        record = _records.get(trace.id)
        return 0.0 if record is None else float(score_episode(record, config).metrics[name])

    metric.__name__ = name
    return metric


# -- the rollout's episode --------------------------------------------------------------------------------------------


def _action_servers() -> list[ActionServer]:
    return list(action_servers.values())


def _rollout_of(trace: vf.Trace, *, pop: bool = False) -> Rollout | None:
    route = trace.info.get("hud_route")
    for server in _action_servers():
        if route in server.rollouts:
            return server.rollouts.pop(route) if pop else server.rollouts[route]
    return None


def _first_prompt(prompt: Any, setup: Observation) -> Any:
    """The task prompt followed by the setup output, as the classic adapter shows it (images as parts)."""
    text = "\n\n".join(part for part in (str(prompt or ""), setup.text) if part)
    if not setup.images:
        return text
    parts: list[Any] = [vf.TextContentPart(text=text)]
    parts += [vf.ImageUrlContentPart(image_url=vf.ImageUrlSource(url=image.data_url())) for image in setup.images]
    return [vf.UserMessage(content=parts)]


@atexit.register
def _kill_open_sessions() -> None:
    """At exit, kill the servers of rollouts that never reached finalize (one that failed elsewhere).

    Warm sessions in a pool are the pool's own exit hook's (`runtime/pool.py`).
    """
    for server in _action_servers():
        for rollout in server.rollouts.values():
            session = rollout.episode.session
            if session is not None:
                session.abandon()
