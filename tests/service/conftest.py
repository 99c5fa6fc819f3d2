"""A tiny privacy bundle made by the project's own code, shared by the service tests."""

import socket
import threading
import time

import pytest

from privhead.data.synthetic import write_synthetic_head
from privhead.privacy.protect import protect_dataset


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("service")
    head = write_synthetic_head(root / "head", seed=2, n_views=8, resolution=32, supersample=1)
    return protect_dataset(head, root / "bundle", detector="none").bundle


FAST = ["stage1.steps=12", "stage2.steps=12", "mesh_resolution=48", "render_size=32"]
"""Config overrides of the service tests' jobs: a few seconds each."""


@pytest.fixture
def fast_steps() -> list[str]:
    return list(FAST)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """A privhead server on a free loopback port with one worker thread (no face detector)."""
    pytest.importorskip("starlette")
    uvicorn = pytest.importorskip("uvicorn")
    from privhead.service.app import create_app
    from privhead.service.worker import ServiceConfig, worker_main

    cfg = ServiceConfig(data_dir=tmp_path / "data", poll_seconds=0.1)
    port = _free_port()
    config = uvicorn.Config(
        create_app(cfg, detectors=[]), host="127.0.0.1", port=port, log_level="warning"
    )
    http = uvicorn.Server(config)
    thread = threading.Thread(target=http.run, daemon=True)
    thread.start()
    for _ in range(100):
        if http.started:
            break
        time.sleep(0.05)
    stop = threading.Event()
    worker = threading.Thread(
        target=worker_main, args=(cfg, "test-worker", None, stop), daemon=True
    )
    worker.start()
    yield f"http://127.0.0.1:{port}", cfg
    stop.set()
    http.should_exit = True
    thread.join(timeout=10)
    worker.join(timeout=60)
