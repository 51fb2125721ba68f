"""The text `hud-vf-gym train` prints for a plan: one line per decision, the commands, then what blocks it.

Keys appear by name and source only ("environment", ".env"), never by value.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING, Any

from hud_vf_gym.training.placement.gpus import GpuSplit, Placement
from hud_vf_gym.training.placement.local import default_accelerate

if TYPE_CHECKING:
    from hud_vf_gym.cli.train.planning import TrainPlan

__all__ = ["describe_plan", "gpu_layout"]

WIDTH = 116
LABEL = 10


def _line(label: str, text: str) -> str:
    indent = " " * (LABEL + 2)
    return textwrap.fill(text, WIDTH, initial_indent=f"  {label:<{LABEL}}", subsequent_indent=indent)


def _gpus(first: int, count: int) -> str:
    return f"GPU {first}" if count == 1 else f"GPUs {first}-{first + count - 1}"


def gpu_layout(split: GpuSplit, nodes: int, accelerate: str) -> str:
    """How each machine's GPUs are used, in words."""
    if not split.uses_vllm:
        return (
            "GPU 0: training, 1 process (no vLLM server: it needs a GPU of its own, so the trainer's model "
            "generates the rollouts)"
        )
    processes = split.trainer * nodes
    text = (
        f"{_gpus(0, split.vllm)}: vLLM server; {_gpus(split.vllm, split.trainer)}: training, {processes} "
        f"process{'es' if processes != 1 else ''} (accelerate, {accelerate})"
    )
    if nodes > 1:
        text += (
            f"; the other {nodes - 1} machine{'s' if nodes > 2 else ''} train on {_gpus(split.vllm, split.trainer)} "
            f"too and leave {_gpus(0, split.vllm)} idle (every machine runs the same number of processes)"
        )
    return text


def _where(placement: Placement, cluster: str) -> str:
    if not placement.remote:
        return "this machine's CPU" if placement.gpus is None else f"this machine, {placement.gpus}"
    infra = placement.sky_infra or "the cheapest cloud SkyPilot has credentials for"
    machines = f"{placement.nodes} machine{'s' if placement.nodes != 1 else ''}"
    assert placement.gpus is not None
    return f"SkyPilot on {infra}: {machines} with {placement.gpus.accelerators} each (cluster {cluster})"


RECIPE_KEYS = ("max_steps", "num_generations", "per_device_train_batch_size", "max_turns", "learning_rate", "use_peft")


def _recipe(recipe: Any) -> str:
    return ", ".join(f"{key} {recipe[key]}" for key in RECIPE_KEYS if recipe.get(key) is not None)


def _keys(the_plan: TrainPlan) -> list[str]:
    words = []
    for key in the_plan.keys:
        state = f"from {key.source}" if key.source else ("NOT SET" if key.required else "not set")
        words.append(f"{key.name} {state} ({key.needed_by})")
    if the_plan.env_file:
        words.append(f".env: {the_plan.env_file}")
    return words or ["none"]


def _cost(placement: Placement) -> str | None:
    if not placement.remote:
        return None
    assert placement.gpus is not None
    infra = f" --infra {placement.sky_infra}" if placement.sky_infra else ""
    return (
        "SkyPilot prints the hourly price of the offer it picks before launching and asks (unless --yes); "
        f"today's prices: sky gpus list {placement.gpus.accelerators}{infra}"
    )


def describe_plan(the_plan: TrainPlan) -> str:
    """The plan as text, ending in a newline."""
    placement, options = the_plan.placement, the_plan.options
    lines = ["hud-vf-gym train: the plan"]
    lines.append(_line("model", f"{the_plan.model} ({the_plan.model_origin})"))
    lines.append(_line("tasks", f"{the_plan.dataset.value} ({the_plan.dataset.origin})"))
    lines.append(_line("config", f"{the_plan.config.value} ({the_plan.config.origin})"))
    train_config = the_plan.train_config
    if train_config.is_relative_to(the_plan.source_root):
        train_config = train_config.relative_to(the_plan.source_root)
    lines.append(_line("recipe", f"{train_config}: {_recipe(the_plan.recipe)}"))
    lines.append(_line("where", _where(placement, options.cluster)))
    if placement.split is not None:
        accelerate = options.accelerate or default_accelerate(placement.split, placement.nodes)
        lines.append(_line("GPUs", gpu_layout(placement.split, placement.nodes, accelerate)))
    save = the_plan.recipe.get("save_steps")
    back = "; copied back from the head machine" if placement.remote else ""
    every = f"a checkpoint every {save} steps and at the end" if save else "checkpoints"
    lines.append(_line("output", f"{the_plan.output_dir} ({every}, then the final model{back})"))
    code = f"hud-vf-gym {the_plan.version}" + (f" at {the_plan.commit}" if the_plan.commit else "")
    if placement.remote:
        code += f"; the checkout {the_plan.source_root} is uploaded and installed with [train,gpu] on every machine"
    lines.append(_line("code", code))
    lines += [_line("keys" if index == 0 else "", text) for index, text in enumerate(_keys(the_plan))]
    cost = _cost(placement)
    if cost:
        lines.append(_line("cost", cost))
    if the_plan.step is not None:
        lines.append(f"  commands  (in {the_plan.step.cwd})")
        lines.append(f"    $ {the_plan.step.shell()}")
    elif the_plan.sky is not None:
        lines.append("  commands")
        for step in the_plan.sky.steps():
            note = f"    # {step.note}" if step.note else ""
            lines.append(f"    $ {step.shell()}{note}")
        lines.append(f"    on Ctrl-C: $ {the_plan.sky.cancel().shell()}, then the copy and (unless --keep) sky down")
    if the_plan.blockers:
        lines.append("  before it can start")
        lines += [textwrap.fill(item, WIDTH, initial_indent="    - ", subsequent_indent="      ") for item in
                  the_plan.blockers]  # fmt: skip
    return "\n".join(lines) + "\n"
