"""Losses, the two training stages and the trainer."""
