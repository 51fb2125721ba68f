"""The own HTML tasks: seeded page builders and their checks, pure Python (the page itself records what happened).

| task             | the agent must                                             | decided by                   |
|------------------|------------------------------------------------------------|------------------------------|
| click-button     | click the button with a given label among 4-7              | the first button clicked     |
| enter-text       | type a word into a text box and press Submit               | the submitted text           |
| select-option    | pick an option in a list box and press Submit              | the submitted option         |
| tick-checkboxes  | tick exactly the named boxes and press Submit              | the submitted boxes          |
| scroll-to-find   | scroll a long list down to an item and click it            | the first item clicked       |
| log-in           | fill in a username and a password and press Log in         | the submitted credentials    |
| edit-cell        | change one cell of a spreadsheet-like grid, keep the rest  | every cell's value           |
| triage-inbox     | archive every email from one sender and star one email     | the archived and starred set |
| fill-form        | fill a sign-up form: name, email, plan, terms; Submit      | the submitted form           |

Every reward is 1 (exactly right) or 0, and `done` says whether the agent has committed to an answer (clicked,
submitted, edited). `build_page_task(name, seed)` makes one instance; the same name and seed give the same page.
"""

from __future__ import annotations

import html
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hud_vf_gym.environments.browser.tasks import (
    PageContent,
    PageTask,
    PageTaskSpec,
    Snapshot,
    evaluation,
    render_page,
    seeded_random,
    submitted_values,
)

if TYPE_CHECKING:  # only for annotations: the pages stay free of MCP and pydantic at run time
    from hud_vf_gym.environments.hub import EvaluationResult

__all__ = ["PAGE_TASKS", "build_page_task", "check_page_task"]

BUTTON_LABELS = (
    "Submit", "Cancel", "Next", "Back", "OK", "Save", "Delete", "Open", "Close", "Yes",
    "No", "Retry", "Continue", "Skip", "Apply", "Reset", "Send", "Done",
)  # fmt: skip
WORDS = (
    "apple", "river", "candle", "orbit", "pepper", "meadow", "violin", "glacier", "lantern", "harbor",
    "maple", "pixel", "thunder", "velvet", "walnut", "zephyr", "cobalt", "saffron", "tundra", "quartz",
)  # fmt: skip
COLOURS = (
    "Red", "Orange", "Yellow", "Green", "Blue", "Indigo", "Violet", "Black",
    "White", "Grey", "Pink", "Brown", "Teal", "Gold",
)  # fmt: skip
GROCERIES = ("Milk", "Eggs", "Bread", "Butter", "Cheese", "Apples", "Rice", "Coffee", "Tea", "Honey", "Pasta", "Salt")
CITIES = (
    "Amsterdam", "Athens", "Bangkok", "Berlin", "Bogota", "Boston", "Brussels", "Cairo", "Chicago", "Dakar",
    "Denver", "Dublin", "Florence", "Geneva", "Hanoi", "Havana", "Helsinki", "Istanbul", "Jakarta", "Kyoto",
    "Lagos", "Lima", "Lisbon", "London", "Madrid", "Manila", "Melbourne", "Miami", "Montreal", "Moscow",
    "Mumbai", "Munich", "Nairobi", "Naples", "Oslo", "Paris", "Prague", "Quito", "Riga", "Rome",
    "Santiago", "Seattle", "Seoul", "Sydney", "Taipei", "Tallinn", "Tokyo", "Toronto", "Valencia", "Vienna",
)  # fmt: skip
FIRST_NAMES = (
    "Alice", "Bruno", "Carmen", "David", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas",
    "Kavya", "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara",
)  # fmt: skip
LAST_NAMES = ("Novak", "Okafor", "Silva", "Tanaka", "Weber", "Moreau", "Kowalski", "Haddad", "Lindqvist", "Rossi")
SUBJECTS = (
    "Lunch on Friday?", "Quarterly report", "Your invoice", "Team offsite", "Password reset", "Weekend plans",
    "Project kickoff", "Server maintenance", "Birthday party", "Flight itinerary", "Budget review",
    "New hire onboarding",
)  # fmt: skip
PLANS = ("Basic", "Pro", "Team")
GRID_COLUMNS = "ABCD"
GRID_ROWS = 5
SCROLL_ITEMS = 40  # at 56 px a row the list is about 2,300 px tall: most of it starts below an 800 px screen
SCROLL_FIRST_TARGET = 22  # the target is never among the rows visible before scrolling


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _quoted_list(items: Sequence[str]) -> str:
    """`"a"`, `"a" and "b"`, `"a", "b" and "c"`."""
    quoted = [f'"{item}"' for item in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


def _first_clicked(expected: Mapping[str, Any], snapshot: Snapshot, what: str) -> EvaluationResult:
    """Shared check of the click tasks: the first thing clicked decides."""
    state = snapshot.get("state") or {}
    clicked = state.get("clicked") if isinstance(state, Mapping) else None
    target = expected["target"]
    info = {"expected": target, "clicked": clicked}
    if clicked is None:
        return evaluation(0.0, False, f"No {what} has been clicked yet", info)
    if clicked == target:
        return evaluation(1.0, True, f"Clicked the {what} {target!r}", info)
    return evaluation(0.0, True, f"Clicked the {what} {clicked!r}; the task asked for {target!r}", info)


def _compare_submission(expected: Mapping[str, Any], snapshot: Snapshot, keys: Sequence[str]) -> EvaluationResult:
    """Shared check of the form tasks: every named key of the submission equals the expected value."""
    submitted = submitted_values(snapshot)
    if submitted is None:
        return evaluation(0.0, False, "Nothing has been submitted yet", {"expected": dict(expected)})
    wrong = {key: submitted.get(key) for key in keys if submitted.get(key) != expected[key]}
    info = {"expected": {key: expected[key] for key in keys}, "submitted": dict(submitted)}
    if wrong:
        details = "; ".join(f"{key} is {value!r}, expected {expected[key]!r}" for key, value in wrong.items())
        return evaluation(0.0, True, f"Submitted, but {details}", info)
    return evaluation(1.0, True, "Submitted the right answer", info)


# -- click-button ---------------------------------------------------------------------------------------------------


def _build_click_button(rng: random.Random) -> PageContent:
    labels = rng.sample(BUTTON_LABELS, rng.randint(4, 7))
    target = rng.choice(labels)
    buttons = "".join(
        f'<button class="choice" data-label="{_esc(label)}" '
        f'style="margin: {rng.randint(6, 60)}px 0 0 {rng.randint(6, 180)}px">{_esc(label)}</button>'
        for label in labels
    )
    script = """
document.querySelectorAll('button.choice').forEach(button => button.addEventListener('click', () => {
  if (hud.once('clicked', button.dataset.label)) hud.say('You clicked ' + button.dataset.label + '.');
}));"""
    body = f'<div style="display: flex; flex-wrap: wrap; align-items: flex-start; width: 900px">{buttons}</div>'
    return PageContent(f'Click the "{target}" button.', body, {"target": target}, script)


def _check_click_button(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _first_clicked(expected, snapshot, "button")


# -- enter-text -----------------------------------------------------------------------------------------------------

_SUBMIT_FORM_SCRIPT = """
document.getElementById('form').addEventListener('submit', event => {
  event.preventDefault();
  hud.submit(collect());
});"""


def _build_enter_text(rng: random.Random) -> PageContent:
    word = rng.choice(WORDS)
    body = (
        '<form id="form"><div class="row"><label for="answer">Answer: </label>'
        '<input type="text" id="answer" autocomplete="off"></div>'
        '<button type="submit" id="submit">Submit</button></form>'
    )
    script = "const collect = () => ({answer: document.getElementById('answer').value});" + _SUBMIT_FORM_SCRIPT
    return PageContent(f'Type "{word}" into the text box, then press Submit.', body, {"answer": word}, script)


def _check_enter_text(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _compare_submission(expected, snapshot, ["answer"])


# -- select-option --------------------------------------------------------------------------------------------------


def _build_select_option(rng: random.Random) -> PageContent:
    options = rng.sample(COLOURS, rng.randint(5, 8))
    target = rng.choice(options)
    items = "".join(f'<option value="{_esc(option)}">{_esc(option)}</option>' for option in options)
    body = (
        f'<form id="form"><div class="row"><label for="choice">Colour:</label><br>'
        f'<select id="choice" size="{len(options)}">{items}</select></div>'
        '<button type="submit" id="submit">Submit</button></form>'
    )
    script = "const collect = () => ({choice: document.getElementById('choice').value});" + _SUBMIT_FORM_SCRIPT
    return PageContent(f'Select "{target}" in the list, then press Submit.', body, {"choice": target}, script)


def _check_select_option(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _compare_submission(expected, snapshot, ["choice"])


# -- tick-checkboxes ------------------------------------------------------------------------------------------------


def _build_tick_checkboxes(rng: random.Random) -> PageContent:
    items = rng.sample(GROCERIES, rng.randint(4, 6))
    targets = rng.sample(items, rng.randint(1, 3))
    boxes = "".join(
        f'<div class="row"><input type="checkbox" id="box-{index}" value="{_esc(item)}">'
        f'<label for="box-{index}"> {_esc(item)}</label></div>'
        for index, item in enumerate(items)
    )
    body = f'<form id="form">{boxes}<button type="submit" id="submit">Submit</button></form>'
    script = (
        "const collect = () => ({ticked: Array.from(document.querySelectorAll('input[type=checkbox]:checked'))"
        ".map(box => box.value).sort()});" + _SUBMIT_FORM_SCRIPT
    )
    goal = f"Tick {_quoted_list(targets)} and no other box, then press Submit."
    return PageContent(goal, body, {"ticked": sorted(targets)}, script)


def _check_tick_boxes(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _compare_submission(expected, snapshot, ["ticked"])


# -- scroll-to-find -------------------------------------------------------------------------------------------------


def _build_scroll_to_find(rng: random.Random) -> PageContent:
    items = rng.sample(CITIES, SCROLL_ITEMS)
    target = items[rng.randint(SCROLL_FIRST_TARGET, SCROLL_ITEMS - 1)]
    rows = "".join(
        f'<div><button class="choice" data-label="{_esc(item)}" style="width: 260px; margin: 4px 0; '
        f'text-align: left">{_esc(item)}</button></div>'
        for item in items
    )
    script = """
document.querySelectorAll('button.choice').forEach(button => button.addEventListener('click', () => {
  if (hud.once('clicked', button.dataset.label)) hud.say('You clicked ' + button.dataset.label + '.');
}));"""
    body = f'<p>Cities, in no particular order:</p><div id="list">{rows}</div>'
    return PageContent(f'Scroll down to find "{target}" and click it.', body, {"target": target}, script)


def _check_scroll_to_find(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _first_clicked(expected, snapshot, "item")


# -- log-in ---------------------------------------------------------------------------------------------------------


def _build_log_in(rng: random.Random) -> PageContent:
    username = rng.choice(FIRST_NAMES).lower() + str(rng.randint(1, 99))
    password = rng.choice(WORDS) + str(rng.randint(100, 999))
    body = (
        '<form id="form"><h2>Sign in</h2>'
        '<div class="row"><label for="username">Username</label><br>'
        '<input type="text" id="username" autocomplete="off"></div>'
        '<div class="row"><label for="password">Password</label><br>'
        '<input type="password" id="password" autocomplete="off"></div>'
        '<button type="submit" id="login">Log in</button></form>'
    )
    script = """
const collect = () => ({username: document.getElementById('username').value,
                        password: document.getElementById('password').value});
document.getElementById('form').addEventListener('submit', event => {
  event.preventDefault();
  const values = collect();
  if (hud.submit(values)) hud.say('Welcome, ' + values.username + '!');
});"""
    goal = f'Log in with the username "{username}" and the password "{password}".'
    return PageContent(goal, body, {"username": username, "password": password}, script)


def _check_log_in(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _compare_submission(expected, snapshot, ["username", "password"])


# -- edit-cell ------------------------------------------------------------------------------------------------------


def _build_edit_cell(rng: random.Random) -> PageContent:
    cells = {f"{column}{row}": str(rng.randint(1, 99)) for row in range(1, GRID_ROWS + 1) for column in GRID_COLUMNS}
    cell = rng.choice(sorted(cells))
    new_value = str(rng.choice([value for value in range(100, 1000) if str(value) != cells[cell]]))
    header = "<tr><th></th>" + "".join(f"<th>{column}</th>" for column in GRID_COLUMNS) + "</tr>"
    rows = "".join(
        f"<tr><th>{row}</th>"
        + "".join(
            f'<td><input type="text" id="cell-{column}{row}" aria-label="{column}{row}" '
            f'value="{cells[f"{column}{row}"]}" autocomplete="off" style="width: 110px"></td>'
            for column in GRID_COLUMNS
        )
        + "</tr>"
        for row in range(1, GRID_ROWS + 1)
    )
    body = f'<table id="sheet" style="border-collapse: collapse">{header}{rows}</table>'
    goal = f"Change cell {cell} from {cells[cell]} to {new_value}; leave every other cell as it is."
    return PageContent(goal, body, {"cell": cell, "value": new_value, "cells": cells})


def _check_edit_cell(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    fields = snapshot.get("fields") or {}
    wanted = {**expected["cells"], expected["cell"]: expected["value"]}
    actual = {cell: str((fields.get(f"cell-{cell}") or {}).get("value", "")).strip() for cell in wanted}
    changed = [cell for cell, value in actual.items() if value != expected["cells"][cell]]
    wrong = sorted(cell for cell, value in actual.items() if value != wanted[cell])
    info = {"wrong_cells": wrong, "changed_cells": changed}
    if not changed:
        return evaluation(0.0, False, "No cell has been changed yet", info)
    if wrong:
        details = ", ".join(f"{cell} is {actual[cell]!r} (expected {wanted[cell]!r})" for cell in wrong)
        return evaluation(0.0, True, f"Wrong cells: {details}", info)
    return evaluation(1.0, True, f"Cell {expected['cell']} is {expected['value']} and the rest is unchanged", info)


# -- triage-inbox ---------------------------------------------------------------------------------------------------


def _build_triage_inbox(rng: random.Random) -> PageContent:
    senders = rng.sample(FIRST_NAMES, 3)
    subjects = rng.sample(SUBJECTS, 6)
    # the sender to archive has two emails; the others share the remaining four
    from_sender = [senders[0], senders[0], senders[1], senders[1], senders[2], rng.choice(senders[1:])]
    rng.shuffle(from_sender)
    mails = list(zip(from_sender, subjects, strict=True))
    archive = sorted(subject for sender, subject in mails if sender == senders[0])
    star = rng.choice([subject for sender, subject in mails if sender != senders[0]])
    rows = "".join(
        f'<div class="mail row" data-subject="{_esc(subject)}" style="display: flex; align-items: center; '
        f'border-bottom: 1px solid #ccc; width: 900px"><span style="width: 140px"><b>{_esc(sender)}</b></span>'
        f'<span style="width: 380px">{_esc(subject)}</span>'
        f'<button class="star" aria-label="Star: {_esc(subject)}">&#9734; Star</button>'
        f'<button class="archive" aria-label="Archive: {_esc(subject)}">Archive</button></div>'
        for sender, subject in mails
    )
    script = """
hud.state.archived = [];
hud.state.starred = [];
document.querySelectorAll('.archive').forEach(button => button.addEventListener('click', () => {
  const row = button.closest('.mail');
  hud.state.archived.push(row.dataset.subject);
  row.remove();
  hud.say('Archived "' + row.dataset.subject + '".');
}));
document.querySelectorAll('.star').forEach(button => button.addEventListener('click', () => {
  const subject = button.closest('.mail').dataset.subject;
  const index = hud.state.starred.indexOf(subject);
  if (index < 0) { hud.state.starred.push(subject); button.textContent = '\\u2605 Starred'; }
  else { hud.state.starred.splice(index, 1); button.textContent = '\\u2606 Star'; }
}));"""
    body = f"<h2>Inbox</h2>{rows}"
    goal = f'Archive every email from {senders[0]} and star the email "{star}".'
    return PageContent(goal, body, {"archive": archive, "star": [star]}, script)


def _check_triage_inbox(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    state = snapshot.get("state") or {}
    archived = sorted(state.get("archived") or [])
    starred = sorted(state.get("starred") or [])
    info = {"archived": archived, "starred": starred, "expected_archived": expected["archive"]}
    if not archived and not starred:
        return evaluation(0.0, False, "Nothing has been archived or starred yet", info)
    problems = []
    if archived != sorted(expected["archive"]):
        problems.append(f"archived {archived}, expected {sorted(expected['archive'])}")
    if starred != sorted(expected["star"]):
        problems.append(f"starred {starred}, expected {sorted(expected['star'])}")
    if problems:
        return evaluation(0.0, True, "; ".join(problems), info)
    return evaluation(1.0, True, "The inbox is triaged as asked", info)


# -- fill-form ------------------------------------------------------------------------------------------------------


def _build_fill_form(rng: random.Random) -> PageContent:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    name, email = f"{first} {last}", f"{first.lower()}.{last.lower()}@example.com"
    plan = rng.choice(PLANS)
    radios = "".join(
        f'<input type="radio" name="plan" id="plan-{option.lower()}" value="{option}">'
        f'<label for="plan-{option.lower()}"> {option}</label> &nbsp; '
        for option in PLANS
    )
    body = (
        '<form id="form"><h2>Create an account</h2>'
        '<div class="row"><label for="name">Full name</label><br><input type="text" id="name" autocomplete="off"></div>'
        '<div class="row"><label for="email">Email</label><br><input type="email" id="email" autocomplete="off"></div>'
        f'<div class="row">Plan: {radios}</div>'
        '<div class="row"><input type="checkbox" id="terms"><label for="terms"> I accept the terms</label></div>'
        '<button type="submit" id="submit">Submit</button></form>'
    )
    script = (
        "const collect = () => ({name: document.getElementById('name').value,"
        " email: document.getElementById('email').value,"
        " plan: (document.querySelector('input[name=plan]:checked') || {value: null}).value,"
        " terms: document.getElementById('terms').checked});" + _SUBMIT_FORM_SCRIPT
    )
    goal = f"Sign up as {name} with the email {email} on the {plan} plan; accept the terms and press Submit."
    return PageContent(goal, body, {"name": name, "email": email, "plan": plan, "terms": True}, script)


def _check_fill_form(expected: Mapping[str, Any], snapshot: Snapshot) -> EvaluationResult:
    return _compare_submission(expected, snapshot, ["name", "email", "plan", "terms"])


PAGE_TASKS: dict[str, PageTaskSpec] = {
    spec.name: spec
    for spec in (
        PageTaskSpec("click-button", "Click the button with a given label.", _build_click_button, _check_click_button),
        PageTaskSpec("enter-text", "Type a word into a text box and submit.", _build_enter_text, _check_enter_text),
        PageTaskSpec("select-option", "Pick an option in a list box.", _build_select_option, _check_select_option),
        PageTaskSpec("tick-checkboxes", "Tick exactly the named boxes.", _build_tick_checkboxes, _check_tick_boxes),
        PageTaskSpec("scroll-to-find", "Scroll to an item and click it.", _build_scroll_to_find, _check_scroll_to_find),
        PageTaskSpec("log-in", "Log in with given credentials.", _build_log_in, _check_log_in),
        PageTaskSpec("edit-cell", "Change one spreadsheet cell.", _build_edit_cell, _check_edit_cell),
        PageTaskSpec("triage-inbox", "Archive and star emails.", _build_triage_inbox, _check_triage_inbox),
        PageTaskSpec("fill-form", "Fill in and submit a sign-up form.", _build_fill_form, _check_fill_form),
    )
}


def build_page_task(name: str, seed: int = 0) -> PageTask:
    """Generate task `name` with `seed`.

    Raises:
        KeyError: no own task has that name (the message lists them).
    """
    spec = PAGE_TASKS.get(name)
    if spec is None:
        raise KeyError(f"unknown task {name!r}; expected one of {', '.join(PAGE_TASKS)}")
    content = spec.build(seeded_random(name, seed))
    page = render_page(f"{name} (seed {seed})", content.goal, content.body, content.script)
    return PageTask(name=name, seed=seed, goal=content.goal, html=page, expected=content.expected)


def check_page_task(task: PageTask, snapshot: Snapshot) -> EvaluationResult:
    """Score a snapshot of the task's page against the task's expected answer."""
    result = PAGE_TASKS[task.name].check(task.expected, snapshot)
    result["info"] = {"task": task.name, "seed": task.seed, **result["info"]}
    return result
