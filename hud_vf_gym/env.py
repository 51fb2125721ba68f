"""HUDGym: a HUD task (an MCP server with setup and evaluate tools) as a verifiers multi-turn environment.

The module reads in rollout order: construction (no I/O), `setup_state` (open the session, run setup, show the
first observation), `add_model_response` (parse the model's turn once), `env_response` (map -> call -> observe),
the stop and cleanup hooks (evaluate, then close), and finally `load_environment`, which only wires.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

# first: a clear DependencyNotInstalled without verifiers' classic API (none installed, or verifiers 0.4)
from hud_vf_gym.classic import (
    HUDRubric,
    MultiTurnEnv,
    SystemMessage,
    ToolXMLParser,
    UserMessage,
    as_verifiers_error,
    classic_errors,
    vf,
)
from hud_vf_gym.config import EnvConfig, load_config
from hud_vf_gym.core.actions import ActionMapper
from hud_vf_gym.core.chat import SUMMARY_KEY  # a JSON-ready summary of the EpisodeRecord, for `state_columns`
from hud_vf_gym.core.harness import Harness, Observation, TaskEpisode
from hud_vf_gym.core.images import cap_screenshots
from hud_vf_gym.core.parser import message_text
from hud_vf_gym.core.record import STATE_KEY
from hud_vf_gym.core.signatures import cache_signatures
from hud_vf_gym.errors import ConfigError, MCPServerError
from hud_vf_gym.tasks.loading import load_taskset, tasks_to_dataset
from hud_vf_gym.tasks.task import Task

__all__ = ["HUDGym", "load_environment"]

EPISODE_KEY = "hud_task_episode"  # the rollout's TaskEpisode (holds the open MCP session; never serialised)
TASK_KEY = "hud_task"  # the rollout's Task


class HUDGym(MultiTurnEnv):  # type: ignore[misc]  # verifiers ships no type information
    """Any HUD task as a multi-turn environment: the model acts in text, the MCP server plays and grades.

    ## Description
    Each rollout opens an MCP session for its task (`mcp_config`), runs the task's setup tool(s) and shows their
    output as the first observation. Every model turn is parsed (`<think>`/`<tool>`), mapped to an MCP call by the
    config's `action_mappings`, executed, and answered with the tool's result. When the episode ends the task's
    evaluate tool(s) grade it and the session is closed, or, with `sessions.reuse` and a server whose setup
    declares that it resets all state, handed back to a pool of warm sessions for the next rollout's setup to
    reset (see `hud_vf_gym.runtime.pool`); the pool closes with the environment.

    ## Actions
    Whatever the config maps (`left()`, `click(x, y)`, ...), plus `done()`, which ends the episode.

    ## Observations
    The tool's text inside `<result>`, images as `image_url` parts; model mistakes (no call, bad syntax, unknown
    action, a tool error) come back as an explanation the model can learn from.

    ## Rewards
    `HUDRubric`: task_completion, tool_execution, format_compliance, screenshot_behavior, thinking_quality,
    weighted by the config.

    ## Episode end
    `done()`; `max_turns` turns (truncation); the rollout timeout; or an error recorded in `state["error"]`, which
    keeps the rollout out of training: an infrastructure error (server died, timed out, failed to start or set up;
    verifiers may retry it), a `TaskDefinitionError` (the row cannot run as written: that row only, not retried) or
    an `EvaluationError` (the evaluation failed; `rubric.score_failed_evaluations: true` scores it 0 instead).

    ## Arguments
    config: a validated `EnvConfig`. tasks: the tasks to serve. max_concurrent_sessions: how many MCP sessions may
    be open at once (None: no limit beyond the caller's own concurrency). environ: where `${VAR}` values come from
    (default `os.environ`). Other keyword arguments go to `vf.MultiTurnEnv`.
    """

    def __init__(
        self,
        config: EnvConfig,
        tasks: Sequence[Task],
        *,
        max_concurrent_sessions: int | None = None,
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        """Declare the harness (parser, mapper, timeouts), the rubric and the dataset; no server is started here."""
        if not tasks:
            raise ConfigError("HUDGym needs at least one task; the taskset is empty")
        parser = ToolXMLParser(use_thinking=config.parser.use_thinking)
        harness = Harness(config, max_concurrent_sessions=max_concurrent_sessions, environ=environ, parser=parser)
        task_list = list(tasks)
        super().__init__(
            dataset=lambda: tasks_to_dataset(task_list),
            eval_dataset=lambda: tasks_to_dataset(task_list),
            system_prompt=config.system_prompt,
            parser=parser,
            rubric=HUDRubric(config.rubric, config.parser, parser),
            max_turns=config.max_turns,
            timeout_seconds=config.timeouts.rollout_s,
            **kwargs,
        )
        self.config = config
        self.tasks = tuple(task_list)
        self.harness = harness
        # verifiers calls inspect.signature on each of these hooks every time it calls one (stop conditions: every turn)
        rubric = self.rubric
        cache_signatures([*self._stop_conditions, *self._cleanup_handlers, *rubric.funcs, *rubric._cleanup_handlers])

    @property
    def mapper(self) -> ActionMapper:
        """The action mapper every rollout uses."""
        return self.harness.mapper

    # -- rollout start --------------------------------------------------------------------------------------------

    async def setup_state(self, state: vf.State) -> vf.State:
        """Open the task's MCP session, run its setup and put the setup output in the first observation."""
        task = Task.from_info(state["info"])
        episode = self.harness.episode(task)
        state[TASK_KEY], state[EPISODE_KEY], state[STATE_KEY] = task, episode, episode.record
        if task.system_prompt:
            _append_to_system_prompt(state, task.system_prompt)
        with classic_errors():
            _append_to_first_observation(state, await episode.start())
        return state

    # -- each turn ------------------------------------------------------------------------------------------------

    async def get_prompt_messages(self, state: vf.State) -> vf.Messages:
        """The next request's messages, with only the newest `images.keep_recent` screenshots kept as images."""
        messages = await super().get_prompt_messages(state)
        return cap_screenshots(messages, self.config.images.keep_recent)

    async def add_model_response(self, state: vf.State, prompt_messages: vf.Messages, response: Any) -> None:
        """Record the model's message, then parse it once; every later reader uses this parse."""
        await super().add_model_response(state, prompt_messages, response)
        episode = state.get(EPISODE_KEY)
        if isinstance(episode, TaskEpisode):
            completion = state["trajectory"][-1]["completion"]
            episode.record_turn(message_text(_content(completion[-1])) if completion else "")

    async def env_response(self, messages: vf.Messages, state: vf.State, **kwargs: Any) -> vf.Messages:
        """Act on the model's last turn and answer with what happened."""
        episode: TaskEpisode = state[EPISODE_KEY]
        with classic_errors():
            observation = await episode.act(episode.record.turns[-1])
        response = [_user_message(observation)]
        if episode.is_done or episode.is_truncated:
            state["final_env_response"] = response
        return response

    # -- episode end ----------------------------------------------------------------------------------------------

    @vf.cleanup(priority=50)  # type: ignore[untyped-decorator]
    async def finish_episode(self, state: vf.State) -> None:
        """Grade the episode with the task's evaluate tool(s), then close the session, whatever happened.

        A rollout verifiers cut at `timeouts.rollout_s` is not evaluated (no time is left): cut during a wait on the
        server it is a `RolloutTimeoutError`, cut while the model generated a truncation (`record.truncation`).
        """
        episode = state.get(EPISODE_KEY)
        if not isinstance(episode, TaskEpisode):
            return
        if state.get("timed_out") and state.get("error") is None and (cut := episode.cut()) is not None:
            state["error"] = as_verifiers_error(cut)
        try:
            if state.get("error") is None and not state.get("timed_out"):
                await episode.evaluate()
        except MCPServerError as exc:  # recorded, so the rollout is kept out of training instead of scored 0
            state["error"] = as_verifiers_error(exc)
        finally:
            await episode.close()
        record = episode.record
        if isinstance(state.get("error"), MCPServerError):
            record.infra_error = str(state["error"])
        elif state.get("error") is None and (failure := episode.evaluation_failure()) is not None:
            # an evaluator that crashed says nothing about the model: never trained on
            state["error"] = as_verifiers_error(failure)
        state[SUMMARY_KEY] = record.to_json()

    @vf.teardown  # type: ignore[untyped-decorator]
    async def close_open_sessions(self) -> None:
        """Close any session a cancelled rollout left open, so no server process outlives the environment."""
        await self.harness.close_all()


def _user_message(observation: Observation) -> UserMessage:
    if not observation.images:
        return UserMessage(content=observation.text)
    parts: list[dict[str, Any]] = [{"type": "text", "text": observation.text}]
    parts += [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in observation.images]
    return UserMessage(content=parts)


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, Mapping) else getattr(message, "content", None)


def _append_to_system_prompt(state: vf.State, extra: str) -> None:
    """Add a task's own system prompt after the config's, as HUD's agent does."""
    prompt = list(state["prompt"])
    if prompt and getattr(prompt[0], "role", None) == "system":
        prompt[0] = SystemMessage(content=f"{message_text(_content(prompt[0]))}\n\n{extra}")
    else:
        prompt.insert(0, SystemMessage(content=extra))
    state["prompt"] = prompt


def _append_to_first_observation(state: vf.State, setup: Observation) -> None:
    """Show the setup output (text and images) with the task prompt, so the model sees the starting state."""
    if not setup.text and not setup.images:
        return
    prompt = list(state["prompt"])
    question = message_text(_content(prompt[-1]))
    combined = Observation("\n\n".join(part for part in (question, setup.text) if part), setup.images)
    prompt[-1] = _user_message(combined)
    state["prompt"] = prompt


_LOAD_OPTIONS = ("max_turns", "system_prompt", "session_reuse", "max_concurrent_sessions")


def load_environment(
    taskset: str | Sequence[Mapping[str, Any]] = "2048",
    config_path: str = "2048",
    num_tasks: int | None = None,
    split: str = "train",
    **kwargs: Any,
) -> HUDGym:
    """Build a HUDGym from a taskset and a config; with no arguments, the built-in 2048 environment.

    Args:
        taskset: a built-in name ("2048"), a task file (.json/.jsonl), a saved dataset folder, an HF hub id, or rows.
        config_path: a built-in config name ("2048", "default") or a YAML file.
        num_tasks: use only the first N valid tasks.
        split: the dataset split for hub ids and saved dataset dicts.
        **kwargs: `max_turns`, `system_prompt`, `session_reuse` (False, "auto" or "per_slot"; override the config) and
            `max_concurrent_sessions`.
    """
    unknown = sorted(set(kwargs) - set(_LOAD_OPTIONS))
    if unknown:
        expected = ", ".join(["taskset", "config_path", "num_tasks", "split", *_LOAD_OPTIONS])
        raise ConfigError(f"load_environment() got unknown argument(s) {', '.join(unknown)}; expected: {expected}")
    overrides = {name: kwargs[name] for name in ("max_turns", "system_prompt", "session_reuse") if name in kwargs}
    config = load_config(config_path, **overrides)
    tasks = load_taskset(taskset, split=split, num_tasks=num_tasks)
    return HUDGym(config, tasks.tasks, max_concurrent_sessions=kwargs.get("max_concurrent_sessions"))
