"""``privhead submit``: upload a bundle to a privhead server, wait, download the results."""

from __future__ import annotations

import json
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from privhead.errors import PrivheadError

DOWNLOADS = ("mesh.ply", "mesh_stage1.ply", "renders.png", "summary.json")


def _request(method: str, url: str, data: bytes | None = None, token: str | None = None):
    headers = {"Content-Type": "application/zip"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except urllib.error.URLError as exc:
        raise PrivheadError(f"Cannot reach the server {url} ({exc.reason}).") from None


def _json(status: int, body: bytes, what: str) -> dict:
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PrivheadError(f"The server answered {what} with {status} and no JSON.") from None
    if status >= 400:
        raise PrivheadError(f"The server refused the job ({status}): {payload.get('error', '?')}")
    return payload


def submit_bundle(
    bundle,
    server: str,
    preset: str = "default",
    sets: list[str] = (),
    wait: bool = False,
    out=None,
    say=print,
    poll_seconds: float = 1.0,
    timeout_s: float = 24 * 3600.0,
) -> dict:
    """Upload ``bundle`` (a bundle folder or its zip), optionally wait and download the results.

    Returns:
        {"id", "token", "state", "files": [downloaded paths]}.
    """
    from privhead.service.archive import pack_bundle

    bundle = Path(bundle)
    server = server.rstrip("/")
    if bundle.is_dir():
        with tempfile.TemporaryDirectory() as tmp:
            data = pack_bundle(bundle, Path(tmp) / "bundle.zip").read_bytes()
    elif bundle.is_file():
        data = bundle.read_bytes()
    else:
        raise PrivheadError(f"{bundle} is neither a bundle folder nor a bundle archive.")
    query = urllib.parse.urlencode([("preset", preset), *(("set", s) for s in sets)])
    say(f"uploading {len(data)} bytes to {server}")
    payload = _json(*_request("POST", f"{server}/jobs?{query}", data), "the upload")
    job_id, token = payload["id"], payload["token"]
    say(f"job {job_id} queued (keep its token to read it later: {token})")
    result = {"id": job_id, "token": token, "state": payload.get("state"), "files": []}
    if not wait:
        return result
    from privhead.service.app import job_summary

    deadline, last = time.monotonic() + timeout_s, None
    while True:
        status = _json(*_request("GET", f"{server}/jobs/{job_id}", token=token), "a status query")
        line = job_summary(status)
        if line != last:
            say(line)
            last = line
        if status["state"] not in ("queued", "running"):
            break
        if time.monotonic() > deadline:
            raise PrivheadError(f"Job {job_id} did not finish within {timeout_s:.0f} s.")
        time.sleep(poll_seconds)
    result["state"] = status["state"]
    if status["state"] != "done":
        raise PrivheadError(f"Job {job_id} ended {status['state']}: {status.get('error')}")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        for name in DOWNLOADS:
            code, body = _request("GET", f"{server}/jobs/{job_id}/files/{name}", token=token)
            if code == 200:
                (out / name).write_bytes(body)
                result["files"].append(str(out / name))
        say(f"downloaded {', '.join(Path(f).name for f in result['files'])} into {out}")
    return result
