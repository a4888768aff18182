"""agc: attributed graph clustering at any scale."""

__version__ = "0.1.0"
