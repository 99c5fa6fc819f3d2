"""Worker processes: take a queued job, reconstruct it, record progress, clean up.

One job per worker at a time. A job is the reconstruction of an uploaded bundle
(``DATA/jobs/<id>/bundle``) into ``DATA/jobs/<id>/result``; a job that was interrupted (its
worker killed) resumes from ``result/checkpoints/last.pt``. The uploaded bundle is deleted when
the job ends (unless ``keep_bundles``).
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from privhead.service.store import Job, JobStore

RESULT_FILES = ("mesh.ply", "mesh_stage1.ply", "renders.png", "summary.json", "config.json")
"""What a job's owner can download."""


class JobCancelled(Exception):
    """Raised from the progress callback when the job was cancelled."""


class WorkerOrphaned(Exception):
    """Raised from the progress callback when the server that started this worker is gone:
    the job stays 'running' with its checkpoint, and the next server resumes it."""


@dataclass
class ServiceConfig:
    """Settings shared by the server and its workers."""

    data_dir: Path
    """Jobs database, uploads and results."""
    keep_bundles: bool = False
    """Keep uploaded bundles after their job ends (default: delete them)."""
    retention_days: float = 7.0
    """Results of finished jobs are deleted after this many days."""
    poll_seconds: float = 0.5
    device: str = "cpu"
    threads: int = 1
    """torch threads per worker."""

    @property
    def store_path(self) -> Path:
        return Path(self.data_dir) / "jobs.sqlite"

    def job_dir(self, job_id: str) -> Path:
        return Path(self.data_dir) / "jobs" / job_id


def run_job(store: JobStore, cfg: ServiceConfig, job: Job, orphaned=None) -> str:
    """Reconstruct one claimed job; returns its final state.

    ``orphaned`` (optional, no arguments) is asked at every progress report; when it answers
    True the worker stops at once (:class:`WorkerOrphaned`), leaving the job to be resumed.
    """
    from privhead.config import resolve_config
    from privhead.reconstruct import reconstruct
    from privhead.train.trainer import plan_stages

    folder = cfg.job_dir(job.id)
    bundle, out = folder / "bundle", folder / "result"
    options = job.options
    rcfg = resolve_config(
        options.get("preset", "default"),
        "two-stage",
        options.get("set", []),
        options.get("seed", 0),
    )
    stages = plan_stages(rcfg)
    offsets, total = {}, 0
    for stage in stages:
        offsets[stage.name] = total
        total += stage.steps

    def on_step(stage: str, step: int, steps: int, losses: dict) -> None:
        progress = {
            "stage": stage,
            "step": step,
            "steps": steps,
            "steps_done": offsets.get(stage, 0) + step,
            "steps_total": total,
            "losses": {k: round(v, 6) for k, v in losses.items()},
        }
        if orphaned is not None and orphaned():
            raise WorkerOrphaned(job.id)
        if store.set_progress(job.id, progress) != "running":
            raise JobCancelled(job.id)

    resume = (out / "checkpoints" / "last.pt").is_file()
    try:
        reconstruct(
            bundle,
            out,
            rcfg,
            device=cfg.device,
            resume=resume,
            progress=False,
            log=lambda line: None,
            on_step=on_step,
        )
    except JobCancelled:
        shutil.rmtree(folder, ignore_errors=True)
        return "cancelled"
    except Exception as exc:  # noqa: BLE001 - any failure is the job's, reported to its owner
        store.finish(job.id, "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:500])
        state = "failed"
    else:
        store.set_progress(job.id, {**(store.get(job.id).progress or {}), "steps_done": total})
        store.finish(job.id, "done")
        state = "done"
    if not cfg.keep_bundles:
        shutil.rmtree(bundle, ignore_errors=True)
    return state


def worker_main(
    cfg: ServiceConfig,
    name: str,
    max_jobs: int | None = None,
    stop=None,
    parent_pid: int | None = None,
) -> None:
    """The worker loop: claim, run, repeat (until ``max_jobs`` or ``stop`` is set).

    ``parent_pid``: the server's pid, passed by the server (a worker started while the server
    was dying would otherwise take init for its parent and never notice); default: our parent.
    """
    import torch

    torch.set_num_threads(max(1, cfg.threads))
    store = JobStore(cfg.store_path)
    parent = os.getppid() if parent_pid is None else parent_pid

    def orphaned() -> bool:  # the server died (kill -9): stop, the next server resumes the job
        return os.getppid() != parent

    done = 0
    while (max_jobs is None or done < max_jobs) and not (stop is not None and stop.is_set()):
        if orphaned():
            return
        job = store.claim(name)
        if job is None:
            time.sleep(cfg.poll_seconds)
            continue
        try:
            run_job(store, cfg, job, orphaned)
        except WorkerOrphaned:
            return
        done += 1


def purge_expired(store: JobStore, cfg: ServiceConfig) -> list[str]:
    """Delete the results (and records) of jobs finished more than ``retention_days`` ago."""
    cutoff = time.time() - cfg.retention_days * 86400.0
    removed = store.finished_before(cutoff)
    for job_id in removed:
        shutil.rmtree(cfg.job_dir(job_id), ignore_errors=True)
        store.delete(job_id)
    return removed


def worker_name() -> str:
    return f"worker-{os.getpid()}-{time.time_ns() % 10**9}"
