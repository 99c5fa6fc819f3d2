"""The SQLite job store: claims are exclusive, orphans are requeued, tokens are checked."""

import threading

from privhead.service.store import JobStore


def test_lifecycle_and_tokens(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job_id, token = store.create({"preset": "tiny"})
    assert store.authorised(job_id, token)
    assert not store.authorised(job_id, "guess") and not store.authorised(job_id, None)
    assert "token" not in str(store.get(job_id).public())
    job = store.claim("w1")
    assert job.id == job_id and job.state == "running" and job.attempts == 1
    assert store.claim("w2") is None
    assert store.set_progress(job_id, {"stage": "stage1", "step": 10}) == "running"
    store.finish(job_id, "done")
    assert store.get(job_id).state == "done" and store.get(job_id).progress["step"] == 10
    assert store.counts() == {"done": 1}


def test_claims_are_exclusive_across_threads(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    ids = {store.create({"n": k})[0] for k in range(20)}
    claimed, lock = [], threading.Lock()

    def worker(name):
        local = JobStore(tmp_path / "jobs.sqlite")
        while (job := local.claim(name)) is not None:
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claimed) == sorted(ids)  # every job once, none twice


def test_orphans_are_requeued_and_cancel_stops_progress(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a, _ = store.create({})
    b, _ = store.create({})
    store.claim("dead-worker")
    store.claim("live-worker")
    assert store.requeue_orphans({"live-worker"}) == [a]
    assert store.get(a).state == "queued" and store.get(b).state == "running"
    assert store.claim("new").attempts == 2  # the resumed job counts its attempts
    store.cancel(b)
    assert store.set_progress(b, {"step": 1}) == "cancelled"


def test_release_requeues_only_the_holders_job(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a, _ = store.create({})
    store.claim("dask-1")
    assert not store.release(a, "dask-2")  # not its claim: nothing changes
    assert store.get(a).state == "running"
    assert store.release(a, "dask-1")
    assert store.get(a).state == "queued" and store.get(a).worker is None
    assert store.claim("dask-3").id == a
