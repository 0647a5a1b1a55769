"""Presenting results: the tables (:mod:`.tables`, :mod:`.headline`, :mod:`.acme`), text,
markdown and JSON files (:mod:`.output`) and the plot (:mod:`.plot`).

Everything here works from the results dictionary alone, so a report can be
rendered again from any ``bench-*.json``.
"""

from __future__ import annotations

from .format import Table
from .output import render_markdown, render_text, summary_line, write_outputs
from .tables import build_tables

__all__ = [
    "Table",
    "build_tables",
    "render_markdown",
    "render_text",
    "summary_line",
    "write_outputs",
]
