"""Import hygiene of the ART integration, on every Python: ART is imported only when used, `art.local` only for
the local backend; without ART (Python 3.11) every entry point says in one line what to install.

This module runs in the main 3.11 suite as well as in the ART venv, so it does not skip without ART.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HAS_ART = importlib.util.find_spec("art") is not None and sys.version_info >= (3, 12)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO, check=False
    )


def test_importing_the_package_and_its_commands_imports_no_art() -> None:
    result = run_python(
        "import sys, hud_vf_gym, hud_vf_gym.integrations.art as a, hud_vf_gym.cli.app as app\n"
        "from hud_vf_gym.integrations.art import cli, command, options, report\n"
        "assert 'export-art' in app.commands() and 'train_hud_with_art' in dir(a)\n"
        "print(sorted(m for m in sys.modules if m == 'art' or m.startswith(('art.', 'torch', 'litellm'))))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(not HAS_ART, reason="needs openpipe-art (Python 3.12+)")
def test_the_cpu_backends_never_import_art_local_or_torch() -> None:
    result = run_python(
        "import sys\n"
        "from hud_vf_gym.integrations.art.backends import make_backend\n"
        "from hud_vf_gym.integrations.art import training, ARTTrainingAgent, score_group, read_groups\n"
        "assert make_backend('ruler-only') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('art.local', 'torch', 'unsloth', 'vllm'))))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.skipif(HAS_ART, reason="checks the message shown where openpipe-art cannot be installed")
def test_without_art_each_entry_point_says_what_to_install(tmp_path: Path) -> None:
    export = subprocess.run(
        [sys.executable, "-m", "hud_vf_gym.cli.app", "export-art", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    train = subprocess.run(
        [sys.executable, "-m", "hud_vf_gym.integrations.art", "--env", "2048", "--backend", "ruler-only",
         "--base-url", "http://127.0.0.1:9/v1"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    prefixes = ("hud-vf-gym export-art: error: ", "python -m hud_vf_gym.integrations.art: error: ")
    for result, prefix in zip((export, train), prefixes, strict=True):
        assert result.returncode == 2
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(prefix)
        assert "the ART integration needs" in line and "pip install 'hud-vf-gym[art]'" in line
