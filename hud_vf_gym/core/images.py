"""Screenshots as the model sees them: re-encoded, downscaled, and only the recent ones kept as images.

A computer-use episode returns a screenshot every turn. Sent in full, every request of a 30-turn episode carries up
to 30 images, so request size and a vision model's cost grow with the square of the episode length. The config's
`images` section (`ImagesConfig`) bounds that in one place, used by everything that shows screenshots:

- `ScreenshotEncoder` (called by `TaskEpisode` for every observation, so HUDGym, `hud-vf-gym eval`, `vf-eval` and
  the Gymnasium env's `info["images"]` all get the same pixels) downscales screenshots wider than `max_width` and
  re-encodes them as JPEG when `jpeg_quality` is set.
- **Coordinates stay consistent**: a downscaled screenshot shows the screen at `scale = new width / screen width`.
  The model answers in the pixels it saw, so before the next action is sent the episode divides its coordinate
  arguments (`coordinate_arguments`: numbers, `[x, y]` pairs, `{x, y}` points) by that scale and rounds them
  (`scale_coordinates`). A click at (320, 200) on a half-size screenshot reaches the server as (640, 400). Only
  values the model gave are scaled: a mapping's constants and defaults (`x: 640` for a scroll at the screen's
  centre) are screen pixels already, and a system prompt's description of the screen stays in screen pixels too,
  so a prompt that names the screen size should name the size the model sees when `max_width` is set.
- `cap_screenshots` keeps the newest `keep_recent` screenshots of a message history as images and replaces every
  older one with the text `[screenshot from turn N omitted]` (turn 0 is the setup's first observation). HUDGym
  applies it to every request it sends; a Gymnasium user who builds a chat history can apply it the same way.

The trainer's token sequences are text-only (its models read no images), so there screenshots never appear.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hud_vf_gym.config import ImagesConfig
from hud_vf_gym.errors import DependencyNotInstalled
from hud_vf_gym.types import ImageData

__all__ = ["ScreenshotEncoder", "cap_screenshots", "placeholder", "scale_coordinates"]

INSTALL_PILLOW = "pip install pillow"


def placeholder(turn: int) -> str:
    """The text an omitted screenshot becomes."""
    return f"[screenshot from turn {turn} omitted]"


class ScreenshotEncoder:
    """Downscale and re-encode screenshots as `images` asks; remembers the scale of the last one it encoded.

    Args:
        config: the `images` section.
    """

    def __init__(self, config: ImagesConfig) -> None:
        """Keep the settings; Pillow is imported only when an image must change."""
        self.config = config
        self.scale = 1.0
        """The size of the last encoded screenshot relative to the screen (1.0: full size)."""

    @property
    def changes_images(self) -> bool:
        """Whether any screenshot is ever re-encoded or resized."""
        return self.config.max_width is not None or self.config.jpeg_quality is not None

    def encode(self, images: Sequence[ImageData]) -> tuple[ImageData, ...]:
        """The images the model sees; `scale` becomes the last one's (the screen the next action refers to)."""
        if not self.changes_images or not images:
            return tuple(images)
        encoded = [self._encode_one(image) for image in images]
        self.scale = encoded[-1][1]
        return tuple(image for image, _ in encoded)

    def _encode_one(self, image: ImageData) -> tuple[ImageData, float]:
        pil = _pillow()
        picture = pil.open(io.BytesIO(base64.b64decode(image.data)))
        scale = 1.0
        width = self.config.max_width
        if width is not None and picture.width > width:
            scale = width / picture.width
            picture = picture.resize((width, max(1, round(picture.height * scale))), pil.Resampling.LANCZOS)
        if self.config.jpeg_quality is None and scale == 1.0:
            return image, scale
        buffer = io.BytesIO()
        if self.config.jpeg_quality is not None:
            picture.convert("RGB").save(buffer, format="JPEG", quality=self.config.jpeg_quality)
            mime_type = "image/jpeg"
        else:
            picture.save(buffer, format=picture.format or "PNG")
            mime_type = image.mime_type
        return ImageData(base64.b64encode(buffer.getvalue()).decode("ascii"), mime_type), scale


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:
        raise DependencyNotInstalled(
            f"images.max_width and images.jpeg_quality need Pillow, which is not installed; run: {INSTALL_PILLOW}"
        ) from exc
    return Image


def scale_coordinates(arguments: Mapping[str, Any], names: Iterable[str], scale: float) -> dict[str, Any]:
    """`arguments` with the coordinate arguments in `names` mapped from screenshot pixels to screen pixels."""
    result = dict(arguments)
    if scale == 1.0:
        return result
    for name in names:
        if name in result:
            result[name] = _to_screen(result[name], scale)
    return result


def _to_screen(value: Any, scale: float) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return round(value / scale)
    if isinstance(value, list | tuple):
        return [_to_screen(item, scale) for item in value]
    if isinstance(value, Mapping):
        return {key: _to_screen(item, scale) if key in ("x", "y") else item for key, item in value.items()}
    return value  # a string or anything else: the server reports the mistake, as without scaling


# -- the history ----------------------------------------------------------------------------------------------------


def cap_screenshots(messages: Sequence[Any], keep_recent: int | None) -> list[Any]:
    """`messages` with only the newest `keep_recent` image parts kept; older ones become placeholder text parts.

    Messages may be dicts or objects with `role` and `content` (verifiers' message models); a message with an
    omitted image is rebuilt the same way (a dict copy, or `model_copy`), every other message is returned as it is.
    A screenshot's turn is the number of assistant messages before it.
    """
    if keep_recent is None:
        return list(messages)
    located = []  # (message index, part index, turn) of every image part, oldest first
    turn = 0
    for message_index, message in enumerate(messages):
        role = _field(message, "role")
        content = _field(message, "content")
        if isinstance(content, list):
            located += [(message_index, part, turn) for part, item in enumerate(content) if _is_image(item)]
        if role == "assistant":
            turn += 1
    omitted = located[: max(0, len(located) - keep_recent)]
    if not omitted:
        return list(messages)
    by_message: dict[int, dict[int, int]] = {}
    for message_index, part, image_turn in omitted:
        by_message.setdefault(message_index, {})[part] = image_turn
    result = list(messages)
    for message_index, parts in by_message.items():
        message = messages[message_index]
        content = list(_field(message, "content"))
        for part, image_turn in parts.items():
            content[part] = {"type": "text", "text": placeholder(image_turn)}
        result[message_index] = _with_content(message, _merge_text(content))
    return result


def _field(message: Any, name: str) -> Any:
    return message.get(name) if isinstance(message, Mapping) else getattr(message, name, None)


def _is_image(part: Any) -> bool:
    kind = _field(part, "type")
    return kind in ("image_url", "input_image", "image")


def _merge_text(content: list[Any]) -> list[Any]:
    """Adjacent text parts joined by newlines, so an observation stays one text part plus its kept images."""
    merged: list[Any] = []
    for part in content:
        if merged and _field(part, "type") == "text" and _field(merged[-1], "type") == "text":
            merged[-1] = {"type": "text", "text": f"{_field(merged[-1], 'text')}\n{_field(part, 'text')}"}
        else:
            merged.append(part)
    return merged


def _with_content(message: Any, content: list[Any]) -> Any:
    if isinstance(message, Mapping):
        return {**message, "content": content}
    return message.model_copy(update={"content": content})
