"""kill -9 of the server (and its workers) during a job, restart: the job resumes and finishes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest.importorskip("uvicorn")

from privhead.service.client import submit_bundle  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(data, port):
    return subprocess.Popen(
        [sys.executable, "-m", "privhead", "serve", "--port", str(port), "--data", str(data)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _status(url, job):
    request = urllib.request.Request(
        f"{url}/jobs/{job['id']}", headers={"Authorization": f"Bearer {job['token']}"}
    )
    return json.loads(urllib.request.urlopen(request, timeout=10).read())


def _wait_up(url, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("server did not start")


@pytest.mark.slow
def test_kill_9_then_restart_resumes(tiny_bundle, tmp_path):
    port = _port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(tmp_path / "data", port)
    try:
        _wait_up(url)
        steps = ["stage1.steps=60", "stage2.steps=200", "mesh_resolution=48", "checkpoint_every=20"]
        job = submit_bundle(tiny_bundle, url, "tiny", steps, say=lambda line: None)
        deadline = time.time() + 300
        while time.time() < deadline:
            progress = _status(url, job)["progress"]
            if progress.get("stage") == "stage2" and progress.get("step", 0) >= 60:
                break
            time.sleep(0.5)
        os.killpg(server.pid, signal.SIGKILL)  # the server and its workers
        server.wait(timeout=30)
        checkpoint = tmp_path / "data" / "jobs" / job["id"] / "result" / "checkpoints" / "last.pt"
        assert checkpoint.is_file()
        server = _serve(tmp_path / "data", port)
        _wait_up(url)
        deadline = time.time() + 600
        while time.time() < deadline and _status(url, job)["state"] in ("queued", "running"):
            time.sleep(1.0)
        final = _status(url, job)
        assert final["state"] == "done", final
        assert final["attempts"] == 2  # claimed once before the kill, once after
        # ... and it equals a run that was never interrupted (same seed, device, 1 thread)
        import torch

        from privhead.config import resolve_config
        from privhead.reconstruct import reconstruct
        from privhead.train.checkpoint import read_checkpoint

        torch.set_num_threads(1)
        cfg = resolve_config("tiny", "two-stage", steps, 0)
        reconstruct(tiny_bundle, tmp_path / "plain", cfg, progress=False, log=lambda s: None)
        plain = read_checkpoint(tmp_path / "plain" / "checkpoints" / "last.pt")["field"]
        served = read_checkpoint(checkpoint)["field"]
        assert all(torch.equal(plain[k], served[k]) for k in plain)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
