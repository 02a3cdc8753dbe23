"""certway: certificate lifecycle server for secure communications edges."""

__version__ = "0.1.0"
