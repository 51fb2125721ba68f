"""One episode against an OpenAI-compatible chat endpoint, on the harness, as a verifiers-compatible result row.

`hud-vf-gym eval` and the tests that need no verifiers run episodes here; the row has the keys of verifiers'
classic `RolloutOutput` (`example_id`, `prompt`, `completion`, `reward`, `metrics` and each metric flattened,
`error`, `timing`, `is_completed`, `is_truncated`, `stop_condition`, `token_usage`, `info`, `tool_defs`) plus
`hud_episode`, so results written by either path read the same. The loop follows verifiers' `MultiTurnEnv`:

1. the prompt: the config's system prompt (plus the task's own), then the task prompt with the setup output;
2. each turn: ask the model, record the reply; stop after `max_turns` replies (the last one is not acted on, as
   verifiers' `max_turns_reached` stops before its env response); otherwise act and answer with the observation;
   `done()` ends the episode after its observation (verifiers' `final_env_response`);
3. evaluate (unless an error ended the episode), close, and score with `score_episode` (the rubric's functions and
   weights, summed in verifiers' order).

An MCP server failure ends the episode with the error recorded (kept out of every mean, never scored as the model's
failure), as does a row that cannot run as written (`TaskDefinitionError`) and a failed evaluation
(`EvaluationError`, unless `rubric.score_failed_evaluations`); an empty reply is verifiers' `EmptyModelResponseError`
(a model error: scored as it stands); an endpoint failure is a `ModelError` row. The whole episode runs within
`timeouts.rollout_s` (`core/deadline.py`): cut in a server wait it is a `RolloutTimeoutError`, cut while the model
generated it is a truncation (`timeout_reached`, `record.truncation`), and either way it is not evaluated.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.core.harness import Harness, Observation, TaskEpisode
from hud_vf_gym.core.images import cap_screenshots
from hud_vf_gym.core.rubric import score_episode
from hud_vf_gym.errors import MCPServerError, TaskDefinitionError
from hud_vf_gym.tasks.task import Task

__all__ = ["SUMMARY_KEY", "ChatEndpoint", "run_chat_episode", "user_message"]

SUMMARY_KEY = "hud_episode"  # the JSON summary of the EpisodeRecord in a row (HUDGym's state column of that name)


@dataclass(frozen=True, slots=True)
class ChatEndpoint:
    """The model: an `openai.AsyncOpenAI` client, the model name to send and the sampling arguments.

    Attributes:
        client: an `openai.AsyncOpenAI` (or anything with its `chat.completions.create`).
        model: the model name sent with every request.
        sampling: `temperature`, `max_tokens` (sent as `max_completion_tokens`, as verifiers does), `seed`, ...
    """

    client: Any
    model: str
    sampling: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Spans:
    """Wall-clock spans in verifiers' `RolloutTiming` shape."""

    start_time: float = field(default_factory=time.time)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    model: list[tuple[float, float]] = field(default_factory=list)
    env: list[tuple[float, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The spans as verifiers dumps a `RolloutTiming` (seconds since the epoch, durations in seconds)."""

        def span(bounds: tuple[float, float]) -> dict[str, float]:
            return {"start": bounds[0], "end": bounds[1], "duration": bounds[1] - bounds[0]}

        def spans(items: list[tuple[float, float]]) -> dict[str, Any]:
            return {"spans": [span(item) for item in items], "duration": sum(end - start for start, end in items)}

        phases = {name: span(self.phases.get(name, (0.0, 0.0))) for name in ("setup", "generation", "scoring")}
        total = phases["scoring"]["end"] - phases["generation"]["start"] if phases["scoring"]["end"] else 0.0
        model, env = spans(self.model), spans(self.env)
        return {"start_time": self.start_time, **phases, "model": model, "env": env, "total": total}


class _ModelError(Exception):
    """The endpoint failed (`ModelError`) or answered with nothing (`EmptyModelResponseError`)."""

    def __init__(self, kind: str, message: str) -> None:
        """Remember the verifiers error name the row reports."""
        super().__init__(message)
        self.kind = kind


def user_message(observation: Observation) -> dict[str, Any]:
    """An observation as a user message: plain text, or text and `image_url` parts (as HUDGym sends them)."""
    if not observation.images:
        return {"role": "user", "content": observation.text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": observation.text}]
    parts += [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in observation.images]
    return {"role": "user", "content": parts}


async def run_chat_episode(harness: Harness, task: Task, endpoint: ChatEndpoint, *, example_id: int) -> dict[str, Any]:
    """Play one episode of `task` with the endpoint's model and return its result row.

    Raises:
        ConfigError: the config does not fit the task's server (a user error: every rollout would fail alike).
    """
    config = harness.config
    system = config.system_prompt if not task.system_prompt else f"{config.system_prompt}\n\n{task.system_prompt}"
    prompt: list[dict[str, Any]] = [{"role": "system", "content": system}, {"role": "user", "content": task.prompt}]
    completion: list[dict[str, Any]] = []
    usage = {"input_tokens": 0.0, "output_tokens": 0.0}
    timing = _Spans()
    episode = harness.episode(task)
    state: dict[str, Any] = {"stop_condition": None, "is_truncated": False, "error": None}
    generation_start = time.time()
    try:
        try:
            async with asyncio.timeout(config.timeouts.rollout_s):
                await _play(episode, endpoint, prompt, completion, usage, timing, state)
        except TimeoutError:  # cut in a server wait: an infrastructure error; while the model generated: truncated
            state["stop_condition"] = "timeout_reached"
            if (cut := episode.cut()) is not None:
                state["error"] = _error_data(type(cut).__name__, cut)
                episode.record.infra_error = str(cut)
        except TaskDefinitionError as exc:  # this row cannot run as written (`record.task_error`): never retried
            state.update(stop_condition="has_error", error=_error_data(type(exc).__name__, exc))
        except MCPServerError as exc:
            state.update(stop_condition="has_error", error=_error_data(type(exc).__name__, exc))
            episode.record.infra_error = str(exc)
        except _ModelError as exc:
            state.update(stop_condition="has_error", error=_error_data(exc.kind, exc))
        if state["error"] is None and state["stop_condition"] != "timeout_reached":  # no time is left to grade
            try:
                await episode.evaluate()
            except MCPServerError as exc:
                state.update(error=_error_data(type(exc).__name__, exc))
                episode.record.infra_error = str(exc)
        if state["error"] is None and (failure := episode.evaluation_failure()) is not None:
            state["error"] = _error_data(type(failure).__name__, failure)  # a crashed evaluator: never trained on
    finally:  # also after a user error or a cancellation, which propagate
        await episode.close()
    timing.phases["generation"] = (generation_start, time.time())
    scoring_start = time.time()
    score = score_episode(episode.record, config)
    timing.phases["scoring"] = (scoring_start, time.time())
    # verifiers' MultiTurnEnv adds `num_turns` (its trajectory's length: the model's replies) to every rollout
    replies = sum(1 for message in completion if message["role"] == "assistant")
    metrics = {**score.components, **score.metrics, "num_turns": float(replies)}
    errors = {}
    if state["error"] is not None:  # verifiers repeats the chain at the top level of an errored row
        errors = {
            "error_chain": state["error"]["error_chain_repr"],
            "long_error_chain": state["error"]["error_chain_str"],
        }
    return {
        "example_id": example_id,
        "prompt": prompt,
        "completion": completion,
        "info": task.to_info(),
        "reward": score.reward,
        "error": state["error"],
        "timing": timing.to_json(),
        "is_completed": True,
        "is_truncated": state["is_truncated"],
        "stop_condition": state["stop_condition"],
        "metrics": metrics,
        "tool_defs": [],
        "token_usage": usage,
        **metrics,
        **errors,
        SUMMARY_KEY: episode.record.to_json(),
    }


async def _play(
    episode: TaskEpisode,
    endpoint: ChatEndpoint,
    prompt: list[dict[str, Any]],
    completion: list[dict[str, Any]],
    usage: dict[str, float],
    timing: _Spans,
    state: dict[str, Any],
) -> None:
    """Setup, then turns until done() or max_turns; fills `prompt`, `completion`, `usage`, `timing` and `state`."""
    setup_start = time.time()
    setup = await episode.start()
    timing.phases["setup"] = (setup_start, time.time())
    text = "\n\n".join(part for part in (prompt[-1]["content"], setup.text) if part)
    prompt[-1] = user_message(Observation(text, setup.images))
    max_turns = episode.harness.config.max_turns
    while True:
        model_start = time.time()
        # only the newest `images.keep_recent` screenshots are sent as images (HUDGym's `get_prompt_messages`)
        messages = cap_screenshots([*prompt, *completion], episode.harness.config.images.keep_recent)
        reply = await _ask(endpoint, messages, usage)
        timing.model.append((model_start, time.time()))
        completion.append({"role": "assistant", "content": reply})
        turn = episode.record_turn(reply)
        if 0 < max_turns <= len(episode.record.turns):
            state["stop_condition"] = "max_turns_reached"  # verifiers truncates only a reply cut by its token limit
            return
        env_start = time.time()
        observation = await episode.act(turn)
        timing.env.append((env_start, time.time()))
        completion.append(user_message(observation))
        if episode.is_done or episode.is_truncated:  # truncated: the deadline passed while the model generated
            state["stop_condition"] = "has_final_env_response" if episode.is_done else "timeout_reached"
            return


async def _ask(endpoint: ChatEndpoint, messages: list[dict[str, Any]], usage: dict[str, float]) -> str:
    """One chat completion; the reply's text (an empty reply is a model error, as in verifiers)."""
    sampling = dict(endpoint.sampling)
    if "max_tokens" in sampling:
        sampling["max_completion_tokens"] = sampling.pop("max_tokens")
    try:
        response = await endpoint.client.chat.completions.create(model=endpoint.model, messages=messages, **sampling)
    except Exception as exc:  # the endpoint failed: the rollout ends with a model error, the run goes on
        raise _ModelError("ModelError", f"{type(exc).__name__}: {exc}") from exc
    if response.usage is not None:
        usage["input_tokens"] += float(response.usage.prompt_tokens or 0)
        usage["output_tokens"] += float(response.usage.completion_tokens or 0)
    content = response.choices[0].message.content if response.choices else None
    if not content:
        raise _ModelError("EmptyModelResponseError", "the model returned an empty message")
    return str(content)


def _error_data(name: str, exc: BaseException) -> dict[str, str]:
    """Verifiers' `ErrorData`: the type, the message and the cause chain."""
    chain = [exc]
    while (cause := chain[-1].__cause__) is not None and len(chain) < 8:
        chain.append(cause)
    return {
        "error": name,
        "message": str(exc) or name,
        "error_chain_repr": " -> ".join(repr(error) for error in chain),
        "error_chain_str": " -> ".join([name, *(type(error).__name__ for error in chain[1:])]),
    }
