"""The GPU split: the command lines from hud_vf_gym.training.launch, and train/launch.sh with fake vllm/accelerate."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training.launch import main, plan_launch, visible_gpus
from tests.support import REPO_ROOT

LAUNCH_SH = REPO_ROOT / "train" / "launch.sh"
WAIT_S = 60.0  # bound on every wait for the launcher in these tests

FAKE_VLLM = """
import http.server, json, os, sys, time
record = os.environ["FAKE_RECORD_DIR"]
names = ("CUDA_VISIBLE_DEVICES", "VLLM_SERVER_DEV_MODE")
info = {"argv": sys.argv[1:], "pid": os.getpid(), "env": {name: os.environ.get(name) for name in names}}
with open(record + "/server.tmp", "w") as f:
    json.dump(info, f)
os.replace(record + "/server.tmp", record + "/server.json")
if os.environ.get("FAKE_SERVER_FAIL"):
    sys.exit(3)
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
time.sleep(0.5)  # "loading the model"
http.server.HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Health).serve_forever()
"""

FAKE_ACCELERATE = """
import json, os, sys, time
record = os.environ["FAKE_RECORD_DIR"]
visible = os.environ.get("CUDA_VISIBLE_DEVICES")
info = {"argv": sys.argv[1:], "pid": os.getpid(), "env": {"CUDA_VISIBLE_DEVICES": visible}}
with open(record + "/trainer.tmp", "w") as f:
    json.dump(info, f)
os.replace(record + "/trainer.tmp", record + "/trainer.json")
time.sleep(float(os.environ.get("FAKE_TRAIN_S", "0")))
sys.exit(int(os.environ.get("FAKE_TRAIN_STATUS", "0")))
"""


# -- command lines -------------------------------------------------------------------------------------------------


def test_plan_launch_splits_gpus_between_vllm_and_training() -> None:
    plan = plan_launch(model="Qwen/Qwen2.5-1.5B-Instruct", gpus=["0", "1", "2", "3"], train_args=["--max_steps", "5"])
    assert dict(plan.server_env) == {"CUDA_VISIBLE_DEVICES": "0", "VLLM_SERVER_DEV_MODE": "1"}
    assert plan.server_argv == (
        "vllm", "serve", "Qwen/Qwen2.5-1.5B-Instruct", "--host", "127.0.0.1", "--port", "8000",
        "--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.9",
        "--weight-transfer-config", '{"backend": "nccl"}', "--logprobs-mode", "processed_logprobs",
        "--max-logprobs", "-1",
    )  # fmt: skip
    assert dict(plan.trainer_env) == {"CUDA_VISIBLE_DEVICES": "1,2,3"}
    assert plan.trainer_argv == (
        "accelerate", "launch", "--config_file", "configs/accelerate/zero2.yaml", "--num_processes", "3",
        "train/grpo.py", "--config", "configs/train/2048-gpu.yaml", "--model_name_or_path",
        "Qwen/Qwen2.5-1.5B-Instruct", "--use_vllm", "true", "--vllm_mode", "server",
        "--vllm_server_base_url", "http://127.0.0.1:8000", "--max_steps", "5",
    )  # fmt: skip
    assert plan.health_url == "http://127.0.0.1:8000/health"


def test_plan_launch_tensor_parallel_server_and_zero3() -> None:
    plan = plan_launch(model="m", gpus=["4", "5", "6", "7"], vllm_gpus=2, accelerate_config="zero3", max_model_len=8192)
    assert plan.server_env["CUDA_VISIBLE_DEVICES"] == "4,5"
    assert plan.trainer_env["CUDA_VISIBLE_DEVICES"] == "6,7"
    assert plan.server_argv[plan.server_argv.index("--tensor-parallel-size") + 1] == "2"
    assert plan.server_argv[plan.server_argv.index("--max-model-len") + 1] == "8192"
    assert plan.trainer_argv[2:6] == ("--config_file", "configs/accelerate/zero3.yaml", "--num_processes", "2")


@pytest.mark.parametrize(
    ("gpus", "vllm_gpus", "accelerate_config", "message"),
    [
        (
            ["0"],
            1,
            "zero2",
            "1 GPU(s) and --vllm-gpus 1 leave none for training; vLLM and the trainer need different GPUs",
        ),
        (
            ["0", "1", "2"],
            1,
            "single_gpu",
            "--accelerate single_gpu trains on exactly one GPU, but 2 are left for training",
        ),
        (["0", "1"], 1, "fsdp", "--accelerate 'fsdp': unknown config; expected one of single_gpu, zero2, zero3"),
        (["0", "1"], 0, "zero2", "--vllm-gpus must be at least 1, got 0"),
    ],
    ids=["no-training-gpu", "single-gpu-too-many", "unknown-config", "no-vllm-gpu"],
)
def test_plan_launch_refuses_bad_splits(gpus: list[str], vllm_gpus: int, accelerate_config: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_launch(model="m", gpus=gpus, vllm_gpus=vllm_gpus, accelerate_config=accelerate_config)


def test_plan_launch_several_machines_share_the_heads_server() -> None:
    gpus = [str(index) for index in range(8)]
    head = plan_launch(model="m", gpus=gpus, num_machines=2, machine_rank=0, main_process_ip="10.0.0.1")
    assert head.server_argv[3:7] == ("--host", "0.0.0.0", "--port", "8000")  # the other machine must reach it
    assert head.base_url == "http://10.0.0.1:8000"
    assert head.trainer_argv[4:14] == (
        "--num_processes", "14", "--num_machines", "2", "--machine_rank", "0", "--main_process_ip", "10.0.0.1",
        "--main_process_port", "29500",
    )  # fmt: skip
    worker = plan_launch(model="m", gpus=gpus, num_machines=2, machine_rank=1, main_process_ip="10.0.0.1")
    assert (worker.server_argv, dict(worker.server_env)) == ((), {})
    assert worker.trainer_env["CUDA_VISIBLE_DEVICES"] == "1,2,3,4,5,6,7"  # the same split on every machine
    assert worker.health_url == "http://10.0.0.1:8000/health"
    assert "SERVER_CMD=()" in worker.to_shell()


@pytest.mark.parametrize(
    ("machines", "message"),
    [
        ({"num_machines": 2}, "--num-machines 2 needs --main-process-ip"),
        ({"num_machines": 2, "machine_rank": 2, "main_process_ip": "h"}, "--machine-rank must be between 0 and 1"),
        ({"num_machines": 0}, "--num-machines must be at least 1, got 0"),
    ],
    ids=["no-head-address", "rank-out-of-range", "no-machines"],
)
def test_plan_launch_refuses_bad_machine_layouts(machines: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_launch(model="m", gpus=["0", "1", "2"], **machines)


def test_visible_gpus_respects_cuda_visible_devices() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, None) == ["4", "5", "6", "7"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, 2) == ["4", "5"]
    assert visible_gpus({}, 3) == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="pass --num-gpus N"):
        visible_gpus({}, None)


def test_main_prints_bash_arrays_that_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--num-gpus", "2", "--model", "my model", "--", "--run_name", "a b'c"], environ={}) == 0
    script = capsys.readouterr().out + 'printf "%s\\n" "${TRAINER_CMD[@]}"'
    words = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.splitlines()
    assert words[words.index("--model_name_or_path") + 1] == "my model"
    assert words[-2:] == ["--run_name", "a b'c"]


def test_accelerate_configs_load_with_accelerate() -> None:
    config_args = pytest.importorskip("accelerate.commands.config.config_args", reason="needs the train extra")
    for name, distributed, stage in [("single_gpu", "NO", None), ("zero2", "DEEPSPEED", 2), ("zero3", "DEEPSPEED", 3)]:
        config = config_args.ClusterConfig.from_yaml_file(str(REPO_ROOT / "configs" / "accelerate" / f"{name}.yaml"))
        assert config.distributed_type.value == distributed
        assert config.deepspeed_config.get("zero_stage") == stage
        assert (config.num_machines, config.mixed_precision) == (1, "bf16")


# -- launch.sh against fake servers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_tools(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A PATH with fake `vllm` and `accelerate` that record their argv and environment in a folder."""
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    for name, code in (("vllm", FAKE_VLLM), ("accelerate", FAKE_ACCELERATE)):
        path = bin_dir / name
        path.write_text(f"#!{sys.executable}\n{code}", encoding="utf-8")
        path.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHON": sys.executable,
        "FAKE_RECORD_DIR": str(record),
        "HEALTH_TIMEOUT_S": "30",  # the fake server is up in half a second
        "HEALTH_POLL_S": "0.2",
        "STOP_GRACE_S": "5",
    }
    env.pop("CUDA_VISIBLE_DEVICES", None)
    yield env
    for name in ("server.json", "trainer.json"):  # never leave a fake behind, whatever the test did
        if (record / name).is_file():
            pid = json.loads((record / name).read_text())["pid"]
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGKILL)


def record_of(env: dict[str, str], name: str) -> dict[str, Any]:
    return json.loads((Path(env["FAKE_RECORD_DIR"]) / f"{name}.json").read_text(encoding="utf-8"))


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def launch(env: dict[str, str], port: int) -> subprocess.Popen[str]:
    args = ["--num-gpus", "3", "--model", "tiny/model", "--port", str(port), "--", "--max_steps", "1"]
    return subprocess.Popen(["bash", str(LAUNCH_SH), *args], env=env, stderr=subprocess.PIPE, text=True)


def test_launch_sh_waits_for_health_runs_trainer_and_stops_server(fake_tools: dict[str, str]) -> None:
    port = free_port()
    process = launch(fake_tools, port)
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 0, stderr
    server, trainer = record_of(fake_tools, "server"), record_of(fake_tools, "trainer")
    assert server["env"] == {"CUDA_VISIBLE_DEVICES": "0", "VLLM_SERVER_DEV_MODE": "1"}
    assert server["argv"][:6] == ["serve", "tiny/model", "--host", "127.0.0.1", "--port", str(port)]
    assert trainer["env"] == {"CUDA_VISIBLE_DEVICES": "1,2"}
    assert trainer["argv"][:5] == ["launch", "--config_file", "configs/accelerate/zero2.yaml", "--num_processes", "2"]
    assert trainer["argv"][-3:] == [f"http://127.0.0.1:{port}", "--max_steps", "1"]
    assert f"vLLM is ready at http://127.0.0.1:{port}/health" in stderr
    assert wait_gone(server["pid"]), "the vLLM server outlived the launcher"


def test_launch_sh_fails_fast_when_server_dies(fake_tools: dict[str, str]) -> None:
    process = launch({**fake_tools, "FAKE_SERVER_FAIL": "1"}, free_port())
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 1
    assert "the vLLM server exited before it answered" in stderr
    assert not (Path(fake_tools["FAKE_RECORD_DIR"]) / "trainer.json").exists()


def test_launch_sh_passes_trainer_status_through(fake_tools: dict[str, str]) -> None:
    process = launch({**fake_tools, "FAKE_TRAIN_STATUS": "7"}, free_port())
    _, stderr = process.communicate(timeout=WAIT_S)
    assert process.returncode == 7, stderr
    assert wait_gone(record_of(fake_tools, "server")["pid"])


def test_launch_sh_sigterm_stops_trainer_and_server(fake_tools: dict[str, str]) -> None:
    process = launch({**fake_tools, "FAKE_TRAIN_S": "120"}, free_port())
    trainer_file = Path(fake_tools["FAKE_RECORD_DIR"]) / "trainer.json"
    deadline = time.monotonic() + WAIT_S
    while not trainer_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert trainer_file.exists(), "the trainer never started"
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=WAIT_S)
    assert process.returncode == 143
    assert wait_gone(record_of(fake_tools, "trainer")["pid"]), "the trainer outlived the launcher"
    assert wait_gone(record_of(fake_tools, "server")["pid"]), "the vLLM server outlived the launcher"


def test_launch_sh_on_a_worker_machine_uses_the_heads_server(fake_tools: dict[str, str]) -> None:
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    head = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)  # the head machine's vLLM server
    thread = threading.Thread(target=head.serve_forever, daemon=True)
    thread.start()
    try:
        port = str(head.server_address[1])
        args = ["--num-gpus", "3", "--num-machines", "2", "--machine-rank", "1", "--main-process-ip", "127.0.0.1"]
        args += ["--port", port, "--model", "tiny/model", "--", "--max_steps", "1"]
        process = subprocess.Popen(["bash", str(LAUNCH_SH), *args], env=fake_tools, stderr=subprocess.PIPE, text=True)
        _, stderr = process.communicate(timeout=WAIT_S)
    finally:
        head.shutdown()
        head.server_close()
        thread.join()
    assert process.returncode == 0, stderr
    assert not (Path(fake_tools["FAKE_RECORD_DIR"]) / "server.json").exists()  # no server on a worker
    trainer = record_of(fake_tools, "trainer")
    assert trainer["env"] == {"CUDA_VISIBLE_DEVICES": "1,2"}
    assert trainer["argv"][3:11] == [
        "--num_processes", "4", "--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "127.0.0.1",
    ]  # fmt: skip
    assert trainer["argv"][-3:] == [f"http://127.0.0.1:{port}", "--max_steps", "1"]
    assert f"using the head machine's vLLM server at http://127.0.0.1:{port}/health" in stderr
