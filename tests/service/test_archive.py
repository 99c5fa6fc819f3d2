"""The server's guard: every malformed upload refused with a status and one sentence."""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest

from privhead.privacy.faces.detect import FaceDetection
from privhead.service.archive import GuardError, GuardLimits, pack_bundle, unpack_bundle


def _zip(entries: dict, modes: dict | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if modes and name in modes:
                info.external_attr = modes[name] << 16
            archive.writestr(info, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def packed(tiny_bundle, tmp_path_factory):
    path = pack_bundle(tiny_bundle, tmp_path_factory.mktemp("zip") / "b.zip")
    with zipfile.ZipFile(path) as archive:
        entries = {n: archive.read(n) for n in archive.namelist()}
    return path.read_bytes(), entries


def test_a_good_bundle_passes(packed, tmp_path):
    data, _ = packed
    bundle = unpack_bundle(data, tmp_path / "ok", detectors=[])
    assert len(bundle.protected_maps) > 0 and (tmp_path / "ok" / "manifest.json").is_file()


def _manifest(entries, **changes):
    manifest = json.loads(entries["manifest.json"])
    manifest.update(changes)
    return {**entries, "manifest.json": json.dumps(manifest).encode()}


CASES = {
    "truncated": (lambda d, e: d[: len(d) // 2], 400, "not a readable zip"),
    "not a zip": (lambda d, e: b"hello" * 100, 400, "not a readable zip"),
    "traversal": (lambda d, e: _zip({**e, "../evil.png": b"x"}), 400, "plain relative path"),
    "absolute": (lambda d, e: _zip({**e, "/etc/passwd": b"x"}), 400, "plain relative path"),
    "stray file": (lambda d, e: _zip({**e, "notes.txt": b"x"}), 400, "not part of a privacy"),
    "symlink": (
        lambda d, e: _zip(
            {**e, "neutral/link.png": b"/etc/passwd"}, {"neutral/link.png": stat.S_IFLNK | 0o777}
        ),
        400,
        "link or a special file",
    ),
    "bomb": (lambda d, e: _zip({**e, "protected/bomb.png": b"\0" * (20 * 2**20)}), 413, "bomb"),
    "wrong version": (lambda d, e: _zip(_manifest(e, version=99)), 422, "version 99"),
    "huge manifest": (
        lambda d, e: _zip(_manifest(e, padding=os.urandom(5 * 2**19).hex())),
        413,
        "manifest.json is",
    ),
    "no manifest": (
        lambda d, e: _zip({k: v for k, v in e.items() if k != "manifest.json"}),
        400,
        "no manifest",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_uploads_are_refused(packed, tmp_path, case):
    data, entries = packed
    make, status, message = CASES[case]
    upload = make(data, entries)
    with pytest.raises(GuardError, match=message) as caught:
        unpack_bundle(upload, tmp_path / "dest", detectors=[])
    assert caught.value.status == status
    assert not (tmp_path / "dest").exists()


def test_too_many_files(packed, tmp_path):
    _, entries = packed
    many = {**entries, **{f"neutral/x{k}.png": b"x" for k in range(30)}}
    with pytest.raises(GuardError, match="entries; the limit") as caught:
        unpack_bundle(_zip(many), tmp_path / "d", GuardLimits(max_files=20), detectors=[])
    assert caught.value.status == 400


class _FiresOnEverything:
    name = "fake"

    def detect(self, image):
        return [FaceDetection(box=(1.0, 1.0, 5.0, 5.0), score=0.99, detector="fake")]


def test_a_face_in_a_neutral_view_is_422_and_nothing_stays(packed, tmp_path):
    data, _ = packed
    with pytest.raises(GuardError, match="shows a face") as caught:
        unpack_bundle(data, tmp_path / "dest", detectors=[_FiresOnEverything()])
    assert caught.value.status == 422
    assert not (tmp_path / "dest").exists()
    assert np.all([not p.exists() for p in tmp_path.iterdir()])
