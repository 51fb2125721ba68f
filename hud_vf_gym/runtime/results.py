"""Turning MCP tool results into `ToolResult`s: text blocks joined, images kept base64, nothing silently dropped."""

from __future__ import annotations

import mcp.types

from hud_vf_gym.runtime.mcp_compat import is_error, mime_type, structured_content
from hud_vf_gym.types import ImageData, ToolResult

__all__ = ["normalize_result"]


def normalize_result(result: mcp.types.CallToolResult) -> ToolResult:
    """Convert an MCP `CallToolResult` to a `ToolResult`: text blocks joined with newlines, images kept base64."""
    texts: list[str] = []
    images: list[ImageData] = []
    for block in result.content:
        if isinstance(block, mcp.types.TextContent):
            texts.append(block.text)
        elif isinstance(block, mcp.types.ImageContent):
            images.append(ImageData(data=block.data, mime_type=mime_type(block) or ""))
        elif isinstance(block, mcp.types.EmbeddedResource):
            _add_embedded_resource(block.resource, texts, images)
        elif isinstance(block, mcp.types.ResourceLink):
            texts.append(f"[resource link: {block.uri}]")
        else:  # AudioContent: no consumer can show it, so say that it was there
            texts.append(f"[audio omitted: {mime_type(block)}]")
    return ToolResult(
        text="\n".join(texts),
        images=tuple(images),
        structured=structured_content(result),
        is_error=is_error(result),
    )


def _add_embedded_resource(
    resource: mcp.types.TextResourceContents | mcp.types.BlobResourceContents,
    texts: list[str],
    images: list[ImageData],
) -> None:
    """Add an embedded resource: its text, an image blob as an image, any other blob as a one-line note."""
    if isinstance(resource, mcp.types.TextResourceContents):
        texts.append(resource.text)
    elif (kind := mime_type(resource)) is not None and kind.startswith("image/"):
        images.append(ImageData(data=resource.blob, mime_type=kind))
    else:
        texts.append(f"[binary resource omitted: {resource.uri} ({kind or 'unknown type'})]")
