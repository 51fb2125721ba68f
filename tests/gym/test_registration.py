"""Gymnasium registration (hud_vf_gym/gym/registration.py): ids registered once, cheaply, in any import order."""

from __future__ import annotations

import subprocess
import sys

import gymnasium
import pytest

import hud_vf_gym
from hud_vf_gym import HUDTaskEnv


@pytest.mark.parametrize(
    "imports",
    ["import hud_vf_gym, gymnasium", "import gymnasium, hud_vf_gym"],
    ids=["package-first", "gymnasium-first"],
)
def test_registration_works_in_either_import_order_without_heavy_imports(imports: str) -> None:
    code = (
        f"import sys; {imports}\n"
        "assert {'hud_vf_gym/2048-v0', 'hud_vf_gym/HUD-v0'} <= set(gymnasium.registry), list(gymnasium.registry)\n"
        "heavy = [name for name in ('verifiers', 'mcp', 'hud_vf_gym.gym.env') if name in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, timeout=120)


def test_registration_import_of_package_does_not_import_gymnasium() -> None:
    code = "import sys, hud_vf_gym; assert 'gymnasium' not in sys.modules and 'numpy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_registration_ids_are_registered_once_with_string_entry_points() -> None:
    spec = gymnasium.spec("hud_vf_gym/2048-v0")
    assert spec.entry_point == "hud_vf_gym.gym.env:HUDTaskEnv"
    assert spec.kwargs == {"taskset": "2048", "config_path": "2048"}
    hud_vf_gym.gym.registration.register_gym_envs()  # again: no "Overriding environment" warning (warnings are errors)
    assert hud_vf_gym.HUDTaskEnv is HUDTaskEnv
