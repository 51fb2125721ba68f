"""Run a command as a child subreaper and report the processes it leaves running (Linux).

`python tests/reaper.py REPORT.json -- COMMAND...` runs COMMAND as a child, with this process marked as a "child
subreaper" (`prctl(PR_SET_CHILD_SUBREAPER)`): a process whose parent exits is re-parented here, not to init, so every
process COMMAND started, however deep and whether or not its parent is still alive, stays this process's descendant.
After COMMAND exits, descendants get `GRACE_S` to finish exiting (zombies are reaped); whatever still runs then was
left behind: its command lines are written to REPORT.json, and it is killed. The exit status is COMMAND's.

So a test can ask "did this command leave a server running?" about exactly the processes it started, whatever else
runs on the machine (another test session, a benchmark), instead of counting processes by name machine-wide.
`tests.support.run_reaping` is the way to call it.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
GRACE_S = 5.0  # a server told to stop by its exiting parent may need a moment to be gone


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(ctypes.get_errno())} (Linux only)")


def reap_zombies() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def running_descendants() -> list[psutil.Process]:
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.NoSuchProcess:
            continue
    return found


def main() -> int:
    report, separator, *command = sys.argv[1:]
    if separator != "--" or not command:
        raise SystemExit("usage: python tests/reaper.py REPORT.json -- COMMAND...")
    become_subreaper()
    status = subprocess.call(command)
    deadline = time.monotonic() + GRACE_S
    left = running_descendants()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        reap_zombies()
        left = running_descendants()
    lines = []
    for process in left:
        try:
            lines.append(" ".join(process.cmdline()))
            process.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(left, timeout=10)
    reap_zombies()
    with open(report, "w", encoding="utf-8") as file:
        json.dump(lines, file)
    return status


if __name__ == "__main__":
    sys.exit(main())
