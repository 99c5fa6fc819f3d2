"""prepare's inputs and its refusals: one sentence, exit 1, nothing half-written."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from privhead.cli import app
from privhead.errors import PrivheadError
from privhead.prepare import PrepareConfig, prepare_dataset
from privhead.prepare.inputs import read_captures, sharpness


def _photo(path, size=(40, 30), seed=0, orientation=None):
    rng = np.random.default_rng(seed)
    pil = Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8))
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0xA405] = 28
    pil.save(path, exif=exif)


def test_exif_orientation_and_focal(tmp_path):
    for k in range(3):
        _photo(tmp_path / f"p{k}.jpg", orientation=6)  # rotated 90 degrees: stored 40x30
    (tmp_path / "notes.txt").write_text("not a photo")
    captures = read_captures(tmp_path)
    assert captures.images.shape == (3, 40, 30, 3)  # upright: 30 wide, 40 high
    assert captures.focal_35mm == [28.0, 28.0, 28.0]
    assert captures.names == ["p0", "p1", "p2"]
    assert ("notes.txt", "not a photo") in captures.skipped


def test_photos_of_several_sizes_are_refused(tmp_path):
    _photo(tmp_path / "a.jpg", size=(40, 30))
    _photo(tmp_path / "b.jpg", size=(30, 40))
    with pytest.raises(PrivheadError, match="different sizes"):
        read_captures(tmp_path)


def test_sharpness_prefers_detail():
    rng = np.random.default_rng(0)
    sharp = rng.integers(0, 255, size=(32, 32, 3)).astype(np.uint8)
    flat = np.full((32, 32, 3), 128, dtype=np.uint8)
    assert sharpness(sharp) > sharpness(flat) == 0.0


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if ".prepare-" in p.name)


@pytest.mark.parametrize(
    "make, message",
    [
        ("two_photos", "needs at least 8"),
        ("text_file", "neither a folder of photos nor a video"),
        ("bad_video", "cannot be opened as a video|no decodable frame"),
        ("no_photos", "no readable photo"),
        ("missing", "does not exist"),
    ],
)
def test_refusals_write_nothing(tmp_path, make, message):
    source = tmp_path / "in"
    if make == "two_photos":
        source.mkdir()
        for k in range(2):
            _photo(source / f"p{k}.jpg", seed=k)
    elif make == "text_file":
        source = tmp_path / "in.txt"
        source.write_text("hello")
    elif make == "bad_video":
        source = tmp_path / "clip.mp4"
        source.write_bytes(b"\x00\x01 this is not a video" * 10)
    elif make == "no_photos":
        source.mkdir()
        (source / "a.txt").write_text("x")
    out = tmp_path / "out" / "dataset"
    with pytest.raises(PrivheadError, match=message):
        prepare_dataset(source, out)
    assert not out.exists()
    if out.parent.exists():
        assert _leftovers(out.parent) == []
    result = CliRunner().invoke(app, ["prepare", str(source), str(out)])
    assert result.exit_code == 1
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not out.exists()


def test_unrelated_photos_fail_cleanly(tmp_path):
    pytest.importorskip("pycolmap")
    source = tmp_path / "in"
    source.mkdir()
    for k in range(8):  # eight unrelated noise images: nothing matches
        _photo(source / f"p{k}.jpg", size=(96, 96), seed=100 + k)
    out = tmp_path / "ds"
    # SfM at the photos' own size: enlarged to the default 1024 px, noise gives SIFT thousands of
    # features to match for nothing (43 s); the refusal is the same.
    with pytest.raises(PrivheadError, match="registered at most"):
        prepare_dataset(source, out, PrepareConfig(sfm_side=96))
    assert not out.exists() and _leftovers(tmp_path) == []


def test_sfm_messages_ignore_other_output_of_the_child():
    # COLMAP can print to the child's stdout between privhead's messages: such a line went to
    # json.loads and prepare failed with a JSONDecodeError (seen about 1 run in 25).
    import io

    from privhead.prepare.sfm import MESSAGE_PREFIX, read_messages

    lines = [
        MESSAGE_PREFIX + '{"event": "log", "text": "attempt default"}\n',
        "\n",
        "I20261203 feature_extraction.cc:254] Processed file [1/8]\n",
        MESSAGE_PREFIX + '{"event": "result", "registered": 7}\n',
    ]
    logged, sink = [], io.StringIO()
    result = read_messages(lines, logged.append, sink)
    assert result == {"event": "result", "registered": 7}
    assert logged == ["attempt default"]
    assert "Processed file" in sink.getvalue()
