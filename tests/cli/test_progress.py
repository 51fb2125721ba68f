"""`hud-vf-gym eval`'s progress (hud_vf_gym/cli/eval/progress.py): plain lines off a terminal, a live frame on one.

The views are fed with a fake clock first (exact text); then a real `hud-vf-gym eval` (real 2048 servers over stdio,
a real OpenAI-compatible endpoint on 127.0.0.1) runs with its stderr on a pseudo-terminal and on a pipe.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from hud_vf_gym.cli.eval.progress import LineView, LiveView, Progress, format_duration
from hud_vf_gym.testing import Play2048Policy
from tests.support import Serve

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
RUN_TIMEOUT_S = 300  # three 2048 rollouts against an instant policy; the machine may be shared


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def feed(progress: Progress, clock: FakeClock) -> None:
    """Two rollouts of a 3-rollout run (one finished by an earlier run): turns, tokens, a finish."""
    progress.rollout_started((0, 0), "2048_3x3_target_16")
    progress.rollout_started((1, 0), "2048_3x3_target_32")
    clock.now += 10
    progress.tokens(40)
    progress.turn((0, 0), 1, "left()", 0.1)
    clock.now += 10
    progress.tokens(60)
    progress.turn((1, 0), 1, "jump() [action_error]", 0.0)
    progress.rollout_finished((0, 0), reward=0.25, turns=2, error=None)


def test_progress_lines_off_a_terminal() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress(total=3, already_finished=1, max_turns=10, view=LineView(stream), clock=clock)
    feed(progress, clock)
    progress.close()
    assert stream.getvalue().splitlines() == [
        # 0.1 of this run's 2 rollouts done in 10 s: 1.9 left take 190 s
        "2048_3x3_target_16 #0: turn 1/10 left(), reward so far 0.100 | 1/3 finished | mean reward - | "
        "4.0 tokens/s | elapsed 0:10 | ETA 3:10",
        "2048_3x3_target_32 #0: turn 1/10 jump() [action_error], reward so far 0.000 | 1/3 finished | "
        "mean reward - | 5.0 tokens/s | elapsed 0:20 | ETA 3:00",
        "2048_3x3_target_16 #0: finished after 2 turn(s), reward 0.250 | 2/3 finished | mean reward 0.250 | "
        "5.0 tokens/s | elapsed 0:20 | ETA 0:16",
        "2/3 finished | mean reward 0.250 | 5.0 tokens/s | elapsed 0:20 | ETA 0:16",
    ]
    assert not ANSI.search(stream.getvalue())


def test_progress_live_frame_redraws_in_place() -> None:
    clock, stream = FakeClock(), io.StringIO()
    view = LiveView(stream, width=120, max_rows=5, clock=clock)
    progress = Progress(total=3, already_finished=1, max_turns=10, view=view, clock=clock)
    feed(progress, clock)
    frames = stream.getvalue().split("\x1b[J")  # each redraw moves up over the last frame and clears below
    assert len(frames) >= 3
    assert frames[-1].endswith("\x1b[K\n")
    last = ANSI.sub("", frames[-1]).splitlines()
    assert last == [
        "2/3 finished | mean reward 0.250 | 5.0 tokens/s | elapsed 0:20 | ETA 0:16",
        f"  {'task':<28} {'turn':>7}  {'last action':<24} {'reward':>7}",
        f"  {'2048_3x3_target_32 #0':<28} {'1/10':>7}  {'jump() [action_error]':<24} {'0.000':>7}",
        f"  {'2048_3x3_target_16 #0':<28} {'done':>7}  {'left()':<24} {'0.250':>7}",
    ]
    assert frames[-2].endswith("\x1b[4F")  # the previous frame's 4 lines are overwritten, not scrolled away


def test_progress_live_frame_fits_the_terminal() -> None:
    clock, stream = FakeClock(), io.StringIO()
    view = LiveView(stream, width=40, max_rows=1, clock=clock)
    progress = Progress(total=3, already_finished=0, max_turns=10, view=view, clock=clock)
    for index in range(3):
        progress.rollout_started((index, 0), f"a-very-long-task-identifier-{index}")
    lines = view.frame(progress)
    assert all(len(line) <= 40 for line in lines)
    assert lines[-1] == "  ... and 2 more"


def test_progress_live_frame_on_a_terminal_that_reports_no_size(monkeypatch: pytest.MonkeyPatch) -> None:
    # a pseudo-terminal whose size was never set reports 0 x 0 (as under `script`); every line was cut to nothing
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)
    controller, terminal = os.openpty()
    try:
        with os.fdopen(terminal, "w", closefd=False) as stream:
            assert os.get_terminal_size(stream.fileno()).columns == 0
            clock = FakeClock()
            view = LiveView(stream, clock=clock)
            progress = Progress(total=1, already_finished=0, max_turns=10, view=view, clock=clock)
            progress.rollout_started((0, 0), "2048_3x3_target_16")
            lines = view.frame(progress)
    finally:
        os.close(terminal)
        os.close(controller)
    assert lines[0].startswith("0/1 finished | mean reward -")
    assert lines[2].startswith("  2048_3x3_target_16 #0")


def test_progress_eta_and_durations() -> None:
    assert [format_duration(s) for s in (0, 59.6, 61, 3725)] == ["0:00", "1:00", "1:01", "1:02:05"]
    clock = FakeClock()
    progress = Progress(total=2, already_finished=0, max_turns=4, view=LineView(io.StringIO()), clock=clock)
    assert progress.eta() is None  # nothing done yet: no guess
    progress.rollout_started((0, 0), "t")
    clock.now += 30
    progress.turn((0, 0), 1, "left()", 0.0)  # 1/4 of one of two rollouts after 30 s: 7/8 of the work left
    assert progress.eta() == pytest.approx(30 * 7)


# -- a real run ---------------------------------------------------------------------------------------------------


def eval_command(base_url: str, output: Path) -> list[str]:
    return [
        sys.executable, "-m", "hud_vf_gym.cli", "eval", "--base-url", base_url, "--model", "scripted",
        "--num-tasks", "3", "--max-turns", "6", "--concurrency", "2", "--output", str(output),
    ]  # fmt: skip


def run_on_a_terminal(command: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal 100 columns wide; return the status, stdout and the terminal's bytes."""
    controller, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=terminal, cwd=cwd)
    os.close(terminal)
    chunks = []
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    stdout, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    return process.returncode, stdout.decode(), b"".join(chunks).decode(errors="replace")


@pytest.mark.usefixtures("no_child_process_left")
def test_eval_draws_a_live_frame_on_a_terminal(serve: Serve, tmp_path: Path) -> None:
    server = serve(Play2048Policy(max_moves=4))
    status, stdout, screen = run_on_a_terminal(eval_command(server.base_url, tmp_path / "out"), tmp_path)
    assert status == 0, screen[-3000:]
    frames = [ANSI.sub("", frame) for frame in screen.split("\x1b[J")]
    mid_game = re.compile(r"^  2048_\S+ #0 +[1-6]/6  (left|right|up|down)\(\)", re.MULTILINE)
    playing = [frame for frame in frames if mid_game.search(frame)]
    assert playing, screen[-3000:]  # a frame showed a rollout mid-game: turn n/6 and its last move
    assert re.search(r"tokens/s \| elapsed \d+:\d\d \| ETA \d+:\d\d", playing[0])
    assert any(frame.startswith("3/3 finished | mean reward ") for frame in frames)
    assert not ANSI.search(stdout)  # the results table on stdout stays plain
    assert "| **overall** | 3 |" in stdout


@pytest.mark.usefixtures("no_child_process_left")
def test_eval_writes_plain_lines_off_a_terminal(serve: Serve, tmp_path: Path) -> None:
    server = serve(Play2048Policy(max_moves=4))
    completed = subprocess.run(
        eval_command(server.base_url, tmp_path / "out"), capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert not ANSI.search(completed.stderr)
    turn = re.compile(r"^2048_\S+ #0: turn [1-6]/6 (left|right|up|down)\(\), reward so far \d\.\d{3} \|", re.M)
    finished = re.compile(r"^2048_\S+ #0: finished after \d turn\(s\), reward \d\.\d{3} \| (\d)/3 finished", re.M)
    assert len(turn.findall(completed.stderr)) >= 3
    assert sorted(finished.findall(completed.stderr)) == ["1", "2", "3"]
