"""Screenshots as the model sees them: only the newest kept as images, downscaled with coordinates scaled back.

The end-to-end test runs `hud-vf-gym eval` against a real stdio MCP server with HUD's `computer` tool that returns a
1024x768 screenshot after every action (tests/servers/computer_stub.py) and a scripted model on 127.0.0.1: the
requests the model received, and the calls the server received, are both checked.
"""

from __future__ import annotations

import base64
import io
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from verifiers import AssistantMessage, UserMessage

from hud_vf_gym.cli.app import main
from hud_vf_gym.config import ImagesConfig
from hud_vf_gym.core.images import ScreenshotEncoder, cap_screenshots, placeholder, scale_coordinates
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer
from hud_vf_gym.types import ImageData

PIL = pytest.importorskip("PIL.Image", reason="downscaling needs Pillow: pip install pillow")

TESTS = Path(__file__).parent
COMPUTER_STUB = TESTS / "servers" / "computer_stub.py"
sys.path.insert(0, str(TESTS / "servers"))
from computer_stub import png  # noqa: E402  # the stub's PNG writer: real screenshots without a browser


def image_part(tag: str) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{tag}"}}


def conversation(turns: int) -> list[dict[str, Any]]:
    """A computer-use history: setup screenshot in the first user message, then one screenshot per turn."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Act."},
        {"role": "user", "content": [{"type": "text", "text": "Task"}, image_part("s0")]},
    ]
    for turn in range(1, turns + 1):
        messages.append({"role": "assistant", "content": "<tool>screenshot()</tool>"})
        messages.append(
            {"role": "user", "content": [{"type": "text", "text": f"<result>{turn}</result>"}, image_part(f"s{turn}")]}
        )
    return messages


def images_in(messages: list[Any]) -> list[str]:
    found = []
    for message in messages:
        content = message["content"] if isinstance(message, dict) else message.content
        for part in content if isinstance(content, list) else []:
            part = part if isinstance(part, dict) else part.model_dump()
            if part["type"] == "image_url":
                found.append(part["image_url"]["url"].rsplit(",", 1)[1])
    return found


def test_only_the_newest_screenshots_stay_images() -> None:
    messages = conversation(5)
    capped = cap_screenshots(messages, 2)
    assert images_in(capped) == ["s4", "s5"]
    assert capped[1]["content"] == [{"type": "text", "text": f"Task\n{placeholder(0)}"}]
    assert capped[5]["content"] == [{"type": "text", "text": "<result>2</result>\n[screenshot from turn 2 omitted]"}]
    assert capped[-1] is messages[-1]  # kept messages are not copied
    assert images_in(messages) == ["s0", "s1", "s2", "s3", "s4", "s5"]  # the input is left as it was
    assert cap_screenshots(messages, None) == messages
    assert images_in(cap_screenshots(messages, 0)) == []
    assert cap_screenshots(cap_screenshots(messages, 2), 2) == capped  # capping the capped history changes nothing


def test_verifiers_message_models_are_capped_the_same_way() -> None:
    messages = [
        UserMessage(content=[{"type": "text", "text": "Task"}, image_part("a")]),
        AssistantMessage(content="<tool>screenshot()</tool>"),
        UserMessage(content=[{"type": "text", "text": "ok"}, image_part("b")]),
    ]
    capped = cap_screenshots(messages, 1)
    assert isinstance(capped[0], UserMessage) and images_in(capped) == ["b"]
    assert capped[0].content == [{"type": "text", "text": "Task\n[screenshot from turn 0 omitted]"}]


def test_downscaled_screenshot_and_coordinates_back_to_screen_pixels() -> None:
    screen = ImageData(png(1024, 768, 120))
    encoder = ScreenshotEncoder(ImagesConfig(max_width=512, jpeg_quality=70))
    [seen] = encoder.encode([screen])
    picture = PIL.open(io.BytesIO(base64.b64decode(seen.data)))
    assert (picture.size, picture.format, seen.mime_type) == ((512, 384), "JPEG", "image/jpeg")
    assert encoder.scale == 0.5
    arguments = {"action": "drag", "x": 100, "y": 51, "path": [[10, 20], {"x": 30, "y": 40}], "text": "a", "flag": True}
    screen_arguments = scale_coordinates(arguments, ["x", "y", "path", "flag", "text"], encoder.scale)
    assert screen_arguments == {
        "action": "drag", "x": 200, "y": 102, "path": [[20, 40], {"x": 60, "y": 80}], "text": "a", "flag": True,
    }  # fmt: skip
    small = ScreenshotEncoder(ImagesConfig(max_width=2000))
    assert small.encode([screen]) == (screen,) and small.scale == 1.0  # narrower than max_width: untouched
    assert ScreenshotEncoder(ImagesConfig()).encode([screen]) == (screen,)  # the default changes no pixels


COMPUTER_CONFIG = {
    "system_prompt": "Use the computer, then call done().",
    "defaults": {"max_turns": 8},
    "parser": {"use_thinking": False},
    "images": {"keep_recent": 2, "max_width": 512},
    "action_mappings": {
        "screenshot": {"_tool": "computer", "action": "screenshot"},
        "click": {
            "_tool": "computer",
            "_parser": {"positional": ["x", "y"]},
            "action": "click",
            "x": {"from_arg": "x", "transform": "int"},
            "y": {"from_arg": "y", "transform": "int"},
        },
        "scroll": {  # at the screen's centre: the mapping's constants are screen pixels and are never scaled
            "_tool": "computer",
            "_parser": {"positional": ["amount"]},
            "action": "scroll",
            "x": 512,
            "y": 384,
            "scroll_y": {"from_arg": "amount", "transform": "int"},
        },
    },
}
REPLIES = [
    "<tool>screenshot()</tool>",
    "<tool>click(100, 50)</tool>",
    "<tool>click(10, 21)</tool>",
    "<tool>scroll(3)</tool>",
    "<tool>screenshot()</tool>",
    "<tool>done()</tool>",
]


def test_eval_sends_capped_downscaled_screenshots_and_clicks_where_the_model_saw(tmp_path: Path) -> None:
    marker = f"hud-vf-gym-test-{uuid.uuid4().hex[:12]}"
    expected_calls = [
        {"action": "screenshot"},
        {"action": "click", "x": 200, "y": 100},  # the model clicked (100, 50) on a half-size screenshot
        {"action": "click", "x": 20, "y": 42},
        {"action": "scroll", "x": 512, "y": 384, "scroll_y": 3},
        {"action": "screenshot"},
    ]
    stub = [str(COMPUTER_STUB), "--screenshots", f"--marker={marker}"]
    task = {
        "id": "computer",
        "prompt": "Click twice.",
        "mcp_config": {"computer": {"command": sys.executable, "args": stub}},
        "setup_tool": {"name": "setup", "arguments": {}},
        "evaluate_tool": {"name": "evaluate", "arguments": {"expected": expected_calls}},
    }
    (tmp_path / "tasks.json").write_text(json.dumps([task]))
    (tmp_path / "computer.yaml").write_text(yaml.safe_dump(COMPUTER_CONFIG))
    with ScriptedChatServer(FixedRepliesPolicy(REPLIES)) as server:
        argv = ["eval", "--base-url", server.base_url, "--model", "scripted", "--output", str(tmp_path / "run")]
        argv += ["--taskset", str(tmp_path / "tasks.json"), "--config", str(tmp_path / "computer.yaml")]
        assert main(argv) == 0
        requests = [request["json"] for request in server.requests if request["path"].endswith("/chat/completions")]
    [row] = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert row["metrics"]["task_completion"] == 1.0, row["hud_episode"]["evaluate_results"]
    assert len(requests) == 6
    counts = [len(images_in(request["messages"])) for request in requests]
    assert counts == [1, 2, 2, 2, 2, 2]  # setup + one screenshot per action, at most keep_recent of them
    last = json.dumps(requests[-1]["messages"])
    assert all(placeholder(turn) in last for turn in (0, 1, 2, 3)) and placeholder(4) not in last
    widths = {PIL.open(io.BytesIO(base64.b64decode(image))).size for image in images_in(requests[-1]["messages"])}
    assert widths == {(512, 384)}
