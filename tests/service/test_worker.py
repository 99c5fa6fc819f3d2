"""A worker whose server is gone stops at once instead of living on as an orphan."""

import os
import threading

from privhead.service.store import JobStore
from privhead.service.worker import ServiceConfig, worker_main


def test_a_worker_of_a_dead_server_exits_and_leaves_the_queue(tmp_path):
    cfg = ServiceConfig(data_dir=tmp_path, poll_seconds=0.05)
    store = JobStore(cfg.store_path)
    job_id, _ = store.create({"preset": "tiny"})
    # The server that started this worker had another pid than our parent (it died, and the
    # worker was started while it was dying): the worker must notice and claim nothing.
    dead_server = os.getppid() + 1_000_000
    thread = threading.Thread(
        target=worker_main, args=(cfg, "orphan"), kwargs={"parent_pid": dead_server}
    )
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert store.get(job_id).state == "queued"
