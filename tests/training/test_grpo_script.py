"""train/grpo.py: options from YAML and the command line, the report_to and model rules, and a real run that resumes."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training import COMPONENT_NAMES, resolve_model, resolve_report_to
from tests.support import REPO_ROOT

trl = pytest.importorskip("trl", reason="the training tests need: pip install -e '.[train]'")

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using 'rollout_func':UserWarning"),  # TRL marks it experimental
]

CPU_CONFIG = REPO_ROOT / "configs" / "train" / "2048-cpu.yaml"
GPU_CONFIG = REPO_ROOT / "configs" / "train" / "2048-gpu.yaml"


@pytest.fixture(scope="module")
def grpo_script() -> Iterator[Any]:
    """train/grpo.py imported as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("hud_vf_gym_train_grpo", REPO_ROOT / "train" / "grpo.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve the module's string annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_parser_reads_yaml_and_command_line_overrides(grpo_script: Any) -> None:
    parser = grpo_script.make_parser()
    script_args, training_args, model_args = parser.parse_args_and_config(
        ["--config", str(CPU_CONFIG), "--max_steps", "3", "--num_tasks", "2", "--learning_rate", "0.001"]
    )
    assert (script_args.taskset, script_args.config_path, script_args.max_turns) == ("2048", "2048", 4)
    assert script_args.num_tasks == 2  # the command line wins over the YAML's 4
    assert (training_args.max_steps, training_args.learning_rate) == (3, 0.001)
    assert (training_args.use_cpu, training_args.bf16, training_args.num_generations) == (True, False, 4)
    assert model_args.model_name_or_path == "embedded"


@pytest.mark.parametrize("path", [CPU_CONFIG, GPU_CONFIG], ids=["cpu", "gpu"])
def test_train_configs_name_only_real_options(grpo_script: Any, path: Path) -> None:
    names = {
        field.name
        for cls in (grpo_script.HUDGRPOArguments, trl.GRPOConfig, trl.ModelConfig)
        for field in dataclasses.fields(cls)
    }
    keys = set(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert keys <= names, f"unknown keys: {sorted(keys - names)}"


def test_arguments_reject_mismatched_extra_weights(grpo_script: Any) -> None:
    with pytest.raises(ValueError, match=r"extra_reward_weights has 2 weight\(s\) for 1 extra_reward_funcs"):
        grpo_script.HUDGRPOArguments(extra_reward_funcs=["a.b"], extra_reward_weights=[1.0, 2.0])


def test_load_reward_func_names_the_bad_path(grpo_script: Any) -> None:
    with pytest.raises(ValueError, match=r"extra_reward_funcs: cannot import 'no_such_module\.reward'"):
        grpo_script.load_reward_func("no_such_module.reward")


@pytest.mark.parametrize(
    ("report_to", "environ", "expected"),
    [
        ("none", {}, "none"),
        ("none", {"WANDB_API_KEY": "k"}, ["wandb"]),
        (["tensorboard"], {"WANDB_API_KEY": "k"}, ["tensorboard"]),
        ("wandb", {"WANDB_MODE": "offline"}, ["wandb"]),
    ],
    ids=["offline-default", "key-set", "explicit-other", "wandb-offline"],
)
def test_resolve_report_to(report_to: Any, environ: dict[str, str], expected: list[str]) -> None:
    assert resolve_report_to(report_to, environ) == expected


def test_resolve_report_to_refuses_wandb_without_key() -> None:
    with pytest.raises(ConfigError, match=r"report_to wandb needs WANDB_API_KEY; export it, or set WANDB_MODE=offline"):
        resolve_report_to(["wandb"], {})


def test_resolve_model_keeps_hub_ids_and_folders(tmp_path: Path) -> None:
    assert resolve_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert resolve_model(str(tmp_path)) == str(tmp_path)


def test_main_trains_saves_checkpoints_and_resumes(
    grpo_script: Any, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cheap_run_args: tuple[str, ...]
) -> None:
    (tmp_path / "extra_rewards.py").write_text(
        "def constant_bonus(completions, **kwargs):\n    return [0.5 for _ in completions]\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    output = tmp_path / "run"
    common = [
        "--config", str(CPU_CONFIG),
        "--model_name_or_path", str(tiny_model),  # the tiny random model instead of SmolLM2
        *cheap_run_args,  # one task, one group of two rollouts of two short turns per step
        "--output_dir", str(output),
        "--save_steps", "1",  # a checkpoint after every step
        "--extra_reward_funcs", "extra_rewards.constant_bonus",  # an import path from the command line
    ]  # fmt: skip
    parser = grpo_script.make_parser()
    trainer = grpo_script.main(*parser.parse_args_and_config([*common, "--max_steps", "1"]))
    assert (output / "checkpoint-1").is_dir() and (output / "model.safetensors").is_file()
    step = next(entry for entry in trainer.state.log_history if "loss" in entry)
    assert math.isfinite(step["loss"])
    assert {f"rewards/{name}/mean" for name in COMPONENT_NAMES} <= set(step)
    assert step["rewards/constant_bonus/mean"] == 0.5
    assert trainer.args.reward_weights == [0.8, 0.05, 0.15, 0.0, 0.0, 1.0]  # the rubric's, then the extra one
    resumed = grpo_script.main(
        *parser.parse_args_and_config([*common, "--max_steps", "2", "--resume_from_checkpoint", "latest"])
    )
    assert resumed.state.global_step == 2
    assert (output / "checkpoint-2").is_dir()
