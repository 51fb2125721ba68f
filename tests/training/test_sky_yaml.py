"""The SkyPilot task YAML `hud-vf-gym train` writes is accepted by SkyPilot's own parser.

SkyPilot pins old uvicorn and click, so it lives in a venv of its own (`.venv-sky`, made by .ci/run; or point
HUD_VF_GYM_SKY_PYTHON at any Python with skypilot installed) and is never imported here: `sky_check.py` runs under
that Python and reports what `sky.Task.from_yaml` and the cloud's feature check made of each file. Neither needs
cloud credentials or the network (which this machine does not have).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.cli.train import TrainOptions, plan
from hud_vf_gym.training.placement import SINGLE_NODE_INFRAS, GpuRequest, Placement
from hud_vf_gym.training.placement.skypilot import build_sky_task
from tests.training.train_projects import ENV_NAME, ROOT, clean_environ, cli, write_project

CHECKER = Path(__file__).with_name("sky_check.py")
SKY_PYTHON = Path(os.environ.get("HUD_VF_GYM_SKY_PYTHON") or ROOT / ".venv-sky" / "bin" / "python")
SKY_TIMEOUT_S = 300  # importing sky takes ~10 s on a quiet machine


@pytest.fixture(scope="module")
def sky_python() -> Path:
    if not SKY_PYTHON.is_file():
        pytest.skip(
            f"SkyPilot's parser lives in its own venv, not found at {SKY_PYTHON}: python3 -m venv .venv-sky && "
            ".venv-sky/bin/pip install 'skypilot==0.14.*' (.ci/run does this), or set HUD_VF_GYM_SKY_PYTHON"
        )
    return SKY_PYTHON


def sky_check(sky_python: Path, home: Path, *paths: Path) -> list[dict[str, Any]]:
    completed = subprocess.run(
        [str(sky_python), str(CHECKER), *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=SKY_TIMEOUT_S,
        env={"PATH": os.environ["PATH"], "HOME": str(home)},  # SkyPilot writes ~/.sky: keep it out of the real home
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return [json.loads(line) for line in completed.stdout.splitlines()]


def test_the_prime_plan_prints_a_task_skypilot_accepts(sky_python: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    completed = subprocess.run(
        cli("train", "--gpus", "8xH100", "--provider", "prime", "--plan"),
        capture_output=True,
        text=True,
        timeout=SKY_TIMEOUT_S,
        env=clean_environ(home),
        cwd=tmp_path,
    )
    assert completed.returncode == 0, completed.stderr
    plan_text, marker, task_yaml = completed.stdout.partition("\n# SkyPilot task YAML (written to ")
    assert marker and "  where     SkyPilot on primeintellect: 1 machine with H100:8 each" in plan_text
    path = tmp_path / "task.yaml"
    path.write_text(task_yaml.split("\n", 1)[1], encoding="utf-8")
    (result,) = sky_check(sky_python, home, path)
    assert result["ok"], result
    assert (result["cloud"], result["accelerators"], result["num_nodes"]) == ("PrimeIntellect", {"H100": 8}, 1)
    assert result["workdir"] == str(ROOT)
    assert "bash train/launch.sh --num-gpus 8 --vllm-gpus 1 --accelerate zero2" in result["run"]


def test_multi_node_any_cloud_and_uploaded_project_files_are_accepted(sky_python: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = write_project(tmp_path / "p", config=True, primary_dataset=True, env_file="HUD_API_KEY=k\n")
    cases = {
        "aws-2-nodes": TrainOptions(project=str(project), gpus="8xH100", provider="skypilot", infra="aws", nodes=2),
        "any-cloud": TrainOptions(project=str(project), gpus="4xA100", provider="skypilot", disk_size=300),
        "gcp-region": TrainOptions(project=str(project), gpus="H100:8", provider="skypilot", infra="gcp/us-central1"),
    }
    paths = []
    for name, options in cases.items():
        the_plan = plan(options, environ=clean_environ(home))
        assert the_plan.sky_task is not None
        paths.append(tmp_path / f"{name}.yaml")
        paths[-1].write_text(the_plan.sky_task.to_yaml(), encoding="utf-8")
    aws, any_cloud, gcp = sky_check(sky_python, home, *paths)
    assert all(result["ok"] for result in (aws, any_cloud, gcp)), (aws, any_cloud, gcp)
    assert (aws["cloud"], aws["num_nodes"]) == ("AWS", 2)
    assert aws["file_mounts"] == {
        f"~/hud-train-inputs/config/{ENV_NAME}.yaml": str(project / "configs" / f"{ENV_NAME}.yaml"),
        "~/hud-train-inputs/dataset/tasks.json": str(project / "tasks.json"),
    }
    assert (any_cloud["cloud"], any_cloud["accelerators"], any_cloud["disk_size"]) == (None, {"A100": 4}, 300)
    assert gcp["cloud"] == "GCP"


def test_skypilot_refuses_prime_with_several_nodes_as_the_plan_does(sky_python: Path, tmp_path: Path) -> None:
    placement = Placement("prime", GpuRequest(8, "H100"), nodes=2)
    assert any("single machines only" in problem for problem in placement.problems())
    task = build_sky_task(placement, name="t", workdir=str(ROOT), model="m", train_config="c.yaml", grpo_args=[])
    path = tmp_path / "prime-2.yaml"
    path.write_text(task.to_yaml(), encoding="utf-8")
    (result,) = sky_check(sky_python, tmp_path, path)
    assert not result["ok"] and "Multi-node not supported yet" in result["error"]


def test_the_single_node_clouds_are_skypilots(sky_python: Path, tmp_path: Path) -> None:
    completed = subprocess.run(
        [str(sky_python), str(CHECKER), "--single-node"],
        capture_output=True,
        text=True,
        timeout=SKY_TIMEOUT_S,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert set(json.loads(completed.stdout)) == SINGLE_NODE_INFRAS
