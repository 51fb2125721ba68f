"""The public API is declared once: `hud_vf_gym.__all__` matches what the package lazily exports."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hud_vf_gym


def test_public_api_all_is_sorted_and_matches_the_lazy_names() -> None:
    assert hud_vf_gym.__all__ == sorted(hud_vf_gym.__all__)
    assert set(hud_vf_gym.__all__) == {*hud_vf_gym._LAZY_NAMES, "__version__"}


@pytest.mark.classic  # HUDGym, HUDRubric and ToolXMLParser are the classic adapter's
def test_public_api_every_name_resolves() -> None:
    for name in hud_vf_gym.__all__:
        assert getattr(hud_vf_gym, name) is not None, name


def test_public_api_unknown_name_is_an_attribute_error() -> None:
    try:
        hud_vf_gym.NoSuchThing  # noqa: B018
    except AttributeError as exc:
        assert "NoSuchThing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_public_api_import_stays_cheap() -> None:
    # built-in servers run as `python -m hud_vf_gym.environments...`, which imports the package first
    code = "import sys, hud_vf_gym; print(sorted(m for m in ('verifiers', 'torch', 'datasets') if m in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"


# the core: everything but the classic adapter (env.py, classic.py) and the verifiers test helper
CORE_MODULES = [
    "hud_vf_gym.config",
    "hud_vf_gym.errors",
    "hud_vf_gym.core.harness",
    "hud_vf_gym.core.rubric",
    "hud_vf_gym.core.chat",
    "hud_vf_gym.runtime.session",
    "hud_vf_gym.runtime.pool",
    "hud_vf_gym.tasks.loading",
    "hud_vf_gym.gym.env",
    "hud_vf_gym.training.rollout",
    "hud_vf_gym.cli.app",
    "hud_vf_gym.cli.eval.evaluation",
    "hud_vf_gym.cli.init.command",
    "hud_vf_gym.cli.dataset",
]


def test_the_core_imports_no_verifiers() -> None:
    # verifiers 0.4 removed the classic API and a user may have no verifiers at all: only the adapters import it
    code = (
        "import importlib, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m == 'verifiers' or m.startswith('verifiers.')))"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert completed.stdout.strip() == "[]"
