"""HUDGym: a HUD task (an MCP server with setup and evaluate tools) as a verifiers multi-turn environment.

The module reads in rollout order: construction (no I/O), `setup_state` (open the session, run setup, show the
first observation), `add_model_response` (parse the model's turn once), `env_response` (map -> call -> observe),
the stop and cleanup hooks (evaluate, then close), and finally `load_environment`, which only wires.
"""

from __future__ import annotations

import asyncio
import re
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import verifiers as vf

from hud_vf_gym.actions import ActionError, ActionMapper
from hud_vf_gym.config import LIFECYCLE_TOOLS, EnvConfig, load_config
from hud_vf_gym.episode import STATE_KEY, EpisodeRecord, TurnOutcome, TurnRecord
from hud_vf_gym.errors import ConfigError, MCPServerError, TaskSetupError
from hud_vf_gym.grading import extract_grade, is_failed_tool_result
from hud_vf_gym.parser import ToolXMLParser, message_text
from hud_vf_gym.rubric import HUDRubric
from hud_vf_gym.sessions import MCPSession, Timeouts
from hud_vf_gym.tasks import Task, load_taskset, tasks_to_dataset
from hud_vf_gym.types import ToolCall, ToolResult

__all__ = ["HUDGym", "load_environment"]

SESSION_KEY = "hud_session"  # the open MCPSession of a rollout (never serialised)
TASK_KEY = "hud_task"  # the rollout's Task
SUMMARY_KEY = "hud_episode"  # a JSON-ready summary of the EpisodeRecord, for `state_columns`
DONE_MESSAGE = "Episode finished; evaluating."
MULTIPLE_TOOLS_NOTE = "Note: only the first <tool> call of a turn is executed."


class HUDGym(vf.MultiTurnEnv):  # type: ignore[misc]  # verifiers ships no type information
    """Any HUD task as a multi-turn environment: the model acts in text, the MCP server plays and grades.

    ## Description
    Each rollout opens an MCP session for its task (`mcp_config`), runs the task's setup tool(s) and shows their
    output as the first observation. Every model turn is parsed (`<think>`/`<tool>`), mapped to an MCP call by the
    config's `action_mappings`, executed, and answered with the tool's result. When the episode ends the task's
    evaluate tool(s) grade it and the session is closed.

    ## Actions
    Whatever the config maps (`left()`, `click(x, y)`, ...), plus `done()`, which ends the episode.

    ## Observations
    The tool's text inside `<result>`, images as `image_url` parts; model mistakes (no call, bad syntax, unknown
    action, a tool error) come back as an explanation the model can learn from.

    ## Rewards
    `HUDRubric`: task_completion, tool_execution, format_compliance, screenshot_behavior, thinking_quality,
    weighted by the config.

    ## Episode end
    `done()`; `max_turns` turns (truncation); the rollout timeout; or an infrastructure error (server died, timed
    out, failed to start or set up), which is recorded in `state["error"]` and keeps the rollout out of training.

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
        """Declare the parser, mapper, rubric and dataset; no server is started here."""
        if not tasks:
            raise ConfigError("HUDGym needs at least one task; the taskset is empty")
        if max_concurrent_sessions is not None and max_concurrent_sessions < 1:
            raise ConfigError(f"max_concurrent_sessions must be at least 1 or None, got {max_concurrent_sessions}")
        parser = ToolXMLParser(use_thinking=config.parser.use_thinking)
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
        self.mapper = ActionMapper(config.action_mappings, config.passthrough_tools)
        self.session_timeouts = Timeouts(connect_s=config.timeouts.connect_s, call_s=config.timeouts.tool_call_s)
        self.tool_error_pattern = re.compile(config.tool_error_pattern)
        self.environ = environ
        self.max_concurrent_sessions = max_concurrent_sessions
        self._session_slots: asyncio.Semaphore | None = None
        self._open_sessions: weakref.WeakSet[MCPSession] = weakref.WeakSet()
        self._checked_tool_sets: set[frozenset[str]] = set()

    # -- rollout start --------------------------------------------------------------------------------------------

    async def setup_state(self, state: vf.State) -> vf.State:
        """Open the task's MCP session, run its setup and put the setup output in the first observation."""
        task = Task.from_info(state["info"])
        episode = EpisodeRecord(task_id=task.id)
        state[TASK_KEY], state[STATE_KEY] = task, episode
        if task.system_prompt:
            _append_to_system_prompt(state, task.system_prompt)
        started = time.perf_counter()
        session = await self._open_session(task)
        state[SESSION_KEY] = session
        self._check_mappings(session)
        episode.setup_results = await self._run_setup(session, task)
        episode.setup_seconds = time.perf_counter() - started
        _append_to_first_observation(state, episode.setup_results)
        return state

    async def _open_session(self, task: Task) -> MCPSession:
        """Open the task's session, waiting for a free slot when `max_concurrent_sessions` is set."""
        slots = self._slots()
        if slots is not None:
            await slots.acquire()
        try:
            session = await MCPSession.open(task.mcp_config, timeouts=self.session_timeouts, environ=self.environ)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        self._open_sessions.add(session)
        return session

    def _slots(self) -> asyncio.Semaphore | None:
        if self.max_concurrent_sessions is None:
            return None
        if self._session_slots is None:
            self._session_slots = asyncio.Semaphore(self.max_concurrent_sessions)
        return self._session_slots

    def _check_mappings(self, session: MCPSession) -> None:
        """Check the action mappings against the server's tools once per distinct tool set."""
        tool_set = frozenset(session.tools)
        if tool_set in self._checked_tool_sets:
            return
        problems = self.mapper.check_tools(session.tools)
        if problems:
            lines = "\n  ".join(problems)
            raise ConfigError(f"the config's action_mappings do not fit the server's tools:\n  {lines}")
        self.mapper.bind_tool_specs(session.tools)
        self._checked_tool_sets.add(tool_set)

    async def _run_setup(self, session: MCPSession, task: Task) -> list[ToolResult]:
        """Run every setup call; one that answers with an error means the episode cannot start as intended."""
        results = []
        for call in task.setup_calls:
            result = await session.call_tool(call.name, call.arguments)
            if result.is_error:
                raise TaskSetupError(f"task {task.id!r}: setup call {call.name!r} failed: {result.text[:500]}")
            results.append(result)
        return results

    # -- each turn ------------------------------------------------------------------------------------------------

    async def add_model_response(self, state: vf.State, prompt_messages: vf.Messages, response: Any) -> None:
        """Record the model's message, then parse it once; every later reader uses this parse."""
        await super().add_model_response(state, prompt_messages, response)
        episode = state.get(STATE_KEY)
        if not isinstance(episode, EpisodeRecord):
            return
        completion = state["trajectory"][-1]["completion"]
        text = message_text(_content(completion[-1])) if completion else ""
        episode.turns.append(TurnRecord(index=len(episode.turns), parsed=self.parser.parse_turn(text)))

    async def env_response(self, messages: vf.Messages, state: vf.State, **kwargs: Any) -> vf.Messages:
        """Act on the model's last turn and answer with what happened."""
        episode: EpisodeRecord = state[STATE_KEY]
        turn = episode.turns[-1]
        started = time.perf_counter()
        await self._act(turn, state)
        turn.env_seconds = time.perf_counter() - started
        episode.env_seconds += turn.env_seconds
        response = [self._observation(turn)]
        if turn.outcome is TurnOutcome.DONE:
            state["final_env_response"] = response
        return response

    async def _act(self, turn: TurnRecord, state: vf.State) -> None:
        """Map the turn's call and execute it, recording the outcome on the turn."""
        if turn.parsed.call is None:
            turn.outcome = TurnOutcome.PARSE_ERROR
            return
        mapped = self.mapper.map(turn.parsed.call, blocked_tools=_lifecycle_tools(state[TASK_KEY]))
        if isinstance(mapped, ActionError):
            turn.action_error, turn.outcome = mapped, TurnOutcome.ACTION_ERROR
            return
        turn.action = mapped
        if mapped.tool_call is not None:
            result = await self._call_tool(state[SESSION_KEY], mapped.tool_call)
            if isinstance(result, ActionError):
                turn.action, turn.action_error, turn.outcome = None, result, TurnOutcome.ACTION_ERROR
                return
            turn.result = result
            if is_failed_tool_result(result, self.tool_error_pattern):
                turn.outcome = TurnOutcome.TOOL_ERROR
                return
        turn.outcome = TurnOutcome.DONE if mapped.ends_episode else TurnOutcome.EXECUTED

    async def _call_tool(self, session: MCPSession, call: ToolCall) -> ToolResult | ActionError:
        """Execute one call; a pass-through to a tool the server lacks is the model's mistake, not a crash."""
        from hud_vf_gym.actions import ActionErrorKind

        if call.name not in session.tools and not any(name.endswith(f"_{call.name}") for name in session.tools):
            available = ", ".join(sorted(session.tools))
            return ActionError(ActionErrorKind.UNKNOWN_ACTION, f"There is no tool {call.name!r}; tools: {available}.")
        return await session.call_tool(call.name, call.arguments)

    def _observation(self, turn: TurnRecord) -> vf.UserMessage:
        """The message the model sees after its turn: the result, or an explanation of what went wrong."""
        text = _observation_text(turn)
        if turn.parsed.tool_tags > 1:
            text = f"{text}\n{MULTIPLE_TOOLS_NOTE}"
        images = turn.result.images if turn.result is not None else ()
        if not images:
            return vf.UserMessage(content=text)
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        parts += [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in images]
        return vf.UserMessage(content=parts)

    # -- episode end ----------------------------------------------------------------------------------------------

    @vf.cleanup(priority=50)  # type: ignore[untyped-decorator]
    async def finish_episode(self, state: vf.State) -> None:
        """Grade the episode with the task's evaluate tool(s), then close the session, whatever happened."""
        episode = state.get(STATE_KEY)
        try:
            if isinstance(episode, EpisodeRecord):
                await self._evaluate(state, episode)
        finally:
            await self._close_session(state)
        if isinstance(episode, EpisodeRecord):
            state[SUMMARY_KEY] = episode.to_json()

    async def _evaluate(self, state: vf.State, episode: EpisodeRecord) -> None:
        """Run the evaluate calls when the session is usable; an infrastructure failure is recorded, not scored."""
        session: MCPSession | None = state.get(SESSION_KEY)
        if session is None or not session.is_alive or state.get("error") is not None:
            return
        started = time.perf_counter()
        try:
            results = [await session.call_tool(call.name, call.arguments) for call in state[TASK_KEY].evaluate_calls]
        except MCPServerError as exc:
            state["error"], episode.infra_error = exc, str(exc)
            return
        finally:
            episode.evaluate_seconds = time.perf_counter() - started
        episode.evaluate_results = results
        episode.grade = extract_grade(results)

    async def _close_session(self, state: vf.State) -> None:
        session: MCPSession | None = state.pop(SESSION_KEY, None)
        if session is None:
            return
        try:
            await session.aclose()
        finally:
            self._open_sessions.discard(session)
            if self._session_slots is not None:
                self._session_slots.release()
        if isinstance(state.get("error"), MCPServerError) and isinstance(state.get(STATE_KEY), EpisodeRecord):
            state[STATE_KEY].infra_error = str(state["error"])

    @vf.teardown  # type: ignore[untyped-decorator]
    async def close_open_sessions(self) -> None:
        """Close any session a cancelled rollout left open, so no server process outlives the environment."""
        await asyncio.gather(*(session.aclose() for session in list(self._open_sessions)), return_exceptions=True)


def _lifecycle_tools(task: Task) -> frozenset[str]:
    """Tools the agent may never call: setup/evaluate and whatever this task uses for them."""
    return LIFECYCLE_TOOLS | {call.name for call in (*task.setup_calls, *task.evaluate_calls)}


def _observation_text(turn: TurnRecord) -> str:
    if turn.outcome is TurnOutcome.PARSE_ERROR and turn.parsed.error is not None:
        return turn.parsed.error.message
    if turn.outcome is TurnOutcome.ACTION_ERROR and turn.action_error is not None:
        return turn.action_error.message
    result_text = turn.result.text if turn.result is not None else ""
    if turn.outcome is TurnOutcome.TOOL_ERROR:
        return f"The action failed:\n<error>\n{result_text}\n</error>"
    if turn.outcome is TurnOutcome.DONE:
        return DONE_MESSAGE if not result_text else f"<result>\n{result_text}\n</result>\n{DONE_MESSAGE}"
    return f"<result>\n{result_text or '(no text output)'}\n</result>"


def _content(message: Any) -> Any:
    return message.get("content") if isinstance(message, Mapping) else getattr(message, "content", None)


def _append_to_system_prompt(state: vf.State, extra: str) -> None:
    """Add a task's own system prompt after the config's, as HUD's agent does."""
    prompt = list(state["prompt"])
    if prompt and getattr(prompt[0], "role", None) == "system":
        prompt[0] = vf.SystemMessage(content=f"{message_text(_content(prompt[0]))}\n\n{extra}")
    else:
        prompt.insert(0, vf.SystemMessage(content=extra))
    state["prompt"] = prompt


def _append_to_first_observation(state: vf.State, setup_results: Sequence[ToolResult]) -> None:
    """Show the setup output (text and images) with the task prompt, so the model sees the starting state."""
    texts = [result.text for result in setup_results if result.text]
    images = [image for result in setup_results for image in result.images]
    if not texts and not images:
        return
    prompt = list(state["prompt"])
    question = message_text(_content(prompt[-1]))
    text = "\n\n".join([question, *texts])
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        parts += [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in images]
        prompt[-1] = vf.UserMessage(content=parts)
    else:
        prompt[-1] = vf.UserMessage(content=text)
    state["prompt"] = prompt


_LOAD_OPTIONS = ("max_turns", "system_prompt", "max_concurrent_sessions")


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
        **kwargs: `max_turns`, `system_prompt` (override the config) and `max_concurrent_sessions`.
    """
    unknown = sorted(set(kwargs) - set(_LOAD_OPTIONS))
    if unknown:
        expected = ", ".join(["taskset", "config_path", "num_tasks", "split", *_LOAD_OPTIONS])
        raise ConfigError(f"load_environment() got unknown argument(s) {', '.join(unknown)}; expected: {expected}")
    config = load_config(config_path, max_turns=kwargs.get("max_turns"), system_prompt=kwargs.get("system_prompt"))
    tasks = load_taskset(taskset, split=split, num_tasks=num_tasks)
    return HUDGym(config, tasks.tasks, max_concurrent_sessions=kwargs.get("max_concurrent_sessions"))
