"""The one turn loop: a task's episode over MCP, used by HUDGym (verifiers), the Gymnasium env and the trainer.

`Harness` holds what a config decides for every episode (parser, action mapper, error pattern, timeouts) and the
environment-wide resources (the limit on open sessions, the sessions still open). `Harness.start(task)` opens a
`TaskEpisode`, which runs in rollout order:

1. `start()`   open the task's MCP session, check the action mappings against its tools, run the setup call(s);
2. `record(text)` parse one model message (once; the record keeps the parse for every later reader);
3. `act(turn)` map the parsed call, execute it, classify the outcome; `observe(turn)` says what happened;
4. `evaluate()` run the evaluate call(s) and keep the grade; `close()` shut the session down (always).

Model mistakes never raise: they become the turn's outcome and an observation. Infrastructure failures raise
`MCPServerError` subclasses; a config that does not fit the server raises `ConfigError`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from hud_vf_gym.config import LIFECYCLE_TOOLS, EnvConfig
from hud_vf_gym.core.actions import ActionError, ActionErrorKind, ActionMapper
from hud_vf_gym.core.grade import extract_grade, is_failed_tool_result
from hud_vf_gym.core.parser import ParsedCall, ParsedTurn, TurnParser
from hud_vf_gym.core.record import EpisodeRecord, TurnOutcome, TurnRecord
from hud_vf_gym.environments import SETUP_RESETS_STATE_META
from hud_vf_gym.errors import ConfigError, TaskSetupError
from hud_vf_gym.runtime.pool import SessionPool, servers_not_reset
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.types import Grade, ImageData, ToolCall, ToolResult

__all__ = ["Harness", "Observation", "TaskEpisode"]

DONE_MESSAGE = "Episode finished; evaluating."
MULTIPLE_TOOLS_NOTE = "Note: only the first <tool> call of a turn is executed."


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

    def episode(self, task: Task) -> TaskEpisode:
        """A new, not yet started episode of `task`."""
        return TaskEpisode(self, task)

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
            return await MCPSession.open(task.mcp_config, timeouts=self.config.timeouts, environ=self.environ)
        if not task.setup_calls:
            raise ConfigError(
                f"task {task.id!r} has no setup call, so a reused server would start where the previous rollout "
                "ended; give the task a setup_tool that resets the environment, or set sessions.reuse: auto or false"
            )
        session = await self.pool.checkout(task.mcp_config)
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

    def _servers_not_reset(self, task: Task, session: MCPSession) -> list[str]:
        """The servers of `session` whose state the task's setup does not declare to reset."""
        try:
            return servers_not_reset(session, [call.name for call in task.setup_calls])
        except ConfigError:  # a setup tool the server lacks: the setup call itself reports that, as without a pool
            return list(session.server_names)

    async def release_session(self, session: MCPSession, *, reusable: bool = False) -> None:
        """Give back a session from `open_session`: to the pool when `reusable` and pooling is on, else close it.

        Args:
            session: the session `open_session` returned.
            reusable: whether its episode ended cleanly (no error escaped any phase), so a reset makes it good as new.
        """
        if session not in self._open_sessions:  # released already (by close_all): only make sure it is closed
            await session.aclose()
            return
        self._open_sessions.discard(session)  # first, so a concurrent close_all cannot release the slot again
        try:
            if self.pool is not None:
                reusable = reusable and session not in self._single_use
                await self.pool.checkin(session, reusable=reusable)
            else:
                await session.aclose()
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

    def __init__(self, harness: Harness, task: Task) -> None:
        """Prepare the record; nothing is opened until `start()`."""
        self.harness = harness
        self.task = task
        self.record = EpisodeRecord(task_id=task.id)
        self.session: MCPSession | None = None
        self.blocked_tools = LIFECYCLE_TOOLS | {call.name for call in (*task.setup_calls, *task.evaluate_calls)}
        # Set when an error (or a cancellation) escapes any phase: the session is then never reused.
        self._failed = False

    async def start(self) -> Observation:
        """Open the session, check the mappings, run setup; return the setup output (the first observation)."""
        started = time.perf_counter()
        try:
            self.session = await self.harness.open_session(self.task)
            self.harness.check_mappings(self.session)
            self.record.setup_results = await self._run_setup(self.session)
        except BaseException:
            self._failed = True
            raise
        finally:
            self.record.setup_seconds = time.perf_counter() - started
        results = self.record.setup_results
        text = "\n\n".join(result.text for result in results if result.text)
        return Observation(text, tuple(image for result in results for image in result.images))

    async def _run_setup(self, session: MCPSession) -> list[ToolResult]:
        results = []
        for call in self.task.setup_calls:
            result = await session.call_tool(call.name, call.arguments)
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
        """Map and execute a recorded turn, set its outcome, and return what the model sees next."""
        started = time.perf_counter()
        try:
            await self._execute(turn)
        except BaseException:
            self._failed = True
            raise
        finally:
            turn.env_seconds = time.perf_counter() - started
            self.record.env_seconds += turn.env_seconds
        return observe(turn)

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
            return ActionError(ActionErrorKind.UNKNOWN_ACTION, f"There is no tool {call.name!r}; tools: {available}.")
        return await session.call_tool(call.name, call.arguments)

    @property
    def is_done(self) -> bool:
        """The agent called done()."""
        return bool(self.record.turns) and self.record.turns[-1].outcome is TurnOutcome.DONE

    async def evaluate(self) -> Grade | None:
        """Run the evaluate call(s) and store the grade; None when the session is gone (nothing to grade)."""
        if self.session is None or not self.session.is_alive:
            return None
        started = time.perf_counter()
        try:
            results = [await self.session.call_tool(call.name, call.arguments) for call in self.task.evaluate_calls]
        except BaseException:
            self._failed = True
            raise
        finally:
            self.record.evaluate_seconds = time.perf_counter() - started
        self.record.evaluate_results = results
        self.record.grade = extract_grade(results)
        return self.record.grade

    async def close(self) -> None:
        """Give the session back (to the pool after a clean episode, else shut down); safe to call again."""
        session, self.session = self.session, None
        if session is not None:
            await self.harness.release_session(session, reusable=not self._failed)

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
