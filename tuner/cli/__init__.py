"""The ``tuner`` command: typer commands and their rich output.

    tuner optimize search_spaces/digits_forest_cpu.yaml
    python -m tuner.cli --help

``tuner api`` and ``tuner dashboard`` import the ``api`` package inside the command: the rest of
the tuner never imports it.
"""

from __future__ import annotations

from tuner.cli._commands import app, main

__all__ = [
    "app",
    "main",
]
