"""Ray sampling and volume compositing."""
