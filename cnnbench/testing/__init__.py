"""Helpers the test suite drives through the real command line (fault injection); never used by a normal run."""
