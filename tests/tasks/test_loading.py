"""Tests for hud_vf_gym.tasks.loading: loading tasksets from every source, and the verifiers dataset."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub.constants
import pytest

from hud_vf_gym.errors import TaskError, TasksetError
from hud_vf_gym.tasks import loading as loading_module
from hud_vf_gym.tasks.loading import TaskSet, TasksetWarning, load_taskset, tasks_to_dataset
from hud_vf_gym.tasks.task import Task
from tests.tasks.rows import (
    DROP,
    MISSING_EVALUATE,
    MISSING_MCP_CONFIG,
    ROUND_TRIP_TASKS,
    make_hf_row,
    make_row,
    write_json,
)


def test_tasks_to_dataset_has_the_verifiers_columns() -> None:
    dataset = tasks_to_dataset(ROUND_TRIP_TASKS)
    assert dataset.column_names == ["question", "info", "example_id"]
    assert dataset["question"] == [task.prompt for task in ROUND_TRIP_TASKS]
    assert dataset["example_id"] == [0, 1, 2]
    assert [Task.from_info(row["info"]) for row in dataset] == ROUND_TRIP_TASKS


def test_tasks_to_dataset_accepts_no_tasks() -> None:
    assert tasks_to_dataset([]).column_names == ["question", "info", "example_id"]


# ---------------------------------------------------------------------------------------------------------------------
# load_taskset: every source form


GOOD_ROWS = [make_row(id=f"t{number}", prompt=f"Task {number}.") for number in range(3)]
GOOD_TASKS = tuple(Task.from_row(row) for row in GOOD_ROWS)


def test_load_taskset_reads_a_list_of_dicts() -> None:
    assert load_taskset(GOOD_ROWS) == TaskSet(tasks=GOOD_TASKS, problems=(), source="the given task list")


def test_load_taskset_reads_a_single_dict() -> None:
    assert load_taskset(GOOD_ROWS[0]) == TaskSet(tasks=GOOD_TASKS[:1], problems=(), source="the given task")


def test_load_taskset_reads_a_dataset_with_json_string_columns() -> None:
    dataset = datasets.Dataset.from_list([make_hf_row(id=f"t{n}", prompt=f"Task {n}.") for n in range(3)])
    taskset = load_taskset(dataset)
    assert taskset.tasks == GOOD_TASKS
    assert taskset.source == "the given Dataset"


def test_load_taskset_explains_arrow_filled_server_entries() -> None:
    rows = [make_row(id="a"), make_row(id="b", mcp_config={"hud": {"url": "http://localhost:8765/mcp"}})]
    problem = (
        "row 0 (id 'a'): mcp_config.hud: expected a server entry, found None; a Dataset built from dicts gives every "
        "row the server names of all rows (Arrow structs), so store mcp_config as a JSON string per row, "
        "as Task.to_row() does"
    )
    with pytest.raises(TasksetError, match=re.escape(problem)):
        load_taskset(datasets.Dataset.from_list(rows))


def test_load_taskset_reads_an_in_memory_dataset_dict() -> None:
    dataset_dict = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([make_hf_row()]),
            "test": datasets.Dataset.from_list([make_hf_row(id="t")]),
        }
    )
    assert [task.id for task in load_taskset(dataset_dict, split="test")] == ["t"]


def test_load_taskset_reads_a_json_array(tmp_path: Path) -> None:
    path = write_json(tmp_path / "tasks.json", GOOD_ROWS)
    assert load_taskset(path) == TaskSet(tasks=GOOD_TASKS, problems=(), source=str(path))


def test_load_taskset_reads_a_json_object(tmp_path: Path) -> None:
    path = write_json(tmp_path / "task.json", GOOD_ROWS[0])
    assert load_taskset(str(path)).tasks == GOOD_TASKS[:1]


def test_load_taskset_reads_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(json.dumps(make_hf_row(**row)) for row in GOOD_ROWS) + "\n\n", encoding="utf-8")
    assert load_taskset(path).tasks == GOOD_TASKS


def test_load_taskset_reports_a_bad_jsonl_line(tmp_path: Path) -> None:
    path = tmp_path / "tasks.jsonl"
    path.write_text(f"{json.dumps(GOOD_ROWS[0])}\n\n{{not json\n", encoding="utf-8")
    problem = (
        "row 1 (no id): line 3 is not valid JSON (Expecting property name enclosed in double quotes at column 2); "
        "found '{not json' (str)"
    )
    with pytest.warns(TasksetWarning, match=re.escape(problem)):
        taskset = load_taskset("tasks.jsonl", base_dir=tmp_path)
    assert taskset.problems == (problem,)


def test_load_taskset_reads_a_save_to_disk_folder(tmp_path: Path) -> None:
    datasets.Dataset.from_list([make_hf_row(**row) for row in GOOD_ROWS]).save_to_disk(str(tmp_path / "saved"))
    assert load_taskset(tmp_path / "saved").tasks == GOOD_TASKS


def test_load_taskset_reads_a_dataset_dict_folder_split(tmp_path: Path) -> None:
    dataset_dict = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([make_hf_row(**row) for row in GOOD_ROWS]),
            "test": datasets.Dataset.from_list([make_hf_row(id="held-out")]),
        }
    )
    dataset_dict.save_to_disk(str(tmp_path / "dd"))
    assert load_taskset(tmp_path / "dd").tasks == GOOD_TASKS
    assert [task.id for task in load_taskset(tmp_path / "dd", split="test")] == ["held-out"]
    message = "taskset folder '" + str(tmp_path / "dd") + "' has no split 'validation'; its splits are 'train', 'test'"
    with pytest.raises(TaskError, match=re.escape(message)):
        load_taskset(tmp_path / "dd", split="validation")


def test_load_taskset_rejects_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    message = (
        "taskset folder 'plain' is not a dataset written by Dataset.save_to_disk or DatasetDict.save_to_disk; "
        "pass such a folder, or a .json or .jsonl file of task rows"
    )
    (tmp_path / "plain").mkdir()
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        load_taskset("plain", base_dir=tmp_path)


def test_load_taskset_resolves_relative_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    write_json(tmp_path / "data" / "tasks.json", GOOD_ROWS)
    assert load_taskset("data/tasks.json", base_dir=tmp_path).source == "data/tasks.json"
    monkeypatch.chdir(tmp_path / "data")
    assert load_taskset("tasks.json").tasks == GOOD_TASKS


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ("[]", "empty.json", "empty.json holds no tasks; expected at least one task row"),
        (
            "{oops",
            "bad.json",
            "taskset file 'bad.json' is not valid JSON: Expecting property name enclosed in double quotes at line 1 "
            "column 2; fix the file (use .jsonl for one task object per line)",
        ),
        (
            "42",
            "number.json",
            "taskset file 'number.json': expected a JSON array of task objects (or one task object), found 42 (int)",
        ),
        (
            "id,prompt",
            "tasks.csv",
            "taskset file 'tasks.csv': unsupported file type '.csv'; expected .json (an array of task objects, "
            "or one object) or .jsonl (one task object per line)",
        ),
    ],
    ids=["empty-array", "bad-json", "not-an-array", "unsupported-suffix"],
)
def test_load_taskset_rejects_bad_files(tmp_path: Path, content: str, name: str, message: str) -> None:
    (tmp_path / name).write_text(content, encoding="utf-8")
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        load_taskset(name, base_dir=tmp_path)


@pytest.mark.parametrize("source", ["missing.json", "data/missing.jsonl", "./missing"], ids=repr)
def test_load_taskset_rejects_a_missing_file(tmp_path: Path, source: str) -> None:
    message = (
        f"taskset file {source!r} not found (looked for {tmp_path / source}); check the path (a relative path is "
        f"read from base_dir {str(tmp_path)!r})"
    )
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        load_taskset(source, base_dir=tmp_path)


@pytest.fixture
def builtin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for hud_vf_gym/tasksets holding two built-in tasksets."""
    folder = tmp_path / "tasksets"
    folder.mkdir()
    rows = [
        make_row(
            id="py", mcp_config={"game": {"command": "python", "args": ["-m", "hud_vf_gym.environments.text_2048"]}}
        ),
        make_row(
            id="py3", mcp_config={"game": {"command": "python3", "args": ["-m", "x"]}, "remote": {"url": "http://h"}}
        ),
        make_row(id="docker"),
    ]
    write_json(folder / "tiny.json", rows)
    (folder / "lines.jsonl").write_text(json.dumps(rows[2]) + "\n", encoding="utf-8")
    (folder / "__init__.py").write_text("", encoding="utf-8")
    (folder / "notes.txt").write_text("not a taskset", encoding="utf-8")
    monkeypatch.setattr(loading_module, "_builtin_tasksets_dir", lambda: folder)
    return folder


def test_load_taskset_reads_a_builtin_with_this_python(builtin_dir: Path, tmp_path: Path) -> None:
    taskset = load_taskset("tiny", base_dir=tmp_path / "elsewhere")
    assert taskset.source == "built-in taskset 'tiny'"
    commands = [{name: entry.get("command") for name, entry in task.mcp_config.items()} for task in taskset]
    assert commands == [{"game": sys.executable}, {"game": sys.executable, "remote": None}, {"local": "docker"}]
    assert taskset.tasks[0].mcp_config["game"]["args"] == ["-m", "hud_vf_gym.environments.text_2048"]
    assert [task.id for task in load_taskset("lines")] == ["docker"]


def test_load_taskset_keeps_python_for_files_that_are_not_builtin(builtin_dir: Path) -> None:
    taskset = load_taskset(builtin_dir / "tiny.json")
    assert taskset.tasks[0].mcp_config["game"]["command"] == "python"
    assert taskset.tasks[1].mcp_config["game"]["command"] == "python3"


def test_load_taskset_lists_builtins_for_an_unknown_name(builtin_dir: Path, tmp_path: Path) -> None:
    message = (
        f"unknown taskset '2049': it is not a file or folder (looked for {tmp_path / '2049'}), not a built-in "
        "taskset and not a Hugging Face dataset id. Expected a built-in name (lines, tiny), a .json or .jsonl file "
        "of task rows, a folder written by Dataset.save_to_disk, or a hub id 'org/name' or 'org/name:split'"
    )
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        load_taskset("2049", base_dir=tmp_path)


def test_load_taskset_reads_the_real_2048_builtin() -> None:
    taskset = load_taskset("2048")
    assert taskset.problems == ()
    assert len(taskset) > 0
    for task in taskset:
        assert [entry["command"] for entry in task.mcp_config.values()] == [sys.executable]
        assert task.evaluate_calls


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[Any]:
    """Hugging Face offline mode, an empty cache, and every socket connection refused and recorded."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # both libraries read HF_HUB_OFFLINE once at import, which has already happened in this process
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize("hub_id", ["hud-evals/2048-taskset", "hud-evals/2048-taskset:test"], ids=repr)
def test_load_taskset_reports_an_offline_hub_id_clearly(offline_hub: list[Any], tmp_path: Path, hub_id: str) -> None:
    head = (
        f"taskset {hub_id!r} is not a local file or folder (looked for {tmp_path / hub_id}), so it was read as a "
        "Hugging Face dataset id, and 'hud-evals/2048-taskset' could not be downloaded ("
    )
    tail = (
        "). To use a local copy instead, save it once while online with "
        "`datasets.load_dataset('hud-evals/2048-taskset').save_to_disk('tasks/')` and pass that folder, "
        "or pass a .json or .jsonl file of task rows"
    )
    with pytest.raises(TaskError, match=f"^{re.escape(head)}[^\n]*{re.escape(tail)}$") as caught:
        load_taskset(hub_id, base_dir=tmp_path)
    assert isinstance(caught.value.__cause__, ConnectionError | FileNotFoundError)
    assert offline_hub == []


# ---------------------------------------------------------------------------------------------------------------------
# load_taskset: bad rows, duplicates, num_tasks


BAD_FILE_ROWS = [
    GOOD_ROWS[0],
    make_hf_row(id="no-eval", evaluate_tool="{}"),
    GOOD_ROWS[1],
    make_row(id="two-problems", prompt="", mcp_config="{}"),
    make_hf_row(id="bad-setup", setup_tool='{"name": "setup", "arguments": {'),
    GOOD_ROWS[2],
]
BAD_FILE_PROBLEMS = (
    f"row 1 (id 'no-eval'): {MISSING_EVALUATE}",
    "row 3 (id 'two-problems'): 2 problems\n"
    "    prompt: expected the agent's instruction as a non-empty string, found '' (str)\n"
    f"    {MISSING_MCP_CONFIG}",
    "row 4 (id 'bad-setup'): setup_tool: not valid JSON (Expecting property name enclosed in double quotes at line 1 "
    'column 33); found \'{"name": "setup", "arguments": {\' (str); fix the JSON text',
)


def test_load_taskset_reports_every_bad_row_and_keeps_the_good(tmp_path: Path) -> None:
    write_json(tmp_path / "tasks.json", BAD_FILE_ROWS)
    message = "\n  ".join(["3 invalid tasks in tasks.json (skipped; 3 valid kept)", *BAD_FILE_PROBLEMS])
    with pytest.warns(TasksetWarning, match=f"^{re.escape(message)}$"):
        taskset = load_taskset("tasks.json", base_dir=tmp_path)
    assert taskset.tasks == GOOD_TASKS
    assert taskset.problems == BAD_FILE_PROBLEMS


def test_load_taskset_raises_when_no_row_is_valid(tmp_path: Path) -> None:
    write_json(tmp_path / "tasks.json", [row for row in BAD_FILE_ROWS if row not in GOOD_ROWS])
    message = "\n  ".join(["3 invalid tasks in tasks.json", *BAD_FILE_PROBLEMS]).replace("row 1", "row 0")
    message = message.replace("row 3", "row 1").replace("row 4", "row 2")
    with pytest.raises(TasksetError, match=f"^{re.escape(message)}$") as caught:
        load_taskset("tasks.json", base_dir=tmp_path)
    assert caught.value.source == "tasks.json"
    assert len(caught.value.problems) == 3


def test_load_taskset_rejects_duplicate_ids() -> None:
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], make_row(id="t0", prompt="Another."), make_row(id=DROP), make_row(id=DROP)]
    problem = "row 2 (id 't0'): id: duplicate of row 0; task ids must be unique, rename one of them"
    with pytest.warns(
        TasksetWarning, match=f"^{re.escape('1 invalid task in the given task list (skipped; 4 valid kept)')}"
    ):
        taskset = load_taskset(rows)
    assert taskset.problems == (problem,)
    assert [task.id for task in taskset] == ["t0", "t1", "task-0003", "task-0004"]


def test_load_taskset_takes_the_first_valid_tasks() -> None:
    rows = [make_row(id="bad", prompt=""), *GOOD_ROWS]
    with pytest.warns(TasksetWarning):
        taskset = load_taskset(rows, num_tasks=2)
    assert taskset.tasks == GOOD_TASKS[:2]
    assert len(taskset.problems) == 1
    assert load_taskset(GOOD_ROWS, num_tasks=10).tasks == GOOD_TASKS


@pytest.mark.parametrize("num_tasks", [0, -1, True, 2.5], ids=repr)
def test_load_taskset_rejects_a_bad_num_tasks(num_tasks: Any) -> None:
    message = f"num_tasks must be a positive integer or None (every task), found {num_tasks!r}"
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        load_taskset(GOOD_ROWS, num_tasks=num_tasks)


def test_load_taskset_rejects_an_unknown_source_type() -> None:
    message = (
        "taskset source: expected a file path, a built-in name, a hub id, a list of task dicts, a dict or a "
        "datasets.Dataset, found 42 (int)"
    )
    with pytest.raises(TaskError, match=f"^{re.escape(message)}$"):
        load_taskset(42)  # type: ignore[arg-type]
