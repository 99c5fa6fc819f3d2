"""Dataset formats, cameras and rays, the privacy bundle, synthetic heads."""
