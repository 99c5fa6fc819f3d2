"""Lazy imports of optional extras (the ``audit`` extra's face models, ST-LPIPS weights): a
missing package raises PrivheadError with the install hint instead of an ImportError."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

from privhead.errors import PrivheadError

INSTALL_HINT = "pip install 'privhead[audit]'"
"""The command that installs the optional face models and metrics."""


def require(module: str, what: str, hint: str = INSTALL_HINT):
    """Import an optional module, or raise PrivheadError naming ``what`` needs it and the fix."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise PrivheadError(
            f"{what} needs the optional package providing '{module}' ({exc}); install it with: "
            f"{hint}"
        ) from None


def require_opencv():
    """cv2, checked to be 4.10 <= version < 5 (5.0 rejects the zoo's quantised ONNX files)."""
    cv2 = require("cv2", "OpenCV face models")
    major, minor = (int(part) for part in cv2.__version__.split(".")[:2])
    if not (major == 4 and minor >= 10):
        raise PrivheadError(
            f"OpenCV {cv2.__version__} is installed but the face models need 4.10 <= OpenCV < 5; "
            "install it with: pip install 'opencv-python-headless>=4.10,<5'"
        )
    cv2.setNumThreads(1)
    return cv2


def package_file(package: str, relative: str, what: str, hint: str = INSTALL_HINT) -> Path:
    """Path of a data file shipped inside an installed package, without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PrivheadError(
            f"{what} needs the '{package}' package, which is not installed; install it with: {hint}"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise PrivheadError(f"{what}: {path} is missing from the installed '{package}' package.")
    return path
