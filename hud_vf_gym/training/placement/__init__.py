"""Where a GRPO run executes, and the commands that put it there.

- `gpus`: `--gpus N` / `NxTYPE` requests, the providers (`local`, `skypilot`, `prime`), which SkyPilot clouds are
  single-node, and how the GPUs of a machine are split between the vLLM server and the trainer.
- `local`: the command line on this machine: `train/grpo.py` on CPU, `accelerate launch` on one GPU,
  `train/launch.sh` (vLLM + accelerate, planned by `hud_vf_gym.training.launch`) on several.
- `skypilot`: the SkyPilot task YAML for a cloud run (setup installs this checkout, run calls `train/launch.sh` with
  SkyPilot's node variables).
- `sky_run`: `sky launch` / `sky logs` / rsync of the checkpoints / `sky down`, with Ctrl-C stopping the job and
  tearing the cluster down. SkyPilot is never imported: it is the `sky` executable, installed as its own tool.
- `steps`: one command line with its environment and folder, shown in the plan and run as a subprocess.
"""

from __future__ import annotations

from hud_vf_gym.training.placement.gpus import PROVIDERS, SINGLE_NODE_INFRAS, GpuRequest, GpuSplit, Placement
from hud_vf_gym.training.placement.steps import Step

__all__ = ["PROVIDERS", "SINGLE_NODE_INFRAS", "GpuRequest", "GpuSplit", "Placement", "Step"]
