"""Geometry evaluation: chamfer distance, F-score, alignment, error maps."""
