"""`hud-vf-gym dataset`: task files become HUD-column datasets that load back unchanged; bad rows stop it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub
import huggingface_hub.constants
import pytest

from hud_vf_gym.cli.app import main
from hud_vf_gym.cli.dataset.command import (
    HUD_COLUMNS,
    DatasetOptions,
    HubPushError,
    make_dataset,
    read_tasks,
)
from hud_vf_gym.errors import ConfigError, TasksetError
from hud_vf_gym.tasks.loading import load_taskset
from tests.support import TASKSETS

SECRET = "sk-test-secret-4242"
EVALUATE = {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 16}}}
LOCK_TEXT = f"""\
version: '1.0'
image: my-org/my-env:0.1.0
# written by hud build
environment:
  initializeMs: 812
  variables:
    provided:
      OPENAI_API_KEY: {SECRET}
tools:
- name: move
  description: Slide the tiles

primary_dataset:
  name: my-org/old-tasks
  task_count: 2
  updated_at: '2025-01-01T00:00:00'
push: {{source: my-org/my-env:0.1.0, registry: docker.io}}
"""


def hub_row(task_id: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": task_id,
        "prompt": "Reach the 16 tile.",
        "mcp_config": {
            "hud": {
                "url": "https://mcp.hud.ai/v3/mcp",
                "headers": {"Authorization": "Bearer ${HUD_API_KEY}", "Mcp-Image": "hudevals/hud-text-2048:0.1.3"},
            }
        },
        "setup_tool": {"name": "setup", "arguments": {"name": "board", "arguments": {"board_size": 3}}},
        "evaluate_tool": EVALUATE,
    }
    row.update(fields)
    return row


def write_tasks(folder: Path, rows: list[dict[str, Any]]) -> Path:
    path = folder / "tasks.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("taskset", ["2048", "browser", "miniwob"], ids=lambda name: name)
def test_dataset_builtin_taskset_round_trips(tmp_path: Path, taskset: str) -> None:
    tasks_file = TASKSETS / f"{taskset}.json"
    folder = tmp_path / "dataset"
    result = make_dataset(DatasetOptions(tasks=str(tasks_file), name=f"hud-vf-gym/{taskset}", output=str(folder)))
    saved = datasets.load_from_disk(str(folder))
    assert saved.column_names == list(HUD_COLUMNS)
    assert all(isinstance(value, str) for row in saved for value in row.values())
    taskset = load_taskset(str(folder))  # what load_environment(taskset=folder) serves
    assert taskset.tasks == read_tasks(tasks_file)
    assert result.task_count == len(taskset.tasks) > 0


def test_dataset_reports_every_broken_row_and_writes_nothing(tmp_path: Path) -> None:
    rows = [
        hub_row("no-prompt", prompt=None),
        hub_row("good"),
        hub_row("no-evaluate", evaluate_tool=None),
        hub_row("bad-config", mcp_config=["docker"]),
    ]
    tasks_file = write_tasks(tmp_path, rows)
    (tmp_path / "hud.lock.yaml").write_text(LOCK_TEXT, encoding="utf-8")
    expected = (
        f"3 invalid tasks in {tasks_file}\n"
        "  row 0 (id 'no-prompt'): prompt: missing; expected the agent's instruction as a non-empty string\n"
        "  row 2 (id 'no-evaluate'): evaluate_tool: missing; a task without an evaluate call cannot be scored; add "
        'one, e.g. {"name": "evaluate", "arguments": {"name": "max_number", "arguments": {"target": 128}}}\n'
        "  row 3 (id 'bad-config'): mcp_config: expected a mapping of server name to server entry, found ['docker'] "
        "(list)"
    )
    output = tmp_path / "out"
    with pytest.raises(TasksetError, match=f"^{re.escape(expected)}$"):
        make_dataset(DatasetOptions(tasks=str(tasks_file), name="broken", output=str(output)))
    assert not output.exists()
    assert (tmp_path / "hud.lock.yaml").read_text(encoding="utf-8") == LOCK_TEXT


def test_dataset_cli_exits_non_zero_on_broken_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tasks_file = write_tasks(tmp_path, [hub_row("a", prompt=""), hub_row("b", prompt=""), hub_row("c", prompt="")])
    assert main(["dataset", str(tasks_file), "--name", "broken", "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"hud-vf-gym dataset: error: 3 invalid tasks in {tasks_file}\n")
    assert [f"row {index}" in captured.err for index in range(3)] == [True, True, True]


def test_dataset_keeps_templates_unresolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUD_API_KEY", SECRET)
    tasks_file = write_tasks(tmp_path, [hub_row("hub-task")])
    folder = tmp_path / "dataset"
    make_dataset(DatasetOptions(tasks=str(tasks_file), name="hub-tasks", output=str(folder)))
    [row] = list(datasets.load_from_disk(str(folder)))
    assert json.loads(row["mcp_config"])["hud"]["headers"]["Authorization"] == "Bearer ${HUD_API_KEY}"
    assert SECRET not in json.dumps(row)


def test_dataset_adds_system_prompt_column_only_when_used(tmp_path: Path) -> None:
    rows = [hub_row("plain"), hub_row("with-prompt", system_prompt="Answer in one word.")]
    folder = tmp_path / "dataset"
    make_dataset(DatasetOptions(tasks=str(write_tasks(tmp_path, rows)), name="prompts", output=str(folder)))
    saved = datasets.load_from_disk(str(folder))
    assert saved.column_names == [*HUD_COLUMNS, "system_prompt"]
    assert saved["system_prompt"] == ["", "Answer in one word."]
    assert [task.system_prompt for task in load_taskset(str(folder)).tasks] == [None, "Answer in one word."]


def test_dataset_updates_only_primary_dataset_in_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # the default output folder, datasets/<name>, is relative
    write_tasks(tmp_path, [hub_row("one"), hub_row("two"), hub_row("three")])
    lock = tmp_path / "hud.lock.yaml"
    lock.write_text(LOCK_TEXT, encoding="utf-8")
    lock.chmod(0o600)  # a lock holding keys stays private

    assert main(["dataset", "tasks.json", "--name", "my-org/new-tasks"]) == 0

    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert captured.out.splitlines() == [
        "validated 3 tasks from tasks.json",
        f"wrote datasets/my-org/new-tasks (columns: {', '.join(HUD_COLUMNS)})",
        "updated hud.lock.yaml: primary_dataset my-org/new-tasks (3 tasks)",
        'load it with: load_environment(taskset="datasets/my-org/new-tasks")',
    ]
    text = lock.read_text(encoding="utf-8")
    before, old_block, after = LOCK_TEXT.partition("primary_dataset:\n  name: my-org/old-tasks\n")
    assert text.startswith(before) and text.endswith("push: {source: my-org/my-env:0.1.0, registry: docker.io}\n")
    block = text[len(before) : -len("push: {source: my-org/my-env:0.1.0, registry: docker.io}\n")]
    assert re.fullmatch(
        r"primary_dataset:\n  name: my-org/new-tasks\n  task_count: 3\n"
        r"  updated_at: '\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00'\n  local_path: datasets/my-org/new-tasks\n",
        block,
    )
    assert lock.stat().st_mode & 0o777 == 0o600
    assert len(load_taskset("datasets/my-org/new-tasks").tasks) == 3


def test_dataset_appends_primary_dataset_to_a_lock_without_one(tmp_path: Path) -> None:
    lock = tmp_path / "elsewhere.lock.yaml"
    lock.write_text("image: my-org/my-env:0.1.0\ntools: []", encoding="utf-8")  # no final newline
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    make_dataset(DatasetOptions(tasks=str(tasks_file), name="t", output=str(tmp_path / "d"), lock=str(lock)))
    lines = lock.read_text(encoding="utf-8").splitlines()
    assert lines[:3] == ["image: my-org/my-env:0.1.0", "tools: []", "primary_dataset:"]
    assert lines[3:5] == ["  name: t", "  task_count: 1"]


def test_dataset_bad_lock_names_the_line_but_never_its_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    (tmp_path / "hud.lock.yaml").write_text(f"image: x\nenvironment:\n  key: [{SECRET}\n", encoding="utf-8")
    assert main(["dataset", str(tasks_file), "--name", "t", "-o", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert SECRET not in captured.out + captured.err
    assert re.fullmatch(
        rf"hud-vf-gym dataset: error: {re.escape(str(tmp_path / 'hud.lock.yaml'))}: not valid YAML at line \d+, "
        r"column \d+; fix the file or run `hud build` again\n",
        captured.err,
    )
    assert not (tmp_path / "out").exists()


def test_dataset_push_offline_fails_with_one_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # offline, whatever the network
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    expected = (
        "could not push the dataset to the Hugging Face hub as 'my-org/tasks' (OfflineModeIsEnabled: Cannot reach "
        "https://huggingface.co/api/datasets/my-org/tasks: offline mode is enabled. To disable it, please unset the "
        "`HF_HUB_OFFLINE` environment variable.); check the network connection, that HF_HUB_OFFLINE is not set and "
        "that your token may write there, or leave out --push to save a local folder"
    )
    with pytest.raises(HubPushError, match=f"^{re.escape(expected)}$"):
        make_dataset(DatasetOptions(tasks=str(tasks_file), name="my-org/tasks", push=True, private=True))


def test_dataset_push_without_token_says_how_to_log_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    expected = (
        "--push needs a Hugging Face token: run `hf auth login` (or set HF_TOKEN) and try again, or leave out --push "
        "to save a local folder"
    )
    with pytest.raises(HubPushError, match=f"^{re.escape(expected)}$"):
        make_dataset(DatasetOptions(tasks=str(tasks_file), name="my-org/tasks", push=True))


def test_dataset_push_refuses_literal_credentials(tmp_path: Path) -> None:
    row = hub_row("leaky")
    row["mcp_config"]["hud"]["headers"]["Authorization"] = f"Bearer {SECRET}"
    tasks_file = write_tasks(tmp_path, [row])
    expected = (
        "1 literal credential(s) would be pushed:\n  task 'leaky': mcp_config.hud.headers.Authorization holds a "
        'literal value; write it as a template such as "Bearer ${HUD_API_KEY}" so the secret stays out of the dataset'
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$") as raised:
        make_dataset(DatasetOptions(tasks=str(tasks_file), name="my-org/tasks", push=True))
    assert SECRET not in str(raised.value)


def test_dataset_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    folder = tmp_path / "dataset"
    options = DatasetOptions(tasks=str(tasks_file), name="t", output=str(folder))
    make_dataset(options)
    expected = f"{folder} already holds a dataset; pass --force to overwrite it, or -o to save elsewhere"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        make_dataset(options)
    write_tasks(tmp_path, [hub_row("one"), hub_row("two")])
    options.force = True  # the second run replaces the first dataset
    assert make_dataset(options).task_count == 2
    assert len(datasets.load_from_disk(str(folder))) == 2


def test_dataset_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    expected = f"{tmp_path} exists and is not a saved dataset; choose another folder with -o"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        make_dataset(DatasetOptions(tasks=str(tasks_file), name="t", output=str(tmp_path), force=True))
    assert tasks_file.exists()


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--name", "t", "--private"],
            "--private only applies to a pushed dataset; add --push, or leave out --private",
        ),
        (
            ["--name", "../escape"],
            "--name '../escape' is not a dataset name; use letters, digits, '-', '_' and '.', as 'name' or "
            "'org/name' (the hub id with --push)",
        ),
    ],
    ids=["private-without-push", "bad-name"],
)
def test_dataset_bad_options_name_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    tasks_file = write_tasks(tmp_path, [hub_row("one")])
    assert main(["dataset", str(tasks_file), *arguments]) == 2
    assert capsys.readouterr().err == f"hud-vf-gym dataset: error: {message}\n"


def test_dataset_help_shows_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["dataset", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "examples:\n  hud-vf-gym dataset tasks.json --name my-tasks" in out
    assert "--push" in out and "--private" in out and "--lock PATH" in out
