"""The MiniWoB++ adapter: tasks from the installed `miniwob` package, started seeded, scored by their raw reward.

The `miniwob` package (Farama, MIT) ships its 130 tasks as HTML files under `miniwob/html/miniwob/`, with shared
scripts under `miniwob/html/core/`. We never copy them: the page is loaded from the installed package over
`file://`, and the package's Python side (Selenium, Gymnasium) is never imported, only located.

Starting a task (what the package's own Selenium driver does, minus the time limit):

1. load `file://.../miniwob/<task>.html`; its `onload` shows the "START" cover;
2. `Math.seedrandom(seed)`, so `genProblem()` draws the same problem for the same seed;
3. lift the 10 s episode limit (`core.EPISODE_MAX_TIME`): an LLM agent is slow, and the rollout has its own timeout;
4. `core.startEpisodeReal()` builds the problem; then wait for `WOB_TASK_READY`;
5. `core.startEpisode` becomes a no-op, so a finished episode keeps its page and reward instead of showing the
   START cover again (a click on it would start a new problem and reset the reward);
6. hide the human-facing reward panel, which would tell the agent how it did.

The instruction is `core.getUtterance()`. When the page ends the episode it sets `WOB_DONE_GLOBAL` and the raw
reward `WOB_RAW_REWARD_GLOBAL` in [-1, 1] (no time penalty). Our reward is `max(0, raw)`: a wrong answer (-1) scores
0, like any failed HUD task; the raw value stays in `info`.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hud_vf_gym.environments.browser.tasks import evaluation

if TYPE_CHECKING:  # only for annotations: the adapter stays free of MCP and pydantic at run time
    from hud_vf_gym.environments.hub import EvaluationResult

__all__ = [
    "MINIWOB_PREFIX",
    "MINIWOB_ZOOM",
    "READ_RESULT_SCRIPT",
    "START_SCRIPT",
    "UTTERANCE_SCRIPT",
    "READY_SCRIPT",
    "HIDE_STYLE",
    "miniwob_evaluation",
    "miniwob_html_dir",
    "miniwob_task_names",
    "miniwob_url",
]

MINIWOB_PREFIX = "miniwob/"  # task names in setup: "miniwob/click-test"; our own tasks have no prefix
# MiniWoB draws its task in a 160x210 pixel box; twice the size it fills a quarter of a 1280x800 screen and its
# 10 px text becomes readable in a screenshot.
MINIWOB_ZOOM = 2.0
EPISODE_MAX_TIME_MS = 3_600_000  # effectively no limit: the rollout timeout ends slow episodes
READY_TIMEOUT_MS = 5_000  # tasks that build their problem asynchronously are ready well within this

START_SCRIPT = f"""
seed => {{
  Math.seedrandom(seed);
  core.EPISODE_MAX_TIME = {EPISODE_MAX_TIME_MS};
  if (core.setDataMode) core.setDataMode('train');
  core.startEpisodeReal();
  core.startEpisode = function () {{}};
}}
"""
READY_SCRIPT = "() => typeof WOB_TASK_READY === 'undefined' || WOB_TASK_READY === true"
UTTERANCE_SCRIPT = """
() => { const u = core.getUtterance(); return typeof u === 'string' ? u : (u && u.utterance) || ''; }
"""
READ_RESULT_SCRIPT = """
() => ({done: !!WOB_DONE_GLOBAL, raw_reward: Number(WOB_RAW_REWARD_GLOBAL), reason: WOB_REWARD_REASON == null ?
  null : String(WOB_REWARD_REASON)})
"""
HIDE_STYLE = "#reward-display, #click-canvas { display: none !important; }"


def _dependency_error(message: str) -> Exception:
    from hud_vf_gym.errors import DependencyNotInstalled  # loads verifiers: only on this error path

    return DependencyNotInstalled(message)


@cache
def miniwob_html_dir() -> Path:
    """The installed package's folder of task pages (`.../miniwob/html/miniwob`), found without importing it.

    Raises:
        DependencyNotInstalled: the `miniwob` package is not installed.
    """
    spec = importlib.util.find_spec("miniwob")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "html" / "miniwob"
        if folder.is_dir():
            return folder
    raise _dependency_error('MiniWoB++ tasks need the miniwob package: pip install "hud-vf-gym[browser]"')


def miniwob_task_names() -> list[str]:
    """Every MiniWoB++ task the installed package ships, without the `miniwob/` prefix."""
    return sorted(path.stem for path in miniwob_html_dir().glob("*.html"))


def miniwob_url(task: str) -> str:
    """The `file://` URL of a MiniWoB++ task (given with or without the `miniwob/` prefix).

    Raises:
        KeyError: the package has no such task (the message suggests the closest names).
    """
    name = task.removeprefix(MINIWOB_PREFIX)
    path = miniwob_html_dir() / f"{name}.html"
    if not name or "/" in name or not path.is_file():
        close = difflib.get_close_matches(name, miniwob_task_names(), n=3)
        hint = f"; did you mean {', '.join(MINIWOB_PREFIX + match for match in close)}?" if close else ""
        raise KeyError(f"MiniWoB++ has no task {name!r}{hint}")
    return path.as_uri()


def miniwob_evaluation(task: str, seed: int, result: Mapping[str, Any]) -> EvaluationResult:
    """Score what `READ_RESULT_SCRIPT` read: `max(0, raw reward)` once the episode is done, 0 before."""
    raw = float(result.get("raw_reward") or 0.0)
    info = {"task": task, "seed": seed, "raw_reward": raw, "reason": result.get("reason")}
    if not result.get("done"):
        return evaluation(0.0, False, "The task is not finished yet", info)
    reward = max(0.0, raw)
    reason = f" ({result['reason']})" if result.get("reason") else ""
    return evaluation(reward, True, f"Episode finished with raw reward {raw:g}{reason}", info)
