"""The status page in headless Chromium: job rows with state and progress, the SVG reward curve, live updates
from the event stream, and a screenshot in which the curve is really drawn.

The service runs in a thread (uvicorn on 127.0.0.1) with FAKE_TRAINER as its job command (conftest), so the page
shows real parsed step metrics within seconds.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hud_vf_gym.service.app import create_app
from hud_vf_gym.service.settings import ServiceSettings

from .conftest import fake_trainer_builder, free_port, kill_job_processes

playwright_sync = pytest.importorskip("playwright.sync_api", reason="the page test needs the browser extra")
uvicorn = pytest.importorskip("uvicorn", reason="the page test needs the service extra")

pytestmark = pytest.mark.timeout(600)
CURVE_BLUE = (0x24, 0x63, 0xEB)  # the stroke of page.reward_curve_svg's line
STEPS = 4
PAGE_TIMEOUT_MS = 120_000  # the job takes ~2 s; a loaded machine can be far slower


@pytest.fixture
def served(settings: ServiceSettings, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    settings = dataclasses.replace(settings, port=free_port())
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    quick, silent = fake_trainer_builder(tmp_path, step_s=0.5), fake_trainer_builder(tmp_path, step_s=3600)

    def build(job: Any, paths: Any, resume: bool) -> Any:  # the long job logs no step: the page settles
        return (silent if job.num_steps > STEPS else quick)(job, paths, resume)

    app.state.service.runner.build_command = build
    yield f"http://127.0.0.1:{settings.port}", app
    server.should_exit = True
    thread.join(timeout=30)
    kill_job_processes(settings.state_dir)


def test_page_shows_jobs_and_a_live_reward_curve(served: tuple[str, Any], tmp_path: Path) -> None:
    import httpx2
    from PIL import Image

    from hud_vf_gym.environments.browser.browser import CHROMIUM_FLAGS, find_chromium

    base_url, _ = served
    with httpx2.Client(base_url=base_url, timeout=30) as client:
        job = client.post("/train", json={"model_name": "live", "num_steps": STEPS, "num_tasks": 1}).json()["job_id"]
        other = {"model_name": "waits", "num_steps": 500, "num_tasks": 1, "gpus": [0]}  # another GPU set: runs too
        waiting = client.post("/train", json=other).json()["job_id"]
    with playwright_sync.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=find_chromium(), args=list(CHROMIUM_FLAGS), headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 500})
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(base_url + "/")
            # no reload from the test: the page's EventSource reloads it as the job's events arrive
            page.locator(f'tr[data-job="{job}"] td.state-succeeded').wait_for()
            page.wait_for_timeout(1500)  # the last event's reload (at most one a second) has happened
            page.wait_for_load_state("load")
            rows = page.locator("tr.job")
            assert rows.count() == 2
            assert page.locator(f'tr[data-job="{waiting}"] td.state').inner_text() == "running"
            row = page.locator(f'tr[data-job="{job}"]')
            assert row.locator("td").nth(3).inner_text().strip() == f"{STEPS}/{STEPS}"
            assert row.locator("svg.curve circle.point").count() == STEPS
            points = row.locator("svg.curve polyline.reward-line").get_attribute("points") or ""
            assert len(points.split()) == STEPS
            curve = row.locator("svg.curve")
            shot = Image.open(io.BytesIO(curve.screenshot())).convert("RGB")
            page.screenshot(path=str(tmp_path / "status-page.png"), full_page=True)
        finally:
            browser.close()
    blue = sum(
        1
        for pixel in shot.get_flattened_data()
        if all(abs(a - b) <= 40 for a, b in zip(pixel, CURVE_BLUE, strict=True))
    )
    assert blue >= 50, f"the reward curve has only {blue} blue pixels"  # a 2-px line across the chart is hundreds
    assert (tmp_path / "status-page.png").stat().st_size > 5_000
