"""Scale-out: the service's jobs run on a Dask LocalCluster (loopback, one worker process) and
give the same mesh as a local worker; a job whose task was lost goes back in the queue."""

import shutil
import time

import numpy as np
import pytest

from privhead.eval.metrics import load_mesh
from privhead.service.store import JobStore
from privhead.service.worker import ServiceConfig, run_job

distributed = pytest.importorskip("distributed")


def _queue_job(cfg: ServiceConfig, bundle, options) -> str:
    store = JobStore(cfg.store_path)
    job_id, _ = store.create(options)
    shutil.copytree(bundle, cfg.job_dir(job_id) / "bundle")
    return job_id


@pytest.fixture(scope="module")
def client():
    from privhead.service.cluster import connect

    client, cluster = connect("local", n_workers=1)
    yield client
    client.close()
    cluster.close()


def _run_on_cluster(tmp_path, bundle, options, client):
    from privhead.service.cluster import ClusterDispatcher

    on_cluster = ServiceConfig(data_dir=tmp_path / "cluster", poll_seconds=0.1)
    job_id = _queue_job(on_cluster, bundle, options)
    dispatcher = ClusterDispatcher(on_cluster, client)
    assert dispatcher.capacity() == 1
    outcomes, deadline = [], time.monotonic() + 120
    while not outcomes and time.monotonic() < deadline:
        outcomes = dispatcher.step()
        time.sleep(0.2)
    assert outcomes == [(job_id, "done")]
    store = JobStore(on_cluster.store_path)
    job = store.get(job_id)
    assert job.state == "done" and job.worker.startswith(dispatcher.name)
    assert job.progress["steps_done"] == job.progress["steps_total"] == 24
    assert not (on_cluster.job_dir(job_id) / "bundle").exists()  # upload deleted at the end
    return on_cluster.job_dir(job_id) / "result" / "mesh.ply"


def test_a_job_runs_on_the_cluster(tmp_path, tiny_bundle, fast_steps, client):
    mesh = load_mesh(
        _run_on_cluster(tmp_path, tiny_bundle, {"preset": "tiny", "set": fast_steps}, client)
    )
    assert len(mesh.faces) > 100 and mesh.is_watertight


@pytest.mark.slow  # a second, local run of the same job
def test_a_job_on_the_cluster_equals_a_local_run(tmp_path, tiny_bundle, fast_steps, client):
    options = {"preset": "tiny", "set": fast_steps}
    a = load_mesh(_run_on_cluster(tmp_path, tiny_bundle, options, client))
    local = ServiceConfig(data_dir=tmp_path / "local")
    local_id = _queue_job(local, tiny_bundle, options)
    local_store = JobStore(local.store_path)
    assert run_job(local_store, local, local_store.claim("local")) == "done"
    b = load_mesh(local.job_dir(local_id) / "result" / "mesh.ply")
    assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


def test_a_lost_task_is_requeued_and_a_stale_claim_stops(tmp_path, tiny_bundle, client):
    from privhead.service.cluster import ClusterDispatcher, cluster_task

    cfg = ServiceConfig(data_dir=tmp_path / "data")
    job_id = _queue_job(cfg, tiny_bundle, {"preset": "tiny"})
    dispatcher = ClusterDispatcher(cfg, client)
    store = JobStore(cfg.store_path)
    claim = "dask-dead"
    store.claim(claim)

    class Lost:  # a future whose workers all died (Dask gave up on it)
        status = "error"

        def done(self):
            return True

    dispatcher.inflight[job_id] = (claim, Lost())
    dispatcher.capacity = lambda: 0  # collect only; submit nothing
    assert dispatcher.step() == [(job_id, "requeued")]
    assert store.get(job_id).state == "queued"
    # A task whose claim was taken over (server restarted and requeued the job) does nothing.
    store.claim("dask-new")
    assert cluster_task(cfg, job_id, claim) == "orphaned"
    assert store.get(job_id).state == "running" and store.get(job_id).worker == "dask-new"
