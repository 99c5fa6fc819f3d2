"""The fused C kernel of the grid SDF (``trilinear.c``): compiled on first use, called by ctypes.

:func:`privhead.field.grid.trilinear_with_gradient` is the engine's inner loop: four grid
levels, eight corners and the closed-form gradient for every sample of every step. In torch
it is ~40 small tensor operations per level whose backward (the corners' ``index_put``) is
most of a CPU training step. The C kernel does the same arithmetic in one pass per level,
forward and backward, with serial loops: bit-identical for any thread count. (A two-thread
version, the forward split by points and the backward by grid slabs, was measured slower on 2
cores: 37.5-41.9 vs 28 ms for four levels and 70k points, forward and backward, as torch's own
threads hold the second core.)

It is built once per machine with the system C compiler (``$CC``, else ``cc`` / ``gcc``) into
``$PRIVHEAD_CACHE/native`` (default ``~/.cache/privhead/native``), keyed by a hash of the
source and the compiler, and used for float32 CPU tensors whose points need no gradient. Where
there is no compiler, on other devices and dtypes, or with ``PRIVHEAD_NATIVE=0``, the torch
implementation runs instead (same results to float32 rounding; tests compare the two).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import torch

from privhead.cache import cache_root

SOURCE = Path(__file__).with_name("trilinear.c")
_FLAGS = ["-O3", "-std=c99", "-ffp-contract=off", "-shared", "-fPIC"]
_LIB: ctypes.CDLL | None = None
_TRIED = False


def cache_dir() -> Path:
    """Where the compiled kernel is kept: ``native`` in :func:`privhead.cache.cache_root`."""
    return cache_root() / "native"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build(compiler: str | None = None) -> Path:
    """Compile ``trilinear.c`` into the cache (if not there yet) and return the library path.

    Raises:
        RuntimeError: no C compiler, or the compiler failed (its message included).
    """
    compiler = compiler or _compiler()
    if compiler is None:
        raise RuntimeError("no C compiler (set $CC, or install cc/gcc)")
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + compiler.encode() + " ".join(_FLAGS).encode()).hexdigest()
    target = cache_dir() / f"privhead_trilinear-{key[:16]}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename: concurrent processes (pytest -n 2) never load a
    # half-written library.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run(
            [compiler, *_FLAGS, str(SOURCE), "-o", tmp, "-lm"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {result.stderr.strip()[:500]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> ctypes.CDLL | None:
    global _LIB, _TRIED
    if _TRIED:
        return _LIB
    _TRIED = True
    if os.environ.get("PRIVHEAD_NATIVE", "1") == "0":
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        warnings.warn(
            f"privhead: the fused C grid kernel is not available ({exc}); the SDF grids use "
            "the torch implementation (same results, slower on the CPU).",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    p, i64, f32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
    lib.privhead_trilinear_forward.argtypes = [p, i64, f32, p, i64, p, p]
    lib.privhead_trilinear_forward.restype = None
    lib.privhead_trilinear_backward.argtypes = [i64, f32, p, i64, p, p, p]
    lib.privhead_trilinear_backward.restype = None
    _LIB = lib
    return lib


def available() -> bool:
    """Whether the C kernel is built and loaded (building it now if needed)."""
    return _load() is not None


def applies(grid: torch.Tensor, points: torch.Tensor) -> bool:
    """Whether :func:`trilinear` can serve this call (else the torch path does)."""
    return (
        grid.device.type == "cpu"
        and points.device.type == "cpu"
        and grid.dtype == torch.float32
        and points.dtype == torch.float32
        and grid.dim() == 3
        and not points.requires_grad
        and _load() is not None
    )


def _ptr(tensor: torch.Tensor | None):
    return None if tensor is None else ctypes.c_void_p(tensor.data_ptr())


class _Trilinear(torch.autograd.Function):
    """(grid [R, R, R], points [P, 3]) -> (values [P], gradient [P, 3] or an empty tensor)."""

    @staticmethod
    def forward(ctx, grid, points, bound, with_gradient):
        grid_c = grid.detach().contiguous()
        points_c = points.detach().contiguous()
        n, res = points_c.shape[0], grid_c.shape[0]
        values = torch.empty(n, dtype=torch.float32)
        gradient = torch.empty(n, 3, dtype=torch.float32) if with_gradient else torch.empty(0)
        _load().privhead_trilinear_forward(
            _ptr(grid_c), res, bound, _ptr(points_c), n, _ptr(values),
            _ptr(gradient) if with_gradient else None,
        )  # fmt: skip
        ctx.save_for_backward(points_c)
        ctx.res, ctx.bound = res, bound
        ctx.set_materialize_grads(False)
        return values, gradient

    @staticmethod
    def backward(ctx, grad_values, grad_gradient):
        (points_c,) = ctx.saved_tensors
        res = ctx.res
        if grad_gradient is not None and grad_gradient.numel() == 0:
            grad_gradient = None
        grid_grad = torch.zeros(res, res, res, dtype=torch.float32)
        if grad_values is not None or grad_gradient is not None:
            # Named, so that contiguous copies live until the call returns.
            gv = None if grad_values is None else grad_values.contiguous()
            gg = None if grad_gradient is None else grad_gradient.contiguous()
            _load().privhead_trilinear_backward(
                res, ctx.bound, _ptr(points_c), points_c.shape[0], _ptr(gv), _ptr(gg),
                _ptr(grid_grad),
            )  # fmt: skip
        return grid_grad, None, None, None


def trilinear(
    grid: torch.Tensor, points: torch.Tensor, bound: float, with_gradient: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The C kernel's :func:`privhead.field.grid.trilinear_with_gradient` (check
    :func:`applies` first): differentiable with respect to the grid, not the points."""
    values, gradient = _Trilinear.apply(grid, points, float(bound), with_gradient)
    return values, (gradient if with_gradient else None)
