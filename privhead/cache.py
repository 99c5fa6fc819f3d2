"""privhead's cache folder outside the repository: ``$PRIVHEAD_CACHE`` when set, else
``~/.cache/privhead``. Each user of it (the compiled grid kernel, the learned inverters, the
real-face benchmark set) keeps its own subfolder."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """``$PRIVHEAD_CACHE`` (``~`` expanded) when the variable is set, else ``~/.cache/privhead``."""
    root = os.environ.get("PRIVHEAD_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "privhead"
