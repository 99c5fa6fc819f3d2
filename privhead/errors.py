"""User-facing errors: one clear sentence, no traceback (the CLI prints them and exits 1)."""


class PrivheadError(Exception):
    """An error caused by the user's input (bad path, malformed file, unknown option)."""
