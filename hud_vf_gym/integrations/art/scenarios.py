"""`generate_scenarios_from_hud`: tasks for an MCP server that has no taskset, made from its tools by a model.

The server's tools are listed through the project's MCP session (stdio or HTTP, `${VAR}` resolved, bounded
timeouts), converted to ART's `MCPTool`s, and handed to ART's `art.mcp.generate_scenarios`, whose generator model
can be any OpenAI-compatible endpoint. Each scenario becomes a `Task` on the same `mcp_config`, with no setup and
no evaluate call: its reward comes from RULER (or a custom reward function), since nothing grades it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import Any

from hud_vf_gym.config import LIFECYCLE_TOOLS, Timeouts
from hud_vf_gym.errors import ConfigError
from hud_vf_gym.integrations.art._art import require_art
from hud_vf_gym.runtime.session import MCPSession
from hud_vf_gym.tasks.task import Task

__all__ = ["generate_scenarios_from_hud"]

NO_API_KEY = "EMPTY"  # what a local endpoint without authentication gets as its key


async def generate_scenarios_from_hud(
    mcp_config: Mapping[str, Any],
    num_scenarios: int = 24,
    *,
    generator_model: str,
    generator_base_url: str,
    generator_api_key_env: str | None = None,
    custom_instructions: str | None = None,
    timeouts: Timeouts | None = None,
) -> list[Task]:
    """Generate `num_scenarios` tasks for the server(s) of `mcp_config` (or an open session) from their tools.

    Args:
        mcp_config: server name -> entry, as in a task row (`${VAR}` templates are resolved only to start it).
        num_scenarios: how many tasks to make.
        generator_model: the model name the endpoint serves (sent as it is, without a LiteLLM provider prefix).
        generator_base_url: an OpenAI-compatible endpoint, e.g. `http://127.0.0.1:8000/v1`.
        generator_api_key_env: the variable holding the endpoint's key (None: no key, for a local endpoint).
        custom_instructions: extra instructions for the generator.
        timeouts: start and call limits for the session (default: the project's).

    Raises:
        ConfigError: the key variable is not set, or the server lists no tool to make scenarios from.
        MCPServerError: the server could not be started or listed.
    """
    require_art()
    from art.mcp import MCPTool, generate_scenarios

    api_key = NO_API_KEY
    if generator_api_key_env is not None:
        api_key = os.environ.get(generator_api_key_env, "")
        if not api_key:
            raise ConfigError(f"{generator_api_key_env}: the generator's key variable is not set; export it first")
    servers = dict(mcp_config)
    async with await MCPSession.open(servers, timeouts=timeouts or Timeouts()) as session:
        tools = _tools_of(session, MCPTool)
    if not tools:
        raise ConfigError(f"the server(s) {', '.join(servers) or '(unnamed)'} list no tool to make scenarios from")
    # ART's generator calls the endpoint with the blocking openai client: keep it off the event loop
    collection = await asyncio.to_thread(
        lambda: asyncio.run(
            generate_scenarios(
                tools,
                num_scenarios=num_scenarios,
                show_preview=False,
                custom_instructions=custom_instructions,
                generator_model=generator_model,
                generator_api_key=api_key,
                generator_base_url=generator_base_url,
            )
        )
    )
    return [
        Task(
            id=f"scenario-{index:03d}",
            prompt=scenario.task,
            mcp_config=servers,
            metadata={"difficulty": scenario.difficulty, "generated_by": generator_model},
        )
        for index, scenario in enumerate(collection)
    ]


def _tools_of(session: MCPSession, tool_class: Any) -> list[Any]:
    """The session's tools as ART `MCPTool`s, without the lifecycle tools (setup, evaluate) an agent never calls."""
    return [
        tool_class(name=name, description=spec.description, parameters=dict(spec.input_schema))
        for name, spec in sorted(session.tools.items())
        if name not in LIFECYCLE_TOOLS and not any(name.endswith(f"_{tool}") for tool in LIFECYCLE_TOOLS)
    ]
