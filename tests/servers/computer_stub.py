"""A stdio MCP server with HUD's `computer` tool (schema and `meta.resolution`) that records calls instead of acting.

Run it by path: `python tests/servers/computer_stub.py [--width 1024] [--height 768] [--legacy-type] [--screenshots]
[--marker=X]`.

- `computer(action, x, y, ...)`: HUD's schema; `action` is an enum that offers `write` (hud >= 0.4.28), or `type`
  with `--legacy-type`. Every call is recorded with the arguments that were given (None left out) and answered
  with one text line; an unknown action is HUD's error result.
- `--screenshots`: `setup` and every computer call also return a screenshot, a `width` x `height` PNG whose
  shade changes with each call (so screenshots differ).
- `setup()`: forget the recorded calls.
- `evaluate(expected)`: reward 1.0 when the recorded calls equal `expected` (a list of argument objects), else 0.0;
  the recorded calls come back in `content` as JSON so a failing test can show them.
- `notes(text?)`: an ordinary tool beside the computer tool, with an optional parameter.
"""

import argparse
import base64
import json
import struct
import zlib
from typing import Annotated, Any

from mcp.types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from hud_vf_gym.runtime.mcp_compat import MCPServer, create_server, run_server

ACTIONS = [
    "click", "press", "keydown", "keyup", "write", "scroll", "move", "wait", "drag", "response", "screenshot",
    "position", "hold_key", "mouse_down", "mouse_up",
]  # fmt: skip
_calls: list[dict[str, Any]] = []


def png(width: int, height: int, shade: int) -> str:
    """A base64 PNG of one grey `shade` with a darker left half (written by hand: no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes([shade // 2] * (3 * (width // 2)) + [shade] * (3 * (width - width // 2)))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )
    return base64.b64encode(body).decode("ascii")


def build(width: int, height: int, legacy_type: bool, screenshots: bool = False) -> MCPServer:
    """The server, with the screen size in the computer tool's meta."""
    mcp = create_server("computer-stub", log_level="WARNING")

    def answer(text: str) -> list[TextContent | ImageContent]:
        content: list[TextContent | ImageContent] = [TextContent(type="text", text=text)]
        if screenshots:
            shade = 40 + (len(_calls) * 23) % 200
            content.append(ImageContent(type="image", data=png(width, height, shade), mimeType="image/png"))
        return content

    actions = [("type" if action == "write" else action) for action in ACTIONS] if legacy_type else ACTIONS

    @mcp.tool(
        title="Computer Control",
        description="Control computer with mouse, keyboard, and screenshots",
        meta={"resolution": {"width": width, "height": height}},
    )
    def computer(
        action: Annotated[str, Field(description="The action name", json_schema_extra={"enum": actions})],
        x: Annotated[int | None, Field(description="X coordinate")] = None,
        y: Annotated[int | None, Field(description="Y coordinate")] = None,
        button: Annotated[str | None, Field(description="Mouse button")] = None,
        pattern: Annotated[list[int] | None, Field(description="Delays in ms between multi-clicks")] = None,
        text: Annotated[str | None, Field(description="Text to write")] = None,
        keys: Annotated[list[str] | None, Field(description="Keys to press")] = None,
        scroll_x: Annotated[int | None, Field(description="Horizontal scroll")] = None,
        scroll_y: Annotated[int | None, Field(description="Vertical scroll")] = None,
        path: Annotated[list[Any] | None, Field(description="Drag path")] = None,
        time: Annotated[int | None, Field(description="Milliseconds to wait")] = None,
    ) -> CallToolResult:
        """Control computer with mouse, keyboard, and screenshots."""
        if action not in actions:
            message = f"Error calling tool 'computer': Unknown action: {action}"
            return CallToolResult(content=[TextContent(type="text", text=message)], isError=True)
        given = {"x": x, "y": y, "button": button, "pattern": pattern, "text": text, "keys": keys}
        given |= {"scroll_x": scroll_x, "scroll_y": scroll_y, "path": path, "time": time}
        _calls.append({"action": action, **{key: value for key, value in given.items() if value is not None}})
        return CallToolResult(content=answer(f"{action} done"))

    @mcp.tool()
    def notes(text: str | None = None) -> str:
        """Read the notes, or add a line to them."""
        return f"notes: {text or 'none'}"

    @mcp.tool(structured_output=False)
    def setup() -> list[TextContent | ImageContent]:
        """Forget the recorded calls."""
        _calls.clear()
        return answer("Screen ready")

    @mcp.tool()
    def evaluate(expected: list[dict[str, Any]]) -> dict[str, Any]:
        """Reward 1.0 when the recorded computer calls equal `expected`."""
        matched = _calls == expected
        return {"reward": 1.0 if matched else 0.0, "done": True, "content": json.dumps(_calls)}

    return mcp


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--legacy-type", action="store_true")
    parser.add_argument("--screenshots", action="store_true")
    options, _ = parser.parse_known_args()  # a test's --marker=... is ignored
    run_server(build(options.width, options.height, options.legacy_type, options.screenshots))
