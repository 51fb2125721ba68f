"""The command lines `train/launch.sh` runs: a vLLM server on the first GPU(s), the trainer on the rest.

GRPO with vLLM in server mode needs the server and the training processes on different GPUs (NCCL refuses to share
one). `plan_launch` splits the visible GPUs and returns both command lines with their environments:

    server : CUDA_VISIBLE_DEVICES=<first vllm_gpus>  VLLM_SERVER_DEV_MODE=1
             vllm serve MODEL --host 127.0.0.1 --port 8000 --tensor-parallel-size K ...
             --weight-transfer-config '{"backend": "nccl"}' --logprobs-mode processed_logprobs --max-logprobs -1
    trainer: CUDA_VISIBLE_DEVICES=<the rest>
             accelerate launch --config_file configs/accelerate/<single_gpu|zero2|zero3>.yaml --num_processes N
             train/grpo.py --config configs/train/2048-gpu.yaml --model_name_or_path MODEL --use_vllm true
             --vllm_mode server --vllm_server_base_url http://127.0.0.1:8000 [extra arguments]

The server flags are those `trl vllm-serve` (deprecated in TRL 1.16) passes to vLLM: dev mode and the NCCL weight
transfer let the trainer push its weights, processed logprobs make the importance-sampling correction exact.

Several machines (`--num-machines K --machine-rank R --main-process-ip HEAD`, e.g. from SkyPilot's
SKYPILOT_NUM_NODES / SKYPILOT_NODE_RANK / SKYPILOT_NODE_IPS): every machine splits its GPUs the same way, because
`accelerate launch` starts the same number of processes on each. Only the head (rank 0) runs the vLLM server, bound
to every interface so the other machines reach it at `http://HEAD:PORT`; on the others its first GPU(s) stay idle
and the plan has no server command (SERVER_CMD is empty: `launch.sh` only waits for the head's server). The trainer
gets `--num_machines K --machine_rank R --main_process_ip HEAD --main_process_port 29500` and `--num_processes`
counts the processes of all machines.

`python -m hud_vf_gym.training.launch --num-gpus 4 --model M [-- extra grpo.py arguments]` prints the plan as bash
array assignments (SERVER_ENV, SERVER_CMD, TRAINER_ENV, TRAINER_CMD, HEALTH_URL) for `launch.sh` to `eval`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training.names import ACCELERATE_CONFIGS

__all__ = ["ACCELERATE_CONFIGS", "LaunchPlan", "main", "plan_launch", "visible_gpus"]

DEFAULT_TRAIN_CONFIG = "configs/train/2048-gpu.yaml"
DEFAULT_SCRIPT = "train/grpo.py"
DEFAULT_HOST = "127.0.0.1"  # single node: the server is reached only from this machine
ALL_INTERFACES = "0.0.0.0"  # several machines: the others reach the head's server over the cluster network
DEFAULT_PORT = 8000
DEFAULT_MAIN_PROCESS_PORT = 29500  # torch.distributed's usual rendezvous port on the head
# vLLM's NCCL weight transfer, the logprob mode the importance-sampling correction needs, uncapped logprobs
VLLM_TRL_FLAGS = (
    "--weight-transfer-config",
    json.dumps({"backend": "nccl"}),
    "--logprobs-mode",
    "processed_logprobs",
    "--max-logprobs",
    "-1",
)


@dataclass(frozen=True, slots=True)
class LaunchPlan:
    """Both command lines and the environment each one adds (the rest of the caller's environment is kept)."""

    server_env: Mapping[str, str]
    server_argv: tuple[str, ...]
    trainer_env: Mapping[str, str]
    trainer_argv: tuple[str, ...]
    base_url: str

    @property
    def health_url(self) -> str:
        """The server's readiness endpoint (200 once the model is loaded)."""
        return f"{self.base_url}/health"

    def to_shell(self) -> str:
        """The plan as bash assignments: SERVER_ENV/SERVER_CMD/TRAINER_ENV/TRAINER_CMD arrays and HEALTH_URL."""
        lines = [
            _array("SERVER_ENV", [f"{key}={value}" for key, value in self.server_env.items()]),
            _array("SERVER_CMD", self.server_argv),
            _array("TRAINER_ENV", [f"{key}={value}" for key, value in self.trainer_env.items()]),
            _array("TRAINER_CMD", self.trainer_argv),
            f"HEALTH_URL={shlex.quote(self.health_url)}",
        ]
        return "\n".join(lines) + "\n"


def _array(name: str, items: Sequence[str]) -> str:
    return f"{name}=({' '.join(shlex.quote(item) for item in items)})"


def plan_launch(
    *,
    model: str,
    gpus: Sequence[str],
    vllm_gpus: int = 1,
    accelerate_config: str = "zero2",
    train_config: str = DEFAULT_TRAIN_CONFIG,
    script: str = DEFAULT_SCRIPT,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    train_args: Sequence[str] = (),
    num_machines: int = 1,
    machine_rank: int = 0,
    main_process_ip: str | None = None,
    main_process_port: int = DEFAULT_MAIN_PROCESS_PORT,
) -> LaunchPlan:
    """Split `gpus` between the vLLM server (the first `vllm_gpus`) and the trainer (the rest).

    Args:
        model: HF id or local folder; served by vLLM and trained by the script.
        gpus: the device ids to use, in order (e.g. CUDA_VISIBLE_DEVICES split on commas).
        vllm_gpus: GPUs for the server (its tensor-parallel size).
        accelerate_config: one of `ACCELERATE_CONFIGS` (a file in configs/accelerate/).
        train_config: the grpo.py YAML passed as `--config`.
        script: the training script.
        host: the address the server binds; 127.0.0.1 keeps it on this machine.
        port: the server's port.
        gpu_memory_utilization: the share of each server GPU vLLM may take.
        max_model_len: the server's context length (None: the model's).
        train_args: extra arguments for the training script, appended last (they override the YAML).
        num_machines: machines in the run, each with the same `gpus`; only the head (rank 0) runs the server.
        machine_rank: this machine's rank (0 is the head).
        main_process_ip: the head's address, needed when `num_machines > 1`.
        main_process_port: the head's rendezvous port for the trainer processes.

    Raises:
        ConfigError: an unknown accelerate config, a split that leaves either side without a GPU, or a bad
            machine layout.
    """
    _check_split(gpus, vllm_gpus, accelerate_config)
    _check_machines(num_machines, machine_rank, main_process_ip, accelerate_config)
    server_gpus, trainer_gpus = list(gpus[:vllm_gpus]), list(gpus[vllm_gpus:])
    several = num_machines > 1
    bind = ALL_INTERFACES if several and host == DEFAULT_HOST else host
    base_url = f"http://{main_process_ip if several else host}:{port}"
    server_argv: list[str] = []
    server_env: dict[str, str] = {}
    if machine_rank == 0:
        server_argv = ["vllm", "serve", model, "--host", bind, "--port", str(port)]
        server_argv += ["--tensor-parallel-size", str(vllm_gpus)]
        server_argv += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
        if max_model_len is not None:
            server_argv += ["--max-model-len", str(max_model_len)]
        server_argv += VLLM_TRL_FLAGS
        server_env = {"CUDA_VISIBLE_DEVICES": ",".join(server_gpus), "VLLM_SERVER_DEV_MODE": "1"}
    trainer_argv = ["accelerate", "launch", "--config_file", f"configs/accelerate/{accelerate_config}.yaml"]
    trainer_argv += ["--num_processes", str(len(trainer_gpus) * num_machines)]
    if several:
        trainer_argv += ["--num_machines", str(num_machines), "--machine_rank", str(machine_rank)]
        trainer_argv += ["--main_process_ip", str(main_process_ip), "--main_process_port", str(main_process_port)]
    trainer_argv += [script, "--config", train_config]
    trainer_argv += ["--model_name_or_path", model, "--use_vllm", "true", "--vllm_mode", "server"]
    trainer_argv += ["--vllm_server_base_url", base_url, *train_args]
    return LaunchPlan(
        server_env=server_env,
        server_argv=tuple(server_argv),
        trainer_env={"CUDA_VISIBLE_DEVICES": ",".join(trainer_gpus)},
        trainer_argv=tuple(trainer_argv),
        base_url=base_url,
    )


def _check_machines(num_machines: int, machine_rank: int, main_process_ip: str | None, accelerate: str) -> None:
    if num_machines < 1:
        raise ConfigError(f"--num-machines must be at least 1, got {num_machines}")
    if not 0 <= machine_rank < num_machines:
        raise ConfigError(f"--machine-rank must be between 0 and {num_machines - 1}, got {machine_rank}")
    if num_machines > 1 and not main_process_ip:
        raise ConfigError(
            f"--num-machines {num_machines} needs --main-process-ip (the head machine's address, e.g. the first "
            "line of SKYPILOT_NODE_IPS)"
        )
    if num_machines > 1 and accelerate == "single_gpu":
        raise ConfigError("--accelerate single_gpu runs on one machine; use zero2 or zero3 with --num-machines")


def _check_split(gpus: Sequence[str], vllm_gpus: int, accelerate_config: str) -> None:
    if accelerate_config not in ACCELERATE_CONFIGS:
        raise ConfigError(
            f"--accelerate {accelerate_config!r}: unknown config; expected one of {', '.join(ACCELERATE_CONFIGS)}"
        )
    if vllm_gpus < 1:
        raise ConfigError(f"--vllm-gpus must be at least 1, got {vllm_gpus}")
    trainer_count = len(gpus) - vllm_gpus
    if trainer_count < 1:
        raise ConfigError(
            f"{len(gpus)} GPU(s) and --vllm-gpus {vllm_gpus} leave none for training; vLLM and the trainer need "
            "different GPUs (NCCL refuses to share one): use more GPUs or fewer for vLLM, or train without vLLM"
        )
    if accelerate_config == "single_gpu" and trainer_count != 1:
        raise ConfigError(
            f"--accelerate single_gpu trains on exactly one GPU, but {trainer_count} are left for training; "
            "use zero2 or zero3, or pass --gpus with one more GPU than --vllm-gpus"
        )


def visible_gpus(environ: Mapping[str, str], num_gpus: int | None) -> list[str]:
    """The device ids to split: the first `num_gpus` of CUDA_VISIBLE_DEVICES, or 0..num_gpus-1.

    Raises:
        ConfigError: neither says how many GPUs there are, or more are asked for than are visible.
    """
    visible = [item.strip() for item in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if item.strip()]
    if num_gpus is None:
        if not visible:
            raise ConfigError("how many GPUs? pass --num-gpus N (or set CUDA_VISIBLE_DEVICES)")
        return visible
    if visible and num_gpus > len(visible):
        raise ConfigError(f"--num-gpus {num_gpus}, but CUDA_VISIBLE_DEVICES lists only {len(visible)}: {visible}")
    return visible[:num_gpus] if visible else [str(index) for index in range(num_gpus)]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m hud_vf_gym.training.launch",
        allow_abbrev=False,
        description="Print the vLLM server and trainer command lines for train/launch.sh (bash assignments).",
    )
    parser.add_argument("--model", required=True, help="HF model id or local folder, served and trained.")
    parser.add_argument("--num-gpus", type=int, default=None, help="GPUs to use (default: CUDA_VISIBLE_DEVICES).")
    parser.add_argument("--vllm-gpus", type=int, default=1, help="GPUs for the vLLM server (tensor parallel).")
    parser.add_argument("--accelerate", default="zero2", choices=ACCELERATE_CONFIGS, help="configs/accelerate/ file.")
    parser.add_argument("--config", default=DEFAULT_TRAIN_CONFIG, help="grpo.py YAML config.")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="vLLM server port on 127.0.0.1.")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="Share of each vLLM GPU.")
    parser.add_argument("--max-model-len", type=int, default=None, help="vLLM context length.")
    parser.add_argument("--num-machines", type=int, default=1, help="Machines in the run (same GPUs on each).")
    parser.add_argument("--machine-rank", type=int, default=0, help="This machine's rank; 0 runs the vLLM server.")
    parser.add_argument("--main-process-ip", default=None, help="The head machine's address (several machines).")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="After --: extra grpo.py arguments.")
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Print the plan for `argv` as bash assignments; a bad split exits 2 with the reason."""
    args = _parser().parse_args(argv)
    train_args = list(args.train_args)
    if train_args[:1] == ["--"]:
        train_args = train_args[1:]
    try:
        plan = plan_launch(
            model=args.model,
            gpus=visible_gpus(os.environ if environ is None else environ, args.num_gpus),
            vllm_gpus=args.vllm_gpus,
            accelerate_config=args.accelerate,
            train_config=args.config,
            port=args.port,
            gpu_memory_utilization=args.gpu_memory_utilization,
            max_model_len=args.max_model_len,
            train_args=train_args,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            main_process_ip=args.main_process_ip,
        )
    except ConfigError as exc:
        sys.stderr.write(f"launch: {exc}\n")
        return 2
    sys.stdout.write(plan.to_shell())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
