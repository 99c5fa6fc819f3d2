"""The privacy operator sigma and the neutral / sensitive classification of views."""
