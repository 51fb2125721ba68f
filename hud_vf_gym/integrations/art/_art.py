"""Importing OpenPipe ART: only here, only when a feature needs it, with one clear error when it is missing."""

from __future__ import annotations

import sys
from typing import Any

from hud_vf_gym.errors import DependencyNotInstalled

__all__ = ["INSTALL_ART", "require_art"]

INSTALL_ART = "pip install 'hud-vf-gym[art]'"
MIN_PYTHON = (3, 12)  # openpipe-art 0.5.20+ (backend.train, TrainableModel(run_name=...)) requires Python 3.12


def require_art() -> Any:
    """Return the `art` module, or raise `DependencyNotInstalled` saying what to install (and on which Python).

    `art` is typed as Any: its types are checked in the Python 3.12 environment that has it, not here.
    """
    if sys.version_info < MIN_PYTHON:
        version = ".".join(str(part) for part in sys.version_info[:2])
        raise DependencyNotInstalled(
            f"the ART integration needs Python 3.12 or newer (openpipe-art 0.5.23 requires it); this is Python "
            f"{version}: create a 3.12 virtual environment and run {INSTALL_ART} there"
        )
    try:
        import art
    except ImportError as exc:
        raise DependencyNotInstalled(f"the ART integration needs openpipe-art ({exc}); run: {INSTALL_ART}") from exc
    return art
