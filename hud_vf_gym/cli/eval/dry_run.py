"""`hud-vf-gym eval --dry-run`: check that every task can run, without any model.

For each task it opens the task's MCP session (starting its server(s)), lists the tools, checks the config's action
mappings against them with `ActionMapper.check_tools`, and closes the session. Setup and evaluate are not called:
a dry run has no side effects on the environment. Every broken task is reported with its reason, together with the
taskset rows that were skipped as invalid.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from hud_vf_gym.core.harness import Harness
from hud_vf_gym.errors import HUDGymError
from hud_vf_gym.tasks.task import Task

__all__ = ["TaskCheck", "check_tasks", "render_checks"]


@dataclass(frozen=True, slots=True)
class TaskCheck:
    """The outcome of checking one task: its tools when it works, the problems when it does not."""

    task_id: str
    tools: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    server_started: bool = True
    """False when the task's server could not start (its mcp_config is to blame, not the config's mappings)."""

    @property
    def ok(self) -> bool:
        """The server started and every mapped action found its tool."""
        return not self.problems


async def check_task(harness: Harness, task: Task) -> TaskCheck:
    """Start the task's server(s), list the tools and check the mappings against them."""
    try:
        session = await harness.open_session(task)
    except HUDGymError as exc:  # a server that cannot start, or a ${VAR} that is not set
        return TaskCheck(task.id, problems=(f"{type(exc).__name__}: {exc}",), server_started=False)
    try:
        return TaskCheck(
            task.id, tools=tuple(sorted(session.tools)), problems=tuple(harness.mapper.check_tools(session.tools))
        )
    finally:
        await harness.release_session(session)


async def check_tasks(harness: Harness, tasks: Sequence[Task], *, concurrency: int = 4) -> list[TaskCheck]:
    """Check every task, at most `concurrency` at a time; the results are in task order."""
    slots = asyncio.Semaphore(concurrency)

    async def check(task: Task) -> TaskCheck:
        async with slots:
            return await check_task(harness, task)

    return list(await asyncio.gather(*(check(task) for task in tasks)))


def render_checks(
    checks: Sequence[TaskCheck], skipped_rows: Sequence[str], *, config: str = "", taskset: str = ""
) -> str:
    """One line per task (ok with its tools, or BROKEN with each problem), then the skipped rows, then a total.

    The total says what to fix, by the option that names it: the config's action_mappings (`--config`) when a
    server's tools do not fit them, the tasks' mcp_config (`--taskset`) when a server did not start, and the
    taskset's rows when some were invalid.
    """
    lines = []
    for check in checks:
        if check.ok:
            lines.append(f"ok      {check.task_id}: tools {', '.join(check.tools)}")
            continue
        lines.append(f"BROKEN  {check.task_id}:")
        lines += [f"          {problem}" for problem in check.problems]
    lines += [f"SKIPPED {problem}" for problem in skipped_rows]
    broken = sum(1 for check in checks if not check.ok)
    lines.append(
        f"dry run: {len(checks) - broken} of {len(checks)} task(s) ok, {broken} broken, "
        f"{len(skipped_rows)} invalid row(s) skipped; {_verdict(checks, skipped_rows, config, taskset)}"
    )
    return "\n".join(lines)


def _verdict(checks: Sequence[TaskCheck], skipped_rows: Sequence[str], config: str, taskset: str) -> str:
    not_started = sum(1 for check in checks if not check.server_started)
    not_fitting = sum(1 for check in checks if check.server_started and not check.ok)
    fixes = []
    if not_fitting:
        fixes.append(
            f"the action_mappings of --config {config or '(the config)'} (they do not fit the tools of "
            f"{not_fitting} task(s))"
        )
    if not_started:
        fixes.append(f"the mcp_config of {not_started} task(s) in --taskset {taskset or '(the taskset)'}")
    if skipped_rows:
        fixes.append(f"{len(skipped_rows)} invalid row(s) of --taskset {taskset or '(the taskset)'}")
    return "fix " + "; and ".join(fixes) if fixes else "every task can run"
