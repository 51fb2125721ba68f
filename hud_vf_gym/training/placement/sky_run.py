"""Run a SkyPilot task to the end: launch, stream the logs, copy the checkpoints back, tear the cluster down.

    sky launch --cluster NAME --detach-run [--yes] [--secret KEY ...] TASK.yaml   provision, set up, submit the job
    sky logs NAME                                                                 stream the job's output
    sky logs --status NAME                                                        0: the job succeeded
    rsync -avz NAME:sky_workdir/OUTPUT/ LOCAL_OUTPUT/                             checkpoints and the final model
    sky down --yes NAME                                                           unless --keep

SkyPilot writes an SSH config entry for every cluster it launches, which is what lets plain `rsync NAME:...` reach
the head node (SkyPilot 0.14 has no rsync command of its own). On Ctrl-C (KeyboardInterrupt; SIGINT also reaches
`sky` itself, which is in the same process group) the job is cancelled (`sky cancel --yes --all NAME`), what was
written so far is copied back, and the cluster is torn down unless `keep`. A second Ctrl-C during that clean-up
stops it and says which cluster may still be running. Every command's failure is reported; none is retried.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hud_vf_gym.training.placement.steps import Step, run_step

__all__ = ["INTERRUPTED", "SkyRun", "run_sky"]

INTERRUPTED = 130  # 128 + SIGINT, the shell's status for a command ended by Ctrl-C
JOB_FAILED = 1


@dataclass(frozen=True, slots=True)
class SkyRun:
    """The commands of one cloud run: which cluster, which task file, what to copy back where."""

    cluster: str
    task_yaml: Path
    remote_output: str  # relative to the remote home: sky_workdir/outputs/NAME
    local_output: Path
    secrets: tuple[str, ...] = ()
    keep: bool = False
    yes: bool = False
    sky: str = "sky"
    rsync: str = "rsync"

    def launch(self) -> Step:
        """Provision the cluster, run setup, submit the job and return (the logs are streamed separately)."""
        argv = [self.sky, "launch", "--cluster", self.cluster, "--detach-run"]
        argv += ["--yes"] if self.yes else []  # without it SkyPilot shows the offer's price and asks
        for name in self.secrets:
            argv += ["--secret", name]  # the value is read from this process's environment, never written down
        return Step((*argv, str(self.task_yaml)))

    def logs(self) -> Step:
        """Follow the job's output until it ends."""
        return Step((self.sky, "logs", self.cluster))

    def status(self) -> Step:
        """Exit 0 when the job succeeded (100 failed, 103 cancelled)."""
        return Step((self.sky, "logs", "--status", self.cluster))

    def sync_down(self) -> Step:
        """Copy the head node's output folder (checkpoints, final model) into the local one."""
        source = f"{self.cluster}:{self.remote_output.rstrip('/')}/"
        return Step((self.rsync, "-avz", source, f"{str(self.local_output).rstrip('/')}/"))

    def cancel(self) -> Step:
        """Stop the job (on Ctrl-C)."""
        return Step((self.sky, "cancel", "--yes", "--all", self.cluster), note="on Ctrl-C")

    def down(self) -> Step:
        """Tear the cluster down."""
        return Step((self.sky, "down", "--yes", self.cluster), note="also on Ctrl-C or failure; not with --keep")

    def steps(self) -> list[Step]:
        """The commands of a run that goes well, in order (for the plan)."""
        steps = [self.launch(), self.logs(), self.status(), self.sync_down()]
        return steps if self.keep else [*steps, self.down()]


def run_sky(
    run: SkyRun,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    call: Callable[[Step, Mapping[str, str] | None], int] = run_step,
) -> int:
    """Run the sequence; return 0 when the job succeeded, 130 on Ctrl-C, another status otherwise."""
    out = out or sys.stderr

    def say(message: str) -> None:
        out.write(f"hud-vf-gym train: {message}\n")
        out.flush()

    try:
        status = call(run.launch(), environ)
        if status != 0:
            say(f"`sky launch` failed (exit status {status}); its output above says why")
            return _finish(run, status, synced=False, call=call, environ=environ, say=say)
        call(run.logs(), environ)  # its status only says whether streaming worked; the job's comes next
        status = call(run.status(), environ)
        if status != 0:
            say(f"the training job did not succeed (`sky logs --status` exit status {status})")
            status = status if status > 0 else JOB_FAILED
        return _finish(run, status, synced=True, call=call, environ=environ, say=say)
    except KeyboardInterrupt:
        say(f"interrupted: stopping the job on {run.cluster} (Ctrl-C again to skip the clean-up)")
        try:
            call(run.cancel(), environ)  # the job may have been submitted before the interrupt reached us
            return _finish(run, INTERRUPTED, synced=True, call=call, environ=environ, say=say)
        except KeyboardInterrupt:
            say(f"clean-up interrupted: cluster {run.cluster} may still be running; stop it: sky down {run.cluster}")
            return INTERRUPTED


def _finish(
    run: SkyRun,
    status: int,
    *,
    synced: bool,
    call: Callable[[Step, Mapping[str, str] | None], int],
    environ: Mapping[str, str] | None,
    say: Callable[[str], None],
) -> int:
    """Copy the outputs back (when the job ran), then tear down unless `keep`; the run's status is kept.

    A finished job whose outputs could not be copied keeps its cluster (the model would be lost with it); a failed or
    interrupted one is torn down all the same, since what it wrote is rarely worth an idle cluster's price.
    """
    if synced:
        run.local_output.mkdir(parents=True, exist_ok=True)
        if call(run.sync_down(), environ) == 0:
            say(f"copied {run.remote_output} from {run.cluster} to {run.local_output}")
        elif status == 0 and not run.keep:
            say(
                f"could not copy {run.remote_output} back from {run.cluster}; keeping the cluster so the trained "
                f"model is not lost: copy it with `{run.sync_down().shell()}`, then `sky down {run.cluster}`"
            )
            return JOB_FAILED
        else:
            say(f"could not copy {run.remote_output} back from {run.cluster}")
    if run.keep:
        say(f"cluster {run.cluster} kept (--keep); stop it with: sky down {run.cluster}")
        return status
    if call(run.down(), environ) != 0:
        say(f"`sky down {run.cluster}` failed; check `sky status` and stop it by hand")
        return status or JOB_FAILED
    return status
