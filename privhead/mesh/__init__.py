"""Mesh extraction and mesh renders."""
