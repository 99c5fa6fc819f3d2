"""``privhead serve``: the API in this process (uvicorn), the workers in child processes or on
a Dask cluster (``--cluster``, :mod:`privhead.service.cluster`).

A supervisor thread restarts a worker that dies and puts its job back in the queue (the new
worker resumes it from its checkpoint), or feeds the cluster, and purges results past their
retention.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time

from privhead.errors import PrivheadError
from privhead.service.store import JobStore
from privhead.service.worker import ServiceConfig, purge_expired, worker_main

SUPERVISE_SECONDS = 2.0


def _start_worker(ctx, cfg: ServiceConfig, index: int):
    name = f"w{index}-{time.time_ns()}"
    process = ctx.Process(
        target=worker_main,
        args=(cfg, name),
        kwargs={"parent_pid": os.getpid()},
        name=name,
        daemon=True,
    )
    process.start()
    return name, process


def run_server(
    cfg: ServiceConfig,
    host: str,
    port: int,
    n_workers: int,
    say=print,
    cluster: str | None = None,
) -> None:
    """Serve until interrupted. ``cluster``: None (local worker processes), ``local`` (a Dask
    LocalCluster of ``n_workers`` processes on loopback) or a Dask scheduler address."""
    try:
        import uvicorn

        from privhead.service.app import create_app
    except ImportError as exc:
        raise PrivheadError(
            f"privhead serve needs the serve extra ({exc}); install it with: "
            "pip install 'privhead[serve]'"
        ) from None
    if n_workers < 1:
        raise PrivheadError("--workers must be at least 1.")
    cfg.data_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(cfg.store_path)
    requeued = store.requeue_orphans()
    if requeued:
        say(f"resuming {len(requeued)} interrupted job(s): {', '.join(requeued)}")
    purge_expired(store, cfg)
    app = create_app(cfg)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    stop = threading.Event()
    if cluster:
        from privhead.service.cluster import ClusterDispatcher, connect

        client, local_cluster = connect(cluster, n_workers, cfg.threads)
        dispatcher = ClusterDispatcher(cfg, client)
        workers: dict = {}
        engine = f"Dask cluster {client.scheduler.address} ({dispatcher.capacity()} worker(s))"

        def supervise() -> None:
            while not stop.wait(cfg.poll_seconds):
                try:
                    dispatcher.step()
                    purge_expired(store, cfg)
                except Exception as exc:  # noqa: BLE001 - a lost scheduler must not end serving
                    say(f"cluster: {type(exc).__name__}: {exc}".splitlines()[0])

    else:
        ctx = multiprocessing.get_context("spawn")
        workers = dict(_start_worker(ctx, cfg, k) for k in range(n_workers))
        engine = f"{n_workers} worker(s)"

        def supervise() -> None:
            while not stop.wait(SUPERVISE_SECONDS):
                if server.should_exit:  # shutting down (SIGTERM / Ctrl-C): restart nothing
                    return
                dead = [name for name, proc in workers.items() if not proc.is_alive()]
                for k, name in enumerate(dead):
                    workers.pop(name)
                    new_name, proc = _start_worker(ctx, cfg, k)
                    workers[new_name] = proc
                if dead:
                    store.requeue_orphans(set(workers))
                purge_expired(store, cfg)

    thread = threading.Thread(target=supervise, daemon=True)
    thread.start()
    say(f"privhead serving on http://{host}:{port} ({engine}, data in {cfg.data_dir})")
    try:
        server.run()
    finally:
        stop.set()
        for proc in workers.values():
            proc.terminate()
        for proc in workers.values():
            proc.join(timeout=10)
        if cluster:
            dispatcher.close()
            client.close()
            if local_cluster is not None:
                local_cluster.close()
