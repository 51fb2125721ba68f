"""The job store: one SQLite database (WAL) under the state folder, the service's only source of truth.

Tables:

- `jobs`: one row per training job: its (redacted) spec, state, process, how far its log has been read, its step.
- `events`: every job's events in order, `(job_id, seq)` unique. An event is written in the same transaction as
  what it reports (a state change, or the log bytes it came from together with the new log offset), so after a
  crash at any point an event is either stored once or will be produced again from the unread log: none is lost or
  duplicated, and `seq` is the server-sent event id clients resume from with `Last-Event-ID`.
- `checkpoints`: the saved checkpoints of each model.
- `models`: each `(project, model_name)` and the job that trains it; deleting a model removes this row, its
  checkpoints and its folder, and keeps the job's history.

Each thread gets its own connection (SQLite connections are not shared across threads); writes take the database
lock up front (`BEGIN IMMEDIATE`), so two writers never deadlock on an upgrade.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ACTIVE_STATES", "FINAL_STATES", "Event", "JobRow", "JobStore"]

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("succeeded", "failed", "canceled", "interrupted")
BUSY_TIMEOUT_MS = 10_000  # another thread holding the write lock finishes in milliseconds; this only bounds a hang

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    model_name TEXT NOT NULL,
    state TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    spec_hash TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    gpus_json TEXT NOT NULL,
    num_steps INTEGER NOT NULL,
    output_dir TEXT NOT NULL,
    job_dir TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    pid INTEGER,
    pid_start TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    log_offset INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    step_base INTEGER NOT NULL DEFAULT 0,
    metrics_json TEXT NOT NULL DEFAULT '{}',
    exit_code INTEGER,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_model ON jobs (project, model_name, created);
CREATE TABLE IF NOT EXISTS events (
    job_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    data_json TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (job_id, seq)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    project TEXT NOT NULL,
    model_name TEXT NOT NULL,
    step INTEGER NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (project, model_name, step)
);
CREATE TABLE IF NOT EXISTS models (
    project TEXT NOT NULL,
    model_name TEXT NOT NULL,
    job_id TEXT NOT NULL,
    base_model TEXT NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (project, model_name)
);
"""


@dataclass(frozen=True, slots=True)
class JobRow:
    """One row of `jobs`, typed."""

    id: str
    project: str
    model_name: str
    state: str
    spec: dict[str, Any]
    spec_hash: str
    idempotency_key: str | None
    gpus: tuple[int, ...]
    num_steps: int
    output_dir: str
    job_dir: str
    created: float
    started: float | None
    finished: float | None
    pid: int | None
    pid_start: str | None
    attempt: int
    log_offset: int
    step: int
    step_base: int
    metrics: dict[str, float]
    exit_code: int | None
    error: str | None
    cancel_requested: bool

    @classmethod
    def from_sql(cls, row: sqlite3.Row) -> JobRow:
        """Decode a `SELECT * FROM jobs` row."""
        return cls(
            id=row["id"],
            project=row["project"],
            model_name=row["model_name"],
            state=row["state"],
            spec=json.loads(row["spec_json"]),
            spec_hash=row["spec_hash"],
            idempotency_key=row["idempotency_key"],
            gpus=tuple(json.loads(row["gpus_json"])),
            num_steps=row["num_steps"],
            output_dir=row["output_dir"],
            job_dir=row["job_dir"],
            created=row["created"],
            started=row["started"],
            finished=row["finished"],
            pid=row["pid"],
            pid_start=row["pid_start"],
            attempt=row["attempt"],
            log_offset=row["log_offset"],
            step=row["step"],
            step_base=row["step_base"],
            metrics=json.loads(row["metrics_json"]),
            exit_code=row["exit_code"],
            error=row["error"],
            cancel_requested=bool(row["cancel_requested"]),
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One stored event of a job: its sequence number (the SSE id), type, payload and time."""

    job_id: str
    seq: int
    type: str
    data: dict[str, Any]
    created: float


class JobStore:
    """The SQLite job store at `path`; safe to use from several threads of one process."""

    def __init__(self, path: Path) -> None:
        """Open (creating if needed) the database in WAL mode."""
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connection().executescript(_SCHEMA)  # every statement is IF NOT EXISTS: opening twice is harmless

    # -- connections ----------------------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed transaction survives a crash
            connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self._local.connection = connection
        return connection

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one read query."""
        return self._connection().execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    # -- jobs -----------------------------------------------------------------------------------------------------

    def job(self, job_id: str) -> JobRow | None:
        """The job with this id, or None."""
        rows = self.read("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRow.from_sql(rows[0]) if rows else None

    def jobs(self, *, states: Sequence[str] | None = None) -> list[JobRow]:
        """Jobs, oldest first, optionally only those in `states`."""
        if states is None:
            rows = self.read("SELECT * FROM jobs ORDER BY created, id")
        else:
            marks = ",".join("?" * len(states))
            rows = self.read(f"SELECT * FROM jobs WHERE state IN ({marks}) ORDER BY created, id", tuple(states))
        return [JobRow.from_sql(row) for row in rows]

    def job_by_key(self, idempotency_key: str) -> JobRow | None:
        """The job submitted with this Idempotency-Key, or None."""
        rows = self.read("SELECT * FROM jobs WHERE idempotency_key = ?", (idempotency_key,))
        return JobRow.from_sql(rows[0]) if rows else None

    def latest_job(self, project: str, model_name: str) -> JobRow | None:
        """The newest job of a model, or None."""
        rows = self.read(
            "SELECT * FROM jobs WHERE project = ? AND model_name = ? ORDER BY created DESC, id DESC LIMIT 1",
            (project, model_name),
        )
        return JobRow.from_sql(rows[0]) if rows else None

    def state_counts(self) -> dict[str, int]:
        """How many jobs are in each state."""
        return {row["state"]: row["n"] for row in self.read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")}

    def update_job(self, connection: sqlite3.Connection, job_id: str, **values: Any) -> None:
        """Set columns of a job inside the caller's write transaction (`metrics` is stored as JSON)."""
        if "metrics" in values:
            values["metrics_json"] = json.dumps(values.pop("metrics"))
        assignments = ", ".join(f"{name} = ?" for name in values)
        connection.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*values.values(), job_id))

    # -- events ---------------------------------------------------------------------------------------------------

    def add_events(
        self, connection: sqlite3.Connection, job_id: str, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> int:
        """Append events to a job inside the caller's write transaction; return the last sequence number."""
        row = connection.execute("SELECT COALESCE(MAX(seq), 0) FROM events WHERE job_id = ?", (job_id,)).fetchone()
        seq = int(row[0])
        now = time.time()
        for kind, data in events:
            seq += 1
            connection.execute(
                "INSERT INTO events (job_id, seq, type, data_json, created) VALUES (?, ?, ?, ?, ?)",
                (job_id, seq, kind, json.dumps(data), now),
            )
        return seq

    def events(
        self, job_id: str, *, after: int = 0, limit: int = 1000, kinds: Sequence[str] | None = None
    ) -> list[Event]:
        """A job's events with `seq > after`, in order, at most `limit` of them."""
        sql = "SELECT * FROM events WHERE job_id = ? AND seq > ?"
        parameters: list[Any] = [job_id, after]
        if kinds is not None:
            sql += f" AND type IN ({','.join('?' * len(kinds))})"
            parameters.extend(kinds)
        rows = self.read(sql + " ORDER BY seq LIMIT ?", (*parameters, limit))
        return [Event(r["job_id"], r["seq"], r["type"], json.loads(r["data_json"]), r["created"]) for r in rows]

    def last_seq(self, job_id: str) -> int:
        """The sequence number of a job's newest event (0 when it has none)."""
        return int(self.read("SELECT COALESCE(MAX(seq), 0) AS n FROM events WHERE job_id = ?", (job_id,))[0]["n"])

    # -- models and checkpoints -----------------------------------------------------------------------------------

    def model(self, project: str, model_name: str) -> sqlite3.Row | None:
        """The model row, or None."""
        rows = self.read("SELECT * FROM models WHERE project = ? AND model_name = ?", (project, model_name))
        return rows[0] if rows else None

    def models(self) -> list[sqlite3.Row]:
        """Every model row, oldest first."""
        return self.read("SELECT * FROM models ORDER BY created, project, model_name")

    def checkpoints(self, project: str, model_name: str) -> list[sqlite3.Row]:
        """A model's checkpoints by step."""
        return self.read(
            "SELECT * FROM checkpoints WHERE project = ? AND model_name = ? ORDER BY step", (project, model_name)
        )
