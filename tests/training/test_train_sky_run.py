"""`hud-vf-gym train --provider prime|skypilot`: the launch / logs / copy back / teardown sequence, and Ctrl-C.

No cloud can be reached from the test machine (and SkyPilot's own CLI needs cloud credentials and the network), so
`sky` and `rsync` are test doubles on PATH: small scripts that record their arguments, print what the real ones
would, and exit with the status the test asks for. The fake `sky launch` also plays the remote job: it writes a
checkpoint into a folder that stands for the head node's home, which the fake `rsync` copies from.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from hud_vf_gym.cli.train import TrainOptions, execute, plan, start
from tests.training.train_projects import clean_environ, cli, prime_credentials

WAIT_S = 120.0  # bound on every wait for the command (it imports the package: seconds on a busy machine)
WANDB_VALUE = "wandb-test-value-never-written"

FAKE_SKY = """
import json, os, pathlib, sys, time
args = sys.argv[1:]
entry = {"tool": "sky", "argv": args, "pid": os.getpid()}
if args[0] == "launch":
    names = [args[i + 1] for i, word in enumerate(args) if word == "--secret"]
    entry["secrets_set"] = {name: bool(os.environ.get(name)) for name in names}
    task = pathlib.Path(args[-1])
    entry["task_yaml"] = task.read_text() if task.is_file() else None
    # the remote job: a checkpoint in the head node's output folder (unless the test wants none)
    remote = pathlib.Path(os.environ["FAKE_REMOTE_HOME"], "sky_workdir", "outputs", task.parent.name, "checkpoint-1")
    if not os.environ.get("FAKE_NO_OUTPUT"):
        remote.mkdir(parents=True, exist_ok=True)
        (remote / "model.safetensors").write_text("weights")
with open(os.environ["FAKE_RECORD"], "a") as handle:
    handle.write(json.dumps(entry) + "\\n")
if args[0] == "launch":
    print("fake sky: cluster up, setup done, job 1 submitted", flush=True)
    sys.exit(int(os.environ.get("FAKE_LAUNCH_STATUS", "0")))
if args[0] == "logs" and "--status" in args:
    sys.exit(int(os.environ.get("FAKE_JOB_STATUS", "0")))
if args[0] == "logs":
    print("fake sky: {'loss': 0.01, 'step': 1}", flush=True)
    time.sleep(float(os.environ.get("FAKE_LOGS_S", "0")))
"""

FAKE_RSYNC = """
import json, os, shutil, sys
args = sys.argv[1:]
with open(os.environ["FAKE_RECORD"], "a") as handle:
    handle.write(json.dumps({"tool": "rsync", "argv": args, "pid": os.getpid()}) + "\\n")
cluster, _, path = args[-2].partition(":")
source = os.path.join(os.environ["FAKE_REMOTE_HOME"], path)
if not os.path.isdir(source):
    sys.exit(23)  # rsync's "some files could not be transferred"
shutil.copytree(source, args[-1], dirs_exist_ok=True)
"""


@pytest.fixture
def fake_cloud(tmp_path: Path) -> dict[str, Any]:
    """PATH with the `sky` and `rsync` doubles, a Prime credentials file in HOME, and where the doubles record."""
    bin_dir, home, remote = tmp_path / "bin", tmp_path / "home", tmp_path / "remote-home"
    for folder in (bin_dir, home, remote):
        folder.mkdir()
    for name, code in (("sky", FAKE_SKY), ("rsync", FAKE_RSYNC)):
        (bin_dir / name).write_text(f"#!{sys.executable}\n{code}", encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    prime_credentials(home)
    record = tmp_path / "record.jsonl"
    environ = clean_environ(
        home,
        PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        FAKE_RECORD=str(record),
        FAKE_REMOTE_HOME=str(remote),
        WANDB_API_KEY=WANDB_VALUE,
    )
    project = tmp_path / "project"
    project.mkdir()
    return {"environ": environ, "record": record, "project": project}


def records(fake: dict[str, Any]) -> list[dict[str, Any]]:
    path: Path = fake["record"]
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def sequence(fake: dict[str, Any]) -> list[str]:
    return [" ".join([entry["tool"], *entry["argv"][:2]]) for entry in records(fake)]


def train(fake: dict[str, Any], *args: str, **environ: str) -> subprocess.CompletedProcess[str]:
    argv = cli("train", "--project", str(fake["project"]), "--gpus", "8xH100", "--provider", "prime", "--yes")
    return subprocess.run(
        [*argv, "--cluster", "t1", *args],
        env={**fake["environ"], **environ},
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        cwd=fake["project"],
    )


def test_launch_streams_logs_copies_checkpoints_back_and_tears_down(fake_cloud: dict[str, Any]) -> None:
    completed = train(fake_cloud)
    assert completed.returncode == 0, completed.stderr
    output = fake_cloud["project"] / "outputs" / "grpo-2048-gpu"
    assert sequence(fake_cloud) == [
        "sky launch --cluster", "sky logs t1", "sky logs --status", "rsync -avz t1:sky_workdir/outputs/grpo-2048-gpu/",
        "sky down --yes",
    ]  # fmt: skip
    launch = records(fake_cloud)[0]
    assert launch["argv"] == [
        "launch", "--cluster", "t1", "--detach-run", "--yes", "--secret", "WANDB_API_KEY",
        str(output / "sky-task.yaml"),
    ]  # fmt: skip
    assert launch["secrets_set"] == {"WANDB_API_KEY": True}  # sky reads the value from its environment
    assert launch["task_yaml"] is not None and "infra: primeintellect" in launch["task_yaml"]
    assert WANDB_VALUE not in launch["task_yaml"] + completed.stdout + completed.stderr
    assert records(fake_cloud)[-1]["argv"] == ["down", "--yes", "t1"]
    assert "fake sky: {'loss': 0.01, 'step': 1}" in completed.stdout  # the job's log reached the terminal
    assert (output / "checkpoint-1" / "model.safetensors").read_text() == "weights"
    assert f"copied sky_workdir/outputs/grpo-2048-gpu from t1 to {output}" in completed.stderr


def execute_here(fake: dict[str, Any], keep: bool = False, **environ: str) -> int:
    """The same sequence in this process (`execute`), with the doubles on the plan's PATH."""
    options = TrainOptions(project=str(fake["project"]), gpus="8xH100", provider="prime", cluster="t1", keep=keep)
    return execute(plan(options, environ={**fake["environ"], **environ}))


def test_a_failed_job_with_keep_leaves_the_cluster_up_and_says_so(
    fake_cloud: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    assert execute_here(fake_cloud, keep=True, FAKE_JOB_STATUS="100") == 100
    assert [entry["argv"][0] for entry in records(fake_cloud)] == ["launch", "logs", "logs", "-avz"]
    stderr = capfd.readouterr().err
    assert "the training job did not succeed (`sky logs --status` exit status 100)" in stderr
    assert "cluster t1 kept (--keep); stop it with: sky down t1" in stderr


def test_a_failed_launch_still_tears_the_cluster_down(
    fake_cloud: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    assert execute_here(fake_cloud, FAKE_LAUNCH_STATUS="1") == 1
    assert sequence(fake_cloud) == ["sky launch --cluster", "sky down --yes"]  # a half-made cluster costs money
    assert "`sky launch` failed (exit status 1); its output above says why" in capfd.readouterr().err


def test_a_finished_job_whose_outputs_cannot_be_copied_keeps_its_cluster(
    fake_cloud: dict[str, Any], capfd: pytest.CaptureFixture[str]
) -> None:
    assert execute_here(fake_cloud, FAKE_NO_OUTPUT="1") == 1
    assert sequence(fake_cloud)[-1].startswith("rsync")  # no sky down: the trained model would go with the cluster
    assert "keeping the cluster so the trained model is not lost" in capfd.readouterr().err


def test_ctrl_c_cancels_the_job_copies_back_and_tears_down(fake_cloud: dict[str, Any], tmp_path: Path) -> None:
    options = TrainOptions(project=str(fake_cloud["project"]), gpus="8xH100", provider="prime", cluster="t2")
    the_plan = plan(options, environ=fake_cloud["environ"])
    assert the_plan.blockers == ()
    log = tmp_path / "train.log"
    process = start(the_plan, log, environ={**fake_cloud["environ"], "FAKE_LOGS_S": "300"})
    try:
        deadline = time.monotonic() + WAIT_S
        while "sky logs t2" not in sequence(fake_cloud) and time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "sky logs t2" in sequence(fake_cloud), log.read_text()
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends to the foreground group
        assert process.wait(timeout=WAIT_S) == 130, log.read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert sequence(fake_cloud) == [
        "sky launch --cluster", "sky logs t2", "sky cancel --yes", "rsync -avz t2:sky_workdir/outputs/grpo-2048-gpu/",
        "sky down --yes",
    ]  # fmt: skip
    assert records(fake_cloud)[2]["argv"] == ["cancel", "--yes", "--all", "t2"]
    logs_pid = records(fake_cloud)[1]["pid"]
    assert not psutil.pid_exists(logs_pid) or psutil.Process(logs_pid).status() == psutil.STATUS_ZOMBIE
    text = log.read_text()
    assert "interrupted: stopping the job on t2" in text
    assert (fake_cloud["project"] / "outputs" / "grpo-2048-gpu" / "checkpoint-1").is_dir()  # what it had, kept
