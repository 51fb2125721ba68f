"""The SkyPilot task YAML of a cloud run (SkyPilot itself is never imported: `sky` reads the file).

```yaml
name: hud-vf-gym-train
workdir: <the hud-vf-gym checkout>      # uploaded to ~/sky_workdir (SkyPilot skips what .gitignore lists)
num_nodes: 1
resources: {accelerators: H100:8, infra: primeintellect, disk_size: 200}
envs: {HUD_VF_GYM_COMMIT: ..., WANDB_PROJECT: ...}
secrets: {WANDB_API_KEY: null}          # values come from `sky launch --secret NAME`, never from this file
file_mounts: {~/hud-train-inputs/tasks.json: /local/project/tasks.json}   # the user's files outside the checkout
setup: |                                # the same code: this checkout, installed with the train and gpu extras
  ... uv venv; uv pip install -e ".[train]"; uv pip install -e ".[train,gpu]" ...
run: |                                  # every node: the same split; rank and head address from SkyPilot
  MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1); MACHINE_RANK=$SKYPILOT_NODE_RANK
  bash train/launch.sh --num-gpus 8 --vllm-gpus 1 --accelerate zero2 --model M --config ... -- --output_dir ...
```

Checkpoints land in `~/sky_workdir/<remote output>` on the head node; `sky_run` copies them back with rsync.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hud_vf_gym.training.placement.gpus import Placement
from hud_vf_gym.training.placement.local import training_argv

__all__ = ["REMOTE_WORKDIR", "SkyTask", "build_sky_task", "shell_join"]

REMOTE_WORKDIR = "~/sky_workdir"  # where SkyPilot puts `workdir` on every node
REMOTE_VENV = "~/hud-vf-gym-venv"
REMOTE_PYTHON = "3.12"
_SHELL_VARIABLE = re.compile(r"^\$[A-Z_][A-Z0-9_]*$")

SETUP = """\
set -euo pipefail
cd {workdir}
# uv gives a Python {python} on any image and installs the CUDA build of torch on Linux
command -v uv >/dev/null 2>&1 || curl -LsSf https://astral.sh/uv/install.sh | sh
export PATH="$HOME/.local/bin:$PATH"
uv venv --allow-existing --python {python} {venv}
source {venv}/bin/activate
# this very checkout (hud-vf-gym {version}{commit}); torch first, so that flash-attn builds against it
uv pip install -e ".[train]"
uv pip install -e ".[train,gpu]" --no-build-isolation-package flash-attn
"""

RUN = """\
set -euo pipefail
cd {workdir}
source {venv}/bin/activate
export PATH="$HOME/.local/bin:$PATH"
# SkyPilot's node variables: the head (rank 0) runs the vLLM server and the rendezvous
MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)
MACHINE_RANK="$SKYPILOT_NODE_RANK"
export MASTER_ADDR MACHINE_RANK
{command}
"""


def shell_join(words: Sequence[str]) -> str:
    """Quote every word for bash, except `$NAME` words, which become `"$NAME"` so the node's value is used."""
    return " ".join(f'"{word}"' if _SHELL_VARIABLE.match(word) else shlex.quote(word) for word in words)


@dataclass(frozen=True, slots=True)
class SkyTask:
    """A SkyPilot task: `to_yaml()` is the file `sky launch` reads."""

    name: str
    workdir: str
    accelerators: str
    nodes: int
    infra: str | None
    setup: str
    run: str
    envs: Mapping[str, str] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    file_mounts: Mapping[str, str] = field(default_factory=dict)
    disk_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The task as SkyPilot's YAML schema has it; secrets only by name (null: `--secret NAME` fills them)."""
        resources: dict[str, Any] = {"accelerators": self.accelerators}
        if self.infra is not None:
            resources["infra"] = self.infra
        if self.disk_size is not None:
            resources["disk_size"] = self.disk_size
        task: dict[str, Any] = {"name": self.name, "workdir": self.workdir, "num_nodes": self.nodes}
        task["resources"] = resources
        if self.envs:
            task["envs"] = dict(self.envs)
        if self.secrets:
            task["secrets"] = dict.fromkeys(self.secrets)
        if self.file_mounts:
            task["file_mounts"] = dict(self.file_mounts)
        task["setup"] = self.setup
        task["run"] = self.run
        return task

    def to_yaml(self) -> str:
        """The YAML text, scripts as literal blocks."""
        import yaml

        class _Dumper(yaml.SafeDumper):
            pass

        def _text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
            style = "|" if "\n" in value else None
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

        _Dumper.add_representer(str, _text)
        return yaml.dump(self.to_dict(), Dumper=_Dumper, sort_keys=False, width=120)


def build_sky_task(
    placement: Placement,
    *,
    name: str,
    workdir: str,
    model: str,
    train_config: str,
    grpo_args: Sequence[str],
    accelerate: str | None = None,
    envs: Mapping[str, str] | None = None,
    secrets: Sequence[str] = (),
    file_mounts: Mapping[str, str] | None = None,
    version: str = "",
    commit: str | None = None,
    disk_size: int | None = None,
) -> SkyTask:
    """The task that installs `workdir` (this checkout) on every node and trains with the placement's GPU split.

    Raises:
        ConfigError: the placement asks for no GPU type, or its split does not work.
    """
    assert placement.gpus is not None and placement.split is not None  # Placement.check() refuses a remote CPU run
    accelerators = placement.gpus.accelerators
    command = training_argv(
        placement.split,
        model=model,
        train_config=train_config,
        grpo_args=grpo_args,
        accelerate=accelerate,
        nodes=placement.nodes,
        python="python",
    )
    return SkyTask(
        name=name,
        workdir=workdir,
        accelerators=accelerators,
        nodes=placement.nodes,
        infra=placement.sky_infra,
        setup=SETUP.format(
            workdir=REMOTE_WORKDIR,
            venv=REMOTE_VENV,
            python=REMOTE_PYTHON,
            version=version,
            commit=f" at {commit}" if commit else "",
        ),
        run=RUN.format(workdir=REMOTE_WORKDIR, venv=REMOTE_VENV, command=shell_join(command)),
        envs=dict(envs or {}),
        secrets=tuple(secrets),
        file_mounts=dict(file_mounts or {}),
        disk_size=disk_size,
    )
