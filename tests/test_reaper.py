"""The test helper that finds what a command left running (tests/reaper.py via `tests.support.run_reaping`)."""

from __future__ import annotations

import sys

from tests.support import processes_with, run_reaping


def test_reaper_reports_and_kills_a_process_the_command_left_behind(marker: str) -> None:
    # the grandchild starts its own session and outlives its parent: re-parented to the reaper, not to init
    leaver = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {marker!r}], start_new_session=True)"
    )
    completed, left = run_reaping([sys.executable, "-c", leaver], capture_output=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert len(left) == 1 and left[0].endswith(f"import time; time.sleep(120) {marker}")
    assert processes_with(marker) == []  # and it was killed


def test_reaper_reports_nothing_for_a_command_that_cleans_up(marker: str) -> None:
    tidy = (
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', 'pass', {marker!r}], check=True)\nsys.exit(3)"
    )
    completed, left = run_reaping([sys.executable, "-c", tidy], capture_output=True, timeout=120)
    assert (completed.returncode, left) == (3, [])
