"""Helpers for the test suite, never used by a normal run: fault injection driven through the real command
line (faults.py) and the photo ImageFolder its file-backed fixtures and the input-pipeline measurements use
(photos.py)."""
