"""The status page at `/`: server-rendered HTML, one row per job, an SVG reward curve each; no build step.

The page is plain HTML with inline CSS and a few lines of JavaScript: for every queued or running job it opens the
job's event stream (`EventSource` on `/jobs/{id}/events`), and on a step metric or a state change it reloads the
page, at most once a second. Without JavaScript the page still shows everything as of its load.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from hud_vf_gym.service.models import JobStatus

__all__ = ["render_page", "reward_curve_svg"]

CURVE_WIDTH, CURVE_HEIGHT, CURVE_MARGIN = 240, 64, 6  # pixels: small enough for a table row


def reward_curve_svg(points: Sequence[Sequence[float]], *, title: str = "reward") -> str:
    """An SVG line chart of [step, reward] points (the y axis spans the rewards seen, at least 0 to 1)."""
    width, height, margin = CURVE_WIDTH, CURVE_HEIGHT, CURVE_MARGIN
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{html.escape(title)}">'
        f'<rect width="{width}" height="{height}" fill="#f7f7f9" stroke="#ccc"/>'
    )
    if not points:
        return head + f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" fill="#888" ' \
            'font-size="11">no steps yet</text></svg>'  # fmt: skip
    steps = [float(point[0]) for point in points]
    rewards = [float(point[1]) for point in points]
    low, high = min(0.0, *rewards), max(1.0, *rewards)
    first, last = min(steps), max(steps)

    def x(step: float) -> float:
        return margin + (width - 2 * margin) * ((step - first) / (last - first) if last > first else 0.5)

    def y(reward: float) -> float:
        return height - margin - (height - 2 * margin) * (reward - low) / (high - low)

    line = " ".join(f"{x(s):.1f},{y(r):.1f}" for s, r in zip(steps, rewards, strict=True))
    dots = "".join(f'<circle class="point" cx="{x(s):.1f}" cy="{y(r):.1f}" r="2.5" fill="#2463eb"/>'
                   for s, r in zip(steps, rewards, strict=True))  # fmt: skip
    return (
        f'{head}<polyline class="reward-line" points="{line}" fill="none" stroke="#2463eb" stroke-width="2"/>{dots}'
        f'<text x="{width - margin}" y="14" text-anchor="end" font-size="11" fill="#333">{rewards[-1]:.3f}</text>'
        "</svg>"
    )


def _row(job: JobStatus) -> str:
    state = job.state + (f" (#{job.queue_position})" if job.queue_position else "")
    reward = f"{job.metrics['reward']:.3f}" if "reward" in job.metrics else "–"
    cells = [
        f'<td><a href="/jobs/{html.escape(job.job_id)}">{html.escape(job.job_id)}</a></td>',
        f"<td>{html.escape(job.project)}/{html.escape(job.model_name)}</td>",
        f'<td class="state state-{job.state}">{html.escape(state)}</td>',
        f'<td><progress max="{job.num_steps}" value="{job.step}"></progress> {job.step}/{job.num_steps}</td>',
        f"<td>{reward}</td>",
        f"<td>{reward_curve_svg(job.rewards, title=f'reward curve of {job.job_id}')}</td>",
    ]
    active = "true" if job.state in ("queued", "running") else "false"
    return f'<tr class="job" data-job="{html.escape(job.job_id)}" data-active="{active}">{"".join(cells)}</tr>'


_STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; } td, th { padding: 6px 10px; border-bottom: 1px solid #eee; text-align: left; }
.state-running { color: #2463eb; } .state-succeeded { color: #15803d; } .state-failed { color: #b91c1c; }
.state-interrupted { color: #b45309; } .state-canceled, .state-queued { color: #666; }
"""

_SCRIPT = """
let reloadAt = 0;
function reloadSoon() {
  const wait = Math.max(0, reloadAt - Date.now());
  setTimeout(() => location.reload(), wait);
  reloadAt = Date.now() + 1000;
}
for (const row of document.querySelectorAll('tr.job[data-active="true"]')) {
  const source = new EventSource('/jobs/' + row.dataset.job + '/events?after=' + (row.dataset.seq || 0));
  source.addEventListener('metric', reloadSoon);
  source.addEventListener('state', reloadSoon);
}
"""


def render_page(jobs: Sequence[JobStatus], *, version: str, last_seqs: dict[str, int]) -> str:
    """The whole status page."""
    rows = "".join(_row(job).replace("<tr ", f'<tr data-seq="{last_seqs.get(job.job_id, 0)}" ', 1) for job in jobs)
    body = rows or '<tr><td colspan="6">No training jobs yet: POST /train starts one.</td></tr>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>hud-vf-gym training service</title>'
        f"<style>{_STYLE}</style></head><body><h1>hud-vf-gym training service</h1>"
        f'<p>version {html.escape(version)} · <a href="/docs">API docs</a> · <a href="/health">health</a></p>'
        '<table id="jobs"><thead><tr><th>job</th><th>model</th><th>state</th><th>progress</th><th>reward</th>'
        f"<th>reward curve</th></tr></thead><tbody>{body}</tbody></table><script>{_SCRIPT}</script></body></html>"
    )
