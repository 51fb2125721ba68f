"""One command line of a training plan: its words, the variables it adds, and the folder it runs in."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["STOP_GRACE_S", "Step", "run_step"]

STOP_GRACE_S = 60.0  # after Ctrl-C: time for the command to stop by itself (launch.sh stops its vLLM server)


@dataclass(frozen=True, slots=True)
class Step:
    """A command the plan runs (or shows): `argv` in `cwd` with `env` added to the caller's environment."""

    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    note: str = ""  # why it runs, shown after the command ("also on Ctrl-C", ...)

    def shell(self) -> str:
        """The command as one shell line (`VAR=value cmd args`); the folder is not part of it."""
        assignments = [f"{key}={shlex.quote(value)}" for key, value in self.env.items()]
        return " ".join([*assignments, shlex.join(self.argv)])


def run_step(step: Step, environ: Mapping[str, str] | None = None, *, grace_s: float = STOP_GRACE_S) -> int:
    """Run a step with this process's stdin, stdout and stderr; return its exit status.

    Ctrl-C reaches the command as well (it is in the same process group), so on KeyboardInterrupt it is given
    `grace_s` to finish its own clean-up, then SIGTERM and another `grace_s`, then SIGKILL; the KeyboardInterrupt
    then goes on to the caller, which decides what else to clean up.
    """
    env = {**(os.environ if environ is None else environ), **step.env}
    process = subprocess.Popen(list(step.argv), cwd=step.cwd, env=env)
    try:
        return process.wait()
    except KeyboardInterrupt:
        _stop(process, grace_s)
        raise


def _stop(process: subprocess.Popen[bytes], grace_s: float) -> None:
    for signal_it in (None, process.terminate, process.kill):
        if signal_it is not None:
            signal_it()
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            continue
