"""cnnbench — the classic CNN papers, reproduced with their own recipes."""
__version__ = "0.1.0"
