"""Progress bars for long work: live bars on a terminal, a line every few percent in a log.

On a terminal :func:`progress_bar` is an ordinary tqdm bar. When stderr is not a terminal (a log
file, CI, a service's worker) it prints one plain line per ``log_percent`` of the work instead
of thousands of carriage-return updates, so a reconstruction log stays a few KB.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


class _LineStream:
    """A file-like wrapper turning tqdm's carriage-return redraws into whole lines."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        line = text.replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream=None) -> bool:
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


def progress_bar(
    iterable=None,
    *,
    total: int | None = None,
    desc: str | None = None,
    disable: bool = False,
    log_percent: float = 5.0,
    stream=None,
    **kwargs,
) -> tqdm:
    """A tqdm bar, or on a non-terminal stderr a line every ``log_percent`` % of ``total``.

    Args:
        iterable: what to iterate over (optional, as in tqdm).
        total: number of steps (default ``len(iterable)`` when it has one).
        desc: label.
        disable: no output at all.
        log_percent: percent of the work between two log lines when not on a terminal.
        stream: where to write (default stderr).
        **kwargs: passed on to tqdm (``unit``, ``initial``, ``leave``, ...).
    """
    stream = sys.stderr if stream is None else stream
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not is_terminal(stream) and not disable:
        kwargs.pop("dynamic_ncols", None)
        every = max(1, int(round((total or 0) * log_percent / 100.0)))
        kwargs.update(
            file=_LineStream(stream),
            miniters=every if total else 1,
            mininterval=0.0 if total else 30.0,
            maxinterval=float("inf"),
            ncols=100,
            ascii=True,
        )
    return tqdm(iterable, total=total, desc=desc, disable=disable, **kwargs)
