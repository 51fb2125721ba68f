"""An evaluation's results folder: the run's options, one JSON line per finished rollout, images as files.

```
<output>/
  run.json          the options the run was started with (no secrets: an API key is named by its variable)
  results.jsonl     one line per finished (task, rollout) pair, in the order they finished
  images/           every image of every rollout, referenced from results.jsonl by relative path
  summary.json      the aggregate (written at the end of every run, resumed runs included)
  summary.md        the same as the table the command prints
```

A results line is verifiers' `RolloutOutput` (`example_id`, `prompt`, `completion`, `reward`, `metrics` and each
metric flattened, `error`, `timing`, `is_completed`, `is_truncated`, `stop_condition`, `token_usage`, `info`) plus
`hud_episode` (every turn as parsed, mapped and executed, the tool results and the grade), `task_id`,
`rollout_index` and `model`. Images in messages are written to `images/` and their `data:` URL is replaced by the
file's path relative to the results folder, so lines stay small and the images open in any viewer.

Lines are appended with one write each and flushed; a run killed mid-write leaves at most a torn last line, which
`read_rows` drops (and rewrites the file without), so `--resume` then reruns that pair.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hud_vf_gym.errors import ConfigError

__all__ = [
    "IMAGES_DIR",
    "RESULTS_FILE",
    "RUN_FILE",
    "SUMMARY_FILE",
    "TABLE_FILE",
    "ResultsFolder",
    "pair_key",
]

RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
TABLE_FILE = "summary.md"
IMAGES_DIR = "images"

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_UNSAFE_PATH_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/jpg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def pair_key(row: Mapping[str, Any]) -> tuple[int, int]:
    """A results row's (task index, rollout index): what `--resume` matches finished rollouts by."""
    return int(row["example_id"]), int(row["rollout_index"])


class ResultsFolder:
    """Reads and writes one evaluation's results folder (see the module docstring for the layout).

    Args:
        path: the folder; created on the first write.
    """

    def __init__(self, path: Path) -> None:
        """Remember the folder; nothing is read or written yet."""
        self.path = path

    @property
    def results_file(self) -> Path:
        """`results.jsonl` inside the folder."""
        return self.path / RESULTS_FILE

    def has_run(self) -> bool:
        """Whether a run was started in this folder (its `run.json` exists)."""
        return (self.path / RUN_FILE).is_file()

    def write_run(self, run: Mapping[str, Any]) -> None:
        """Write `run.json` (atomically: a reader never sees half of it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path / RUN_FILE, json.dumps(run, indent=2, sort_keys=True) + "\n")

    def read_run(self) -> dict[str, Any]:
        """Read `run.json`.

        Raises:
            ConfigError: the folder holds no run (the message says what `--resume` expects).
        """
        run_file = self.path / RUN_FILE
        try:
            run = json.loads(run_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(
                f"--resume {str(self.path)!r}: no {RUN_FILE} there; expected the --output folder of an earlier "
                "`hud-vf-gym eval` run"
            ) from None
        except ValueError as exc:
            raise ConfigError(f"{run_file}: not valid JSON ({exc}); it was not written by hud-vf-gym eval") from exc
        if not isinstance(run, dict):
            raise ConfigError(f"{run_file}: expected a JSON object, found {type(run).__name__}")
        return run

    def read_rows(self) -> list[dict[str, Any]]:
        """Every complete results line; a torn line (a run killed mid-write) is dropped from the file too."""
        if not self.results_file.is_file():
            return []
        lines = self.results_file.read_text(encoding="utf-8").splitlines()
        rows = list(_parse_lines(lines))
        if len(rows) != sum(1 for line in lines if line.strip()):
            _write_atomic(self.results_file, "".join(json.dumps(row) + "\n" for row in rows))
        return rows

    def append(self, row: dict[str, Any]) -> dict[str, Any]:
        """Write the row's images to files, then append the row as one line; return the row as written."""
        self.path.mkdir(parents=True, exist_ok=True)
        prefix = f"{IMAGES_DIR}/{_safe(str(row.get('task_id', row['example_id'])))}/r{row['rollout_index']}"
        stored: dict[str, Any] = json.loads(json.dumps(row, default=_plain))  # verifiers' messages become dicts
        for field_name in ("prompt", "completion"):
            if isinstance(stored.get(field_name), list):
                stored[field_name] = [
                    self._store_images(message, f"{prefix}/{field_name}{index}")
                    for index, message in enumerate(stored[field_name])
                ]
        line = json.dumps(stored) + "\n"
        with self.results_file.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
        return stored

    def _store_images(self, message: Any, stem: str) -> Any:
        """A copy of `message` whose `data:` image URLs are written to files and replaced by relative paths."""
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), list):
            return message
        parts = []
        for index, part in enumerate(message["content"]):
            url = part.get("image_url", {}).get("url") if isinstance(part, Mapping) else None
            match = _DATA_URL.match(url) if isinstance(url, str) else None
            if match is None:
                parts.append(part)
                continue
            relative = f"{stem}-{index}.{_EXTENSIONS.get(match['mime'], 'bin')}"
            self._write_image(relative, match["data"])
            parts.append({**part, "image_url": {**part["image_url"], "url": relative}})
        return {**message, "content": parts}

    def _write_image(self, relative: str, data: str) -> None:
        target = self.path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            target.write_bytes(base64.b64decode(data, validate=True))
        except binascii.Error:  # not base64 after all: keep what came, so nothing is lost
            target.write_text(data, encoding="utf-8")

    def write_summary(self, summary: Mapping[str, Any], table: str) -> None:
        """Write `summary.json` and `summary.md` (atomically)."""
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.path / SUMMARY_FILE, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        _write_atomic(self.path / TABLE_FILE, table + "\n")


def _plain(value: object) -> object:
    """JSON for what `json` cannot write itself: pydantic models (verifiers' messages), mappings, paths, errors."""
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return model_dump(exclude_none=True)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    return repr(value) if isinstance(value, BaseException) else str(value)


def _parse_lines(lines: list[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a torn line from a killed run: that pair counts as not finished
        if isinstance(row, dict) and "example_id" in row and "rollout_index" in row:
            yield row


def _safe(name: str) -> str:
    """A file-name-safe form of a task id."""
    return _UNSAFE_PATH_CHARS.sub("_", name).strip("._") or "task"


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
