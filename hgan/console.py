"""Rendering shared by the CLI commands: stdout for results, stderr for status."""

from __future__ import annotations

import json
from typing import Any, Iterable

from rich.console import Console
from rich.table import Table

out = Console()
err = Console(stderr=True)


def emit_json(obj: Any) -> None:
    """One JSON object on stdout (no colour, no wrapping)."""
    print(json.dumps(obj, indent=2, allow_nan=False, default=str))


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(v) for v in r])
    out.print(t)
