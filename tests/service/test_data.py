"""POST /rollout and POST /evaluate against real OpenAI-compatible endpoints on 127.0.0.1 (the scripted chat
server) and the embedded SmolLM2, with the built-in 2048 MCP server; and the RULER reward training jobs use."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.cli.eval.summary import COMPONENTS
from hud_vf_gym.service.settings import ServiceSettings
from hud_vf_gym.testing import FixedRepliesPolicy, Play2048Policy, ScriptedChatServer

pytestmark = pytest.mark.timeout(900)  # each /rollout starts `hud-vf-gym eval`: seconds of imports, more when loaded

RULER_ANSWER = json.dumps(
    {
        "scores": [
            {"trajectory_id": "1", "explanation": "reached the tile", "score": 0.9},
            {"trajectory_id": "2", "explanation": "no valid move", "score": 0.2},
        ]
    }
)


@pytest.fixture
def client(settings: ServiceSettings, make_client: Any) -> Any:
    return make_client(settings)


@pytest.fixture
def player() -> Iterator[ScriptedChatServer]:
    with ScriptedChatServer(Play2048Policy(max_moves=3)) as server:
        yield server


def trajectory(text: str, reward: float | None = None) -> dict[str, Any]:
    messages = [{"role": "user", "content": "Reach 16."}, {"role": "assistant", "content": text}]
    return {"messages": messages, "reward": reward}


def test_rollout_scripted_endpoint_returns_scored_trajectories_and_a_dataset(
    client: Any, player: ScriptedChatServer, settings: ServiceSettings
) -> None:
    endpoint = {"base_url": player.base_url, "model": "scripted"}
    body = {"endpoint": endpoint, "num_tasks": 2, "max_turns": 3, "dataset_name": "games"}
    response = client.post("/rollout", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [t["task_id"] for t in result["trajectories"]] == ["2048_3x3_target_16", "2048_3x3_target_32"]
    for item in result["trajectories"]:
        assert item["error"] is None and 0.0 <= item["reward"] <= 1.0
        assert set(item["components"]) == set(COMPONENTS)
        assert item["messages"][0]["role"] == "system" and item["messages"][2]["content"].startswith("<tool>")
    rewards = [t["reward"] for t in result["trajectories"]]
    assert result["mean_reward"] == pytest.approx(sum(rewards) / 2) and result["failed"] == 0
    stored = [json.loads(line) for line in Path(result["dataset"]).read_text().splitlines()]
    assert stored == result["trajectories"]
    assert len(player.requests) >= 2  # the model really played
    again = client.post("/rollout", json=body)
    assert again.status_code == 409 and again.json()["detail"].startswith("dataset 'games' already exists")


def test_rollout_infrastructure_failure_is_recorded_not_scored(client: Any, player: ScriptedChatServer) -> None:
    with socket.socket() as sock:  # a port nobody listens on: the MCP server cannot be reached
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    task = {
        "id": "unreachable",
        "prompt": "Play.",
        "mcp_config": {"game": {"url": f"http://127.0.0.1:{port}/mcp"}},
        "setup_tool": {"name": "setup", "arguments": {}},
        "evaluate_tool": {"name": "evaluate", "arguments": {}},
    }
    endpoint = {"base_url": player.base_url, "model": "scripted"}
    result = client.post("/rollout", json={"endpoint": endpoint, "tasks": [task], "max_turns": 2}).json()
    (item,) = result["trajectories"]
    assert item["reward"] is None and item["components"] == {} and item["error"]
    assert (result["failed"], result["mean_reward"]) == (1, None)


def test_rollout_embedded_model_plays_offline(client: Any) -> None:
    response = client.post("/rollout", json={"num_tasks": 1, "max_turns": 2, "max_tokens": 16})
    assert response.status_code == 200, response.text
    (item,) = response.json()["trajectories"]
    assert item["error"] is None and 0.0 <= item["reward"] <= 1.0
    assert response.json()["model"] == "SmolLM2-135M-Instruct"
    assert [m["role"] for m in item["messages"][:3]] == ["system", "user", "assistant"]


def test_rollout_unknown_taskset_is_a_422_naming_the_field(client: Any) -> None:
    response = client.post("/rollout", json={"taskset": "no-such-taskset"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "taskset"] and "no-such-taskset" in error["msg"]


def test_evaluate_ruler_scores_the_group_in_one_judge_call(client: Any) -> None:
    with ScriptedChatServer(FixedRepliesPolicy([RULER_ANSWER])) as judge:
        body = {
            "trajectories": [trajectory("<tool>left()</tool>", 0.7), trajectory("I give up")],
            "judge": {"base_url": judge.base_url, "model": "judge"},
            "evaluation_prompt": "Reaching the tile matters most.",
        }
        result = client.post("/evaluate", json=body).json()
        (request,) = judge.requests  # one call saw both trajectories
    prompt = "\n".join(message["content"] for message in request["json"]["messages"])
    assert '<trajectory id="1">' in prompt and '<trajectory id="2">' in prompt and "Reaching the tile" in prompt
    assert (result["method"], result["backend"], result["judge"]) == ("ruler", "prompt", "judge")
    assert [(s["score"], s["explanation"], s["rubric_reward"]) for s in result["scores"]] == [
        (0.9, "reached the tile", 0.7),
        (0.2, "no valid move", None),
    ]
    assert result["mean_score"] == pytest.approx(0.55)


def test_evaluate_judge_scores_each_trajectory_and_keeps_unreadable_answers_unscored(client: Any) -> None:
    replies = ['{"explanation": "fine", "score": 0.6}']
    with ScriptedChatServer(FixedRepliesPolicy(replies)) as judge:
        body = {"trajectories": [trajectory("a"), trajectory("b")], "method": "judge"}
        body["judge"] = {"base_url": judge.base_url, "model": "judge"}
        scored = client.post("/evaluate", json=body).json()
        assert len(judge.requests) == 2
    assert [s["score"] for s in scored["scores"]] == [0.6, 0.6]
    with ScriptedChatServer(FixedRepliesPolicy(["It looks good to me."])) as judge:
        body["judge"] = {"base_url": judge.base_url, "model": "judge"}
        unread = client.post("/evaluate", json=body).json()
    assert [s["score"] for s in unread["scores"]] == [None, None] and unread["mean_score"] is None
    assert unread["scores"][0]["explanation"] == "the judge's answer holds no JSON scores: 'It looks good to me.'"


def test_evaluate_rubric_returns_the_recorded_rewards(client: Any) -> None:
    body = {"trajectories": [trajectory("a", 0.25), trajectory("b")], "method": "rubric"}
    result = client.post("/evaluate", json=body).json()
    assert [s["score"] for s in result["scores"]] == [0.25, None]
    assert (result["backend"], result["judge"], result["mean_score"]) == ("rubric", None, 0.25)


def test_evaluate_embedded_model_judges_offline(client: Any) -> None:
    body = {"trajectories": [trajectory("<tool>left()</tool>"), trajectory("no")], "method": "ruler"}
    response = client.post("/evaluate", json=body)
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["backend"], result["judge"]) == ("prompt", "embedded")
    for score in result["scores"]:  # a 135M judge may not write JSON: then the score is None, with its answer
        assert (score["score"] is not None and 0.0 <= score["score"] <= 1.0) or score["explanation"].startswith(
            "the judge's answer holds no JSON scores: "
        )


def test_ruler_reward_scores_groups_and_skips_failed_episodes(monkeypatch: pytest.MonkeyPatch) -> None:
    from hud_vf_gym.service.ruler_reward import ruler_reward

    with ScriptedChatServer(FixedRepliesPolicy([RULER_ANSWER])) as judge:
        monkeypatch.setenv("HUD_VF_GYM_JUDGE_BASE_URL", judge.base_url)
        monkeypatch.setenv("HUD_VF_GYM_JUDGE_MODEL", "judge")
        monkeypatch.setenv("HUD_VF_GYM_RULER_GROUP_SIZE", "2")
        prompts = [[{"role": "user", "content": "Reach 16."}]] * 4
        completions = ["<tool>left()</tool>", "no", "<tool>up()</tool>", "stop"]
        scores = ruler_reward(prompts, completions, infra_error=[None, None, None, "ServerStartError: gone"])
        assert len(judge.requests) == 2  # one judge call per group of two
    assert scores == [0.9, 0.2, 0.9, None]
