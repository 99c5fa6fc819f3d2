"""The HTTP API of ``privhead serve`` (Starlette; run by uvicorn on loopback by default).

    POST   /jobs?preset=P[&set=k=v ...][&seed=N]   body: the bundle as a zip (privhead pack)
           -> 201 {"id", "token"}; 4xx {"error": one sentence} when the guard refuses it
    GET    /jobs/{id}                       -> state, stage, step, losses, ETA
    GET    /jobs/{id}/files/{name}          -> mesh.ply, mesh_stage1.ply, renders.png, ...
    DELETE /jobs/{id}                       -> cancels, erases the upload and the results
    GET    /                                -> the web page (upload, progress, mesh viewer)
    GET    /health                          -> {"ok": true, "jobs": counts}

Every job route needs the job's token (``Authorization: Bearer TOKEN``, or ``?token=`` for the
browser's downloads); an unknown job and a wrong token both answer 404, so job ids cannot be
probed. Logs name jobs and sizes, never image data.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from pathlib import Path

from privhead.errors import PrivheadError
from privhead.service.archive import GuardError, GuardLimits, unpack_bundle
from privhead.service.store import JobStore
from privhead.service.worker import RESULT_FILES, ServiceConfig

log = logging.getLogger("privhead.serve")

STATIC = Path(__file__).parent / "static"
PRESETS = ("tiny", "fast", "default", "paper")


def create_app(cfg: ServiceConfig, limits: GuardLimits = GuardLimits(), detectors=None):
    """The Starlette application over ``cfg.data_dir`` (its job store must exist or is made)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse
    from starlette.routing import Route

    store = JobStore(cfg.store_path)
    if detectors is None:
        # Loaded once, here: uploads are guarded in a thread pool, and loading (importing
        # OpenCV) in several threads at once failed ("cv2.__spec__ is None", HTTP 500).
        from privhead.privacy.faces.detect import load_detectors

        detectors = load_detectors("auto")
        if not detectors:
            raise PrivheadError(
                "The server's guard needs a face detector to check every neutral view and none "
                "is installed; install the serve extra again: pip install 'privhead[serve]'"
            )

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def token_of(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        return request.query_params.get("token")

    def owned(request: Request):
        job_id = request.path_params["job_id"]
        if not store.authorised(job_id, token_of(request)):
            return None
        return store.get(job_id)

    async def submit(request: Request):
        preset = request.query_params.get("preset", "default")
        if preset not in PRESETS:
            return error(400, f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
        sets = request.query_params.getlist("set")
        try:
            seed = int(request.query_params.get("seed", "0"))
            from privhead.config import resolve_config

            resolve_config(preset, "two-stage", sets, seed)
        except (ValueError, PrivheadError) as exc:
            return error(400, f"Bad options: {exc}")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limits.max_upload_bytes:
            return error(413, f"The upload is larger than {limits.max_upload_bytes} bytes.")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limits.max_upload_bytes:
                return error(413, f"The upload is larger than {limits.max_upload_bytes} bytes.")
        options = {"preset": preset, "set": sets, "seed": seed}
        staging = Path(cfg.data_dir) / "incoming" / uuid.uuid4().hex
        try:
            bundle = await run_in_threadpool(
                unpack_bundle, bytes(body), staging / "bundle", limits, detectors
            )
        except GuardError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            log.info("upload refused (%d bytes): %s", len(body), exc)
            return error(exc.status, str(exc))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        job_id = uuid.uuid4().hex  # the folder first, then the queue entry a worker can claim
        cfg.job_dir(job_id).parent.mkdir(parents=True, exist_ok=True)
        staging.rename(cfg.job_dir(job_id))
        job_id, token = store.create(options, job_id)
        log.info(
            "job %s queued: %d bytes, %d neutral + %d protected views, preset %s",
            job_id,
            len(body),
            len(bundle.neutral_images),
            len(bundle.protected_maps),
            preset,
        )
        return JSONResponse({"id": job_id, "token": token, "state": "queued"}, status_code=201)

    async def status(request: Request):
        job = owned(request)
        if job is None:
            return error(404, "No such job (or the token does not match).")
        return JSONResponse(job.public())

    async def download(request: Request):
        job = owned(request)
        if job is None:
            return error(404, "No such job (or the token does not match).")
        name = request.path_params["name"]
        if name not in RESULT_FILES:
            return error(404, f"{name} is not a result file ({', '.join(RESULT_FILES)}).")
        path = cfg.job_dir(job.id) / "result" / name
        if not path.is_file():
            return error(404, f"{name} is not there (job state: {job.state}).")
        return FileResponse(path)

    async def cancel(request: Request):
        job = owned(request)
        if job is None:
            return error(404, "No such job (or the token does not match).")
        store.cancel(job.id)
        shutil.rmtree(cfg.job_dir(job.id), ignore_errors=True)
        store.delete(job.id)
        log.info("job %s cancelled and erased", job.id)
        return JSONResponse({"id": job.id, "state": "deleted"})

    async def page(request: Request):
        return HTMLResponse((STATIC / "index.html").read_text())

    async def viewer_js(request: Request):
        return FileResponse(STATIC / "viewer.js", media_type="text/javascript")

    async def health(request: Request):
        return JSONResponse({"ok": True, "jobs": store.counts()})

    return Starlette(
        routes=[
            Route("/", page),
            Route("/viewer.js", viewer_js),
            Route("/health", health),
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs/{job_id}", status, methods=["GET"]),
            Route("/jobs/{job_id}", cancel, methods=["DELETE"]),
            Route("/jobs/{job_id}/files/{name}", download, methods=["GET"]),
        ]
    )


def job_summary(payload: dict) -> str:
    """One line for a status payload (the client prints it while waiting)."""
    p = payload.get("progress") or {}
    eta = payload.get("eta_seconds")
    parts = [payload.get("state", "?")]
    if p.get("stage"):
        parts.append(f"{p['stage']} step {p.get('step')}/{p.get('steps')}")
    if p.get("losses"):
        parts.append(json.dumps({k: round(v, 4) for k, v in p["losses"].items()}))
    if eta is not None:
        parts.append(f"ETA {eta:.0f} s")
    return " | ".join(parts)
