"""The service end to end on loopback: upload, queue, worker, progress, download, delete."""

import json
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from privhead.errors import PrivheadError  # noqa: E402
from privhead.service.client import submit_bundle  # noqa: E402


def test_submit_wait_download_delete(server, tiny_bundle, tmp_path, fast_steps):
    url, cfg = server
    lines = []
    result = submit_bundle(
        tiny_bundle,
        url,
        "tiny",
        fast_steps,
        wait=True,
        out=tmp_path / "out",
        say=lines.append,
        poll_seconds=0.2,
        timeout_s=300,
    )
    assert result["state"] == "done"
    assert (tmp_path / "out" / "mesh.ply").stat().st_size > 0
    assert (tmp_path / "out" / "renders.png").is_file()
    assert any("stage2 step" in line for line in lines)  # progress was shown
    # the upload is gone once the job ended; the results stay for their owner only
    job_dir = cfg.job_dir(result["id"])
    assert not (job_dir / "bundle").exists() and (job_dir / "result" / "mesh.ply").is_file()
    wrong = urllib.request.Request(
        f"{url}/jobs/{result['id']}", headers={"Authorization": "Bearer x"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(wrong)
    assert caught.value.code == 404
    delete = urllib.request.Request(
        f"{url}/jobs/{result['id']}",
        method="DELETE",
        headers={"Authorization": f"Bearer {result['token']}"},
    )
    assert json.loads(urllib.request.urlopen(delete).read())["state"] == "deleted"
    assert not job_dir.exists()


def test_refusals_reach_the_client_and_the_server_keeps_serving(server, tmp_path):
    url, cfg = server
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    for _ in range(5):
        with pytest.raises(PrivheadError, match=r"refused the job \(400\): The upload is not a"):
            submit_bundle(junk, url, "tiny", say=lambda line: None)
    with pytest.raises(PrivheadError, match="Unknown preset"):
        submit_bundle(junk, url, "huge", say=lambda line: None)
    health = json.loads(urllib.request.urlopen(f"{url}/health").read())
    assert health["ok"] and health["jobs"] == {}
    assert not list((Path(cfg.data_dir) / "incoming").glob("*"))


def test_the_web_page_and_viewer_are_served(server):
    url, _ = server
    page = urllib.request.urlopen(f"{url}/").read().decode()
    assert "/jobs?preset=" in page and "viewer.js" in page
    script = urllib.request.urlopen(f"{url}/viewer.js").read().decode()
    assert "binary_little_endian" in script and "http" not in script.replace("https", "")


def test_the_server_refuses_to_start_without_a_face_detector(tmp_path, monkeypatch):
    pytest.importorskip("starlette")
    import privhead.privacy.faces.detect as detect
    from privhead.errors import PrivheadError
    from privhead.service.app import create_app
    from privhead.service.worker import ServiceConfig

    monkeypatch.setattr(detect, "load_detectors", lambda spec="auto": [])
    with pytest.raises(PrivheadError, match="needs a face detector"):
        create_app(ServiceConfig(data_dir=tmp_path))
