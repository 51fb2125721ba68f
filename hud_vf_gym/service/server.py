"""Run the service with uvicorn (what `hud-vf-gym serve` calls)."""

from __future__ import annotations

import sys

from hud_vf_gym.errors import DependencyNotInstalled
from hud_vf_gym.service.app import INSTALL_SERVICE, create_app
from hud_vf_gym.service.settings import ServiceSettings

__all__ = ["serve"]


def serve(settings: ServiceSettings, *, log_level: str = "info") -> None:
    """Serve until interrupted. Training jobs keep running when the service stops; a restart re-attaches them.

    Raises:
        DependencyNotInstalled: uvicorn or FastAPI is missing (the message has the pip command).
        ConfigError: another service uses the state folder.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise DependencyNotInstalled(
            f"hud-vf-gym serve needs uvicorn, which is not installed; run: {INSTALL_SERVICE}"
        ) from exc
    app = create_app(settings)
    scheme = "http"
    sys.stderr.write(f"hud-vf-gym serve: {scheme}://{settings.host}:{settings.port}/ (state: {settings.state_dir})\n")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=5)
