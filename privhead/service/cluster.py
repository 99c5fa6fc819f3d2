"""Scale-out: the service's jobs on a Dask distributed cluster (``privhead serve --cluster``).

The server stays the one owner of the job queue (the SQLite store); instead of local worker
processes, a :class:`ClusterDispatcher` claims queued jobs and submits each one as one Dask task
(:func:`cluster_task`), as many at once as the cluster has worker threads. The task runs the same
:func:`~privhead.service.worker.run_job` as a local worker: it reads the uploaded bundle from the
data directory, reports progress to the store and writes checkpoints and results beside it.

**Contract with the cluster:** every Dask worker sees the server's data directory at the same
path (on one machine, the local disk; across machines, a shared filesystem mounted at the same
path) and has privhead installed with the same version. Nothing of a bundle travels through
Dask's own channels (no pickled images): a task's arguments are the service settings and a job id.

Nothing is lost: a task whose worker dies is rescheduled by Dask (``allowed-failures``) or, when
Dask gives up, put back in the queue by the dispatcher; either way its next run resumes from the
job's last checkpoint. When the server restarts, the jobs it had claimed are queued again
(:meth:`JobStore.requeue_orphans`) and a task of the old server still running sees that its claim
is gone at its next step and stops (:class:`~privhead.service.worker.WorkerOrphaned`).

Needs the ``cluster`` extra (``pip install 'privhead[cluster]'``, Dask distributed).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from privhead.errors import PrivheadError
from privhead.service.store import JobStore
from privhead.service.worker import ServiceConfig, WorkerOrphaned, run_job


def cluster_task(cfg: ServiceConfig, job_id: str, claim: str) -> str:
    """Run one claimed job on a Dask worker; returns its final state (or 'orphaned')."""
    import torch

    torch.set_num_threads(max(1, cfg.threads))
    store = JobStore(cfg.store_path)
    job = store.get(job_id)
    if job is None or job.state != "running" or job.worker != claim:
        return "orphaned"  # cancelled, or requeued by a newer server meanwhile

    def orphaned() -> bool:
        current = store.get(job_id)
        return current is None or current.worker != claim

    try:
        return run_job(store, cfg, job, orphaned)
    except WorkerOrphaned:
        return "orphaned"


def connect(address: str, n_workers: int = 1, threads: int = 1):
    """A Dask client: ``address`` is a scheduler (``tcp://host:8786``) or ``local`` (a
    LocalCluster of ``n_workers`` single-threaded worker processes on loopback)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise PrivheadError(
            f"--cluster needs the cluster extra ({exc}); install it with: "
            "pip install 'privhead[cluster]'"
        ) from None
    if address == "local":
        cluster = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            env={"OMP_NUM_THREADS": str(max(1, threads))},
        )
        return Client(cluster), cluster
    try:
        return Client(address, timeout=10), None
    except OSError as exc:
        raise PrivheadError(f"Cannot reach the Dask scheduler at {address}: {exc}") from None


@dataclass
class ClusterDispatcher:
    """Feeds the job queue to a Dask cluster (call :meth:`step` periodically)."""

    cfg: ServiceConfig
    client: object
    """A ``distributed.Client``."""
    name: str = field(default_factory=lambda: f"dask-{time.time_ns()}")
    """Prefix of this dispatcher's claims in the job store."""
    inflight: dict = field(default_factory=dict)
    """{job id: (claim, future)} of the tasks submitted and not yet finished."""

    def __post_init__(self) -> None:
        self.store = JobStore(self.cfg.store_path)

    def capacity(self) -> int:
        """Worker threads of the cluster now (at least 1, so that jobs wait for workers)."""
        return max(1, sum(self.client.nthreads().values()))

    def step(self) -> list[tuple[str, str]]:
        """Collect finished tasks, requeue failed ones, submit queued jobs; returns the
        (job id, outcome) pairs collected in this step."""
        collected = []
        for job_id, (claim, future) in list(self.inflight.items()):
            if not future.done():
                continue
            del self.inflight[job_id]
            if future.status == "finished":
                collected.append((job_id, future.result()))
            else:  # the task's workers died more often than Dask retries: resume elsewhere
                self.store.release(job_id, claim)
                collected.append((job_id, "requeued"))
        while len(self.inflight) < self.capacity():
            claim = f"{self.name}-{time.time_ns()}"
            job = self.store.claim(claim)
            if job is None:
                break
            future = self.client.submit(
                cluster_task, self.cfg, job.id, claim, key=f"privhead-{claim}", pure=False
            )
            self.inflight[job.id] = (claim, future)
        return collected

    def close(self) -> None:
        """Forget the in-flight tasks (their jobs are requeued by the next server)."""
        for _, future in self.inflight.values():
            future.release()
        self.inflight.clear()
