"""`hud-vf-gym train`'s plan: inputs found through hud.lock.yaml, .env precedence, missing inputs, the placements."""

from __future__ import annotations

import dataclasses
import re
import shlex
from pathlib import Path

import pytest
import yaml

from hud_vf_gym.cli.app import commands, make_parser
from hud_vf_gym.cli.flags import to_argv
from hud_vf_gym.cli.train import TrainOptions, plan
from hud_vf_gym.cli.train.inputs import load_env_file
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.training.placement import GpuRequest, Placement
from tests.training.train_projects import ENV_NAME, ROOT, SECRET, clean_environ, prime_credentials, write_project


def flat(text: str) -> str:
    """The plan's text without its line wrapping."""
    return " ".join(text.split())


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


# -- placement -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8xH100", GpuRequest(8, "H100")),
        ("4xa100-80gb", GpuRequest(4, "A100-80GB")),
        ("H100:8", GpuRequest(8, "H100")),
        ("2", GpuRequest(2)),
        ("L4", GpuRequest(1, "L4")),
        ("0", None),
        (None, None),
    ],
)
def test_gpu_request_forms(text: str | None, expected: GpuRequest | None) -> None:
    assert GpuRequest.parse(text) == expected


def test_gpu_request_refuses_other_text_and_typeless_cloud_gpus() -> None:
    with pytest.raises(ConfigError, match=r"--gpus '8 H100': expected N or NxTYPE, e.g. 1, 4 or 8xH100"):
        GpuRequest.parse("8 H100")
    with pytest.raises(ConfigError, match=r"a cloud run needs the GPU type as well, e.g. --gpus 4xH100"):
        _ = GpuRequest(4).accelerators
    assert GpuRequest(8, "H100").accelerators == "H100:8"


@pytest.mark.parametrize(
    ("placement", "message"),
    [
        (
            Placement("prime", GpuRequest(8, "H100"), nodes=2),
            "--nodes 2: Prime Intellect launches single machines only through SkyPilot; use --nodes 1",
        ),
        (Placement("skypilot", None), "--provider skypilot rents GPU machines: say which, e.g. --gpus 8xH100"),
        (Placement("skypilot", GpuRequest(4)), "--gpus 4: a cloud run needs the GPU type as well"),
        (Placement("local", None, nodes=2), "--nodes 2 needs machines SkyPilot provisions: add --provider skypilot"),
        (Placement("local", GpuRequest(2), vllm_gpus=2), "--gpus 2 GPUs with --vllm-gpus 2 leaves no GPU for training"),
        (Placement("skypilot", GpuRequest(1, "H100"), nodes=2), "--nodes 2 with one GPU per machine"),
        (Placement("prime", GpuRequest(8, "H100"), infra="aws"), "--infra 'aws' applies to --provider skypilot"),
    ],
    ids=[
        "prime-multinode",
        "remote-cpu",
        "remote-no-type",
        "local-multinode",
        "no-trainer-gpu",
        "one-gpu-nodes",
        "prime-infra",
    ],  # fmt: skip
)
def test_placement_problems_name_the_fix(placement: Placement, message: str) -> None:
    assert any(message in problem for problem in placement.problems()), placement.problems()


def test_runpod_and_vast_are_single_node_but_aws_is_not() -> None:
    assert Placement("skypilot", GpuRequest(8, "H100"), nodes=2, infra="runpod/US").problems()
    assert not Placement("skypilot", GpuRequest(8, "H100"), nodes=2, infra="aws/us-east-1").problems()
    assert not Placement("skypilot", GpuRequest(8, "H100"), nodes=2).problems()  # SkyPilot picks a multi-node cloud


# -- .env ------------------------------------------------------------------------------------------------------------


def test_env_file_fills_only_unset_variables(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "# keys\nHUD_API_KEY=from-file\nWANDB_API_KEY='quoted value'\nexport HF_TOKEN=hf-file\nEMPTY=\n",
        encoding="utf-8",
    )
    env = load_env_file(tmp_path, {"HUD_API_KEY": "from-environment", "PATH": "/bin"})
    assert env.environ["HUD_API_KEY"] == "from-environment"  # a variable already set always wins
    assert (env.environ["WANDB_API_KEY"], env.environ["HF_TOKEN"]) == ("quoted value", "hf-file")
    assert env.added == {"WANDB_API_KEY", "HF_TOKEN", "EMPTY"}
    assert env.path == tmp_path / ".env"
    assert load_env_file(tmp_path / "nowhere", {"A": "1"}).environ == {"A": "1"}


def test_plan_reports_each_key_by_source_never_by_value(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", config=True, primary_dataset=True, env_file=f"HUD_API_KEY={SECRET}\n")
    environ = clean_environ(home, WANDB_API_KEY="wandb-from-environment")
    the_plan = plan(TrainOptions(project=str(project)), environ=environ)
    text = flat(the_plan.describe())
    assert "HUD_API_KEY from .env (the tasks' mcp_config (task 'task-0'))" in text
    assert "WANDB_API_KEY from environment (W&B logging)" in text
    assert SECRET not in text and "wandb-from-environment" not in text
    assert the_plan.environ["HUD_API_KEY"] == SECRET  # what the training command gets


# -- inputs ----------------------------------------------------------------------------------------------------------


def test_plan_without_lock_trains_the_builtin_tasks_on_this_cpu(tmp_path: Path, home: Path) -> None:
    the_plan = plan(TrainOptions(project=str(tmp_path), max_steps=1), environ=clean_environ(home))
    assert (the_plan.config.value, the_plan.dataset.value, the_plan.model) == ("2048", "2048", "embedded")
    assert the_plan.output_dir == tmp_path / "outputs" / "grpo-2048-cpu"
    assert the_plan.step is not None and the_plan.step.cwd == ROOT and the_plan.sky is None
    assert the_plan.step.argv[1:] == (
        "train/grpo.py", "--config", "configs/train/2048-cpu.yaml", "--model_name_or_path", "embedded",
        "--config_path", "2048", "--taskset", "2048", "--output_dir", str(tmp_path / "outputs" / "grpo-2048-cpu"),
        "--max_steps", "1",
    )  # fmt: skip
    assert the_plan.blockers == ()
    assert "  where     this machine's CPU\n" in the_plan.describe()


def test_plan_argv_runs_the_same_plan(tmp_path: Path, home: Path) -> None:
    options = TrainOptions(project=str(tmp_path), max_steps=3, learning_rate=1e-5, train_args="--beta 0.01 --seed 7")
    the_plan = plan(options, environ=clean_environ(home))
    assert the_plan.argv[1:4] == ("-m", "hud_vf_gym.cli", "train") and "--yes" in the_plan.argv
    command = commands()["train"]
    rebuilt = command.options_from(make_parser().parse_args(list(the_plan.argv[3:])))
    assert rebuilt == dataclasses.replace(the_plan.options, yes=True)
    assert plan(rebuilt, environ=clean_environ(home)).step == the_plan.step
    assert the_plan.step is not None and the_plan.step.argv[-4:] == ("--beta", "0.01", "--seed", "7")


def test_plan_finds_config_and_tasks_through_the_lock(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", config=True, primary_dataset=True, env_file="HUD_API_KEY=k\n")
    the_plan = plan(TrainOptions(project=str(project)), environ=clean_environ(home))
    assert the_plan.config.path == project / "configs" / f"{ENV_NAME}.yaml"
    assert the_plan.config.origin == f"configs/{ENV_NAME}.yaml (for hud.lock.yaml's environment)"
    assert the_plan.dataset.path == project / "tasks.json"
    assert the_plan.dataset.origin == "hud.lock.yaml primary_dataset 'my-tasks' (tasks.json)"
    assert the_plan.step is not None
    argv = the_plan.step.argv
    assert argv[argv.index("--config_path") + 1] == str(project / "configs" / f"{ENV_NAME}.yaml")
    assert argv[argv.index("--taskset") + 1] == str(project / "tasks.json")


def test_the_only_config_in_configs_is_used(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", primary_dataset=True, env_file="HUD_API_KEY=k\n")
    (project / "configs").mkdir()
    (project / "configs" / "mine.yaml").write_text((ROOT / "configs" / "2048.yaml").read_text(), encoding="utf-8")
    the_plan = plan(TrainOptions(project=str(project)), environ=clean_environ(home))
    assert the_plan.config.origin == "configs/mine.yaml (the only config in configs/)"


def test_missing_inputs_are_one_message_each_naming_file_and_command(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p")  # a lock, tasks.json, but no config and no primary_dataset
    with pytest.raises(ConfigError) as error:
        plan(TrainOptions(project=str(project)), environ=clean_environ(home))
    lines = str(error.value).splitlines()
    assert lines[0] == "2 missing inputs"
    assert lines[1] == (
        f"  - configs/{ENV_NAME}.yaml: no environment config for {project / 'hud.lock.yaml'} (configs/ has no "
        f"config); create it with `hud-vf-gym init {project}` (it reads hud.lock.yaml), or pass --config PATH"
    )
    assert lines[2] == (
        f"  - {project / 'hud.lock.yaml'}: no primary_dataset; create it with `hud-vf-gym dataset TASKS.json --name "
        "NAME` (it records primary_dataset in hud.lock.yaml), or pass --dataset"
    )
    assert SECRET not in str(error.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"config": "configs/nope.yaml"}, "--config configs/nope.yaml: config 'configs/nope.yaml' is neither a YAML"),
        ({"dataset": "nope.json"}, "tasks nope.json: taskset file 'nope.json' not found"),
        ({"train_config": "nope.yaml"}, "--train-config nope.yaml: no such file in"),
        ({"project": "no/such/folder"}, "--project no/such/folder: no such folder"),
    ],
    ids=["config", "dataset", "train-config", "project"],
)
def test_a_bad_given_input_names_itself_and_the_fix(
    tmp_path: Path, home: Path, options: dict[str, str], message: str
) -> None:
    given = {"project": str(tmp_path), **options}
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        plan(TrainOptions(**given), environ=clean_environ(home))
    fixes = ("hud-vf-gym init", "hud-vf-gym dataset", "2048-cpu.yaml", "no such folder")
    assert any(fix in str(error.value) for fix in fixes)


def test_an_unset_key_blocks_the_start_and_says_where_to_set_it(tmp_path: Path, home: Path) -> None:
    project = write_project(tmp_path / "p", config=True, primary_dataset=True)
    the_plan = plan(TrainOptions(project=str(project)), environ=clean_environ(home))
    assert the_plan.blockers == (
        f"HUD_API_KEY: not set; the tasks' mcp_config (task 'task-0') uses ${{HUD_API_KEY}}: add HUD_API_KEY=... to "
        f"{project / '.env'} or export it",
    )
    with pytest.raises(ConfigError, match=r"cannot start yet: 1 thing to fix\n  - HUD_API_KEY: not set"):
        the_plan.check_ready()
    assert "before it can start - HUD_API_KEY: not set" in flat(the_plan.describe())


# -- local GPUs ------------------------------------------------------------------------------------------------------


def test_one_local_gpu_trains_without_vllm(tmp_path: Path, home: Path) -> None:
    the_plan = plan(TrainOptions(project=str(tmp_path), gpus="1"), environ=clean_environ(home))
    assert the_plan.step is not None
    assert the_plan.step.argv[:9] == (
        "accelerate", "launch", "--config_file", "configs/accelerate/single_gpu.yaml", "--num_processes", "1",
        "train/grpo.py", "--config", "configs/train/2048-gpu.yaml",
    )  # fmt: skip
    assert the_plan.step.argv[9:13] == ("--model_name_or_path", "Qwen/Qwen2.5-1.5B-Instruct", "--use_vllm", "false")
    assert "GPU 0: training, 1 process (no vLLM server" in flat(the_plan.describe())


def test_local_gpus_run_launch_sh_with_vllm_on_gpu_0(tmp_path: Path, home: Path) -> None:
    options = TrainOptions(project=str(tmp_path), gpus="4", model="Qwen/Qwen2.5-0.5B-Instruct", max_steps=5)
    the_plan = plan(options, environ=clean_environ(home))
    assert the_plan.step is not None and the_plan.step.env["PYTHON"]
    assert shlex.join(the_plan.step.argv).startswith(
        "bash train/launch.sh --num-gpus 4 --vllm-gpus 1 --accelerate zero2 --model Qwen/Qwen2.5-0.5B-Instruct "
        "--config configs/train/2048-gpu.yaml -- --config_path 2048 --taskset 2048 --output_dir "
    )
    assert the_plan.step.argv[-2:] == ("--max_steps", "5")
    assert "GPU 0: vLLM server; GPUs 1-3: training, 3 processes (accelerate, zero2)" in flat(the_plan.describe())


# -- cloud -------------------------------------------------------------------------------------------------------------


def test_prime_plan_uploads_the_checkout_and_the_project_files_and_names_secrets_only(
    tmp_path: Path, home: Path
) -> None:
    project = write_project(tmp_path / "p", config=True, primary_dataset=True, env_file=f"HUD_API_KEY={SECRET}\n")
    environ = clean_environ(home, WANDB_API_KEY="wandb-secret", WANDB_PROJECT="hud", PATH="/usr/bin:/bin")
    the_plan = plan(TrainOptions(project=str(project), gpus="8xH100", provider="prime"), environ=environ)
    assert the_plan.sky_task is not None and the_plan.sky is not None
    text = the_plan.sky_task.to_yaml()
    assert SECRET not in text and "wandb-secret" not in text
    task = yaml.safe_load(text)
    assert task["resources"] == {"accelerators": "H100:8", "infra": "primeintellect"}
    assert (task["num_nodes"], task["workdir"]) == (1, str(ROOT))
    assert task["secrets"] == {"HUD_API_KEY": None, "WANDB_API_KEY": None}
    assert task["envs"]["WANDB_PROJECT"] == "hud"
    assert task["file_mounts"] == {
        f"~/hud-train-inputs/config/{ENV_NAME}.yaml": str(project / "configs" / f"{ENV_NAME}.yaml"),
        "~/hud-train-inputs/dataset/tasks.json": str(project / "tasks.json"),
    }
    assert 'uv pip install -e ".[train,gpu]"' in task["setup"]
    assert (
        "bash train/launch.sh --num-gpus 8 --vllm-gpus 1 --accelerate zero2 --model Qwen/Qwen2.5-1.5B-Instruct "
        f"--config configs/train/2048-gpu.yaml -- --config_path ../hud-train-inputs/config/{ENV_NAME}.yaml "
        "--taskset ../hud-train-inputs/dataset/tasks.json --output_dir outputs/grpo-2048-gpu"
    ) in task["run"]
    assert the_plan.sky.launch().argv == (
        "sky", "launch", "--cluster", "hud-vf-gym-train", "--detach-run", "--secret", "HUD_API_KEY", "--secret",
        "WANDB_API_KEY", str(project / "outputs" / "grpo-2048-gpu" / "sky-task.yaml"),
    )  # fmt: skip
    assert the_plan.sky.sync_down().argv == (
        "rsync", "-avz", "hud-vf-gym-train:sky_workdir/outputs/grpo-2048-gpu/",
        f"{project / 'outputs' / 'grpo-2048-gpu'}/",
    )  # fmt: skip
    blockers = "\n".join(the_plan.blockers)
    assert "the `sky` command (SkyPilot) is not on PATH: install it as its own tool: uv tool install" in blockers
    assert f"{home / '.prime' / 'config.json'}: no Prime Intellect credentials; create them with `prime login`" in (
        blockers
    )
    prime_credentials(home)
    again = plan(TrainOptions(project=str(project), gpus="8xH100", provider="prime"), environ=environ)
    assert "Prime Intellect" not in "\n".join(again.blockers)


def test_multi_node_plan_passes_skypilot_rank_and_head_address(tmp_path: Path, home: Path) -> None:
    options = TrainOptions(project=str(tmp_path), gpus="8xH100", provider="skypilot", infra="aws", nodes=2)
    the_plan = plan(options, environ=clean_environ(home))
    assert the_plan.sky_task is not None
    task = yaml.safe_load(the_plan.sky_task.to_yaml())
    assert (task["num_nodes"], task["resources"]["infra"]) == (2, "aws")
    assert 'MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)' in task["run"]
    assert (
        "bash train/launch.sh --num-gpus 8 --vllm-gpus 1 --accelerate zero2 --num-machines 2 --machine-rank "
        '"$MACHINE_RANK" --main-process-ip "$MASTER_ADDR" --model'
    ) in task["run"]
    assert "the other 1 machine train on GPUs 1-7 too and leave GPU 0 idle" in flat(the_plan.describe())
    assert "training, 14 processes" in flat(the_plan.describe())


# -- flags -----------------------------------------------------------------------------------------------------------


def test_to_argv_writes_only_what_differs_from_the_defaults() -> None:
    options = TrainOptions(gpus="8xH100", provider="prime", keep=True, learning_rate=2e-5, train_args="--a 'b c'")
    assert to_argv(options) == [
        "--learning-rate", "2e-05", "--train-args", "--a 'b c'", "--gpus", "8xH100", "--provider", "prime", "--keep",
    ]  # fmt: skip
    parsed = commands()["train"].options_from(make_parser().parse_args(["train", *to_argv(options)]))
    assert parsed == options
