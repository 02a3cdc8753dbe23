"""The ``certway`` command line (Typer + Rich)."""
