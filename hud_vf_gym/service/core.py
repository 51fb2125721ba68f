"""The service's state and operations behind the routes: submitting jobs, describing jobs and models, deleting.

`TrainingService` owns the settings, the job store and the runner. Routes call it and turn its answers and errors
into HTTP; it knows nothing of HTTP itself, so it can be tested and benchmarked without a server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from hud_vf_gym.errors import ConfigError
from hud_vf_gym.runtime.variables import redact
from hud_vf_gym.service.jobs import JobPaths, training_command, training_environment, write_few_shot
from hud_vf_gym.service.models import (
    Checkpoint,
    JobStatus,
    ModelInfo,
    TrainRequest,
)
from hud_vf_gym.service.runner import CommandBuilder, JobRunner, resource_keys
from hud_vf_gym.service.security import SecretFilter
from hud_vf_gym.service.settings import ServiceSettings
from hud_vf_gym.service.sources import RequestError, load_request_config, load_request_tasks, write_tasks_file
from hud_vf_gym.service.store import ACTIVE_STATES, JobRow, JobStore

__all__ = ["ConflictError", "NotFoundError", "TrainingService", "iso_time"]

LOCK_FILE = "service.lock"


class ConflictError(Exception):
    """The request clashes with the service's state (answered as 409); the message says how to resolve it."""


class NotFoundError(Exception):
    """The job or model does not exist (answered as 404)."""


def iso_time(seconds: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, None for None."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def spec_hash(spec: TrainRequest) -> str:
    """A digest of a request's values: the same request twice has the same hash."""
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def stored_spec(spec: TrainRequest) -> dict[str, Any]:
    """The request as the store keeps it: inline tasks with their secrets redacted, everything else as given."""
    values = spec.model_dump(mode="json")
    if values.get("tasks") is not None:
        values["tasks"] = redact(values["tasks"])
    return values


@dataclass(frozen=True, slots=True)
class Submitted:
    """What `submit` did: the job, and whether it was created now (False: an earlier identical request's job)."""

    job: JobRow
    created: bool


class TrainingService:
    """The running service: settings, store, runner and the secret filter; see the module docstring."""

    def __init__(
        self,
        settings: ServiceSettings,
        environ: dict[str, str] | None = None,
        build_command: CommandBuilder | None = None,
    ) -> None:
        """Take the state folder (one service per folder), open the store, build the runner.

        `build_command` replaces how a job becomes a process (default: `training_command`, train/grpo.py).

        Raises:
            ConfigError: another service already uses the state folder.
        """
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_state_dir(settings.state_dir)
        self.store = JobStore(settings.db_path)
        self.secrets = SecretFilter(settings, self.environ)
        self._filters: dict[str, SecretFilter] = {}
        self.runner = JobRunner(
            self.store,
            build_command or self._build_command,
            poll_interval_s=settings.poll_interval_s,
            paused=settings.paused,
            job_filter=self._job_filter,
            work_dir=settings.work_dir,
        )

    def _job_filter(self, job: JobRow) -> SecretFilter:
        """The secret filter of one job's log: the service's secrets and the literal ones in the job's tasks."""
        cached = self._filters.get(job.id)
        if cached is None:
            servers = []
            with contextlib.suppress(OSError, ValueError):
                for line in (
                    JobPaths(Path(job.job_dir), Path(job.output_dir)).tasks_file.read_text("utf-8").splitlines()
                ):
                    servers.append(json.loads(json.loads(line)["mcp_config"]))
            cached = self._filters[job.id] = self.secrets.with_spec({"servers": servers})
        return cached

    def close(self) -> None:
        """Stop following jobs (they keep running) and release the state folder."""
        self.runner.close()
        self.store.close()
        self._lock.close()

    # -- submitting -----------------------------------------------------------------------------------------------

    def submit(self, spec: TrainRequest, idempotency_key: str | None = None) -> Submitted:
        """Queue a training job, or return the job an identical earlier request created.

        Raises:
            RequestError: a field cannot be used (422). NotAllowedError: a command or variable is not allowed (403).
            ConflictError: the key or the model is taken by a different request (409).
        """
        digest = spec_hash(spec)
        existing = self._existing(spec, digest, idempotency_key)
        if existing is not None:
            return Submitted(existing, created=False)
        if spec.placement != "local":
            raise RequestError(
                ("placement",),
                "placement 'skypilot' runs through `hud-vf-gym train`, which this build does not have yet; "
                "use placement 'local'",
            )
        tasks = load_request_tasks(spec, self.settings)
        load_request_config(spec, self.settings)
        job_id = f"job-{uuid.uuid4().hex[:12]}"
        paths = JobPaths(self.settings.jobs_dir / job_id, self.settings.models_dir / spec.project / spec.model_name)
        write_tasks_file(tasks, paths.tasks_file)
        write_few_shot(spec, paths)
        try:
            self._insert(job_id, spec, digest, idempotency_key, paths)
        except sqlite3.IntegrityError:  # an identical request won the race: answer with its job
            shutil.rmtree(paths.folder, ignore_errors=True)
            existing = self._existing(spec, digest, idempotency_key)
            if existing is None:
                raise
            return Submitted(existing, created=False)
        self.runner.wake()
        job = self.store.job(job_id)
        if job is None:  # just inserted; only a concurrent DELETE of the database could get here
            raise NotFoundError(job_id)
        return Submitted(job, created=True)

    def _existing(self, spec: TrainRequest, digest: str, idempotency_key: str | None) -> JobRow | None:
        """The job an identical request created, None for a new request, ConflictError for a clash."""
        if idempotency_key is not None:
            job = self.store.job_by_key(idempotency_key)
            if job is not None:
                if job.spec_hash != digest:
                    raise ConflictError(
                        f"Idempotency-Key {idempotency_key!r} was used for a different request (job {job.id}); "
                        "send a new key for a new request"
                    )
                return job
        if self.store.model(spec.project, spec.model_name) is None:
            return None
        job = self.store.latest_job(spec.project, spec.model_name)
        if job is not None and job.spec_hash == digest:
            return job
        state = f"job {job.id}, {job.state}" if job else "no job"
        raise ConflictError(
            f"model {spec.project}/{spec.model_name} already exists ({state}) with other settings; choose another "
            f"model_name, DELETE /models/{spec.project}/{spec.model_name} first, or resume its job"
        )

    def _insert(self, job_id: str, spec: TrainRequest, digest: str, key: str | None, paths: JobPaths) -> None:
        now = time.time()
        with self.store.write() as connection:
            connection.execute(
                "INSERT INTO jobs (id, project, model_name, state, spec_json, spec_hash, idempotency_key, gpus_json, "
                "num_steps, output_dir, job_dir, created) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id, spec.project, spec.model_name, json.dumps(stored_spec(spec)), digest, key,
                    json.dumps(spec.gpus), spec.num_steps, str(paths.output_dir), str(paths.folder), now,
                ),
            )  # fmt: skip
            connection.execute(
                "INSERT INTO models (project, model_name, job_id, base_model, path, created) VALUES (?, ?, ?, ?, ?, ?)",
                (spec.project, spec.model_name, job_id, spec.base_model, str(paths.output_dir), now),
            )
            self.store.add_events(connection, job_id, [("state", {"state": "queued"})])

    def _build_command(self, job: JobRow, paths: JobPaths, resume: bool) -> tuple[list[str], dict[str, str]]:
        """The runner's `CommandBuilder`: the job's command and its environment (the token left out)."""
        spec = TrainRequest.model_validate({**job.spec, "tasks": None, "taskset": None})
        command = training_command(spec, paths, config=str(job.spec["config"]), resume=resume)
        environment = {name: value for name, value in self.environ.items() if value != self.settings.token}
        environment.update(training_environment(spec, self.judge_environment(spec)))
        return command, environment

    def judge_environment(self, spec: TrainRequest) -> dict[str, str]:
        """Variables telling a job's RULER reward where its judge is (see `hud_vf_gym.service.ruler_reward`)."""
        if spec.judge is not None:
            base_url, model, key_env = spec.judge.base_url, spec.judge.model, spec.judge.api_key_env
        elif self.settings.default_base_url is not None:
            base_url, model = self.settings.default_base_url, str(self.settings.default_model)
            key_env = self.settings.default_api_key_env
        else:
            base_url, model, key_env = "", "", None  # the embedded model, loaded in the training process
        values = {
            "HUD_VF_GYM_JUDGE_BASE_URL": base_url,
            "HUD_VF_GYM_JUDGE_MODEL": spec.judge_model or model,
            "HUD_VF_GYM_RULER_GROUP_SIZE": str(spec.num_generations),
        }
        if key_env:
            values["HUD_VF_GYM_JUDGE_API_KEY_ENV"] = key_env
        return values

    # -- describing -----------------------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRow:
        """The job, or NotFoundError."""
        job = self.store.job(job_id)
        if job is None:
            raise NotFoundError(f"no job {job_id!r}; GET /jobs lists the jobs")
        return job

    def latest_job(self, project: str, model_name: str) -> JobRow:
        """The newest job of a model, or NotFoundError."""
        job = self.store.latest_job(project, model_name)
        if job is None:
            raise NotFoundError(f"no training job for {project}/{model_name}; POST /train starts one")
        return job

    def queue_position(self, job: JobRow, queued: list[JobRow] | None = None) -> int | None:
        """1 + the queued jobs before this one that want any of its GPUs (or the CPU); None unless queued."""
        if job.state != "queued":
            return None
        keys = resource_keys(job.gpus)
        queued = self.store.jobs(states=("queued",)) if queued is None else queued
        ahead = [other for other in queued if (other.created, other.id) < (job.created, job.id)]
        return 1 + sum(1 for other in ahead if resource_keys(other.gpus) & keys)

    def status(self, job: JobRow, queued: list[JobRow] | None = None) -> JobStatus:
        """The job as `GET /jobs/{id}` shows it."""
        rewards = [
            [float(event.data["step"]), event.data["metrics"]["reward"]]
            for event in self.store.events(job.id, kinds=("metric",), limit=100_000)
            if "reward" in event.data["metrics"]
        ]
        checkpoints = [row["step"] for row in self.store.checkpoints(job.project, job.model_name)]
        return JobStatus(
            job_id=job.id,
            project=job.project,
            model_name=job.model_name,
            state=job.state,  # type: ignore[arg-type]  # the store only ever writes JobState values
            queue_position=self.queue_position(job, queued),
            step=job.step,
            num_steps=job.num_steps,
            progress=min(1.0, job.step / job.num_steps),
            gpus=list(job.gpus),
            attempt=job.attempt,
            created_at=iso_time(job.created) or "",
            started_at=iso_time(job.started),
            finished_at=iso_time(job.finished),
            exit_code=job.exit_code,
            error=job.error,
            metrics=job.metrics,
            rewards=rewards,
            checkpoints=checkpoints,
            output_dir=job.output_dir,
            spec=job.spec,
        )

    def statuses(self) -> list[JobStatus]:
        """Every job, newest first."""
        queued = self.store.jobs(states=("queued",))
        return [self.status(job, queued) for job in reversed(self.store.jobs())]

    def model_info(self, row: sqlite3.Row) -> ModelInfo:
        """A model row as `GET /models` shows it."""
        job = self.job(row["job_id"])
        checkpoints = self.store.checkpoints(row["project"], row["model_name"])
        return ModelInfo(
            project=row["project"],
            model_name=row["model_name"],
            base_model=row["base_model"],
            job_id=job.id,
            state=job.state,  # type: ignore[arg-type]  # the store only ever writes JobState values
            path=row["path"],
            step=job.step,
            checkpoints=[Checkpoint(step=c["step"], path=c["path"]) for c in checkpoints],
            metrics=job.metrics,
        )

    def models(self) -> list[ModelInfo]:
        """Every model."""
        return [self.model_info(row) for row in self.store.models()]

    def model_folder(self, project: str, model_name: str) -> Path:
        """The folder of a trained model, or NotFoundError."""
        row = self.store.model(project, model_name)
        if row is None:
            raise NotFoundError(f"no model {project}/{model_name}; GET /models lists the models")
        return Path(row["path"])

    # -- deleting -------------------------------------------------------------------------------------------------

    def delete_model(self, project: str, model_name: str) -> None:
        """Delete a model's files, checkpoints and row; its job stays listed.

        Raises:
            NotFoundError: there is no such model. ConflictError: its job is queued or running (cancel it first).
        """
        row = self.store.model(project, model_name)
        if row is None:
            raise NotFoundError(f"no model {project}/{model_name}; GET /models lists the models")
        job = self.store.job(row["job_id"])
        if job is not None and job.state in ACTIVE_STATES:
            raise ConflictError(
                f"model {project}/{model_name} is being trained by job {job.id} ({job.state}); "
                f"POST /jobs/{job.id}/cancel first"
            )
        with self.store.write() as connection:
            connection.execute("DELETE FROM models WHERE project = ? AND model_name = ?", (project, model_name))
            connection.execute("DELETE FROM checkpoints WHERE project = ? AND model_name = ?", (project, model_name))
        folder = Path(row["path"]).resolve()
        if self.settings.models_dir.resolve() in folder.parents:  # never delete outside the service's own folder
            shutil.rmtree(folder, ignore_errors=True)


def _lock_state_dir(state_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the state folder for the service's lifetime (released when the process dies)."""
    handle = (state_dir / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError(
            f"--state-dir {state_dir}: already used by a running hud-vf-gym serve ({holder}); stop it or choose "
            "another --state-dir"
        ) from exc
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    with contextlib.suppress(OSError):
        os.chmod(state_dir / LOCK_FILE, 0o600)
    return handle
