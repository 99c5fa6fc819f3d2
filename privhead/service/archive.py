"""Bundle archives and the server's guard.

``pack_bundle`` writes a bundle folder as a zip (``privhead pack``). ``unpack_bundle`` is what
the server does with every upload before accepting it, in this order, stopping at the first
failure with one sentence and an HTTP status:

1. the archive: a readable zip, at most ``max_files`` entries and ``max_bytes`` uncompressed,
   no entry compressed more than ``max_ratio`` times (zip bombs), every name a plain relative
   path (no absolute path, no ``..``, no backslash) inside the bundle layout, no symbolic link
   or other special file (the zip's Unix mode bits), ``manifest.json`` at most
   ``max_manifest_bytes``;
2. the bundle: extracted into a fresh folder and read back with
   :func:`privhead.privacy.bundle.read_bundle` (format, version, manifest, sizes, cameras);
3. privacy: every face detector installed runs on every neutral RGB image; a bundle whose
   "neutral" views show a detectable face is rejected with **422** and deleted.

Nothing is unpickled (bundles hold PNG, JSON and ``.npy`` read with ``allow_pickle=False``).
"""

from __future__ import annotations

import io
import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from privhead.errors import PrivheadError


class GuardError(PrivheadError):
    """An upload the server refuses: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class GuardLimits:
    """Limits on one upload."""

    max_upload_bytes: int = 512 * 2**20
    """Size of the archive itself."""
    max_bytes: int = 1024 * 2**20
    """Total uncompressed size."""
    max_files: int = 2000
    max_ratio: float = 200.0
    """Largest allowed uncompressed / compressed size of one entry."""
    max_manifest_bytes: int = 4 * 2**20


_ENTRY = re.compile(
    r"(manifest\.json|(neutral|neutral_mask|protected|protected_valid)/[A-Za-z0-9][A-Za-z0-9._-]*)"
)


def pack_bundle(bundle_dir, out_zip) -> Path:
    """Zip a bundle folder (validated first with ``read_bundle``); returns the archive path."""
    from privhead.privacy.bundle import read_bundle

    bundle_dir, out_zip = Path(bundle_dir), Path(out_zip)
    read_bundle(bundle_dir)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_zip.with_suffix(out_zip.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(bundle_dir.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(bundle_dir).as_posix())
    tmp.replace(out_zip)
    return out_zip


def check_archive(data: bytes, limits: GuardLimits = GuardLimits()) -> list[zipfile.ZipInfo]:
    """Step 1 of the guard: the archive's structure, before anything is extracted."""
    if len(data) > limits.max_upload_bytes:
        raise GuardError(
            f"The upload is {len(data)} bytes; the limit is {limits.max_upload_bytes}.", 413
        )
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise GuardError(f"The upload is not a readable zip archive ({exc}).") from None
    if len(entries) > limits.max_files:
        raise GuardError(
            f"The archive has {len(entries)} entries; the limit is {limits.max_files}."
        )
    total = 0
    names = set()
    for info in entries:
        name = info.filename
        if info.is_dir():
            if not re.fullmatch(r"(neutral|neutral_mask|protected|protected_valid)/", name):
                raise GuardError(f"The archive holds an unexpected folder {name!r}.")
            continue
        if name.startswith(("/", "\\")) or "\\" in name or ".." in name.split("/"):
            raise GuardError(f"The archive entry {name!r} is not a plain relative path.")
        if not _ENTRY.fullmatch(name):
            raise GuardError(f"The archive entry {name!r} is not part of a privacy bundle.")
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no file type
        if kind and kind != stat.S_IFREG:
            raise GuardError(f"The archive entry {name!r} is a link or a special file.")
        if name in names:
            raise GuardError(f"The archive holds {name!r} twice.")
        names.add(name)
        if (
            info.file_size > limits.max_ratio * max(info.compress_size, 1)
            and info.file_size > 2**16
        ):
            raise GuardError(
                f"The archive entry {name!r} expands "
                f"{info.file_size / max(info.compress_size, 1):.0f} times (a decompression bomb?).",
                413,
            )
        total += info.file_size
        if total > limits.max_bytes:
            raise GuardError(f"The archive expands to more than {limits.max_bytes} bytes.", 413)
    if "manifest.json" not in names:
        raise GuardError("The archive has no manifest.json at its top level.")
    manifest = next(i for i in entries if i.filename == "manifest.json")
    if manifest.file_size > limits.max_manifest_bytes:
        raise GuardError(
            f"manifest.json is {manifest.file_size} bytes; the limit is "
            f"{limits.max_manifest_bytes}.",
            413,
        )
    return entries


def unpack_bundle(data: bytes, dest, limits: GuardLimits = GuardLimits(), detectors=None):
    """The whole guard: check, extract into ``dest`` (created, must not exist), read the bundle
    and run the face detectors on its neutral RGB views. On any failure ``dest`` is removed and
    a :class:`GuardError` raised.

    Args:
        data: the uploaded archive.
        dest: folder to create.
        limits: upload limits.
        detectors: face detectors (default: every installed one; [] = skip the face check).

    Returns:
        the :class:`~privhead.privacy.bundle.PrivacyBundle` read back.
    """
    from privhead.privacy.bundle import read_bundle

    dest = Path(dest)
    entries = check_archive(data, limits)
    dest.mkdir(parents=True)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        written = 0
        for info in entries:
            if info.is_dir():
                continue
            target = dest / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as source, open(target, "wb") as sink:
                while chunk := source.read(1 << 20):
                    written += len(chunk)
                    if written > limits.max_bytes:  # sizes in the header can lie
                        raise GuardError("The archive expands past its declared sizes.", 413)
                    sink.write(chunk)
        try:
            bundle = read_bundle(dest)
        except GuardError:
            raise
        except PrivheadError as exc:
            # The reader names files by their path here: say them relative to the upload.
            message = str(exc).replace(f"{Path(dest).resolve()}/", "").replace(f"{dest}/", "")
            raise GuardError(f"The upload is not a valid privacy bundle: {message}", 422) from None
        check_neutral_views(bundle, detectors)
        return bundle
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def check_neutral_views(bundle, detectors=None) -> None:
    """422 when any face detector finds a face in one of the bundle's neutral RGB views."""
    from privhead.privacy.faces.detect import detect_faces, load_detectors

    if detectors is None:
        detectors = load_detectors("auto")
    for k, image in enumerate(bundle.neutral_images):
        found = detect_faces(image, detectors)
        if found:
            index = bundle.neutral_indices[k]
            raise GuardError(
                f"Neutral view {index} ({bundle.names[index]}) shows a face "
                f"({found[0].describe()}): the bundle would send a face as RGB, so the server "
                "refuses it and kept nothing.",
                422,
            )
