"""The command line: thin wrappers that parse arguments, call library functions and print.

One subcommand level: ``privhead synth``, ``privhead protect``, ``privhead reconstruct``, ...
User errors (:class:`privhead.errors.PrivheadError`) print one sentence and exit with code 1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from privhead.errors import PrivheadError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Privacy-preserving neural 3D head reconstruction (neutral RGB + protected gradients).",
    pretty_exceptions_enable=False,
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=1)


# Commands are added below, one function each.


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    try:
        app(args=argv, standalone_mode=True)
    except PrivheadError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
