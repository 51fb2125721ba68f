"""The browser environment end to end: built-in tasksets, HUDGym with verifiers' own loop (or the harness alone),
a scripted chat endpoint.

The scripted policy cannot see screenshots (the chat server keeps only text), so the tasks here run the server with
`--observation both`: every action still returns HUD's screenshot, plus the text description the policy reads
element boxes from. `browser-text.yaml` instead asks for text per call, with the server in its default mode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psutil
import pytest

from hud_vf_gym import load_taskset
from hud_vf_gym.config import EnvConfig, load_config
from hud_vf_gym.core.chat import SUMMARY_KEY
from hud_vf_gym.tasks.task import Task
from hud_vf_gym.testing import FixedRepliesPolicy, ScriptedChatServer, message_text
from hud_vf_gym.testing.evaluate import evaluate_outputs, harness_outputs

pytest.importorskip("playwright.async_api", reason='needs pip install "hud-vf-gym[browser]"')

MARKER_ENV = "HUD_VF_GYM_TEST_MARKER"  # inherited by the server, Playwright's driver and every Chromium process
# A sample of MiniWoB++ tasks the policy below knows how to solve (one plan each).
MINIWOB_SAMPLE = (
    "click-test",
    "click-button",
    "click-link",
    "click-option",
    "click-checkboxes",
    "click-dialog",
    "enter-text",
    "enter-password",
    "focus-text",
    "login-user",
)


# -- the scripted policy ------------------------------------------------------------------------------------------

_OPENED = re.compile(r"Opened '([^']+)' \(seed")
_GOAL = re.compile(r"^Goal: (.*)$", re.MULTILINE)
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_ELEMENT = re.compile(rf"^\s*\[\d+\] (\S+) {_QUOTED} centre \((\d+), (\d+)\) size \d+x\d+(.*)$", re.MULTILINE)
_TEXT = re.compile(rf"^\s*{_QUOTED} at \((\d+), (\d+)\) \d+x\d+$", re.MULTILINE)
_SCREEN_MARK = "Clickable elements on screen"
_NON_STEPS = ("screenshot(", "scroll(")  # actions that do not advance a plan


@dataclass(frozen=True)
class Element:
    role: str
    label: str
    x: int
    y: int


@dataclass(frozen=True)
class Step:
    """One plan step: click the nth element with a role (and label), type text, or press keys."""

    kind: str  # "click", "type" or "key"
    role: str | None = None
    label: str | None = None
    nth: int = 0
    text: str = ""


def click(role: str | None, label: str | None = None, nth: int = 0) -> Step:
    return Step("click", role=role, label=label, nth=nth)


def type_text(text: str) -> Step:
    return Step("type", text=text)


def press(keys: str) -> Step:
    return Step("key", text=keys)


def parse_elements(screen: str) -> list[Element]:
    return [
        Element(role, json.loads(f'"{label}"'), int(x), int(y)) for role, label, x, y, _ in _ELEMENT.findall(screen)
    ]


def parse_texts(screen: str) -> list[str]:
    return [json.loads(f'"{text}"') for text, _, _ in _TEXT.findall(screen)]


def _own_plan(task: str, goal: str, first_screen: str) -> list[Step]:
    quoted = re.findall(r'"([^"]*)"', goal)
    if task in ("click-button", "scroll-to-find"):
        return [click("button", quoted[0])]
    if task == "enter-text":
        return [click("textbox", "Answer:"), type_text(quoted[0]), click("button", "Submit")]
    if task == "select-option":
        return [click("option", quoted[0]), click("button", "Submit")]
    if task == "tick-checkboxes":
        return [*(click("checkbox", item) for item in quoted), click("button", "Submit")]
    if task == "log-in":
        username, password = quoted
        steps = [click("textbox", "Username"), type_text(username), click("textbox", "Password"), type_text(password)]
        return [*steps, click("button", "Log in")]
    if task == "edit-cell":
        cell, _, value = re.findall(r"cell (\w+) from (\d+) to (\d+)", goal)[0]
        return [click("textbox", cell), press("ctrl+a"), type_text(value)]
    if task == "triage-inbox":
        sender = re.findall(r"from (\w+) and", goal)[0]
        texts = parse_texts(first_screen)
        subjects = [texts[index + 1] for index, text in enumerate(texts[:-1]) if text == sender]
        return [
            *(click("button", f"Archive: {subject}") for subject in subjects),
            click("button", f"Star: {quoted[0]}"),
        ]
    if task == "fill-form":
        name, email, plan = re.findall(r"Sign up as (.+) with the email (\S+) on the (\w+) plan", goal)[0]
        steps = [click("textbox", "Full name"), type_text(name), click("textbox", "Email"), type_text(email)]
        return [*steps, click("radio", plan), click("checkbox", "I accept the terms"), click("button", "Submit")]
    raise AssertionError(f"no plan for {task!r}")


def _miniwob_plan(task: str, goal: str) -> list[Step]:
    quoted = re.findall(r'"([^"]*)"', goal)
    if task == "click-test":
        return [click("button", "Click Me!")]
    if task == "click-button":
        return [click("button", quoted[0])]
    if task == "click-link":
        return [click(None, quoted[0])]
    if task == "click-dialog":
        return [click("button", "Close")]
    if task == "focus-text":
        return [click("textbox")]
    if task == "enter-text":
        return [click("textbox"), type_text(quoted[0]), click("button", "Submit")]
    if task == "enter-password":
        password = quoted[0]
        return [click("textbox"), type_text(password), click("textbox", nth=1), type_text(password), click("button")]
    if task == "login-user":
        username, password = quoted
        return [click("textbox"), type_text(username), click("textbox", nth=1), type_text(password), click("button")]
    if task in ("click-checkboxes", "click-option"):
        listed = re.findall(r"^Select (.*) and click Submit\.$", goal)[0]
        items = [] if listed == "nothing" else listed.split(", ")
        role = "checkbox" if task == "click-checkboxes" else "radio"
        return [*(click(role, item) for item in items), click("button", "Submit")]
    raise AssertionError(f"no plan for miniwob/{task}")


def _call(step: Step, elements: Sequence[Element]) -> str:
    if step.kind == "type":
        return f"type({json.dumps(step.text)})"
    if step.kind == "key":
        return f"key({json.dumps(step.text)})"
    matches = [
        element
        for element in elements
        if (step.role is None or element.role == step.role) and (step.label is None or element.label == step.label)
    ]
    if len(matches) <= step.nth:
        return 'scroll("down", 3)'  # not on the screen (yet): look further down
    target = matches[step.nth]
    return f"click({target.x}, {target.y})"


class BrowserPolicy:
    """Solves our tasks and a sample of MiniWoB++ tasks from the goal and the text description of the screen.

    Stateless: the plan comes from the goal and the first description, and the step to take is the number of plan
    actions already made (screenshots and scrolls do not count).
    """

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        users = [message_text(message) for message in messages if message.get("role") == "user"]
        replies = [message_text(message) for message in messages if message.get("role") == "assistant"]
        if not replies:
            return "<think>First I look at the screen.</think>\n<tool>screenshot()</tool>"
        task = _OPENED.findall(users[0])[0]
        goal = _GOAL.findall(users[0])[0]
        screens = [text for text in users if _SCREEN_MARK in text]
        if task.startswith("miniwob/"):
            plan = _miniwob_plan(task.removeprefix("miniwob/"), goal)
        else:
            plan = _own_plan(task, goal, screens[0])
        done_steps = sum(1 for reply in replies[1:] if not any(mark in reply for mark in _NON_STEPS))
        if done_steps >= len(plan):
            return "<think>Every step of the task is done.</think>\n<tool>done()</tool>"
        call = _call(plan[done_steps], parse_elements(screens[-1]))
        return f"<think>Step {done_steps + 1} of {len(plan)}: {plan[done_steps]}.</think>\n<tool>{call}</tool>"


# -- fixtures and helpers -----------------------------------------------------------------------------------------


def processes_with(marker: str) -> list[psutil.Process]:
    """Every process whose command line or environment carries the marker: the server, Playwright's driver, the
    browser process and Chromium's crashpad handlers (Chromium's zygotes and renderers get a cleaned environment;
    see `process_tree`)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        try:
            in_cmdline = any(marker in part for part in process.info["cmdline"] or [])
            if in_cmdline or process.environ().get(MARKER_ENV) == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def process_tree(marker: str) -> set[psutil.Process]:
    """The marked processes and all their descendants (Chromium's renderers, zygotes, GPU and utility processes)."""
    tree = set()
    for process in processes_with(marker):
        try:
            tree.update([process, *process.children(recursive=True)])
        except psutil.Error:
            continue
    return tree


def still_running(processes: set[psutil.Process]) -> list[psutil.Process]:
    """The processes that still run (`is_running` compares the start time too, so a reused pid is not a match)."""
    return [process for process in processes if process.is_running() and process.status() != psutil.STATUS_ZOMBIE]


def browser_tasks(
    taskset: str, marker: str, *, names: Sequence[str] | None = None, server_args: Sequence[str] = ()
) -> list[Task]:
    """Rows of a built-in taskset, with the server marked (and given extra arguments)."""
    rows = []
    for task in load_taskset(taskset).tasks:
        if names is not None and task.metadata.get("task") not in names:
            continue
        row = json.loads(task.to_info())
        server = row["mcp_config"]["browser"]
        server["args"] = [*server["args"], *server_args, f"--marker={marker}"]
        server["env"] = {MARKER_ENV: marker}
        rows.append(Task.from_info(row))  # to_info() keeps the row index, which from_info (not from_row) reads
    return rows


async def run(
    config: EnvConfig,
    tasks: Sequence[Task],
    server: ScriptedChatServer,
    *,
    rollouts: int = 1,
    concurrency: int = 4,
    on_harness: bool = False,
) -> list[dict[str, Any]]:
    """Evaluate every task through HUDGym and verifiers (or on the harness alone), then close the warm servers."""
    if on_harness:
        return await harness_outputs(config, tasks, server.base_url, rollouts=rollouts, concurrency=concurrency)
    from hud_vf_gym import HUDGym

    env = HUDGym(config, tasks)
    try:
        return await evaluate_outputs(
            env, server.base_url, rollouts=rollouts, concurrency=concurrency, state_columns=[SUMMARY_KEY]
        )
    finally:
        await env.harness.close_all()


def by_task(outputs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {output[SUMMARY_KEY]["task_id"]: output for output in outputs}


# -- tests ----------------------------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.classic
async def test_browser_policy_solves_every_own_task(serve: Any, marker: str) -> None:
    tasks = browser_tasks("browser", marker, server_args=["--observation=both"])
    seed_zero = [task for task in tasks if task.metadata["seed"] == 0]  # one seed per task keeps the test short
    outputs = by_task(await run(load_config("default", max_turns=12), seed_zero, serve(BrowserPolicy())))
    assert len(outputs) == 9
    for task_id, output in outputs.items():
        assert output["error"] is None, task_id
        assert output["metrics"]["task_completion"] == 1.0, (task_id, output[SUMMARY_KEY]["grade"])
        assert output["metrics"]["screenshot_behavior"] == 1.0
        assert output["metrics"]["tool_execution"] == 1.0, task_id
    # screenshots still come back in "both" mode: the first action's observation carries an image part
    first_observation = outputs["click-button-seed-0"]["completion"][1]["content"]
    assert any(part.get("type") == "image_url" for part in first_observation)
    assert processes_with(marker) == []


@pytest.mark.anyio
async def test_browser_tasks_run_on_the_harness_alone(serve: Any, marker: str) -> None:
    # what `hud-vf-gym eval` runs; needs no verifiers, so it also runs beside verifiers 0.4 and mcp 2
    tasks = browser_tasks("browser", marker, names=["click-button", "enter-text"], server_args=["--observation=both"])
    seed_zero = [task for task in tasks if task.metadata["seed"] == 0]
    config = load_config("default", max_turns=12)
    outputs = by_task(await run(config, seed_zero, serve(BrowserPolicy()), on_harness=True))
    assert sorted(outputs) == ["click-button-seed-0", "enter-text-seed-0"]
    for task_id, output in outputs.items():
        assert output["error"] is None, task_id
        assert output["metrics"]["task_completion"] == 1.0, (task_id, output[SUMMARY_KEY]["grade"])
        assert output["stop_condition"] == "has_final_env_response"
    first_observation = outputs["click-button-seed-0"]["completion"][1]["content"]
    assert any(part.get("type") == "image_url" for part in first_observation)
    assert processes_with(marker) == []


@pytest.mark.anyio
@pytest.mark.classic
async def test_browser_policy_solves_a_miniwob_sample(serve: Any, marker: str) -> None:
    names = [f"miniwob/{name}" for name in MINIWOB_SAMPLE]
    tasks = browser_tasks("miniwob", marker, names=names, server_args=["--observation=both"])
    outputs = by_task(await run(load_config("default", max_turns=10), tasks, serve(BrowserPolicy())))
    assert len(outputs) == len(MINIWOB_SAMPLE)
    for task_id, output in outputs.items():
        assert output["error"] is None, task_id
        assert output["metrics"]["task_completion"] == 1.0, (task_id, output[SUMMARY_KEY]["grade"])
    assert processes_with(marker) == []


@pytest.mark.anyio
@pytest.mark.classic
async def test_browser_text_config_solves_tasks_without_images(serve: Any, marker: str) -> None:
    names = ["edit-cell", "scroll-to-find", "miniwob/login-user"]
    tasks = [task for taskset in ("browser", "miniwob") for task in browser_tasks(taskset, marker, names=names)]
    tasks = [task for task in tasks if task.metadata["seed"] == 0]
    outputs = by_task(await run(load_config("browser-text", max_turns=12), tasks, serve(BrowserPolicy())))
    assert len(outputs) == 3
    for task_id, output in outputs.items():
        assert output["metrics"]["task_completion"] == 1.0, (task_id, output[SUMMARY_KEY]["grade"])
        observations = [message["content"] for message in output["completion"] if message["role"] == "user"]
        assert all(isinstance(content, str) for content in observations), "text mode sends no image parts"
    assert processes_with(marker) == []


@pytest.mark.anyio
@pytest.mark.classic
async def test_browser_scroll_only_policy_gets_zero(serve: Any, marker: str) -> None:
    names = ["click-button", "scroll-to-find", "miniwob/click-test"]
    tasks = [task for taskset in ("browser", "miniwob") for task in browser_tasks(taskset, marker, names=names)]
    tasks = [task for task in tasks if task.metadata["seed"] == 0]
    scroll_only = FixedRepliesPolicy(['<think>Scrolling.</think><tool>scroll("down", 3)</tool>'] * 3)
    outputs = await run(load_config("default", max_turns=3), tasks, serve(scroll_only))
    assert len(outputs) == 3
    for output in outputs:
        assert output["error"] is None
        assert output["metrics"]["task_completion"] == 0.0
        assert output["metrics"]["screenshot_behavior"] == 0.0  # the first action was not a screenshot
        assert output["metrics"]["tool_execution"] == 1.0  # scrolling itself works
    assert processes_with(marker) == []


class ProcessWatchingPolicy:
    """Replays fixed replies; on each rollout's second turn it notes every process of the marked trees."""

    def __init__(self, replies: Sequence[str], marker: str) -> None:
        self.inner = FixedRepliesPolicy(replies)
        self.marker = marker
        self.seen: list[set[str]] = []  # process names, per rollout
        self.processes: set[psutil.Process] = set()

    def __call__(self, messages: list[dict[str, Any]], /) -> str:
        if sum(message.get("role") == "assistant" for message in messages) == 1:
            tree = process_tree(self.marker)
            self.processes |= tree
            names = set()
            for process in tree:
                try:
                    names.add(process.name())
                except psutil.Error:
                    continue
            self.seen.append(names)
        return self.inner(messages)


@pytest.mark.anyio
@pytest.mark.classic
async def test_browser_leaves_no_process_after_20_rollouts_at_concurrency_4(serve: Any, marker: str) -> None:
    tasks = browser_tasks("browser", marker, names=["click-button", "enter-text"])[:4]
    replies = ["<tool>screenshot()</tool>", '<tool>key("ctrl+a")</tool>', "<tool>done()</tool>"]
    policy = ProcessWatchingPolicy(replies, marker)
    # a fresh browser server per rollout: 20 starts and 20 shutdowns, each of which must leave nothing behind
    config = load_config("default", max_turns=3, session_reuse=False)
    # 20 Chromium starts, 4 at a time: on a 2-core machine shared with other jobs one can take over the default 30 s,
    # and this test is about what is left afterwards, not about start time
    config = config.model_copy(update={"timeouts": config.timeouts.model_copy(update={"connect_s": 120.0})})
    outputs = await run(config, tasks, serve(policy), rollouts=5)
    assert len(outputs) == 20
    assert all(output["error"] is None for output in outputs)
    assert {output["metrics"]["screenshot_behavior"] for output in outputs} == {1.0}
    # the marker finds the whole tree while it runs (so an empty list afterwards means something) ...
    assert len(policy.seen) == 20
    for names in policy.seen:
        assert "chromium" in names and any(name.startswith("node") for name in names), names  # browser, driver
        assert any(name.startswith("python") for name in names), names  # the MCP server
    # ... and nothing is left once the rollouts are over, Chromium's children included
    assert processes_with(marker) == []
    assert len(policy.processes) > 20 * 4
    assert still_running(policy.processes) == []


@pytest.mark.anyio
@pytest.mark.classic
async def test_warm_browsers_give_the_rewards_of_fresh_ones_and_leave_no_process(serve: Any, marker: str) -> None:
    names = ["click-button", "enter-text", "miniwob/click-test"]
    both = ["--observation=both"]  # the policy reads the screen's text description
    tasks = [
        task
        for taskset in ("browser", "miniwob")
        for task in browser_tasks(taskset, marker, names=names, server_args=both)
    ]
    tasks = [task for task in tasks if task.metadata["seed"] in (0, 1)]
    from hud_vf_gym import HUDGym

    results = {}
    for reuse in (False, "per_slot"):
        env = HUDGym(load_config("default", max_turns=10, session_reuse=reuse), tasks)
        try:
            outputs = await evaluate_outputs(
                env, serve(BrowserPolicy()).base_url, rollouts=2, concurrency=2, state_columns=[SUMMARY_KEY]
            )
        finally:
            await env.harness.close_all()
        results[reuse] = sorted(
            (output[SUMMARY_KEY]["task_id"], output["metrics"]["task_completion"], output["reward"])
            for output in outputs
        )
        assert all(output["error"] is None for output in outputs)
        if reuse:
            stats = env.harness.pool.stats if env.harness.pool is not None else None
            assert stats is not None and stats.opened == stats.peak_checked_out < len(outputs)  # one per slot
            assert stats.reused == len(outputs) - stats.opened
        assert processes_with(marker) == []  # every browser closed with the environment
    assert len(tasks) >= 5 and len(results["per_slot"]) == 2 * len(tasks)
    assert results["per_slot"] == results[False]  # a warm browser's new context is as good as a new browser
    assert {completion for _, completion, _ in results[False]} == {1.0}
