"""Trajectory groups as JSONL through ART's own serialiser, and `hud-vf-gym eval` results as ART groups."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import ART_MISSING

art = pytest.importorskip("art", reason=ART_MISSING)

from openai import AsyncOpenAI  # noqa: E402
from openai.types.chat.chat_completion import Choice  # noqa: E402

from hud_vf_gym.cli.app import main as hud_vf_gym  # noqa: E402
from hud_vf_gym.cli.eval.evaluation import run_eval  # noqa: E402
from hud_vf_gym.cli.eval.options import EvalOptions  # noqa: E402
from hud_vf_gym.config import load_config  # noqa: E402
from hud_vf_gym.integrations.art import ARTTrainingAgent, read_groups, write_groups  # noqa: E402
from hud_vf_gym.testing import Play2048Policy, ScriptedChatServer  # noqa: E402

from .conftest import MixedPolicy, server_2048, tasks_2048, wait_until_gone  # noqa: E402


@pytest.mark.anyio
async def test_groups_round_trip_through_arts_serialiser_with_their_choices(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path
) -> None:
    server = serve(MixedPolicy())
    [task] = tasks_2048(marker, 1)
    broken = dataclasses.replace(task, id="broken", mcp_config={"x": {"command": sys.executable, "args": ["-c", ""]}})
    async with AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
        async with ARTTrainingAgent(load_config("2048", max_turns=4), client, "scripted", taskset="2048") as agent:
            groups = [await agent.rollout_group(task, 2), await agent.rollout_group(broken, 1)]

    path = write_groups(groups, tmp_path / "out" / "groups.jsonl")
    assert len(path.read_text().splitlines()) == 2
    loaded = read_groups(path)

    assert [group.metadata for group in loaded] == [group.metadata for group in groups]
    assert [len(group.exceptions) for group in loaded] == [0, 1]
    assert loaded[1].exceptions[0].message == groups[1].exceptions[0].message
    for original, copy in zip(groups[0].trajectories, loaded[0].trajectories, strict=True):
        assert (copy.reward, copy.metrics, copy.metadata) == (original.reward, original.metrics, original.metadata)
        assert len(copy.messages_and_choices) == len(original.messages_and_choices)
        for before, after in zip(original.messages_and_choices, copy.messages_and_choices, strict=True):
            assert type(after) is type(before)  # a Choice comes back as a Choice, a message as a message
            if isinstance(before, Choice):
                assert after.message.content == before.message.content
                assert after.finish_reason == before.finish_reason
            else:
                assert after == before
    assert wait_until_gone(marker) == []


def test_eval_results_become_art_groups(
    serve: Callable[..., ScriptedChatServer], marker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = serve(Play2048Policy(max_moves=2))
    rows = [{**task.to_row(), "mcp_config": server_2048(marker)} for task in tasks_2048(marker, 2)]
    rows.append({**rows[0], "id": "no-server", "mcp_config": {"x": {"command": sys.executable, "args": ["-c", ""]}}})
    taskset = tmp_path / "tasks.json"
    taskset.write_text(json.dumps(rows))
    results = tmp_path / "results"
    options = EvalOptions(
        taskset=str(taskset), base_url=server.base_url, model="scripted", max_turns=4, num_tasks=None,
        rollouts_per_task=2, output=str(results),
    )  # fmt: skip
    run_eval(options, log=lambda message: None)
    result_rows = [json.loads(line) for line in (results / "results.jsonl").read_text().splitlines()]

    assert hud_vf_gym(["export-art", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"wrote 3 group(s), 4 trajectories and 2 infrastructure failure(s) to {results / 'art-groups.jsonl'}" in out
    groups = read_groups(results / "art-groups.jsonl")

    assert [group.metadata["task_id"] for group in groups] == ["2048_3x3_target_16", "2048_3x3_target_32", "no-server"]
    for group in groups:
        expected = sorted(
            (row for row in result_rows if row["task_id"] == group.metadata["task_id"] and not row.get("error")),
            key=lambda row: row["rollout_index"],
        )
        assert [t.reward for t in group.trajectories] == [row["reward"] for row in expected]
        assert [t.metadata["rollout_index"] for t in group.trajectories] == [row["rollout_index"] for row in expected]
        for trajectory, row in zip(group.trajectories, expected, strict=True):
            assert trajectory.metadata["taskset"] == str(taskset)
            assert trajectory.metadata["model"] == "scripted"
            assert trajectory.metrics["format_compliance"] == row["metrics"]["format_compliance"]
            assert trajectory.metrics["turns"] == len(row["hud_episode"]["turns"])
            roles = [message["role"] for message in trajectory.messages_and_choices]
            assert roles[:3] == ["system", "user", "assistant"]
            assert len(roles) == len(row["prompt"]) + len(row["completion"])
    failed = groups[2]
    assert failed.trajectories == [] and len(failed.exceptions) == 2
    assert failed.exceptions[0].type == "ServerStartError" and failed.metrics == {"infra_errors": 2}

    assert hud_vf_gym(["export-art", str(tmp_path / "nowhere"), "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "no results.jsonl there; expected the --output folder of a `hud-vf-gym eval` run" in capsys.readouterr().err
    assert wait_until_gone(marker) == []
