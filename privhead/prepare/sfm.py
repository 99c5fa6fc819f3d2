"""Cameras by structure from motion (pycolmap: SIFT, exhaustive matching, incremental / global).

pycolmap runs in a child process (``python -m privhead.prepare.sfm CONFIG.json``): importing it
next to OpenCV / Pillow in one process has been seen to abort PNG writing (``free(): invalid
pointer``), and a child also keeps COLMAP's threads and logs out of the caller. The child writes
the best model as COLMAP text files, read back by :mod:`privhead.data.colmap`.

Settings were chosen by measurement on the project's synthetic photo shoots (see
docs/prepare.md): the first attempt uses COLMAP's SIFT defaults; when fewer than
``min_registered`` of the views register, a more sensitive attempt lowers SIFT's peak threshold,
extracts more features and loosens the mapper's inlier thresholds, and a last one runs global
mapping (GLOMAP) on the same matches. The attempt registering the most views wins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from privhead.errors import PrivheadError

CAPTURE_HINT = "pip install 'privhead[capture]'"


@dataclass(frozen=True)
class SfmAttempt:
    """One structure-from-motion attempt."""

    name: str
    peak_threshold: float = 0.0066
    """SIFT peak threshold (COLMAP default 0.0067; lower finds more features in flat images)."""
    max_features: int = 8192
    mapper: str = "incremental"
    """``incremental`` or ``global``."""
    loose: bool = False
    """Looser two-view / registration thresholds (fewer inliers accepted)."""


SFM_ATTEMPTS = (
    SfmAttempt("default"),
    SfmAttempt("sensitive", peak_threshold=0.001, max_features=16384, loose=True),
    SfmAttempt("global", peak_threshold=0.001, max_features=16384, mapper="global", loose=True),
)
"""The fallback ladder, tried in order until enough views register."""


@dataclass
class SfmConfig:
    """What the child process needs."""

    image_dir: str
    work_dir: str
    mask_dir: str | None = None
    focal_px: float | None = None
    """Focal length prior in pixels of the SfM images (EXIF), or None (COLMAP's default guess)."""
    refine_focal: bool = True
    """Bundle adjustment refines the focal length (else it stays at ``focal_px``)."""
    refine_distortion: bool = True
    """Bundle adjustment refines the radial distortion (else it stays 0: a pinhole camera)."""
    random_seed: int = 0
    """The mappers' random seed (COLMAP's default, -1, draws a new one on every run)."""
    min_registered: int = 3
    threads: int = 2
    attempts: list[dict] = field(default_factory=lambda: [asdict(a) for a in SFM_ATTEMPTS])


@dataclass
class SfmResult:
    model_dir: Path
    attempt: str
    registered: int
    attempts: list[dict]
    seconds: float


def run_sfm(cfg: SfmConfig, log=print, timeout_s: float = 3600.0) -> SfmResult:
    """Run the ladder of attempts in a child process; raise PrivheadError when nothing registers."""
    import importlib.util

    if importlib.util.find_spec("pycolmap") is None:
        raise PrivheadError(
            "privhead prepare needs pycolmap for structure from motion; install it with: "
            f"{CAPTURE_HINT}"
        )
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    config_path = work / "sfm_config.json"
    config_path.write_text(json.dumps(asdict(cfg), indent=1))
    env = {**os.environ, "GLOG_minloglevel": "2", "GLOG_logtostderr": "0"}
    start = time.perf_counter()
    with open(work / "sfm.log", "w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "privhead.prepare.sfm", str(config_path)],
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env=env,
        )
        try:
            result = read_messages(process.stdout, log, sink)
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            raise PrivheadError(f"Structure from motion ran past {timeout_s:.0f} s.") from None
    if process.returncode != 0 or result is None:
        tail = (work / "sfm.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise PrivheadError(
            f"Structure from motion failed (exit {process.returncode}): {' | '.join(tail)}"
        )
    if result["registered"] < cfg.min_registered:
        tried = ", ".join(f"{a['name']}: {a['registered']}" for a in result["attempts"])
        raise PrivheadError(
            f"Structure from motion registered at most {result['registered']} views (tried "
            f"{tried}): the photos do not overlap enough (or show unrelated scenes)."
        )
    return SfmResult(
        Path(result["model_dir"]),
        result["attempt"],
        result["registered"],
        result["attempts"],
        time.perf_counter() - start,
    )


MESSAGE_PREFIX = "privhead-sfm "
"""What starts the child's messages on its stdout (COLMAP may print there too)."""


def read_messages(lines, log, sink) -> dict | None:
    """The child's messages: ``log`` events go to ``log``, the ``result`` is returned (None if
    it sent none); other lines (COLMAP's own output on stdout) go to ``sink``, the log file."""
    result = None
    for line in lines:
        if not line.startswith(MESSAGE_PREFIX):
            sink.write(line)
            continue
        message = json.loads(line[len(MESSAGE_PREFIX) :])
        if message.get("event") == "log":
            log(message["text"])
        elif message.get("event") == "result":
            result = message
    return result


# ---------------------------------------------------------------------------------------------
# The child process (imports pycolmap only)
# ---------------------------------------------------------------------------------------------


def _emit(event: str, **data) -> None:
    print(MESSAGE_PREFIX + json.dumps({"event": event, **data}), flush=True)


def _attempt(pycolmap, cfg: dict, attempt: dict, database: Path, out: Path, fresh: bool):
    image_dir = Path(cfg["image_dir"])
    if fresh:
        database.unlink(missing_ok=True)
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = cfg["threads"]
        extraction.sift.peak_threshold = attempt["peak_threshold"]
        extraction.sift.max_num_features = attempt["max_features"]
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = "SIMPLE_RADIAL"
        if cfg.get("mask_dir"):
            reader.mask_path = cfg["mask_dir"]
        if cfg.get("focal_px"):
            from PIL import Image

            first = sorted(p for p in image_dir.iterdir() if p.is_file())[0]
            with Image.open(first) as im:
                width, height = im.size
            reader.camera_params = f"{cfg['focal_px']},{width / 2},{height / 2},0"
        pycolmap.extract_features(
            database,
            image_dir,
            camera_mode=pycolmap.CameraMode.SINGLE,
            reader_options=reader,
            extraction_options=extraction,
            device=pycolmap.Device.cpu,
        )
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = cfg["threads"]
        verification = pycolmap.TwoViewGeometryOptions()
        if attempt["loose"]:
            verification.min_num_inliers = 10
        pycolmap.match_exhaustive(
            database,
            matching_options=matching,
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )
    out.mkdir(parents=True, exist_ok=True)
    if attempt["mapper"] == "global":
        options = pycolmap.GlobalPipelineOptions()
        options.random_seed = cfg["random_seed"]
        adjustment = options.mapper.bundle_adjustment
        adjustment.refine_focal_length = cfg["refine_focal"]
        adjustment.refine_extra_params = cfg["refine_distortion"]
        reconstructions = pycolmap.global_mapping(database, image_dir, out, options)
    else:
        options = pycolmap.IncrementalPipelineOptions()
        options.num_threads = cfg["threads"]
        options.random_seed = cfg["random_seed"]
        options.ba_refine_focal_length = cfg["refine_focal"]
        options.ba_refine_extra_params = cfg["refine_distortion"]
        if attempt["loose"]:
            options.min_num_matches = 10
            options.mapper.init_min_num_inliers = 40
            options.mapper.abs_pose_min_num_inliers = 15
            options.mapper.abs_pose_min_inlier_ratio = 0.15
        reconstructions = pycolmap.incremental_mapping(database, image_dir, out, options)
    if not reconstructions:
        return None, 0
    best = max(reconstructions.values(), key=lambda r: r.num_reg_images())
    return best, int(best.num_reg_images())


def _child(config_path: str) -> int:
    cfg = json.loads(Path(config_path).read_text())
    import pycolmap

    work = Path(cfg["work_dir"])
    n_images = len([p for p in Path(cfg["image_dir"]).iterdir() if p.is_file()])
    want = max(cfg["min_registered"], int(0.9 * n_images))
    tried, best, best_name = [], None, None
    previous = None
    for attempt in cfg["attempts"]:
        features = (attempt["peak_threshold"], attempt["max_features"], attempt["loose"])
        fresh = features != previous
        previous = features
        database = work / f"database_{attempt['name'] if fresh else tried[-1]['db']}.db"
        start = time.perf_counter()
        _emit("log", text=f"structure from motion, attempt '{attempt['name']}'")
        try:
            recon, registered = _attempt(
                pycolmap, cfg, attempt, database, work / f"sparse_{attempt['name']}", fresh
            )
        except Exception as exc:  # noqa: BLE001 - a failed attempt is reported, not fatal
            recon, registered = None, 0
            _emit("log", text=f"  attempt '{attempt['name']}' failed: {exc}")
        tried.append(
            {
                "name": attempt["name"],
                "registered": registered,
                "seconds": round(time.perf_counter() - start, 1),
                "db": attempt["name"] if fresh else tried[-1]["db"],
            }
        )
        _emit("log", text=f"  registered {registered} of {n_images} views")
        if recon is not None and (best is None or registered > best.num_reg_images()):
            best, best_name = recon, attempt["name"]
        if registered >= want:
            break
    model_dir = work / "model"
    registered = 0
    if best is not None:
        model_dir.mkdir(parents=True, exist_ok=True)
        best.write_text(str(model_dir))
        registered = int(best.num_reg_images())
    _emit(
        "result",
        model_dir=str(model_dir),
        attempt=best_name,
        registered=registered,
        attempts=tried,
    )
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1]))
