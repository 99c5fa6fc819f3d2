"""Signed distance and colour fields."""
