"""generate_scenarios_from_hud: the real 2048 server's tools, ART's generator, a generator model on 127.0.0.1."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from .conftest import ART_MISSING

pytest.importorskip("art", reason=ART_MISSING)

from hud_vf_gym.errors import ConfigError  # noqa: E402
from hud_vf_gym.integrations.art import generate_scenarios_from_hud, train_hud_with_art  # noqa: E402
from hud_vf_gym.testing import ScriptedChatServer, message_text  # noqa: E402

from .conftest import server_2048, wait_until_gone  # noqa: E402

pytestmark = pytest.mark.anyio


class ScenarioWriter:
    """A generator model: reads the tools and the count from ART's prompt, writes one scenario per tool in turn."""

    def __repr__(self) -> str:
        return "ScenarioWriter()"

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        prompt = message_text(messages[-1])
        count = int(re.search(r"generate (\d+) diverse", prompt).group(1))  # type: ignore[union-attr]
        tools_json = prompt.split("AVAILABLE TOOLS:", 1)[1].split("AVAILABLE RESOURCES:", 1)[0]
        tools = [tool["name"] for tool in json.loads(tools_json)]
        scenarios = [
            {"task": f"Scenario {index}: use the {tools[index % len(tools)]} tool, then report.", "difficulty": 1}
            for index in range(count)
        ]
        return json.dumps({"scenarios": scenarios})


async def test_scenarios_come_from_the_servers_own_tools(serve: Callable[..., ScriptedChatServer], marker: str) -> None:
    generator = serve(ScenarioWriter(), model_name="writer")
    servers = server_2048(marker)
    tasks = await generate_scenarios_from_hud(
        servers, 3, generator_model="writer", generator_base_url=generator.base_url
    )
    assert [task.id for task in tasks] == ["scenario-000", "scenario-001", "scenario-002"]
    # the 2048 server's tools are move, setup and evaluate; the lifecycle tools are never offered to the agent
    assert [task.prompt for task in tasks] == [f"Scenario {i}: use the move tool, then report." for i in range(3)]
    assert all(task.mcp_config == servers and task.evaluate_calls == () for task in tasks)
    assert tasks[0].metadata == {"difficulty": 1, "generated_by": "writer"}
    [request] = [r["json"] for r in generator.requests if r["path"].endswith("/chat/completions")]
    assert request["model"] == "writer" and request["response_format"]["type"] == "json_schema"
    assert wait_until_gone(marker) == []


async def test_an_environment_without_tasks_needs_a_generator(tmp_path: Any, marker: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "environments:\n  bare:\n    config_path: '2048'\n    mcp_config:\n"
        f"      text_2048: {json.dumps(server_2048(marker)['text_2048'])}\n"
    )
    with pytest.raises(ConfigError, match="has no taskset, so its scenarios are generated .* --judge-model NAME"):
        # any backend object will do: the tasks are needed before the backend is used
        await train_hud_with_art(environment="bare", backend=object(), config=str(config))
