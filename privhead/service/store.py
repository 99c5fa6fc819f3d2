"""The job store: one SQLite file, safe for a server process and worker processes at once.

A job moves ``queued -> running -> done | failed``, or to ``cancelled`` (``DELETE``). A job left
``running`` by a worker that died (``kill -9``, power loss) is put back in the queue by
:meth:`JobStore.requeue_orphans` when the server starts, and its next worker resumes it from
its last checkpoint (``reconstruct(..., resume=True)``). Tokens are stored as SHA-256 hashes.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

STATES = ("queued", "running", "done", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    state TEXT NOT NULL,
    options TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    started REAL,
    finished REAL,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}',
    error TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, created);
"""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass
class Job:
    id: str
    state: str
    options: dict
    created: float
    updated: float
    started: float | None
    finished: float | None
    worker: str | None
    attempts: int
    progress: dict
    error: str | None

    def public(self) -> dict:
        """What ``GET /jobs/{id}`` answers (no token, no paths)."""
        eta = None
        p = self.progress
        if self.state == "running" and p.get("steps_done") and p.get("steps_total"):
            elapsed = time.time() - (self.started or time.time())
            done, total = p["steps_done"], p["steps_total"]
            eta = elapsed / max(done, 1) * max(total - done, 0)
        return {
            "id": self.id,
            "state": self.state,
            "options": self.options,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "attempts": self.attempts,
            "progress": p,
            "eta_seconds": eta,
            "error": self.error,
        }


class JobStore:
    """Jobs in ``path`` (SQLite, WAL journal, one connection per call)."""

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self):
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    @staticmethod
    def _job(row) -> Job:
        return Job(
            id=row["id"],
            state=row["state"],
            options=json.loads(row["options"]),
            created=row["created"],
            updated=row["updated"],
            started=row["started"],
            finished=row["finished"],
            worker=row["worker"],
            attempts=row["attempts"],
            progress=json.loads(row["progress"]),
            error=row["error"],
        )

    def create(self, options: dict, job_id: str | None = None) -> tuple[str, str]:
        """A new queued job: (job id, secret token)."""
        job_id, token = job_id or uuid.uuid4().hex, secrets.token_urlsafe(24)
        now = time.time()
        with self._connect() as db:
            db.execute(
                "INSERT INTO jobs (id, token_hash, state, options, created, updated) "
                "VALUES (?, ?, 'queued', ?, ?, ?)",
                (job_id, hash_token(token), json.dumps(options), now, now),
            )
        return job_id, token

    def get(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else self._job(row)

    def authorised(self, job_id: str, token: str | None) -> bool:
        if not token:
            return False
        with self._connect() as db:
            row = db.execute("SELECT token_hash FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row is not None and secrets.compare_digest(row["token_hash"], hash_token(token))

    def claim(self, worker: str) -> Job | None:
        """Atomically take the oldest queued job for ``worker``."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id FROM jobs WHERE state = 'queued' ORDER BY created LIMIT 1"
            ).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'running', worker = ?, started = COALESCE(started, ?), "
                "updated = ?, attempts = attempts + 1 WHERE id = ?",
                (worker, now, now, row["id"]),
            )
            db.execute("COMMIT")
        return self.get(row["id"])

    def set_progress(self, job_id: str, progress: dict) -> str | None:
        """Record progress; returns the job's state (a worker stops when it is 'cancelled')."""
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET progress = ?, updated = ? WHERE id = ? AND state = 'running'",
                (json.dumps(progress), time.time(), job_id),
            )
            row = db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else row["state"]

    def finish(self, job_id: str, state: str, error: str | None = None) -> None:
        assert state in ("done", "failed")
        now = time.time()
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = ?, error = ?, finished = ?, updated = ? "
                "WHERE id = ? AND state = 'running'",
                (state, error, now, now, job_id),
            )

    def cancel(self, job_id: str) -> None:
        now = time.time()
        with self._connect() as db:
            db.execute(
                "UPDATE jobs SET state = 'cancelled', finished = ?, updated = ? WHERE id = ? "
                "AND state IN ('queued', 'running')",
                (now, now, job_id),
            )

    def delete(self, job_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))

    def release(self, job_id: str, worker: str) -> bool:
        """Put a running job back in the queue if ``worker`` still holds it (it resumes)."""
        with self._connect() as db:
            cur = db.execute(
                "UPDATE jobs SET state = 'queued', worker = NULL, updated = ? "
                "WHERE id = ? AND worker = ? AND state = 'running'",
                (time.time(), job_id, worker),
            )
        return cur.rowcount == 1

    def requeue_orphans(self, alive_workers: set[str] = frozenset()) -> list[str]:
        """Put 'running' jobs whose worker is not alive back in the queue (they resume)."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            rows = db.execute("SELECT id, worker FROM jobs WHERE state = 'running'").fetchall()
            ids = [r["id"] for r in rows if r["worker"] not in alive_workers]
            for job_id in ids:
                db.execute(
                    "UPDATE jobs SET state = 'queued', worker = NULL, updated = ? WHERE id = ?",
                    (time.time(), job_id),
                )
            db.execute("COMMIT")
        return ids

    def finished_before(self, cutoff: float) -> list[str]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE state IN ('done', 'failed', 'cancelled') "
                "AND finished < ?",
                (cutoff,),
            ).fetchall()
        return [r["id"] for r in rows]

    def counts(self) -> dict[str, int]:
        with self._connect() as db:
            rows = db.execute("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state").fetchall()
        return {r["state"]: r["n"] for r in rows}
