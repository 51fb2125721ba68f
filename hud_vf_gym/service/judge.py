"""`POST /evaluate`: score trajectories with an LLM judge (RULER or one at a time) or by their recorded rubric reward.

RULER (OpenPipe ART's "Relative Universal LLM-Elicited Rewards") shows the judge every trajectory of a group at
once and asks for a 0-1 score for each, relative to the others. When this package's ART integration is importable
(`hud_vf_gym.integrations.art`, which needs `openpipe-art`), its RULER (`art.rewards.ruler_score_group`, through
LiteLLM) does it; otherwise the same kind of prompt is sent here to any OpenAI-compatible endpoint, the embedded
SmolLM2 included (offline). A judge's answer that cannot be read gives that trajectory no score and says why; it
is never turned into a 0.

The judge endpoint is, in order: the request's `judge`, the service's default endpoint, the embedded model.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import json
import re
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from hud_vf_gym.cli.eval.options import is_local_url
from hud_vf_gym.service.core import TrainingService
from hud_vf_gym.service.models import EvaluateRequest, EvaluateResponse, Trajectory, TrajectoryScore
from hud_vf_gym.service.security import check_env_variable
from hud_vf_gym.service.sources import RequestError

__all__ = [
    "DEFAULT_RUBRIC",
    "JudgeEndpoint",
    "evaluate",
    "evaluate_with_client",
    "judge_trajectories",
    "parse_scores",
    "prompt_judge",
    "ruler_prompt",
]

DEFAULT_RUBRIC = (
    "A trajectory that achieves its goal scores higher than one that does not. Between two that both succeed or "
    "both fail, the one that is more efficient and makes fewer mistakes scores higher. Scores are from 0 to 1."
)
JUDGE_MAX_TOKENS = 256  # the scores and a sentence of reasoning each; a longer answer is rambling (and slow on CPU)
JUDGE_TIMEOUT_S = 120.0  # a local endpoint on CPU answers a long prompt in tens of seconds
MAX_MESSAGE_CHARS = 2000  # per message shown to the judge: board dumps and screenshots' text are long
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)


@dataclass(frozen=True, slots=True)
class JudgeEndpoint:
    """Where the judge runs: an OpenAI-compatible URL and model, or the embedded model (base_url None)."""

    base_url: str | None
    model: str
    api_key: str


def _render(trajectory: Trajectory) -> str:
    return "\n".join(f"[{m.role}] {m.content[:MAX_MESSAGE_CHARS]}" for m in trajectory.messages)


def ruler_prompt(trajectories: Sequence[Trajectory], rubric: str) -> list[dict[str, str]]:
    """The RULER-style messages: every trajectory with an id, and the JSON answer asked for."""
    shown = "\n\n".join(f'<trajectory id="{i + 1}">\n{_render(t)}\n</trajectory>' for i, t in enumerate(trajectories))
    example = ", ".join(f'{{"trajectory_id": "{i + 1}", "explanation": "...", "score": 0.5}}' for i in range(2))
    return [
        {"role": "system", "content": f"You are a strict judge of AI agents. Grading rubric:\n{rubric}"},
        {
            "role": "user",
            "content": f"{shown}\n\nScore each of the {len(trajectories)} trajectories from 0 to 1, relative to each "
            f'other. Answer with JSON only: {{"scores": [{example}, ...]}}',
        },
    ]


def _single_prompt(trajectory: Trajectory, rubric: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": f"You are a strict judge of AI agents. Grading rubric:\n{rubric}"},
        {
            "role": "user",
            "content": f"{_render(trajectory)}\n\nScore this trajectory from 0 to 1. Answer with JSON only: "
            '{"explanation": "...", "score": 0.5}',
        },
    ]


def parse_scores(answer: str, count: int) -> list[tuple[float | None, str]]:
    """(score, explanation) per trajectory from a judge's JSON answer; (None, why) for each one it does not score."""
    match = _JSON_OBJECT.search(answer)
    try:
        decoded = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        decoded = None
    items = decoded.get("scores") if isinstance(decoded, dict) else None
    if isinstance(decoded, dict) and items is None and count == 1 and "score" in decoded:
        items = [{**decoded, "trajectory_id": "1"}]
    unread = f"the judge's answer holds no JSON scores: {answer.strip()[:200]!r}"
    results: list[tuple[float | None, str]] = [(None, unread)] * count
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        try:
            index = int(str(item.get("trajectory_id"))) - 1
            score = float(item["score"])
        except (KeyError, TypeError, ValueError):
            continue
        if 0 <= index < count and 0.0 <= score <= 1.0:
            results[index] = (score, str(item.get("explanation", ""))[:2000])
    return results


async def _complete(client: Any, endpoint: JudgeEndpoint, messages: list[dict[str, str]]) -> str:
    response = await client.chat.completions.create(
        model=endpoint.model, messages=messages, temperature=0.0, max_tokens=JUDGE_MAX_TOKENS, seed=0
    )
    return str(response.choices[0].message.content or "")


async def prompt_judge(
    client: Any, endpoint: JudgeEndpoint, request: EvaluateRequest, rubric: str
) -> list[tuple[float | None, str]]:
    """(score, explanation) per trajectory from this service's judge prompt: one RULER call, or one per trajectory."""
    trajectories = request.trajectories
    if request.method == "ruler":
        return parse_scores(await _complete(client, endpoint, ruler_prompt(trajectories, rubric)), len(trajectories))
    results = []
    for trajectory in trajectories:  # one at a time: a local model serves one request at a time anyway
        results += parse_scores(await _complete(client, endpoint, _single_prompt(trajectory, rubric)), 1)
    return results


def _art_available() -> bool:
    """Whether `openpipe-art`'s RULER can be imported (our ART integration imports ART lazily, so ask ART itself)."""
    try:
        importlib.import_module("art.rewards")
    except ImportError:
        return False
    return True


async def _art_ruler(
    trajectories: Sequence[Trajectory], endpoint: JudgeEndpoint, rubric: str
) -> list[tuple[float | None, str]]:
    """ART's own RULER over one group, its judge reached through LiteLLM at the endpoint."""
    art = importlib.import_module("art")
    ruler = importlib.import_module("art.rewards")
    group = art.TrajectoryGroup(
        [
            art.Trajectory(messages_and_choices=[m.model_dump() for m in t.messages], reward=t.reward or 0.0)
            for t in trajectories
        ]
    )
    scored = await ruler.ruler_score_group(
        group,
        judge_model=f"openai/{endpoint.model}",
        extra_litellm_params={"api_base": endpoint.base_url, "api_key": endpoint.api_key},
        rubric=rubric,
        swallow_exceptions=False,
    )
    return [(float(t.reward), " ".join(t.logs)[-2000:]) for t in scored.trajectories]


async def evaluate(request: EvaluateRequest, endpoint: JudgeEndpoint, client: Any) -> EvaluateResponse:
    """Score the request's trajectories (see the module docstring); `client` is an `AsyncOpenAI` for `endpoint`."""
    rubric = request.evaluation_prompt or DEFAULT_RUBRIC
    recorded = [t.reward for t in request.trajectories]
    if request.method == "rubric":
        results: list[tuple[float | None, str]] = [
            (reward, "the reward the rubric recorded") if reward is not None else (None, "no recorded reward")
            for reward in recorded
        ]
        backend, judge = "rubric", None
    elif request.method == "ruler" and endpoint.base_url is not None and _art_available():
        results, backend, judge = await _art_ruler(request.trajectories, endpoint, rubric), "art", endpoint.model
    else:
        results, backend, judge = await prompt_judge(client, endpoint, request, rubric), "prompt", endpoint.model
    scores = [
        TrajectoryScore(index=index, score=score, rubric_reward=recorded[index], explanation=explanation)
        for index, (score, explanation) in enumerate(results)
    ]
    values = [s.score for s in scores if s.score is not None]
    return EvaluateResponse(
        method=request.method,
        judge=judge,
        backend=backend,
        scores=scores,
        mean_score=sum(values) / len(values) if values else None,
    )


_embedded_lock = threading.Lock()


@functools.cache
def _embedded_model() -> Any:
    """The embedded SmolLM2, loaded once per service (about 5 s; the first run converts it, about 30 s)."""
    from hud_vf_gym.local_model.model import load_local_model, resolve_model_folder

    with _embedded_lock:
        return load_local_model(resolve_model_folder(None))


def _judge_endpoint(request: EvaluateRequest, service: TrainingService) -> JudgeEndpoint:
    """The judge for a request: its `judge`, the service's default endpoint, or the embedded model.

    Raises:
        NotAllowedError: the judge's key variable is not allowed. RequestError: a remote judge without a key.
    """
    settings = service.settings
    if request.judge is not None:
        check_env_variable("judge.api_key_env", request.judge.api_key_env, settings)
        base_url, model, key_env = request.judge.base_url, request.judge.model, request.judge.api_key_env
    elif settings.default_base_url is not None:
        base_url, model = settings.default_base_url, str(settings.default_model)
        key_env = settings.default_api_key_env
    else:
        return JudgeEndpoint(None, request.judge_model or "embedded", "local")
    if key_env is None and not is_local_url(base_url):
        raise RequestError(
            ("judge", "api_key_env"),
            f"the judge at {base_url} is not on this machine, so it needs an API key: name the service's "
            "environment variable that holds it in judge.api_key_env",
        )
    key = service.environ.get(key_env, "") if key_env else "EMPTY"
    return JudgeEndpoint(base_url, request.judge_model or model, key or "EMPTY")


@contextlib.asynccontextmanager
async def evaluate_with_client(endpoint: JudgeEndpoint) -> AsyncIterator[Any]:
    """An `AsyncOpenAI` for the judge: its URL, or the embedded model in process; closed afterwards."""
    from openai import AsyncOpenAI

    if endpoint.base_url is None:
        from hud_vf_gym.local_model.endpoint import local_openai_client

        client = local_openai_client(await asyncio.to_thread(_embedded_model))
    else:
        client = AsyncOpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key, timeout=JUDGE_TIMEOUT_S)
    try:
        yield client
    finally:
        await client.close()


async def judge_trajectories(request: EvaluateRequest, service: TrainingService) -> EvaluateResponse:
    """`POST /evaluate`: pick the judge, open a client for it, score (see `evaluate`)."""
    endpoint = _judge_endpoint(request, service)
    if request.method == "rubric":
        return await evaluate(request, endpoint, None)
    async with evaluate_with_client(endpoint) as client:
        try:
            return await evaluate(request, endpoint, client)
        except openai.APIError as exc:
            raise RequestError(("judge",), service.secrets(f"the judge {endpoint.model} failed: {exc}")) from exc
