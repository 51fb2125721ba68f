"""What every browser task shares, free of Playwright: the evaluation builder, task instances, the page frame, checks.

An own task (see `pages.py`) is a seeded page builder plus a pure check. The builder returns the instruction, the
page's HTML body and script, and the answer the check expects; the page records what the agent did in
`window.hud.state` (first click, submitted values, ...). At evaluation the server reads `window.hud.snapshot()`:

```
{"state": {...what the page recorded...}, "fields": {"<element id>": {"value": "...", "checked": false}, ...}}
```

and hands it to the task's check, which returns HUD's EvaluationResult. Nothing here touches a browser, so every
check is tested on hand-written snapshots.
"""

from __future__ import annotations

import html
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for annotations: the checks stay free of MCP and pydantic at run time
    from hud_vf_gym.environments.hub import EvaluationResult

__all__ = [
    "SNAPSHOT_SCRIPT",
    "PageContent",
    "PageTask",
    "PageTaskSpec",
    "Snapshot",
    "element_value_equals",
    "evaluation",
    "page_contains",
    "render_page",
    "seeded_random",
    "submitted_values",
]

Snapshot = Mapping[str, Any]  # {"state": {...}, "fields": {id: {"value": str, "checked": bool}}}

# Runs in the page at evaluation time; every own page defines `window.hud` (see `_HARNESS`).
SNAPSHOT_SCRIPT = "() => (window.hud ? window.hud.snapshot() : {state: {}, fields: {}})"

_STYLE = """
body { margin: 0; font: 18px/1.4 "DejaVu Sans", Arial, sans-serif; background: #f4f4f4; color: #111; }
#goal { background: #ffe45c; padding: 14px 24px; font-size: 20px; font-weight: bold; }
#app { padding: 20px 24px; }
#status { margin: 12px 0; color: #225; min-height: 1.4em; }
button { font: inherit; padding: 8px 18px; margin: 6px; border: 1px solid #888; border-radius: 6px;
  background: #fff; cursor: pointer; }
button:disabled { cursor: default; color: #888; }
input[type=text], input[type=password], input[type=email] { font: inherit; padding: 6px 8px; width: 320px; }
select { font: inherit; padding: 4px; min-width: 220px; }
label { cursor: pointer; }
.row { margin: 10px 0; }
"""

# `hud.once` keeps the first value of a key (the first click decides, as in MiniWoB); `hud.submit` records a form
# once and locks the page, so later actions cannot change a submitted answer.
_HARNESS = """
window.hud = {
  state: {},
  once(key, value) {
    if (key in this.state) return false;
    this.state[key] = value;
    return true;
  },
  say(text) { const status = document.getElementById('status'); if (status) status.textContent = text; },
  submit(values) {
    if (!this.once('submitted', values)) return false;
    document.querySelectorAll('#app input, #app select, #app textarea, #app button').forEach(e => e.disabled = true);
    this.say('Submitted.');
    return true;
  },
  snapshot() {
    const fields = {};
    document.querySelectorAll('input[id], select[id], textarea[id]').forEach(element => {
      fields[element.id] = {value: element.value, checked: !!element.checked};
    });
    return {state: JSON.parse(JSON.stringify(this.state)), fields: fields};
  },
};
"""


def evaluation(
    reward: float, done: bool, content: str, info: Mapping[str, Any] | None = None, *, is_error: bool = False
) -> EvaluationResult:
    """Build an EvaluationResult."""
    return {"reward": float(reward), "done": done, "content": content, "info": dict(info or {}), "isError": is_error}


@dataclass(frozen=True, slots=True)
class PageContent:
    """What a task builder makes from its random generator: the instruction, the page and the expected answer."""

    goal: str
    body: str
    expected: dict[str, Any]
    script: str = ""


@dataclass(frozen=True, slots=True)
class PageTaskSpec:
    """One own task: its name, a one-line summary, the seeded builder and the check."""

    name: str
    summary: str
    build: Callable[[random.Random], PageContent]
    check: Callable[[Mapping[str, Any], Snapshot], EvaluationResult]


@dataclass(frozen=True, slots=True)
class PageTask:
    """One generated instance of an own task: what the agent is told, the page to load, the answer to check."""

    name: str
    seed: int
    goal: str
    html: str
    expected: Mapping[str, Any] = field(default_factory=dict)


def seeded_random(name: str, seed: int) -> random.Random:
    """The random generator of task `name` with `seed`: the same pair gives the same page on every machine."""
    return random.Random(f"{name}/{seed}")  # a str seed is hashed with SHA-512, so it is stable across runs


def render_page(title: str, goal: str, body: str, script: str = "") -> str:
    """Wrap a task's body in the shared frame: the goal banner, the `#app` area, a `#status` line and the harness."""
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head>\n"
        f'<body><div id="goal">{html.escape(goal)}</div>\n<main id="app">{body}\n<div id="status"></div></main>\n'
        f"<script>{_HARNESS}</script>\n<script>{script}</script>\n</body></html>\n"
    )


def submitted_values(snapshot: Snapshot) -> Mapping[str, Any] | None:
    """The values the page recorded when its form was submitted, or None before any submission."""
    state = snapshot.get("state")
    submitted = state.get("submitted") if isinstance(state, Mapping) else None
    return submitted if isinstance(submitted, Mapping) else None


def page_contains(page_text: str, text: str, *, case_sensitive: bool = True) -> EvaluationResult:
    """Reward 1 when the page's visible text contains `text`."""
    haystack, needle = (page_text, text) if case_sensitive else (page_text.lower(), text.lower())
    found = needle in haystack
    content = f"The page {'contains' if found else 'does not contain'} {text!r}"
    return evaluation(1.0 if found else 0.0, found, content, {"text": text, "found": found})


def element_value_equals(selector: str, found: str | None, value: str) -> EvaluationResult:
    """Reward 1 when the element's value (or text, for an element without one) equals `value`.

    Args:
        selector: the CSS selector that was looked up (for the message).
        found: the first matching element's value, or None when nothing matched.
        value: the expected value.
    """
    info = {"selector": selector, "expected": value, "actual": found}
    if found is None:
        return evaluation(0.0, False, f"No element matches {selector!r}", info)
    equal = found == value
    relation = "equals" if equal else "is not"
    return evaluation(1.0 if equal else 0.0, equal, f"The value of {selector!r} {relation} {value!r} ({found!r})", info)
