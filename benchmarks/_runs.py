"""The one benchmark runner: a run spec, its execution (protect -> reconstruct -> face Chamfer)
and a record cache that a stale record can never pass.

Every benchmark that reconstructs (``bench_reconstruct.py``, ``reproduce_paper.py``) describes
its runs as :class:`RunSpec` and calls :func:`execute`. One run is:

1. ``privhead.privacy.protect.protect_dataset`` (the library's protect pipeline: the
   views.json / pose rules AND the face detectors, ``detector="auto"``), skipped by the
   full-RGB baseline, which reconstructs from the original dataset;
2. ``privhead.reconstruct.reconstruct`` with the config resolved by
   ``privhead.config.resolve_config(preset, mode, overrides, seed)``;
3. ``privhead.eval.metrics.face_chamfer`` (the official face metric) of every stage mesh.

Execution: each run is a fresh Python process (``python benchmarks/_runs.py --execute RUN_DIR``)
so that its peak RSS (``ru_maxrss``) and its torch thread pool are its own and a crash cannot
take the caller down; ``execute(..., in_process=True)`` runs it in the caller instead (the peak
RSS is then that of the whole calling process, recorded as such).

Cache: ``CACHE/<readable name>-<key>/record.json``, looked up by the key alone (the name part is
for people). The key is the SHA-256 of

- ``config_to_dict`` of the resolved ``ReconstructionConfig`` (preset, mode, seed, overrides
  applied: two override lists that resolve to the same config share a key),
- the resolved operator (``OperatorConfig(**spec.operator)`` with its defaults filled in),
- the dataset's absolute path and a content hash of its files, the neutral-view subset, the
  face detector choice and the resolved device,
- the git commit of the checkout (``git rev-parse HEAD``) and whether the tree is dirty
  (``git status --porcelain`` non-empty).

A record is served only when its key matches and the tree is clean now and was clean (and at the
same commit) from the start to the end of the run: with a dirty tree, or without git, every run
executes again, and its record is marked ``dirty`` so that it never matches later either.

Records hold measured numbers only: protect and stage seconds, mesh seconds, the face Chamfer of
every stage mesh, the view counts the run actually had, peak RSS, the machine (``platform``,
``os.cpu_count()``, the CPUs available, torch version and threads, device) and the commit.

Command line (a single run, mostly for checks):

    python benchmarks/_runs.py DATASET --preset tiny --set stage1.steps=10 --out runs/cache
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
"""The checkout whose commit identifies the code of a run."""

RECORD_VERSION = 1
"""Bumped when the record layout changes (part of the key)."""


class RunFailed(RuntimeError):
    """A run exited with an error; the message ends with the tail of its log."""


# --------------------------------------------------------------------------------------------
# The run spec
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One benchmark run: protect (unless full-RGB) then reconstruct one dataset.

    Attributes:
        dataset: dataset folder (IDR / transforms.json) with ``gt_mesh.ply`` and
            ``face_region.json`` for the face Chamfer.
        mode: two-stage | full-rgb | gradient-only | joint.
        preset: tiny | fast | default | paper.
        overrides: ``section.field=value`` config overrides (``privhead.config.apply_overrides``).
        operator: keyword arguments of ``OperatorConfig`` (e.g. ``{"resolution": 128}``); empty:
            the default operator.
        seed: run seed (None: the preset's).
        neutral_count: keep every sensitive view but only the first this many neutral views of
            views.json (paper Fig. 5); None keeps every view.
        detector: face detectors of ``protect_dataset`` (``auto`` = every installed one).
        device: auto | cpu | cuda ...
    """

    dataset: str
    mode: str = "two-stage"
    preset: str = "fast"
    overrides: tuple[str, ...] = ()
    operator: dict = field(default_factory=dict)
    seed: int | None = None
    neutral_count: int | None = None
    detector: str = "auto"
    device: str = "auto"
    all_protected: bool = False
    """Protect every view (no neutral RGB at all: the template's setting, paper Fig. 6)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", str(Path(self.dataset).resolve()))
        object.__setattr__(self, "overrides", tuple(str(o) for o in self.overrides))
        object.__setattr__(self, "operator", dict(self.operator or {}))

    def resolved_config(self):
        """The ``ReconstructionConfig`` this run trains with."""
        from privhead.config import resolve_config

        return resolve_config(self.preset, self.mode, list(self.overrides), self.seed)

    def resolved_operator(self):
        from privhead.privacy.operators import OperatorConfig

        return OperatorConfig(**self.operator)

    @property
    def label(self) -> str:
        """A readable folder-name prefix (the key makes it unique)."""
        path = Path(self.dataset)
        parts = [path.parent.name, path.name, self.mode, self.preset]
        parts += [re.sub(r"[^A-Za-z0-9.]+", "-", item) for item in self.overrides]
        parts += [f"op-{k}-{v}" for k, v in sorted(self.operator.items())]
        if self.neutral_count is not None:
            parts.append(f"neutral{self.neutral_count}")
        if self.all_protected:
            parts.append("all-protected")
        if self.seed is not None:
            parts.append(f"seed{self.seed}")
        return re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(p for p in parts if p))[:120]

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "overrides": list(self.overrides)}

    @classmethod
    def from_dict(cls, data: dict) -> RunSpec:
        return cls(**{**data, "overrides": tuple(data.get("overrides", ()))})


# --------------------------------------------------------------------------------------------
# Code state, machine, dataset fingerprint
# --------------------------------------------------------------------------------------------


def git_state(repo: Path = REPO) -> dict:
    """``{"commit": HEAD or None, "dirty": bool, "changes": porcelain lines}``.

    No git, no repository, or a ``privhead`` package imported from outside ``repo``: commit
    None and dirty True (the code of the run cannot be named, so nothing is cached).
    """
    import privhead

    package = Path(privhead.__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": True, "changes": ["(not a git checkout)"]}
    changes = [line for line in status.splitlines() if line.strip()]
    if package.parent != repo.resolve():
        changes.append(f"(privhead imported from {package}, not from {repo})")
    return {"commit": commit, "dirty": bool(changes), "changes": changes}


def _cpu_model() -> str | None:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), flags=re.MULTILINE)
        if models:
            return models[0].strip()
    return platform.processor() or None


def _memory_gib() -> float | None:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        match = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), flags=re.MULTILINE)
        if match:
            return int(match.group(1)) / 2**20
    return None


def machine_info(device: str | None = None) -> dict:
    """The machine of this process: platform, CPUs, memory, torch and its threads, device."""
    import torch

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    gpu = None
    if device and device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_available": available,
        "memory_gib": _memory_gib(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": device,
        "gpu": gpu,
    }


def describe_machine(machine: dict) -> str:
    """One line from :func:`machine_info`, e.g. for a generated page."""
    cpus = f"{machine['cpu_count']} CPUs"
    if machine.get("cpus_available") not in (None, machine["cpu_count"]):
        cpus += f" ({machine['cpus_available']} available)"
    parts = [cpus + (f", {machine['cpu_model']}" if machine.get("cpu_model") else "")]
    if machine.get("memory_gib"):
        parts.append(f"{machine['memory_gib']:.0f} GiB")
    n = machine["torch_threads"]
    threads = f"torch {machine['torch']}, {n} thread{'' if n == 1 else 's'}"
    if machine.get("omp_num_threads"):
        threads += f" (OMP_NUM_THREADS={machine['omp_num_threads']})"
    parts.append(threads)
    if machine.get("device"):
        parts.append(
            f"device {machine['device']}" + (f" ({machine['gpu']})" if machine.get("gpu") else "")
        )
    parts.append(machine.get("platform", ""))
    return ", ".join(p for p in parts if p)


@functools.lru_cache(maxsize=64)
def _fingerprint(path: str, stamp: tuple) -> str:
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(root)).encode() + b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(path: str | Path) -> str:
    """SHA-256 of every file of the dataset folder (names and contents)."""
    root = Path(path)
    if not root.is_dir():
        raise RunFailed(f"{root} is not a dataset folder.")
    stamp = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*")))
    return _fingerprint(str(root.resolve()), stamp)


# --------------------------------------------------------------------------------------------
# Keys and the cache
# --------------------------------------------------------------------------------------------


def key_material(spec: RunSpec, git: dict | None = None) -> dict:
    """Everything the record key is the hash of (see the module docstring)."""
    from privhead.config import config_to_dict
    from privhead.device import resolve_device

    git = git_state() if git is None else git
    material = {
        "record_version": RECORD_VERSION,
        "config": config_to_dict(spec.resolved_config()),
        "operator": _operator_material(spec.resolved_operator()),
        "dataset": spec.dataset,
        "dataset_sha256": dataset_fingerprint(spec.dataset),
        "seed": spec.resolved_config().seed,
        "neutral_count": spec.neutral_count,
        "detector": spec.detector if spec.mode != "full-rgb" else None,
        "device": str(resolve_device(spec.device)),
        "commit": git["commit"],
        "dirty": git["dirty"],
    }
    if spec.all_protected:  # (absent otherwise: the keys of earlier records stay valid)
        material["all_protected"] = True
    return json.loads(json.dumps(material))  # as stored in a record (tuples become lists)


def _operator_material(operator) -> dict:
    """The operator's fields for a run key; fields added later are left out at their old
    behaviour (``linear_light`` False), so the keys of earlier records stay valid."""
    from dataclasses import asdict

    fields = asdict(operator)
    if not fields.get("linear_light", False):
        fields.pop("linear_light", None)
    return fields


def run_key(material: dict) -> str:
    """The first 16 hex digits of the SHA-256 of the canonical JSON of ``material``."""
    text = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir(spec: RunSpec, cache: Path, key: str) -> Path:
    """``CACHE/<label>-<key>``; an existing folder of the same key wins (the label depends on
    how the spec was written, e.g. the order of its overrides; the key does not)."""
    existing = sorted(Path(cache).glob(f"*-{key}")) if Path(cache).is_dir() else []
    return existing[0] if existing else Path(cache) / f"{spec.label}-{key}"


def cached_record(spec: RunSpec, cache: Path) -> dict | None:
    """The current record of ``spec`` in ``cache``, or None (no record, another key, a dirty
    tree now, or a record that was itself made from a dirty tree)."""
    git = git_state()
    if git["dirty"]:
        return None
    material = key_material(spec, git)
    key = run_key(material)
    path = run_dir(spec, cache, key) / "record.json"
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except ValueError:
        return None
    if record.get("key") != key or record.get("key_material") != material:
        return None
    if record.get("dirty") or record.get("commit") != git["commit"]:
        return None
    return record


def execute(
    spec: RunSpec,
    cache: Path,
    force: bool = False,
    in_process: bool = False,
    log=print,
) -> tuple[dict, bool]:
    """The record of ``spec``: from the cache when current, else by running it.

    Args:
        spec: the run.
        cache: cache folder (one sub-folder per run key).
        force: run even when a current record exists.
        in_process: run in this process instead of a fresh one (peak RSS is then this
            process's).
        log: one-line messages.

    Returns:
        (record, whether it came from the cache).

    Raises:
        RunFailed: the run failed (its log tail is in the message).
    """
    cache = Path(cache)
    if not force:
        record = cached_record(spec, cache)
        if record is not None:
            return record, True
    git = git_state()
    material = key_material(spec, git)
    key = run_key(material)
    for stale in sorted(cache.glob(f"*-{key}")) if cache.is_dir() else []:
        shutil.rmtree(stale)  # an interrupted, dirty or forced run: start again from scratch
    folder = run_dir(spec, cache, key)
    folder.mkdir(parents=True)
    (folder / "spec.json").write_text(
        json.dumps({"spec": spec.to_dict(), "key": key, "key_material": material}, indent=2)
    )
    if git["dirty"]:
        log(f"  note: the git tree is dirty ({len(git['changes'])} changes); not cacheable")
    if in_process:
        _run_in_this_process(folder, rss_scope="calling process")
    else:
        command = [sys.executable, str(Path(__file__).resolve()), "--execute", str(folder)]
        with open(folder / "log.txt", "w") as out:
            completed = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
        if completed.returncode != 0:
            tail = (folder / "log.txt").read_text().strip().splitlines()[-8:]
            raise RunFailed(
                f"run {folder.name} failed (exit {completed.returncode}); "
                f"{folder / 'log.txt'} ends with:\n" + "\n".join(f"    {t}" for t in tail)
            )
    return json.loads((folder / "record.json").read_text()), False


# --------------------------------------------------------------------------------------------
# One run (in the process that measures it)
# --------------------------------------------------------------------------------------------


def _peak_rss_gib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**30 if sys.platform == "darwin" else peak / 2**20  # bytes vs KiB


def _view_counts(dataset) -> dict:
    views = dataset.views or {}
    return {
        "n_views": len(dataset),
        "n_sensitive_listed": len(views.get("sensitive_indices", [])) if views else None,
        "n_neutral_listed": len(views.get("neutral_indices", [])) if views else None,
        "image_size": [int(dataset.cameras.width), int(dataset.cameras.height)],
    }


def _run_in_this_process(folder: Path, rss_scope: str = "run process") -> dict:
    """Run ``folder/spec.json`` here and write ``folder/record.json`` (atomically)."""
    start = time.perf_counter()
    from privhead.data.formats import load_dataset
    from privhead.device import resolve_device
    from privhead.eval.metrics import face_chamfer
    from privhead.privacy.protect import protect_dataset
    from privhead.reconstruct import reconstruct

    saved = json.loads((folder / "spec.json").read_text())
    spec = RunSpec.from_dict(saved["spec"])
    git_start = git_state()
    cfg = spec.resolved_config()
    device = str(resolve_device(spec.device))
    dataset_root = Path(spec.dataset)
    dataset = load_dataset(dataset_root)
    views = _view_counts(dataset)
    protect = None
    source = dataset_root
    if spec.mode == "full-rgb":
        if spec.neutral_count is not None:
            raise RunFailed("neutral_count applies to the privacy modes, not full-rgb.")
        views.update(n_rgb=len(dataset), n_protected=0, protected_resolution=None)
    else:
        if spec.neutral_count is not None:
            listed = dataset.views or {}
            if "neutral_indices" not in listed or "sensitive_indices" not in listed:
                raise RunFailed(f"{dataset_root}: views.json lists no neutral / sensitive views.")
            kept = listed["neutral_indices"][: spec.neutral_count]
            dataset = dataset.subset(sorted(listed["sensitive_indices"] + kept))
            views.update(n_views_used=len(dataset))
        result = protect_dataset(
            dataset,
            folder / "bundle",
            spec.resolved_operator(),
            detector=spec.detector,
            overwrite=True,
            neutral=[] if spec.all_protected else None,
        )
        source = result.bundle
        reasons: dict[str, int] = {}
        for decision in result.decisions:
            reasons[f"{decision.kind}:{decision.reason}"] = (
                reasons.get(f"{decision.kind}:{decision.reason}", 0) + 1
            )
        protect = {
            "seconds": result.seconds,
            "detectors": result.detectors,
            "notes": result.notes,
            "decisions": reasons,
        }
        views.update(
            n_rgb=result.n_neutral,
            n_protected=result.n_protected,
            protected_resolution=list(result.working_size),
        )
    lines: list[str] = []

    def say(*parts) -> None:
        lines.append(" ".join(str(p) for p in parts))
        print(*parts, flush=True)

    recon = reconstruct(source, folder / "run", cfg, device=device, progress=False, log=say)
    peak_rss_reconstruction = _peak_rss_gib()  # before the evaluation adds its own arrays
    chamfers = {}
    region = None
    for stage, mesh in recon.stage_meshes.items():
        metrics = face_chamfer(mesh, dataset_root)
        metrics.pop("transform_pred_to_gt", None)
        chamfers[stage] = metrics
        region = metrics.get("region")
    mm_per_unit = next((m.get("mm_per_unit") for m in chamfers.values()), None)
    git_end = git_state()
    record = {
        "key": saved["key"],
        "key_material": saved["key_material"],
        "spec": spec.to_dict(),
        "commit": git_start["commit"],
        "dirty": bool(
            git_start["dirty"] or git_end["dirty"] or git_end["commit"] != git_start["commit"]
        ),
        "changes": git_start["changes"],
        "machine": machine_info(device),
        "config": saved["key_material"]["config"],
        "views": views,
        "protect": protect,
        "protect_seconds": protect["seconds"] if protect else 0.0,
        "stage_seconds": recon.stage_seconds,
        "mesh_seconds": recon.mesh_seconds,
        "reconstruct_seconds": recon.total_seconds,
        "stage_meshes": {
            stage: str(Path(p).resolve().relative_to(folder.resolve()))
            for stage, p in recon.stage_meshes.items()
        },
        "face_chamfer": chamfers,
        "face_region": region,
        "mm_per_unit": mm_per_unit,
        "peak_rss_gib": peak_rss_reconstruction,
        "peak_rss_scope": rss_scope + ", up to the end of the reconstruction",
        "peak_rss_with_evaluation_gib": _peak_rss_gib(),
        "log": lines,
        "finished_at": datetime.datetime.now().isoformat(timespec="seconds"),
        "process_seconds": time.perf_counter() - start,
    }
    partial = folder / "record.json.partial"  # a killed run never leaves a complete-looking one
    partial.write_text(json.dumps(record, indent=2))
    partial.replace(folder / "record.json")
    return record


# --------------------------------------------------------------------------------------------
# Reading records
# --------------------------------------------------------------------------------------------


def chamfer_units(record: dict | None, stage: str) -> float | None:
    """Face Chamfer of one stage's mesh, world units (None when absent)."""
    entry = (record or {}).get("face_chamfer", {}).get(stage)
    return None if entry is None else float(entry["chamfer"])


def chamfer_mm(record: dict | None, stage: str) -> float | None:
    entry = (record or {}).get("face_chamfer", {}).get(stage)
    return None if entry is None or "chamfer_mm" not in entry else float(entry["chamfer_mm"])


def pipeline_seconds(record: dict) -> float:
    """protect + every stage + the final mesh (intermediate stage meshes excluded)."""
    return (
        record["protect_seconds"] + sum(record["stage_seconds"].values()) + record["mesh_seconds"]
    )


def face_radius_mm(record: dict) -> float | None:
    """Radius of the face-region sphere of the record's dataset, in mm (when known)."""
    region, mm = record.get("face_region") or {}, record.get("mm_per_unit")
    return region["radius"] * mm if region.get("radius") and mm else None


def describe_views(record: dict) -> str:
    """What the run's dataset had and what the reconstruction side received, e.g. ``30 views
    (views.json: 20 sensitive, 10 neutral) at 64x64 px; sent: 10 RGB + 20 protected maps at
    64x64``."""
    v = record["views"]
    text = f"{v['n_views']} views"
    if v.get("n_sensitive_listed") is not None:
        text += (
            f" (views.json: {v['n_sensitive_listed']} sensitive, {v['n_neutral_listed']} neutral)"
        )
    text += f" at {v['image_size'][0]}x{v['image_size'][1]} px"
    if v.get("n_views_used") is not None:
        text += f", {v['n_views_used']} used"
    if v.get("protected_resolution"):
        w, h = v["protected_resolution"]
        text += f"; sent: {v['n_rgb']} RGB + {v['n_protected']} protected maps at {w}x{h}"
    else:
        text += f"; all {v['n_rgb']} as RGB"
    return text


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description="Run (or fetch from the cache) one benchmark run.",
        epilog="The key, the cache hit and the record's numbers are printed.",
    )
    parser.add_argument("dataset", nargs="?", type=Path, help="dataset folder")
    parser.add_argument("--mode", default="two-stage")
    parser.add_argument("--preset", default="fast")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        help="config override section.field=value (repeatable)",
    )
    parser.add_argument(
        "--operator",
        action="append",
        default=[],
        help="operator field=value, e.g. resolution=128 (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--neutral-count", type=int, default=None)
    parser.add_argument("--detector", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "cache", help="cache folder")
    parser.add_argument("--force", action="store_true", help="run even when cached")
    parser.add_argument("--in-process", action="store_true", help="no subprocess")
    parser.add_argument(
        "--key-only", action="store_true", help="print the key and whether it is cached, then stop"
    )
    parser.add_argument("--execute", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.execute is not None:
        _run_in_this_process(args.execute)
        return 0
    if args.dataset is None:
        parser.error("give a dataset folder")
    operator = {}
    for item in args.operator:
        name, _, value = item.partition("=")
        try:
            operator[name] = json.loads(value)
        except ValueError:
            operator[name] = value
    spec = RunSpec(
        str(args.dataset),
        args.mode,
        args.preset,
        tuple(args.overrides),
        operator,
        args.seed,
        args.neutral_count,
        args.detector,
        args.device,
    )
    git = git_state()
    key = run_key(key_material(spec, git))
    print(f"key {key} (commit {str(git['commit'])[:12]}, dirty {git['dirty']})")
    if args.key_only:
        cached = cached_record(spec, args.out) is not None
        print(f"{'cached' if cached else 'not cached'}: {run_dir(spec, args.out, key)}")
        return 0
    try:
        record, cached = execute(spec, args.out, force=args.force, in_process=args.in_process)
    except RunFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{'from the cache' if cached else 'ran'}: {run_dir(spec, args.out, record['key'])}")
    print(f"  {describe_views(record)}")
    print(f"  machine: {describe_machine(record['machine'])}; commit {record['commit']}")
    stages = ", ".join(f"{k} {v:.1f} s" for k, v in record["stage_seconds"].items())
    print(
        f"  protect {record['protect_seconds']:.1f} s, {stages}, "
        f"final mesh {record['mesh_seconds']:.1f} s, peak RSS {record['peak_rss_gib']:.2f} GiB"
    )
    for stage in record["face_chamfer"]:
        mm = chamfer_mm(record, stage)
        print(
            f"  face chamfer {stage}: {chamfer_units(record, stage):.5f}"
            + (f" ({mm:.2f} mm)" if mm is not None else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
