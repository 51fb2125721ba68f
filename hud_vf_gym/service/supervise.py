"""`python -m hud_vf_gym.service.supervise [--detach] EXIT_FILE -- COMMAND...`: run a job, record how it ended.

The service starts this small parent for every training job, with stdout and stderr going to the job's log file.
It exists so that a job's exit status outlives the service: a training process keeps running when the service is
killed, and the service (never its parent, so unable to `wait` for it) reads the status from EXIT_FILE. No
EXIT_FILE and no process means the job was killed with its supervisor: the service marks it interrupted.

With `--detach` the process the service started forks the supervisor into a session (and process group) of its own,
writes its pid to `EXIT_FILE` with the suffix `.pid`, and exits at once: the service reaps it immediately, and the
supervisor belongs to init from then on, like a daemon. A running job is then one process group, led by the
supervisor, whether the service that started it is alive, restarted or gone.

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

__all__ = ["main", "pid_file", "write_exit_status"]

USAGE = "usage: python -m hud_vf_gym.service.supervise [--detach] EXIT_FILE -- COMMAND [ARG...]"


def write_exit_status(exit_file: Path, returncode: int) -> None:
    """Write `{"returncode": ..., "finished": ...}` to `exit_file` atomically."""
    temporary = exit_file.with_name(exit_file.name + ".tmp")
    temporary.write_text(json.dumps({"returncode": returncode, "finished": time.time()}), encoding="utf-8")
    os.replace(temporary, exit_file)


def pid_file(exit_file: Path) -> Path:
    """Where the supervisor's pid is written: EXIT_FILE with the suffix `.pid`."""
    return exit_file.with_suffix(".pid")


def _write_pid(exit_file: Path, pid: int) -> None:
    temporary = pid_file(exit_file).with_name(pid_file(exit_file).name + ".tmp")
    temporary.write_text(str(pid), encoding="ascii")
    os.replace(temporary, pid_file(exit_file))


def main(argv: list[str]) -> int:
    """Run the command after `--`, forward termination signals to it, record its status; return 0 (2 on misuse)."""
    detach = argv[:1] == ["--detach"]
    argv = argv[1:] if detach else argv
    if len(argv) < 3 or argv[1] != "--":
        sys.stderr.write(USAGE + "\n")
        return 2
    exit_file = Path(argv[0])
    if detach:
        sys.stdout.flush()
        supervisor = os.fork()
        if supervisor:  # the launcher: hand the supervisor's pid over, and return so the service can reap us
            _write_pid(exit_file, supervisor)
            return 0
        os.setsid()  # the supervisor leads its own session and process group: cancelled with one killpg
    else:
        _write_pid(exit_file, os.getpid())
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
