"""Bearer-token authentication of the service's routes (all but `GET /health`).

With a token set (`hud-vf-gym serve` reads it from `HUD_VF_GYM_SERVICE_TOKEN`, or the variable `--token-env`
names), a request must carry `Authorization: Bearer <token>`. The status page also accepts the cookie that
`GET /?token=<token>` sets once, because a browser cannot add a header when it follows a link or opens an event
stream. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import Request
    from fastapi.security import HTTPAuthorizationCredentials

__all__ = ["TOKEN_COOKIE", "bearer_scheme", "require_token", "token_matches"]

TOKEN_COOKIE = "hud_vf_gym_token"


def token_matches(expected: str, given: str | None) -> bool:
    """Whether `given` is the token, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def bearer_scheme() -> object:
    """FastAPI's HTTPBearer, which puts the scheme into the OpenAPI schema; errors are ours (auto_error off)."""
    from fastapi.security import HTTPBearer

    return HTTPBearer(auto_error=False, description="The token the service's operator set.")


def require_token(request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
    """Refuse the request (401) unless the service has no token, or the request carries it.

    Raises:
        HTTPException: 401 with `WWW-Authenticate: Bearer`.
    """
    from fastapi import HTTPException

    token = request.app.state.service.settings.token
    if token is None:
        return
    if credentials is not None and token_matches(token, credentials.credentials):
        return
    if token_matches(token, request.cookies.get(TOKEN_COOKIE)):
        return
    raise HTTPException(
        status_code=401,
        detail="this service needs 'Authorization: Bearer <token>' (the token its operator set)",
        headers={"WWW-Authenticate": "Bearer"},
    )
