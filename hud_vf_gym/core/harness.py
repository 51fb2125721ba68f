"""The one turn loop: a task's episode over MCP, used by HUDGym (verifiers), the Gymnasium env and the trainer.

`Harness` holds what a config decides for every episode (parser, action mapper, error pattern, timeouts) and the
environment-wide resources (the limit on open sessions, the sessions still open). `Harness.start(task)` opens a
`TaskEpisode`, which runs in rollout order:

1. `start()`   open the task's MCP session, check the action mappings against its tools, run the setup call(s);
2. `record(text)` parse one model message (once; the record keeps the parse for every later reader);
3. `act(turn)` map the parsed call, execute it, classify the outcome; `observe(turn)` says what happened;
4. `evaluate()` run the evaluate call(s) and keep the grade; `close()` shut the session down (always).

Model mistakes never raise: they become the turn's outcome and an observation. Infrastructure failures raise
`MCPServerError` subclasses (the classic adapter hands them to verifiers as `InfraError`s); a config that does not
fit the server raises `ConfigError`; a row that cannot run as written (its `mcp_config` refused once resolved, a
setup or evaluate tool or hub function its server lacks) raises `TaskDefinitionError` from `start()`, before setup
runs, and is kept in the record's `task_error`. A failed evaluation (isError, or no usable grade) is kept in the
record's `evaluation_error`.

`timeouts.rollout_s` is one deadline for the whole episode (`core/deadline.py`): every server wait (opening, setup,
each call, evaluate) is cut when it passes, as a `RolloutTimeoutError`; an episode whose time ran out while the model
was generating is a truncation (`record.truncation`) and is not evaluated; closing gets what is left, then a grace.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass

from hud_vf_gym.config import LIFECYCLE_TOOLS, EnvConfig
from hud_vf_gym.core.actions import ActionError, ActionErrorKind, ActionMapper
from hud_vf_gym.core.deadline import RolloutDeadline
from hud_vf_gym.core.grade import extract_grade, is_failed_tool_result
from hud_vf_gym.core.images import ScreenshotEncoder, scale_coordinates
from hud_vf_gym.core.parser import ParsedCall, ParsedTurn, TurnParser, quote_model_text
from hud_vf_gym.core.record import EpisodeRecord, TurnOutcome, TurnRecord
from hud_vf_gym.core.task_checks import UNKNOWN_FUNCTION, check_lifecycle_calls, task_definition_error
from hud_vf_gym.environments import SETUP_RESETS_STATE_META
from hud_vf_gym.errors import (
    ConfigError,
    EvaluationError,
    MissingCredentialsError,
    RolloutTimeoutError,
    TaskDefinitionError,
    TaskSetupError,
)
from hud_vf_gym.runtime.pool import SessionPool, servers_not_reset
from hud_vf_gym.runtime.session import CLOSE_TIMEOUT_S, MCPSession
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.types import Grade, ImageData, ToolCall, ToolResult

__all__ = ["Harness", "Observation", "TaskEpisode", "TurnListener"]

DONE_MESSAGE = "Episode finished; evaluating."
MULTIPLE_TOOLS_NOTE = "Note: only the first <tool> call of a turn is executed."


TurnListener = Callable[["TaskEpisode", TurnRecord], None]
"""Called after every acted-on turn with the episode and the turn (outcome set); for progress displays and counters.

It runs inside the rollout, so it must be quick and must not raise.
"""


@dataclass(frozen=True, slots=True)
class Observation:
    """What the model sees after a turn (or after setup): text and any screenshots."""

    text: str
    images: tuple[ImageData, ...] = ()


class Harness:
    """Everything a config decides for every episode, plus the environment-wide session bookkeeping.

    Args:
        config: the validated environment config.
        max_concurrent_sessions: how many MCP sessions may be open at once (None: no limit of our own).
        environ: where `${VAR}` values in `mcp_config` come from (default: `os.environ`).
        parser: the turn parser (default: a `TurnParser` for the config; the classic adapter passes its verifiers one).
    """

    def __init__(
        self,
        config: EnvConfig,
        *,
        max_concurrent_sessions: int | None = None,
        environ: Mapping[str, str] | None = None,
        parser: TurnParser | None = None,
    ) -> None:
        """Build the parser and mapper from the config; no I/O."""
        if max_concurrent_sessions is not None and max_concurrent_sessions < 1:
            raise ConfigError(f"max_concurrent_sessions must be at least 1 or None, got {max_concurrent_sessions}")
        self.config = config
        self.parser = parser if parser is not None else TurnParser(use_thinking=config.parser.use_thinking)
        self.mapper = ActionMapper(config.action_mappings, config.passthrough_tools)
        self.tool_error_pattern = re.compile(config.tool_error_pattern)
        self.environ = environ
        self.max_concurrent_sessions = max_concurrent_sessions
        self._session_slots: asyncio.Semaphore | None = None
        # a strong set: a session whose episode was dropped unclosed must still be found by close_all()
        self._open_sessions: set[MCPSession] = set()
        self._checked_tool_sets: set[frozenset[str]] = set()
        self.pool: SessionPool | None = None
        """The warm sessions of `sessions.reuse` (None: every episode starts its own servers)."""
        if config.sessions.reuse:
            self.pool = SessionPool(config.sessions, timeouts=self.config.timeouts, environ=environ)
        self._single_use: set[MCPSession] = set()  # `reuse: auto` sessions whose setup does not declare a reset
        self.turn_listeners: list[TurnListener] = []
        """Called after every acted-on turn of every episode (see `TurnListener`)."""

    def episode(self, task: Task, *, bounded: bool = True) -> TaskEpisode:
        """A new, not yet started episode of `task`.

        Args:
            task: the task to play.
            bounded: whether `timeouts.rollout_s` bounds the episode (False where the caller paces the turns, as a
                Gymnasium user does, so wall-clock time between steps is not the episode's).
        """
        return TaskEpisode(self, task, bounded=bounded)

    async def open_session(self, task: Task) -> MCPSession:
        """Open the task's session (or take a warm one from the pool), waiting for a free slot if there is a limit.

        Raises:
            ConfigError: `sessions.reuse: per_slot`, but the task or its servers cannot promise a reset.
        """
        slots = self._slots()
        if slots is not None:
            await slots.acquire()
        try:
            session = await self._open_or_checkout(task)
        except BaseException:
            if slots is not None:
                slots.release()
            raise
        self._open_sessions.add(session)
        return session

    async def _open_or_checkout(self, task: Task) -> MCPSession:
        strict = self.config.sessions.reuse == "per_slot"  # else "auto": fall back to a fresh server, no error
        if self.pool is None or not (strict or task.setup_calls):
            return await self._open_config(task)
        if not task.setup_calls:
            raise ConfigError(
                f"task {task.id!r} has no setup call, so a reused server would start where the previous rollout "
                "ended; give the task a setup_tool that resets the environment, or set sessions.reuse: auto or false"
            )
        session = await self._open_config(task, pooled=True)
        not_reset = [] if self.config.sessions.setup_resets_state else self._servers_not_reset(task, session)
        if not_reset and strict:
            await self.pool.checkin(session, reusable=False)
            names = ", ".join(call.name for call in task.setup_calls)
            raise ConfigError(
                f"sessions.reuse is per_slot, but the setup of task {task.id!r} ({names}) does not declare that it "
                f"resets all state of server(s) {', '.join(not_reset)}. A server declares it with _meta "
                f'{{"{SETUP_RESETS_STATE_META}": true}} on its setup tool; if you know setup resets everything, set '
                "sessions.setup_resets_state: true; otherwise set sessions.reuse: auto or false"
            )
        if not_reset:
            self._single_use.add(session)
        return session

    async def _open_config(self, task: Task, *, pooled: bool = False) -> MCPSession:
        """Open (or check out) a session for the task's `mcp_config`; a config it refuses is that row's error."""
        try:
            if pooled and self.pool is not None:
                return await self.pool.checkout(task.mcp_config)
            return await MCPSession.open(task.mcp_config, timeouts=self.config.timeouts, environ=self.environ)
        except MissingCredentialsError:  # the user's environment, not this row: every hub row would fail alike
            raise
        except ConfigError as exc:  # found only once its ${VAR}s are resolved
            raise task_definition_error(task, "mcp_config", str(exc)) from exc

    def _servers_not_reset(self, task: Task, session: MCPSession) -> list[str]:
        """The servers of `session` whose state the task's setup does not declare to reset."""
        try:
            return servers_not_reset(session, [call.name for call in task.setup_calls])
        except ConfigError:  # a setup tool the server lacks: the setup call itself reports that, as without a pool
            return list(session.server_names)

    async def release_session(
        self, session: MCPSession, *, reusable: bool = False, close_timeout_s: float = CLOSE_TIMEOUT_S
    ) -> None:
        """Give back a session from `open_session`: to the pool when `reusable` and pooling is on, else close it.

        Args:
            session: the session `open_session` returned.
            reusable: whether its episode ended cleanly (no error escaped any phase), so a reset makes it good as new.
            close_timeout_s: how long closing may wait politely before the servers are killed.
        """
        if session not in self._open_sessions:  # released already (by close_all): only make sure it is closed
            await session.aclose(timeout_s=close_timeout_s)
            return
        self._open_sessions.discard(session)  # first, so a concurrent close_all cannot release the slot again
        try:
            if self.pool is not None:
                reusable = reusable and session not in self._single_use
                await self.pool.checkin(session, reusable=reusable, close_timeout_s=close_timeout_s)
            else:
                await session.aclose(timeout_s=close_timeout_s)
        finally:
            self._single_use.discard(session)
            if self._session_slots is not None:
                self._session_slots.release()

    async def close_all(self) -> None:
        """Close every session still open (a cancelled caller may have left one behind) and the pool's idle ones."""
        left_open = [self.release_session(session, reusable=False) for session in list(self._open_sessions)]
        await asyncio.gather(*left_open, return_exceptions=True)
        if self.pool is not None:
            await self.pool.aclose()

    def check_mappings(self, session: MCPSession) -> None:
        """Check the action mappings against the server's tools, once per distinct tool set."""
        tool_set = frozenset(session.tools)
        if tool_set in self._checked_tool_sets:
            return
        problems = self.mapper.check_tools(session.tools)
        if problems:
            lines = "\n  ".join(problems)
            raise ConfigError(f"the config's action_mappings do not fit the server's tools:\n  {lines}")
        self.mapper.bind_tool_specs(session.tools)
        self._checked_tool_sets.add(tool_set)

    def _slots(self) -> asyncio.Semaphore | None:
        if self.max_concurrent_sessions is None:
            return None
        if self._session_slots is None:
            self._session_slots = asyncio.Semaphore(self.max_concurrent_sessions)
        return self._session_slots


class TaskEpisode:
    """One episode of one task: session, setup, turns, grade. Create it with `Harness.episode(task)`."""

    def __init__(self, harness: Harness, task: Task, *, bounded: bool = True) -> None:
        """Prepare the record; nothing is opened until `start()`."""
        self.harness = harness
        self.task = task
        self.record = EpisodeRecord(task_id=task.id)
        self.session: MCPSession | None = None
        self.deadline: RolloutDeadline | None = None
        """The episode's `timeouts.rollout_s` deadline, from `start()` on (None when not bounded)."""
        self._bounded = bounded
        self.blocked_tools = LIFECYCLE_TOOLS | {call.name for call in (*task.setup_calls, *task.evaluate_calls)}
        # The screenshots the model sees (resized, re-encoded) and the scale its next action's coordinates are in.
        self.screenshots = ScreenshotEncoder(harness.config.images)
        # Set when an error (or a cancellation) escapes any phase: the session is then never reused.
        self._failed = False

    async def start(self) -> Observation:
        """Open the session, check the mappings, run setup; return the setup output (the first observation)."""
        started = time.perf_counter()
        if self._bounded:
            self.deadline = RolloutDeadline(self.harness.config.timeouts.rollout_s, self.task.id)
        try:
            async with self._server_wait("the MCP session to open"):
                self.session = await self.harness.open_session(self.task)
            self.harness.check_mappings(self.session)
            check_lifecycle_calls(self.task, self.session)
            self.record.setup_results = await self._run_setup(self.session)
        except TaskDefinitionError as exc:
            self._failed = True
            self.record.task_error = str(exc)
            raise
        except BaseException:
            self._failed = True
            raise
        finally:
            self.record.setup_seconds = time.perf_counter() - started
        results = self.record.setup_results
        text = "\n\n".join(result.text for result in results if result.text)
        return Observation(text, self.screenshots.encode([image for result in results for image in result.images]))

    async def _run_setup(self, session: MCPSession) -> list[ToolResult]:
        results = []
        for call in self.task.setup_calls:
            async with self._server_wait(f"the setup call {call.name!r}"):
                result = await session.call_tool(call.name, call.arguments)
            if result.is_error and UNKNOWN_FUNCTION.match(result.text):  # a hub that declares no function names
                raise task_definition_error(self.task, "setup_tool", f"{result.text[:500]}; fix the function name")
            if result.is_error:
                raise TaskSetupError(f"task {self.task.id!r}: setup call {call.name!r} failed: {result.text[:500]}")
            results.append(result)
        return results

    def record_turn(self, text: str) -> TurnRecord:
        """Parse one model message and add it to the record (not yet acted on)."""
        turn = TurnRecord(index=len(self.record.turns), parsed=self.harness.parser.parse_turn(text))
        self.record.turns.append(turn)
        return turn

    def record_call(self, call: ParsedCall) -> TurnRecord:
        """Add a native (function-calling) tool call as a turn: well-formed by construction, so its tag score is 1."""
        parsed = ParsedTurn(
            think=None,
            tool_text=call.format(),
            call=call,
            error=None,
            tool_tags=1,
            tool_closed=True,
            think_closed=False,
            stray_text=False,
            xml_score=1.0,
        )
        turn = TurnRecord(index=len(self.record.turns), parsed=parsed)
        self.record.turns.append(turn)
        return turn

    async def act(self, turn: TurnRecord) -> Observation:
        """Map and execute a recorded turn, set its outcome, and return what the model sees next.

        Past the deadline nothing is executed: the model's time ran out while it generated, so the episode is
        truncated (`is_truncated`) and the observation says so.
        """
        if self.deadline is not None and self.deadline.expired:
            self.record.truncation = self.deadline.truncation()
            return Observation(f"The episode ran out of time: {self.record.truncation}.")
        started = time.perf_counter()
        try:
            await self._execute(turn)
        except BaseException:
            self._failed = True
            raise
        finally:
            turn.env_seconds = time.perf_counter() - started
            self.record.env_seconds += turn.env_seconds
        for listener in self.harness.turn_listeners:
            listener(self, turn)
        observation = observe(turn)
        return Observation(observation.text, self.screenshots.encode(observation.images))

    async def step(self, text: str) -> tuple[TurnRecord, Observation]:
        """Record and act on one model message (what a Gymnasium `step` does)."""
        turn = self.record_turn(text)
        return turn, await self.act(turn)

    async def _execute(self, turn: TurnRecord) -> None:
        if turn.parsed.call is None:
            turn.outcome = TurnOutcome.PARSE_ERROR
            return
        mapped = self.harness.mapper.map(turn.parsed.call, blocked_tools=self.blocked_tools)
        if isinstance(mapped, ActionError):
            turn.action_error, turn.outcome = mapped, TurnOutcome.ACTION_ERROR
            return
        if mapped.tool_call is not None and self.screenshots.scale != 1.0:  # model pixels -> screen pixels
            coordinates = self.harness.config.images.coordinate_arguments
            given = self.harness.mapper.agent_arguments(mapped, turn.parsed.call)  # a config's constants stay
            arguments = scale_coordinates(
                mapped.tool_call.arguments, [name for name in coordinates if name in given], self.screenshots.scale
            )
            mapped = dataclasses.replace(mapped, tool_call=ToolCall(mapped.tool_call.name, arguments))
        turn.action = mapped
        if mapped.tool_call is not None:
            result = await self._call_tool(mapped.tool_call)
            if isinstance(result, ActionError):
                turn.action, turn.action_error, turn.outcome = None, result, TurnOutcome.ACTION_ERROR
                return
            turn.result = result
            if is_failed_tool_result(result, self.harness.tool_error_pattern):
                turn.outcome = TurnOutcome.TOOL_ERROR
                return
        turn.outcome = TurnOutcome.DONE if mapped.ends_episode else TurnOutcome.EXECUTED

    async def _call_tool(self, call: ToolCall) -> ToolResult | ActionError:
        """Execute one call; a pass-through to a tool the server lacks is the model's mistake, not a crash."""
        session = self._require_session()
        tools = session.tools
        if call.name not in tools and not any(name.endswith(f"_{call.name}") for name in tools):
            available = ", ".join(sorted(tools))
            return ActionError(
                ActionErrorKind.UNKNOWN_ACTION, f"There is no tool {quote_model_text(call.name)}; tools: {available}."
            )
        async with self._server_wait(f"the call to tool {call.name!r}"):
            return await session.call_tool(call.name, call.arguments)

    @property
    def is_done(self) -> bool:
        """The agent called done()."""
        return bool(self.record.turns) and self.record.turns[-1].outcome is TurnOutcome.DONE

    @property
    def is_truncated(self) -> bool:
        """The deadline passed while the model was generating (`record.truncation` says so)."""
        return self.record.truncation is not None

    def cut(self) -> RolloutTimeoutError | None:
        """Account for a caller that cut the rollout at `timeouts.rollout_s` (verifiers' `timeout_seconds`).

        Returns the infrastructure error when the cut fell in a server wait; otherwise the model was generating, so
        the episode is marked truncated and None is returned.
        """
        if self.deadline is not None and self.deadline.cut_during is not None:
            return self.deadline.error(self.deadline.cut_during)
        rollout_s = self.deadline.rollout_s if self.deadline else self.harness.config.timeouts.rollout_s
        self.record.truncation = f"timeouts.rollout_s ({rollout_s:g} s) ran out while the model was generating"
        return None

    async def evaluate(self) -> Grade | None:
        """Run the evaluate call(s) and store the grade.

        Returns None, grading nothing, when the episode never started (or is closed already) or was truncated by
        the deadline. A server that died after the last turn is not skipped: the evaluate call reports it.

        Raises:
            ServerConnectionError: a server died (or its connection dropped) before or during the evaluation.
            RolloutTimeoutError: the deadline passed during the evaluation.
        """
        # No shortcut for a session that is no longer alive: returning None there left a rollout whose server was
        # killed after its last turn with no grade and no error, scored as if nothing had happened (bench/soak.py).
        if self.session is None or self.is_truncated:
            return None
        started = time.perf_counter()
        try:
            results = []
            for call in self.task.evaluate_calls:
                async with self._server_wait(f"the evaluate call {call.name!r}"):
                    results.append(await self.session.call_tool(call.name, call.arguments))
        except BaseException:
            self._failed = True
            raise
        finally:
            self.record.evaluate_seconds = time.perf_counter() - started
        self.record.evaluate_results = results
        self.record.grade = extract_grade(results)
        if self.record.grade.is_error:
            self.record.evaluation_error = self.record.grade.content or "the evaluation failed"
        return self.record.grade

    def evaluation_failure(self) -> EvaluationError | None:
        """The error to record when the evaluation failed, unless `rubric.score_failed_evaluations` scores it as 0."""
        message = self.record.evaluation_error
        if message is None or self.harness.config.rubric.score_failed_evaluations:
            return None
        return EvaluationError(f"task {self.task.id!r}: the evaluation failed: {message}")

    async def close(self) -> None:
        """Give the session back (to the pool after a clean episode, else shut down); safe to call again.

        Closing may wait politely only for what is left of the deadline; the servers are then killed.
        """
        session, self.session = self.session, None
        if session is not None:
            close_timeout_s = self.deadline.close_timeout_s() if self.deadline is not None else CLOSE_TIMEOUT_S
            await self.harness.release_session(session, reusable=not self._failed, close_timeout_s=close_timeout_s)

    def _server_wait(self, operation: str) -> AbstractAsyncContextManager[None]:
        """Bound a wait on the server by the episode's deadline (a no-op when the episode is not bounded)."""
        return self.deadline.bound(operation) if self.deadline is not None else nullcontext()

    def _require_session(self) -> MCPSession:
        if self.session is None:
            raise RuntimeError("the episode is not started (or already closed); call start() first")
        return self.session


def observe(turn: TurnRecord) -> Observation:
    """The observation after a turn: the tool's result, or an explanation of what went wrong."""
    text = _observation_text(turn)
    if turn.parsed.tool_tags > 1:
        text = f"{text}\n{MULTIPLE_TOOLS_NOTE}"
    images = turn.result.images if turn.result is not None else ()
    return Observation(text, tuple(images))


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
