"""Terminal rendering helpers: rich on a terminal, plain lines otherwise."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence tables and notes (data-parallel ranks other than 0); errors still print."""
    global _quiet
    _quiet = quiet
    console.quiet = quiet


def decorated() -> bool:
    """Rich tables/panels only when stdout is a terminal."""
    return sys.stdout.isatty()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")
    sys.stdout.flush()


def key_values(title: str, rows: list[tuple[str, Any]]) -> None:
    """A two-column table on a terminal, ``key: value`` lines otherwise."""
    if _quiet:
        return
    if decorated():
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows:
            table.add_row(key, str(value))
        console.print(table)
    else:
        print(f"# {title}")
        for key, value in rows:
            print(f"{key}: {value}")


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    if _quiet:
        return
    if decorated():
        t = Table(title=title, title_justify="left")
        for h in header:
            t.add_column(h)
        for r in rows:
            t.add_row(*[str(c) for c in r])
        console.print(t)
    else:
        print(f"# {title}")
        print("\t".join(header))
        for r in rows:
            print("\t".join(str(c) for c in r))


def note(text: str) -> None:
    """A progress/info line on stderr (never mixed into stdout results)."""
    if _quiet:
        return
    err_console.print(text, markup=False, highlight=False)
