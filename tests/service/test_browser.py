"""The web page in a real headless browser (Debian's Chromium): a finished job's mesh is drawn."""

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from privhead.service.client import submit_bundle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
    "--window-size=1100,1000",
    "--virtual-time-budget=20000",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")


def test_the_viewer_draws_the_mesh(server, tiny_bundle, tmp_path, fast_steps):
    url, _ = server
    job = submit_bundle(
        tiny_bundle, url, "tiny", fast_steps, wait=True, say=lambda line: None, poll_seconds=0.2
    )
    page = f"{url}/#job={job['id']}&token={job['token']}"
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *FLAGS, *profile, "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-mesh-shown="yes"' in dom, dom[-2000:]
    assert "vertices" in dom
    shot = tmp_path / "page.png"
    subprocess.run(
        [CHROMIUM, *FLAGS, *profile, f"--screenshot={shot}", page],
        capture_output=True,
        timeout=120,
    )
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    shaded = (r > g) & (g > b) & (r - b > 8) & (r < 245)  # the viewer's beige, Lambert-shaded
    assert shaded.sum() > 3000, shaded.sum()
    assert len(np.unique(r[shaded])) > 10  # shading varies over the surface: not a flat blob
