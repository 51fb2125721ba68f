"""RULER end to end: ART's ruler_score_group through LiteLLM to a judge served on 127.0.0.1.

The judge is `RulerJudgePolicy` behind a real OpenAI-compatible HTTP server: it scores each trajectory it is shown
by the share of its observations that report an executed action. The groups are real HUD episodes on the built-in
2048 server, played by a policy that sometimes writes nonsense, so the rollouts of a group differ.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from .conftest import ART_MISSING

art = pytest.importorskip("art", reason=ART_MISSING)

from openai import AsyncOpenAI  # noqa: E402

from hud_vf_gym.config import load_config  # noqa: E402
from hud_vf_gym.errors import ConfigError  # noqa: E402
from hud_vf_gym.integrations.art import ARTTrainingAgent, Judge, score_group  # noqa: E402
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer  # noqa: E402
from hud_vf_gym.testing.ruler_judge import JUDGE_MODEL_NAME, RulerJudgePolicy  # noqa: E402

from .conftest import MixedPolicy, tasks_2048, wait_until_gone  # noqa: E402

pytestmark = pytest.mark.anyio
ROLLOUTS = 3


async def gather_group(server: ScriptedChatServer, marker: str) -> object:
    [task] = tasks_2048(marker, 1)
    config = load_config("2048", max_turns=5)
    async with AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0) as client:
        async with ARTTrainingAgent(config, client, "scripted", taskset="2048") as agent:
            return await agent.rollout_group(task, ROLLOUTS)


def conversation(trajectory: Any) -> list[tuple[str, str]]:
    return [
        (item["role"], item["content"]) if isinstance(item, dict) else ("assistant", item.message.content)
        for item in trajectory.messages_and_choices
    ]


def judged_parts(trajectories: list[object]) -> list[list[tuple[str, str]]]:
    """What RULER shows the judge of each trajectory: the messages after the prefix they all share."""
    conversations = [conversation(trajectory) for trajectory in trajectories]
    shared = 0
    while all(len(c) > shared and c[shared] == conversations[0][shared] for c in conversations):
        shared += 1
    return [c[shared:] for c in conversations]


def executed_share(part: list[tuple[str, str]]) -> float:
    """What the judge should answer for one trajectory: executed observations / observations."""
    observations = [content for role, content in part if role == "user"]
    executed = sum(content.startswith("<result>") for content in observations)
    return round(executed / len(observations), 4) if observations else 0.0


async def test_ruler_scores_a_group_through_litellm_and_keeps_the_hud_reward(
    serve: Callable[..., ScriptedChatServer], marker: str
) -> None:
    policy = serve(MixedPolicy())
    judge_server = serve(RulerJudgePolicy(), model_name=JUDGE_MODEL_NAME)
    group = await gather_group(policy, marker)
    hud_rewards = [trajectory.reward for trajectory in group.trajectories]
    expected = [executed_share(part) for part in judged_parts(group.trajectories)]
    assert len({tuple(part) for part in judged_parts(group.trajectories)}) > 1, "the rollouts should differ"

    scored = await score_group(group, Judge(JUDGE_MODEL_NAME, base_url=judge_server.base_url))

    assert isinstance(scored, art.TrajectoryGroup)
    assert [t.metrics["independent_reward"] for t in scored.trajectories] == hud_rewards
    assert [t.metrics["hud_reward"] for t in scored.trajectories] == hud_rewards
    assert [t.metrics["ruler_score"] for t in scored.trajectories] == expected
    assert [t.reward for t in scored.trajectories] == [t.metrics["ruler_score"] for t in scored.trajectories]
    assert all(any(line.startswith("RULER explanation: ") for line in t.logs) for t in scored.trajectories)
    # what ART's function drops, the wrapper keeps
    assert scored.metadata == group.metadata == {"task_id": "2048_3x3_target_16", "taskset": "2048"}
    assert scored.metrics == {"infra_errors": 0, "ruler_errors": 0}
    # one judge request for the whole group, through LiteLLM's OpenAI provider, asking for RULER's JSON schema
    [request] = [r["json"] for r in judge_server.requests if r["path"].endswith("/chat/completions")]
    assert request["model"] == JUDGE_MODEL_NAME
    assert request["response_format"]["type"] == "json_schema"
    assert request["messages"][1]["content"].count("<trajectory id=") == ROLLOUTS
    assert wait_until_gone(marker) == []


async def test_a_judge_reply_that_is_not_rulers_json_keeps_the_group_and_says_why(
    serve: Callable[..., ScriptedChatServer], marker: str
) -> None:
    policy = serve(MixedPolicy())
    judge_server = serve(FixedRepliesPolicy(["They all look fine to me."]), model_name="chatty")
    group = await gather_group(policy, marker)
    rewards = [trajectory.reward for trajectory in group.trajectories]

    scored = await score_group(group, Judge("chatty", base_url=judge_server.base_url))

    assert scored is group
    assert [trajectory.reward for trajectory in scored.trajectories] == rewards
    assert all("ruler_score" not in trajectory.metrics for trajectory in scored.trajectories)
    assert scored.metrics["ruler_errors"] == 1
    [reason] = [line for line in scored.logs if line.startswith("RULER could not score")]
    assert f"openai/chatty at {judge_server.base_url}" in reason and "ValidationError" in reason


async def test_a_group_without_trajectories_is_not_sent_to_the_judge(serve: Callable[..., ScriptedChatServer]) -> None:
    judge_server = serve(RulerJudgePolicy())
    empty = await art.trajectory_group([], exceptions=[RuntimeError("server died")], metadata={"task_id": "t"})
    assert await score_group(empty, Judge("judge", base_url=judge_server.base_url)) is empty
    assert judge_server.request_count == 0


def test_judge_parameters_for_litellm(monkeypatch: pytest.MonkeyPatch) -> None:
    local = Judge("my-judge", base_url="http://127.0.0.1:8000/v1", max_tokens=512)
    assert local.litellm_model == "openai/my-judge"
    assert local.litellm_params() == {"api_base": "http://127.0.0.1:8000/v1", "api_key": "EMPTY", "max_tokens": 512}
    assert Judge("anthropic/claude-sonnet-4-5").litellm_model == "anthropic/claude-sonnet-4-5"
    with pytest.raises(ConfigError, match="--judge-api-key-env"):
        Judge("o4-mini", base_url="https://api.example.com/v1").litellm_params()
    monkeypatch.delenv("JUDGE_KEY", raising=False)
    with pytest.raises(ConfigError, match="JUDGE_KEY: the variable is not set"):
        Judge("o4-mini", base_url="https://api.example.com/v1", api_key_env="JUDGE_KEY").litellm_params()
    monkeypatch.setenv("JUDGE_KEY", "sk-test")
    assert Judge("openai/o4-mini", api_key_env="JUDGE_KEY").litellm_params()["api_key"] == "sk-test"
