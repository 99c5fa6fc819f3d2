"""``python -m privhead`` runs the command line."""

from privhead.cli import main

main()
