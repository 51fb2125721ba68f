"""`hud-vf-gym eval`: run a model on a taskset through the harness and write, summarise and resume the results.

The run, in order:

1. Build the harness from `--config` and load `--taskset` (the turn loop HUDGym, the Gym env and training use; no
   verifiers is imported, so the command works beside verifiers 0.3, 0.4 or none).
2. `--dry-run` stops here: each task's server is started and its tools checked (`hud_vf_gym.cli.eval.dry_run`).
3. Plan one rollout per (task, rollout index); with `--resume`, drop the pairs already in `results.jsonl`.
4. Open the model: the embedded SmolLM2 or a `--model-path` folder in process (`hud_vf_gym.local_model.endpoint`), or an
   OpenAI-compatible `--base-url`; both reach the rollout loop as an `openai.AsyncOpenAI` client.
5. Run the pending pairs (`hud_vf_gym.core.chat.run_chat_episode`: verifiers' classic loop and row format),
   `--concurrency` at a time, appending each finished rollout to `results.jsonl` at once
   (`hud_vf_gym.cli.eval.results`), so a killed run loses only the rollouts in flight.
   Progress (per rollout: turn, last action, running reward; overall: finished, tokens/s, ETA) is drawn live on a
   terminal and written as lines elsewhere (`hud_vf_gym.cli.eval.progress`).
6. Summarise every row in the folder, resumed ones included (`hud_vf_gym.cli.eval.summary`), and write the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hud_vf_gym.cli.eval.dry_run import check_tasks, render_checks
from hud_vf_gym.cli.eval.options import EvalOptions, is_local_url
from hud_vf_gym.cli.eval.progress import (
    CURRENT_ROLLOUT,
    REFRESH_S,
    CountingClient,
    Progress,
    open_progress,
    turn_listener,
)
from hud_vf_gym.cli.eval.results import ResultsFolder, pair_key
from hud_vf_gym.cli.eval.summary import render_table, summarize, turns_of
from hud_vf_gym.config import load_config
from hud_vf_gym.core.chat import ChatEndpoint, run_chat_episode
from hud_vf_gym.core.harness import Harness
from hud_vf_gym.errors import ConfigError, DependencyNotInstalled, TaskError
from hud_vf_gym.tasks.loading import TasksetWarning, load_taskset
from hud_vf_gym.tasks.task import Task

__all__ = ["EvalReport", "EvalOptions", "run_eval"]

NO_API_KEY = "EMPTY"  # what a local endpoint without authentication gets as its key (vf-eval does the same)
DRY_RUN_FAILED = 1  # exit status when a dry run finds a broken task


@dataclass(frozen=True, slots=True)
class EvalReport:
    """What a run produced: the results folder, the summary and its table, the exit status for the command."""

    output: Path
    summary: dict[str, Any] = field(default_factory=dict)
    table: str = ""
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class _Environment:
    """What the run plays: the harness (config, parser, mapper, sessions) and the tasks, in taskset order."""

    harness: Harness
    tasks: tuple[Task, ...]


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """The model as the rollout loop sees it: an `openai.AsyncOpenAI` client and the model name to send."""

    client: Any  # openai.AsyncOpenAI; wrapped in a CountingClient for the run (tokens/s)
    name: str
    description: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Pair:
    """One planned rollout: a task (by its index in the taskset) and a rollout index."""

    example_id: int
    rollout_index: int
    task_id: str


Log = Callable[[str], None]


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_eval(options: EvalOptions, *, log: Log = _stderr) -> EvalReport:
    """Run `hud-vf-gym eval` with `options`; progress and notes go to `log`, results to the output folder.

    Raises:
        ConfigError, TaskError: the options, config or taskset cannot be used (before any rollout starts).
        DependencyNotInstalled: the local model's packages are missing (the message has the pip command).
    """
    return asyncio.run(_run_eval(options, log))


async def _run_eval(options: EvalOptions, log: Log) -> EvalReport:
    folder = ResultsFolder(options.output_path)
    env, skipped_rows = _build_environment(options)
    if options.base_url is not None and not options.dry_run:
        _endpoint_key(options)  # a missing key is reported before anything is written
    if options.dry_run:
        return await _dry_run(env, skipped_rows, folder.path, options, log)
    for problem in skipped_rows:
        log(f"skipped an invalid taskset row: {problem}")
    pairs = _plan(env, options.rollouts_per_task)
    pending = _pending_pairs(folder, pairs, resuming=options.resume is not None)
    if options.resume is None:
        folder.write_run({"options": options.to_json(), "planned_rollouts": len(pairs)})
    log(f"results: {folder.path} ({len(pairs) - len(pending)} of {len(pairs)} rollouts already finished)")
    if pending:
        async with _open_model(options, log) as endpoint:
            progress = open_progress(len(pairs), len(pairs) - len(pending), options.max_turns)
            await _run_pairs(env, endpoint, pending, folder, options, progress)
    summary = summarize(folder.read_rows(), planned=len(pairs))
    table = render_table(summary)
    folder.write_summary(summary, table)
    return EvalReport(folder.path, summary, table)


# -- the environment and the plan -----------------------------------------------------------------------------------


def _build_environment(options: EvalOptions) -> tuple[_Environment, tuple[str, ...]]:
    """The environment for the options, and the problems of any taskset rows that were skipped."""
    config = load_config(options.config, max_turns=options.max_turns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TasksetWarning)  # the skipped rows are reported from `problems` instead
        taskset = load_taskset(options.taskset, num_tasks=options.num_tasks)
    if not taskset.tasks:
        raise ConfigError("the taskset is empty; pass --taskset with at least one valid task")
    return _Environment(Harness(config), tuple(taskset.tasks)), taskset.problems


def _plan(env: _Environment, rollouts_per_task: int) -> list[_Pair]:
    """Every (task, rollout index) pair of the run, task by task (a task's index is its `example_id`)."""
    return [
        _Pair(example_id, index, task.id)
        for example_id, task in enumerate(env.tasks)
        for index in range(rollouts_per_task)
    ]


def _pending_pairs(folder: ResultsFolder, pairs: list[_Pair], *, resuming: bool) -> list[_Pair]:
    """The pairs still to run; a fresh run refuses a folder that already holds results."""
    rows = folder.read_rows()
    if rows and not resuming:
        raise ConfigError(
            f"--output {str(folder.path)!r} already holds {len(rows)} results; pass --resume {folder.path} to "
            "finish that run, or choose another --output folder"
        )
    task_ids = {pair.example_id: pair.task_id for pair in pairs}
    moved = sorted(
        {
            (row["example_id"], row.get("task_id"))
            for row in rows
            if task_ids.get(row["example_id"]) not in (None, row.get("task_id"))
        }
    )
    if moved:
        details = ", ".join(f"task {index} was {old!r}, now {task_ids[index]!r}" for index, old in moved)
        raise ConfigError(f"--resume {str(folder.path)!r}: the taskset changed since that run ({details})")
    finished = {pair_key(row) for row in rows}
    return [pair for pair in pairs if (pair.example_id, pair.rollout_index) not in finished]


# -- the model ------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _open_model(options: EvalOptions, log: Log) -> AsyncIterator[_Endpoint]:
    """The client for the options' model; its HTTP client is closed afterwards."""
    if options.base_url is not None:
        openai_client = _endpoint_client(options)
        name = str(options.model)
        description = {"kind": "endpoint", "base_url": options.to_json()["base_url"], "model": name}
    else:
        openai_client, name, description = await _local_client(options, log)
    try:
        yield _Endpoint(openai_client, name, description)
    finally:
        await openai_client.close()


def _endpoint_key(options: EvalOptions) -> str:
    """The API key for `--base-url`, read from the variable `--api-key-env` names (checked before anything runs)."""
    base_url = str(options.base_url)
    variable = options.api_key_env
    if variable is None:
        if not is_local_url(base_url):
            raise ConfigError(
                f"--base-url {base_url} is not on this machine, so it needs an API key: pass --api-key-env VAR, "
                "naming the environment variable that holds the key"
            )
        return NO_API_KEY
    key = os.environ.get(variable)
    if not key:
        raise ConfigError(f"--api-key-env {variable}: the environment variable {variable} is not set; export it first")
    return key


def _endpoint_client(options: EvalOptions) -> Any:
    """An `AsyncOpenAI` for `--base-url`, its key read from `--api-key-env`."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=str(options.base_url), api_key=_endpoint_key(options), max_retries=0)


async def _local_client(options: EvalOptions, log: Log) -> tuple[Any, str, dict[str, Any]]:
    """Load the embedded model (converting it once) or the --model-path folder, behind an in-process endpoint."""
    from hud_vf_gym.local_model.endpoint import local_openai_client
    from hud_vf_gym.local_model.model import load_local_model, resolve_model_folder

    def converting(folder: Path) -> None:
        log(f"converting the embedded model once to {folder} (about 30 s; later runs reuse it)")

    folder = await asyncio.to_thread(resolve_model_folder, options.model_path, on_convert=converting)
    log(f"loading {folder}")
    model = await asyncio.to_thread(
        load_local_model, folder, max_batch_size=options.max_batch_size, cache_tokens=options.cache_tokens
    )
    return local_openai_client(model), model.name, {"kind": "local", "folder": str(folder), "model": model.name}


# -- running --------------------------------------------------------------------------------------------------------


async def _run_pairs(
    env: _Environment,
    endpoint: _Endpoint,
    pairs: list[_Pair],
    folder: ResultsFolder,
    options: EvalOptions,
    progress: Progress,
) -> None:
    """Run the pairs `--concurrency` at a time, appending each result as it finishes, showing progress.

    Progress hears of each rollout's start and end here, of each acted-on turn from the harness (a turn listener)
    and of each reply's completion tokens from the client (`CountingClient`).
    """
    slots = asyncio.Semaphore(options.concurrency)
    client = CountingClient(endpoint.client, progress.tokens)
    listener = turn_listener(progress)
    env.harness.turn_listeners.append(listener)

    async def run(pair: _Pair) -> None:
        key = (pair.example_id, pair.rollout_index)
        async with slots:
            progress.rollout_started(key, pair.task_id)
            CURRENT_ROLLOUT.set(key)  # this task's own context: the turn listener finds the rollout by it
            row = await _run_pair(env, endpoint, client, pair, options)
        folder.append(row)
        error = row.get("error")
        progress.rollout_finished(
            key,
            reward=None if row.get("reward") is None else float(row["reward"]),
            turns=turns_of(row),
            error=str(error.get("error")) if isinstance(error, dict) else None,
        )

    async def tick() -> None:  # elapsed and ETA move on between turns too (a CPU model's turn takes seconds)
        while True:
            await asyncio.sleep(REFRESH_S)
            progress.tick()

    ticker = asyncio.create_task(tick())
    tasks = [asyncio.create_task(run(pair)) for pair in pairs]
    try:
        await asyncio.gather(*tasks)
    finally:  # after a user error (or Ctrl-C): stop the other rollouts and every server they started
        for task in [*tasks, ticker]:
            task.cancel()
        await asyncio.gather(*tasks, ticker, return_exceptions=True)
        await env.harness.close_all()
        env.harness.turn_listeners.remove(listener)
        progress.close()


def _sampling_args(options: EvalOptions, rollout_index: int) -> dict[str, Any]:
    sampling: dict[str, Any] = {"temperature": options.temperature, "max_tokens": options.max_tokens}
    if options.seed is not None:
        sampling["seed"] = options.seed + rollout_index  # rollouts of one task differ when sampling
    return sampling


async def _run_pair(
    env: _Environment, endpoint: _Endpoint, client: Any, pair: _Pair, options: EvalOptions
) -> dict[str, Any]:
    """One rollout, scored, as a results row; an unexpected failure becomes that row's infrastructure error."""
    chat = ChatEndpoint(client, endpoint.name, _sampling_args(options, pair.rollout_index))
    try:
        row = await run_chat_episode(env.harness, env.tasks[pair.example_id], chat, example_id=pair.example_id)
    except (ConfigError, TaskError, DependencyNotInstalled):
        raise  # a user error stops the whole run with its message: every other rollout would fail the same way
    except Exception as exc:  # the rollout boundary: recorded as this rollout's infrastructure error, not scored
        row = _failed_row(pair, exc)
    return {**row, "task_id": pair.task_id, "rollout_index": pair.rollout_index, "model": endpoint.name}


def _failed_row(pair: _Pair, exc: BaseException) -> dict[str, Any]:
    message = str(exc) or type(exc).__name__
    error = {"error": type(exc).__name__, "message": message, "error_chain_repr": repr(exc), "error_chain_str": message}
    return {
        "example_id": pair.example_id,
        "prompt": None,
        "completion": None,
        "reward": None,
        "metrics": {},
        "error": error,
    }


# -- dry run --------------------------------------------------------------------------------------------------------


async def _dry_run(
    env: _Environment, skipped_rows: tuple[str, ...], output: Path, options: EvalOptions, log: Log
) -> EvalReport:
    """Check every task's server and tools; the exit status is non-zero when any task is broken."""
    try:
        checks = await check_tasks(env.harness, env.tasks, concurrency=options.concurrency)
    finally:
        await env.harness.close_all()
    table = render_checks(checks, skipped_rows, config=options.config, taskset=options.taskset)
    broken = any(not check.ok for check in checks) or bool(skipped_rows)
    summary = {
        "dry_run": [{"task_id": c.task_id, "tools": list(c.tools), "problems": list(c.problems)} for c in checks]
    }
    return EvalReport(output, summary, table, DRY_RUN_FAILED if broken else 0)
