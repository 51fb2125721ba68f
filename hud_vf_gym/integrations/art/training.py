"""`train_hud_with_art`: GRPO on a HUD environment with OpenPipe ART's current API (0.5.23).

One run, in order:

1. Resolve the environment (`environments.resolve_environment`) and the options (flags, then `--config`'s
   `training`, then defaults); check the backend can run here (GPU, key) before anything starts.
2. Load the tasks: the first `scenarios` of the taskset, on the environment's `mcp_config` when it gives one; or,
   for a server without tasks, `generate_scenarios_from_hud` with the judge's model.
3. The policy: a `TrainableModel(name, project, base_model, run_name)` registered with the backend (its
   `openai_client()` serves the current checkpoint, with logprobs); for `ruler-only`, the `--base-url` endpoint.
4. Each step from the model's current step (a rerun with the same run name resumes): `groups_per_step` tasks in
   turn, each a group of `rollouts_per_group` episodes (`ARTTrainingAgent.rollout_group`), gathered with
   `art.gather_trajectory_groups`, RULER-scored as each group finishes (`after_each`) when asked;
   then `backend.train(model, groups, learning_rate=...)` and `model.log(groups, metrics=..., step=...)`.
   `ruler-only` gathers and scores one step and trains nothing.
5. Every session, the warm pool and the backend are closed, whatever happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hud_vf_gym.cli.eval.options import is_local_url
from hud_vf_gym.config import EnvConfig, load_config
from hud_vf_gym.errors import ConfigError, InferenceError, MCPServerError
from hud_vf_gym.integrations.art._art import require_art
from hud_vf_gym.integrations.art.agent import ARTTrainingAgent, RewardFn, Sampling
from hud_vf_gym.integrations.art.backends import check_backend, make_backend
from hud_vf_gym.integrations.art.environments import (
    ArtConfigFile,
    EnvironmentSpec,
    TrainingDefaults,
    resolve_environment,
)
from hud_vf_gym.integrations.art.export import write_groups
from hud_vf_gym.integrations.art.options import ARTOptions
from hud_vf_gym.integrations.art.report import GroupReport, StepReport, TrainingReport
from hud_vf_gym.integrations.art.ruler import Judge, score_group
from hud_vf_gym.integrations.art.scenarios import generate_scenarios_from_hud
from hud_vf_gym.tasks.loading import load_taskset
from hud_vf_gym.tasks.task import Task

__all__ = ["run_training", "train_hud_with_art"]

NO_API_KEY = "EMPTY"


async def train_hud_with_art(
    environment: str = "2048",
    base_model: str | None = None,
    num_training_scenarios: int | None = None,
    rollouts_per_group: int | None = None,
    learning_rate: float | None = None,
    use_ruler: bool = False,
    *,
    backend: str | Any = "local",
    reward_fn: RewardFn | None = None,
    on_step: Callable[[StepReport], None] | None = None,
    **options: Any,
) -> TrainingReport:
    """Train `base_model` on a HUD environment with ART (seed 000's signature on ART 0.5.23's API).

    Args:
        environment: 2048, browser, miniwob, or an environment of the `config` file.
        base_model: the model to train (or, with `base_url`, the name that endpoint serves).
        num_training_scenarios: how many tasks to train on (the first N).
        rollouts_per_group: episodes per task per step (one GRPO group).
        learning_rate: the learning rate.
        use_ruler: replace each group's rewards with RULER's relative scores (the own reward is kept in metrics).
        backend: "local" (GPU), "serverless" (W&B Training), "ruler-only", or an ART backend object.
        reward_fn: a custom reward `(trajectory, episode record) -> float` replacing the rubric's total.
        on_step: called with each step's report as soon as the step ends.
        **options: any other `ARTOptions` field: `steps`, `groups_per_step`, `config`, `judge_model`,
            `judge_base_url`, `base_url`, `max_turns`, `max_tokens`, `temperature`, `project`, `run_name`, ...

    Returns:
        Every step's groups (rewards, RULER scores, infrastructure errors) and training metrics.
    """
    values = dict(
        env=environment,
        base_model=base_model,
        scenarios=num_training_scenarios,
        rollouts_per_group=rollouts_per_group,
        learning_rate=learning_rate,
        use_ruler=use_ruler,
        **options,
    )
    if isinstance(backend, str):
        values["backend"] = backend
        return await run_training(ARTOptions(**values), reward_fn=reward_fn, on_step=on_step)
    values.setdefault("backend", "local")  # only names the run's kind in reports; the object does the training
    return await run_training(ARTOptions(**values), backend=backend, reward_fn=reward_fn, on_step=on_step)


@dataclass
class _Run:
    """What one run holds while it runs."""

    options: ARTOptions
    spec: EnvironmentSpec
    config: EnvConfig
    tasks: list[Task]
    judge: Judge | None
    agent: ARTTrainingAgent | None = None
    model: Any = None
    backend: Any = None
    reports: list[StepReport] = field(default_factory=list)


async def run_training(
    options: ARTOptions,
    *,
    backend: Any = None,
    reward_fn: RewardFn | None = None,
    on_step: Callable[[StepReport], None] | None = None,
) -> TrainingReport:
    """Run training as `options` say (see the module docstring); `backend` replaces the one named by options.

    Raises:
        ConfigError, TaskError, DependencyNotInstalled: before any rollout, with the fix.
        MCPServerError, InferenceError: every rollout of a step failed for infrastructure reasons.
    """
    art = require_art()
    config_file = ArtConfigFile.load(options.config) if options.config else None
    spec = resolve_environment(options.env, config_file)
    options = options.resolved(config_file.defaults_for(options.env) if config_file else TrainingDefaults())
    if backend is None:
        check_backend(options.backend)  # a missing GPU or key is reported before any server starts
    config = load_config(spec.config_path or "default", max_turns=options.max_turns or spec.max_turns)
    judge = _judge(options)
    run = _Run(options, spec, config, await _load_tasks(options, spec, judge), judge)
    try:
        run.backend = backend if backend is not None else make_backend(options.backend)
        run.agent = await _agent(art, run, reward_fn)
        start = await run.model.get_step() if run.model is not None else 0
        last = start + 1 if run.backend is None else options.steps or 1
        for step in range(start, last):
            report = await _step(art, run, step)
            run.reports.append(report)
            if on_step is not None:
                on_step(report)
    finally:
        if run.agent is not None:
            await run.agent.harness.close_all()
            await run.agent.client.close()
        if run.backend is not None and backend is None:
            await run.backend.close()
    backend_name = options.backend if backend is None else type(backend).__name__
    return TrainingReport(options.run_name or "", backend_name, tuple(run.reports))


async def _load_tasks(options: ARTOptions, spec: EnvironmentSpec, judge: Judge | None) -> list[Task]:
    count = options.scenarios
    if spec.taskset is not None:
        tasks = list(load_taskset(spec.taskset, num_tasks=count).tasks)
        if spec.mcp_config is not None:
            tasks = [dataclasses.replace(task, mcp_config=dict(spec.mcp_config)) for task in tasks]
        return tasks
    if judge is None or judge.base_url is None:
        raise ConfigError(
            f"environment {options.env!r} has no taskset, so its scenarios are generated from the server's tools: "
            "give the generator with --judge-model NAME --judge-base-url URL (an OpenAI-compatible endpoint)"
        )
    assert spec.mcp_config is not None  # resolve_environment requires a taskset or an mcp_config
    return await generate_scenarios_from_hud(
        spec.mcp_config,
        count or 1,
        generator_model=judge.model,
        generator_base_url=judge.base_url,
        generator_api_key_env=judge.api_key_env,
    )


def _judge(options: ARTOptions) -> Judge | None:
    """The RULER judge (also the scenario generator): as given, else the policy's own endpoint and model."""
    if options.judge_model is not None:
        return Judge(options.judge_model, options.judge_base_url, options.judge_api_key_env)
    if options.base_url is not None and options.base_model is not None:
        return Judge(options.base_model, options.base_url, options.api_key_env)
    if options.ruler:
        raise ConfigError("RULER needs a judge: give --judge-model (a LiteLLM model, or a name at --judge-base-url)")
    return None


async def _agent(art: Any, run: _Run, reward_fn: RewardFn | None) -> ARTTrainingAgent:
    """The agent sampling from the policy: the registered trainable model, or the ruler-only endpoint."""
    options = run.options
    taskset = run.spec.taskset or f"generated:{options.env}"
    sampling = Sampling(
        temperature=options.temperature if options.temperature is not None else 1.0,
        max_tokens=options.max_tokens or 256,
        logprobs=run.backend is not None,  # ART trains on choices that carry logprobs
        seed=options.seed,
    )
    common: dict[str, Any] = {
        "sampling": sampling,
        "taskset": taskset,
        "reward_fn": reward_fn,
        "max_concurrent_sessions": options.concurrency,
    }
    if run.backend is None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(
            base_url=options.base_url, api_key=_endpoint_key(options), max_retries=0, timeout=options.request_timeout
        )
        return ARTTrainingAgent(run.config, client, options.base_model or "", **common)
    run.model = art.TrainableModel(
        name=options.run_name,
        project=options.project,
        base_model=options.base_model,
        run_name=options.run_name,
        base_path=options.art_dir,
    )
    await run.model.register(run.backend)
    return ARTTrainingAgent.for_model(run.model, run.config, **common)


def _endpoint_key(options: ARTOptions) -> str:
    """The ruler-only endpoint's API key: from `--api-key-env`, or none for a local endpoint."""
    if options.api_key_env is not None:
        key = os.environ.get(options.api_key_env)
        if not key:
            raise ConfigError(f"--api-key-env {options.api_key_env}: the variable is not set; export it first")
        return key
    if options.base_url is not None and not is_local_url(options.base_url):
        raise ConfigError(f"--base-url {options.base_url} is not on this machine: pass --api-key-env VAR with its key")
    return NO_API_KEY


async def _step(art: Any, run: _Run, step: int) -> StepReport:
    """Gather (and score) one step's groups, then train on them unless ruler-only."""
    options, agent = run.options, run.agent
    assert agent is not None
    batch = _batch(run.tasks, step, options.groups_per_step or len(run.tasks))
    judge = run.judge if options.ruler else None

    async def scored(group: Any) -> Any:
        return await score_group(group, judge) if judge is not None else group

    groups = await art.gather_trajectory_groups(
        (agent.rollout_group(task, options.rollouts_per_group or 1) for task in batch),
        pbar_desc=f"step {step + 1}",
        after_each=scored,
    )
    if options.output is not None:
        write_groups(groups, Path(options.output) / f"step-{step + 1:04d}.jsonl")
    reports = tuple(GroupReport.from_group(group) for group in groups)
    if run.backend is None:
        return StepReport(step + 1, reports, trained=False)
    trainable = [group for group in groups if group.trajectories]
    if not trainable:
        _raise_all_failed(step, groups)
    result = await run.backend.train(run.model, trainable, learning_rate=options.learning_rate)
    await run.model.log(trainable, metrics=result.metrics, step=result.step, split="train")
    return StepReport(step + 1, reports, trained=True, train_metrics=dict(result.metrics))


def _batch(tasks: Sequence[Task], step: int, size: int) -> list[Task]:
    """The step's tasks: `size` of them, continuing round the list where the previous step stopped."""
    size = min(size, len(tasks))
    return [tasks[(step * size + index) % len(tasks)] for index in range(size)]


def _raise_all_failed(step: int, groups: Sequence[Any]) -> None:
    failures = [failure for group in groups for failure in group.exceptions]
    # ART keeps an exception's type as str(type(exc)): "<class 'hud_vf_gym.errors.InferenceError'>"
    kind = failures[0].type.removeprefix("<class '").removesuffix("'>").rsplit(".", 1)[-1] if failures else ""
    first = f"{kind}: {failures[0].message.strip()}" if failures else "no rollout ran"
    error = InferenceError if kind == InferenceError.__name__ else MCPServerError
    raise error(
        f"every rollout of step {step + 1} failed for infrastructure reasons, so there is nothing to train "
        f"({len(failures)} failures; the first: {first}); fix the server or endpoint and rerun: the run resumes"
    )


def run_sync(options: ARTOptions, **kwargs: Any) -> TrainingReport:
    """`run_training` for synchronous callers (the CLI)."""
    return asyncio.run(run_training(options, **kwargs))
