"""`python -m hud_vf_gym.service.supervise EXIT_FILE -- COMMAND...`: run a job's command and record how it ended.

The service starts this small parent for every training job, in a session of its own, with stdout and stderr
going to the job's log file. It exists so that a job's exit status outlives the service: a training process keeps
running when the service is killed, and a restarted service (no longer its parent, so unable to `wait` for it)
reads the status from EXIT_FILE. No EXIT_FILE and no process means the job was killed with its supervisor: the
service marks it interrupted.

SIGTERM and SIGINT are passed on to the command. EXIT_FILE is written atomically (a temporary file, then a rename),
so a reader sees either nothing or the whole status.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

__all__ = ["main", "write_exit_status"]

USAGE = "usage: python -m hud_vf_gym.service.supervise EXIT_FILE -- COMMAND [ARG...]"


def write_exit_status(exit_file: Path, returncode: int) -> None:
    """Write `{"returncode": ..., "finished": ...}` to `exit_file` atomically."""
    temporary = exit_file.with_name(exit_file.name + ".tmp")
    temporary.write_text(json.dumps({"returncode": returncode, "finished": time.time()}), encoding="utf-8")
    os.replace(temporary, exit_file)


def main(argv: list[str]) -> int:
    """Run the command after `--`, forward termination signals to it, record its status; return 0 (2 on misuse)."""
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(USAGE + "\n")
        return 2
    exit_file = Path(argv[0])
    # Found by a restarted service when it died between starting this process and storing its pid.
    exit_file.with_suffix(".pid").write_text(str(os.getpid()), encoding="ascii")
    try:
        child = subprocess.Popen(argv[2:], stdin=subprocess.DEVNULL)  # stdout/stderr: inherited, the job's log
    except OSError as exc:
        sys.stderr.write(f"supervise: cannot start {argv[2]!r}: {exc.strerror}\n")
        write_exit_status(exit_file, 127)  # the shell's status for a command that cannot be run
        return 0

    def forward(signum: int, frame: FrameType | None) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    returncode = child.wait()  # retried after each forwarded signal (PEP 475)
    sys.stdout.flush()
    write_exit_status(exit_file, returncode)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
