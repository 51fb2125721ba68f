"""Tests for MCP result normalisation (runtime/results.py): every content block becomes text or an image."""

from __future__ import annotations

from mcp.types import (
    AudioContent,
    BlobResourceContents,
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
)

from hud_vf_gym.runtime.results import normalize_result
from hud_vf_gym.types import ImageData, ToolResult


def text(value: str) -> TextContent:
    return TextContent(type="text", text=value)


def test_normalize_result_joins_text_and_keeps_images_and_structured() -> None:
    result = CallToolResult(
        content=[
            text("Moved LEFT"),
            ImageContent(type="image", data="iVBORw0=", mimeType="image/png"),
            text("Score: 4"),
            ImageContent(type="image", data="/9j/4AAQ", mimeType="image/jpeg"),
        ],
        structuredContent={"score": 4},
    )
    assert normalize_result(result) == ToolResult(
        text="Moved LEFT\nScore: 4",
        images=(ImageData("iVBORw0=", "image/png"), ImageData("/9j/4AAQ", "image/jpeg")),
        structured={"score": 4},
        is_error=False,
    )


def test_normalize_result_handles_resources_links_and_audio() -> None:
    result = CallToolResult(
        content=[
            EmbeddedResource(type="resource", resource=TextResourceContents(uri="file:///a.txt", text="file text")),
            EmbeddedResource(
                type="resource",
                resource=BlobResourceContents(uri="file:///s.png", blob="iVBORw0=", mimeType="image/png"),
            ),
            EmbeddedResource(
                type="resource", resource=BlobResourceContents(uri="file:///b.bin", blob="AAEC", mimeType=None)
            ),
            ResourceLink(type="resource_link", name="page", uri="https://example.com/page"),
            AudioContent(type="audio", data="AAAA", mimeType="audio/wav"),
        ],
        isError=True,
    )
    assert normalize_result(result) == ToolResult(
        text=(
            "file text\n"
            "[binary resource omitted: file:///b.bin (unknown type)]\n"
            "[resource link: https://example.com/page]\n"
            "[audio omitted: audio/wav]"
        ),
        images=(ImageData("iVBORw0=", "image/png"),),
        structured=None,
        is_error=True,
    )
