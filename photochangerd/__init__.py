"""photochangerd — the PhotoChanger daemon."""

__version__ = "0.1.0"
