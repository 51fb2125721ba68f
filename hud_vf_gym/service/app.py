"""The FastAPI application: lifespan (the service and its runner), authentication, and errors as documented 4xx.

`create_app(settings)` builds the app; `hud-vf-gym serve` runs it with uvicorn, tests call it in process. Every
route but `GET /health` needs `Authorization: Bearer <token>` when the service has a token (the status page also
accepts the cookie that `/?token=...` sets, because a browser cannot send a header when it follows a link).

Errors all have a documented shape: `{"detail": "message"}` for 401, 403, 404 and 409, and `{"detail": [{"loc",
"msg", "type"}]}` for 400 (the body is not JSON) and 422 (a field is invalid). A validation error never echoes the
input back: it may hold a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hud_vf_gym.errors import DependencyNotInstalled, NotAllowedError
from hud_vf_gym.service.core import ConflictError, NotFoundError, TrainingService
from hud_vf_gym.service.runner import CommandBuilder
from hud_vf_gym.service.settings import ServiceSettings
from hud_vf_gym.service.sources import RequestError

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

__all__ = ["INSTALL_SERVICE", "create_app"]

INSTALL_SERVICE = 'pip install "hud-vf-gym[service]"'


def _field_errors(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validation errors without their `input` and `ctx` (which may hold a secret)."""
    return [{"loc": list(error["loc"]), "msg": str(error["msg"]), "type": str(error["type"])} for error in errors]


def _install_error_handlers(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def detail(status: int, message: str) -> JSONResponse:
        return JSONResponse({"detail": message}, status_code=status)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)  # registered for this type only
        errors = _field_errors(list(exc.errors()))
        status = 400 if any(error["type"] == "json_invalid" for error in errors) else 422
        return JSONResponse({"detail": errors}, status_code=status)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400 and isinstance(exc.detail, str):  # a body FastAPI could not even decode
            body = [{"loc": ["body"], "msg": exc.detail, "type": "json_invalid"}]
            return JSONResponse({"detail": body}, status_code=400)
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def request_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestError)
        body = [{"loc": ["body", *exc.loc], "msg": exc.message, "type": "value_error"}]
        return JSONResponse({"detail": body}, status_code=422)

    async def not_allowed(request: Request, exc: Exception) -> JSONResponse:
        return detail(403, str(exc))

    async def not_found(request: Request, exc: Exception) -> JSONResponse:
        return detail(404, str(exc))

    async def conflict(request: Request, exc: Exception) -> JSONResponse:
        return detail(409, str(exc))

    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestError, request_error)
    app.add_exception_handler(NotAllowedError, not_allowed)
    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)


def create_app(
    settings: ServiceSettings, *, environ: dict[str, str] | None = None, build_command: CommandBuilder | None = None
) -> FastAPI:
    """The service's FastAPI app; starting it (its lifespan) takes the state folder and starts the runner.

    `environ` replaces the service's environment (default: `os.environ`), `build_command` how a job becomes a
    process (default: `hud_vf_gym.service.jobs.training_command`).

    Raises:
        DependencyNotInstalled: FastAPI is not installed (the message has the pip command).
    """
    try:
        from fastapi import FastAPI
    except ImportError as exc:
        raise DependencyNotInstalled(
            f"hud-vf-gym serve needs FastAPI, which is not installed; run: {INSTALL_SERVICE}"
        ) from exc
    import hud_vf_gym
    from hud_vf_gym.service.routes import protected, public

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = TrainingService(settings, environ, build_command)
        app.state.service = service
        runner = asyncio.create_task(service.runner.run(), name="hud-vf-gym job runner")
        try:
            yield
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            service.close()

    app = FastAPI(
        title="hud-vf-gym training service",
        version=hud_vf_gym.__version__,
        description=__doc__,
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    app.include_router(public)
    app.include_router(protected)
    return app
