"""The service's routes: the seed's and ours.

The seed's: `/train`, `/train/{project}/{model}/status|stream`, `/models`, `/rollout`, `/evaluate`, `/health`;
ours: `/jobs`, `/jobs/{id}`, its event stream, cancel and resume, the status page.

Each route is a few lines: it validates (pydantic), calls `TrainingService` or the rollout/judge modules, and
returns a response model. Errors are raised as the service's exceptions and become documented 4xx in `app`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.sse import EventSourceResponse, ServerSentEvent

import hud_vf_gym
from hud_vf_gym.service.auth import TOKEN_COOKIE, require_token, token_matches
from hud_vf_gym.service.core import ConflictError, TrainingService, iso_time
from hud_vf_gym.service.models import (
    NAME_PATTERN,
    ErrorResponse,
    EvaluateRequest,
    EvaluateResponse,
    Health,
    JobAccepted,
    JobList,
    JobStatus,
    ModelList,
    RolloutRequest,
    RolloutResponse,
    TrainRequest,
    ValidationErrorResponse,
)
from hud_vf_gym.service.page import render_page, reward_curve_svg
from hud_vf_gym.service.store import FINAL_STATES, JobRow

__all__ = ["error_responses", "protected", "public"]

STREAM_WAIT_S = 5.0  # an idle stream re-reads the store this often even without a wake-up (FastAPI pings every 15 s)
REPORTED_KEYS = ("OPENAI_API_KEY", "HUD_API_KEY", "WANDB_API_KEY")  # /health says whether these are set


Responses = dict[int | str, dict[str, Any]]


def error_responses(*statuses: int, success: Responses | None = None) -> Responses:
    """OpenAPI `responses` entries for error statuses (after `success`'s entries, when given).

    Every protected route may also answer 401 (no token) and 422 (a bad parameter), so those are always added.
    Errors are JSON even on routes whose success is an event stream or HTML, so the content type is spelled out.
    """
    descriptions = {
        400: ("The body is not valid JSON.", ValidationErrorResponse),
        401: ("A Bearer token is required and was missing or wrong.", ErrorResponse),
        403: ("The request names a command, variable or path the operator has not allowed.", ErrorResponse),
        404: ("No such job or model.", ErrorResponse),
        409: ("The request clashes with the service's state; the message says how to resolve it.", ErrorResponse),
        422: ("A field is invalid; `loc` names it.", ValidationErrorResponse),
    }
    entries: Responses = dict(success or {})
    for status in sorted({*statuses, 401, 422}):
        description, model = descriptions[status]
        schema = {"$ref": f"#/components/schemas/{model.__name__}"}
        entries[status] = {"description": description, "content": {"application/json": {"schema": schema}}}
    return entries


_bearer = HTTPBearer(auto_error=False, description="The token the service's operator set.")


def _authorized(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    require_token(request, credentials)


def _service(request: Request) -> TrainingService:
    service: TrainingService = request.app.state.service
    return service


Service = Annotated[TrainingService, Depends(_service)]
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9-]{1,64}$", description="A job id from POST /train.")]
Project = Annotated[str, Path(pattern=NAME_PATTERN)]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN)]

public = APIRouter()
protected = APIRouter(dependencies=[Depends(_authorized)])


# -- health and the status page -------------------------------------------------------------------------------------


@public.get("/health", response_model=Health, tags=["service"])
def health(service: Service) -> Health:
    """Whether the service is up, its version and backend, and which keys it has (never their values)."""
    settings = service.settings
    names = {*REPORTED_KEYS, *settings.allowed_env, *([settings.default_api_key_env] or [])} - {None}
    return Health(
        status="healthy",
        version=hud_vf_gym.__version__,
        backend="local",
        auth=settings.token is not None,
        paused=settings.paused,
        default_model=settings.default_model or "embedded (SmolLM2-135M-Instruct)",
        keys_configured={str(name): bool(service.environ.get(str(name))) for name in sorted(names, key=str)},
        jobs=service.store.state_counts(),
    )


@public.get("/", response_class=HTMLResponse, tags=["service"], responses=error_responses(401))
def status_page(request: Request, service: Service, token: str | None = Query(None, max_length=512)) -> Response:
    """The status page: every job with its state, progress and reward curve (`?token=` sets a login cookie)."""
    settings = service.settings
    if token is not None and settings.token is not None and token_matches(settings.token, token):
        redirect = RedirectResponse("/", status_code=303)
        redirect.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return redirect
    require_token(request, None)
    jobs = service.statuses()
    seqs = {job.job_id: service.store.last_seq(job.job_id) for job in jobs if job.state in ("queued", "running")}
    return HTMLResponse(render_page(jobs, version=hud_vf_gym.__version__, last_seqs=seqs))


# -- training -------------------------------------------------------------------------------------------------------


@protected.post(
    "/train",
    status_code=202,
    response_model=JobAccepted,
    tags=["training"],
    responses=error_responses(
        400, 403, 409, success={200: {"model": JobAccepted, "description": "An identical earlier request's job."}}
    ),
)
def train(
    spec: TrainRequest,
    service: Service,
    response: Response,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=200)] = None,
) -> JobAccepted:
    """Start (queue) a training job; the same Idempotency-Key, or the same request for a model, gives one job."""
    submitted = service.submit(spec, idempotency_key)
    job = submitted.job
    if not submitted.created:
        response.status_code = 200
    return JobAccepted(
        job_id=job.id,
        state=job.state,  # type: ignore[arg-type]  # the store only ever writes JobState values
        queue_position=service.queue_position(job),
        created=submitted.created,
        status_url=f"/jobs/{job.id}",
        events_url=f"/jobs/{job.id}/events",
    )


@protected.get("/train/{project}/{model_name}/status", response_model=JobStatus, tags=["training"],
               responses=error_responses(404))  # fmt: skip
def train_status(project: Project, model_name: ModelName, service: Service) -> JobStatus:
    """The status of a model's newest training job."""
    return service.status(service.latest_job(project, model_name))


@protected.get("/jobs", response_model=JobList, tags=["training"], responses=error_responses())
def list_jobs(service: Service) -> JobList:
    """Every job, newest first, with its true state (after a restart too)."""
    return JobList(jobs=service.statuses())


@protected.get("/jobs/{job_id}", response_model=JobStatus, tags=["training"], responses=error_responses(404))
def job_status(job_id: JobId, service: Service) -> JobStatus:
    """One job's status: state, queue position, step, metrics, reward curve, checkpoints."""
    return service.status(service.job(job_id))


@protected.get("/jobs/{job_id}/reward.svg", tags=["training"], responses=error_responses(
    404, success={200: {"content": {"image/svg+xml": {}}, "description": "The reward curve."}}))  # fmt: skip
def job_reward_curve(job_id: JobId, service: Service) -> Response:
    """A job's reward curve as SVG (the status page draws the same)."""
    status = service.status(service.job(job_id))
    return Response(reward_curve_svg(status.rewards, title=f"reward curve of {job_id}"), media_type="image/svg+xml")


@protected.post("/jobs/{job_id}/cancel", response_model=JobStatus, tags=["training"],
                responses=error_responses(404, 409))  # fmt: skip
def cancel_job(job_id: JobId, service: Service) -> JobStatus:
    """Cancel a queued or running job (a running one gets SIGTERM, then SIGKILL after a grace period)."""
    job = service.job(job_id)
    if job.state in FINAL_STATES:
        raise ConflictError(f"job {job_id} already ended ({job.state}); nothing to cancel")
    return service.status(service.runner.cancel(job_id) or job)


@protected.post("/jobs/{job_id}/resume", response_model=JobStatus, tags=["training"],
                responses=error_responses(404, 409))  # fmt: skip
def resume_job(job_id: JobId, service: Service) -> JobStatus:
    """Queue a failed, canceled or interrupted job again; it continues from its newest checkpoint."""
    job = service.job(job_id)
    if job.state not in ("failed", "canceled", "interrupted"):
        raise ConflictError(f"job {job_id} is {job.state}; only failed, canceled or interrupted jobs resume")
    if service.store.model(job.project, job.model_name) is None:
        raise ConflictError(f"model {job.project}/{job.model_name} was deleted; POST /train starts it afresh")
    return service.status(service.runner.resume(job_id) or job)


# -- event streams --------------------------------------------------------------------------------------------------


def _existing_job(job_id: JobId, service: Service) -> JobRow:
    return service.job(job_id)


def _latest_model_job(project: Project, model_name: ModelName, service: Service) -> JobRow:
    return service.latest_job(project, model_name)


def _start_after(after: int | None, last_event_id: str | None) -> int:
    """Where a stream starts: `?after=`, else the `Last-Event-ID` a reconnecting EventSource sends, else 0."""
    if after is not None:
        return after
    return int(last_event_id) if last_event_id else 0


async def _events(service: TrainingService, job_id: str, after: int, follow: bool) -> AsyncIterable[ServerSentEvent]:
    """The job's stored events after `after`, then (with `follow`) new ones as they come, until it ends."""
    while True:
        events = await asyncio.to_thread(functools.partial(service.store.events, job_id, after=after))
        for event in events:
            after = event.seq
            payload = {"job_id": job_id, "seq": event.seq, "time": iso_time(event.created), **event.data}
            yield ServerSentEvent(data=payload, event=event.type, id=str(event.seq))
        if events:
            continue
        job = service.store.job(job_id)
        if not follow or job is None or (job.state in FINAL_STATES and service.store.last_seq(job_id) <= after):
            return
        await service.runner.wait_for_change(STREAM_WAIT_S)


_AFTER = Query(ge=0, le=2**62, description="Send events after this sequence number (overrides Last-Event-ID).")
_FOLLOW = Query(description="Keep the stream open for new events until the job ends.")
_LAST_EVENT_ID = Header(pattern=r"^\d{1,18}$", description="Resume after this event id (sent by EventSource).")
_STREAM_DOC: Responses = {
    200: {"description": "Server-sent events: `state`, `metric`, `checkpoint`, `summary`, `log`."}
}


@protected.get("/jobs/{job_id}/events", response_class=EventSourceResponse, tags=["training"],
               responses=error_responses(404, success=_STREAM_DOC))  # fmt: skip
async def job_events(
    job: Annotated[JobRow, Depends(_existing_job)],
    service: Service,
    after: Annotated[int | None, _AFTER] = None,
    follow: Annotated[bool, _FOLLOW] = True,
    last_event_id: Annotated[str | None, _LAST_EVENT_ID] = None,
) -> AsyncIterable[ServerSentEvent]:
    """A job's events as server-sent events, resumable with `Last-Event-ID`; the stream ends when the job does."""
    async for event in _events(service, job.id, _start_after(after, last_event_id), follow):
        yield event


@protected.get("/train/{project}/{model_name}/stream", response_class=EventSourceResponse, tags=["training"],
               responses=error_responses(404, success=_STREAM_DOC))  # fmt: skip
async def train_stream(
    job: Annotated[JobRow, Depends(_latest_model_job)],
    service: Service,
    after: Annotated[int | None, _AFTER] = None,
    follow: Annotated[bool, _FOLLOW] = True,
    last_event_id: Annotated[str | None, _LAST_EVENT_ID] = None,
) -> AsyncIterable[ServerSentEvent]:
    """The events of a model's newest training job (the seed's stream route)."""
    async for event in _events(service, job.id, _start_after(after, last_event_id), follow):
        yield event


# -- models ---------------------------------------------------------------------------------------------------------


@protected.get("/models", response_model=ModelList, tags=["models"], responses=error_responses())
def list_models(service: Service) -> ModelList:
    """Every model: its folder, checkpoints, step and last metrics."""
    return ModelList(models=service.models())


@protected.delete("/models/{project}/{model_name}", status_code=204, tags=["models"],
                  responses=error_responses(404, 409))  # fmt: skip
def delete_model(project: Project, model_name: ModelName, service: Service) -> Response:
    """Delete a model's files and checkpoints (its job stays listed); refused while it trains."""
    service.delete_model(project, model_name)
    return Response(status_code=204)


# -- rollouts and evaluation ----------------------------------------------------------------------------------------


@protected.post("/rollout", response_model=RolloutResponse, tags=["data"],
                responses=error_responses(400, 403, 404, 409))  # fmt: skip
async def rollout(request: RolloutRequest, service: Service) -> RolloutResponse:
    """Run a model on HUD tasks (the `hud-vf-gym eval` harness) and return the trajectories."""
    from hud_vf_gym.service.rollouts import run_rollouts

    return await run_rollouts(request, service)


@protected.post("/evaluate", response_model=EvaluateResponse, tags=["data"], responses=error_responses(400, 403))
async def evaluate(request: EvaluateRequest, service: Service) -> EvaluateResponse:
    """Score trajectories with an LLM judge (RULER, or one at a time) or by their recorded rubric reward."""
    from hud_vf_gym.service.judge import judge_trajectories

    return await judge_trajectories(request, service)
