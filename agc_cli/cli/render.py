"""Terminal rendering, the same rule in every command.

stdout carries results only: tables and lines without ``--json``, exactly one JSON document
with it. Everything else (headers, notes, progress, logs, errors) goes to stderr. ``--quiet``
silences headers, notes and progress; ``--verbose`` adds detail lines. Rich tables on a
terminal, plain ``key: value`` / tab-separated lines when piped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Mapping
from enum import Enum
from pathlib import PurePath
from typing import Any

from rich.console import Console
from rich.table import Table

from agc_cli.engine.planner import fmt_bytes

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclasses.dataclass
class _Output:
    json: bool = False  # results as one JSON document on stdout
    quiet: bool = False  # no headers, notes or progress on stderr
    verbose: bool = False  # detail lines on stderr
    silent: bool = False  # nothing but errors (data-parallel ranks other than 0)


_out = _Output()


def configure(json_out: bool = False, quiet: bool = False, verbose: bool = False) -> None:
    """Set the output mode of this command (called first by every command)."""
    _out.json, _out.quiet, _out.verbose = json_out, quiet, verbose and not quiet


def set_quiet(quiet: bool = True) -> None:
    """Silence results, tables and notes (data-parallel ranks other than 0); errors still print."""
    _out.silent = quiet
    console.quiet = quiet


def json_mode() -> bool:
    return _out.json


def quiet() -> bool:
    return _out.quiet or _out.silent


def verbose() -> bool:
    return _out.verbose and not quiet()


def decorated(stream: Console = console) -> bool:
    """Rich tables/panels only when the stream goes to a terminal."""
    return (sys.stderr if stream is err_console else sys.stdout).isatty()


# ----- results (stdout) -----------------------------------------------------------------------


def emit(result: Any, render_plain: Any) -> None:
    """The command's result: ``result`` as JSON with ``--json``, else ``render_plain(result)``."""
    if _out.silent:
        return
    if _out.json:
        print_json(result)
    else:
        render_plain(result)


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(obj), indent=2) + "\n")
    sys.stdout.flush()


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values: dataclasses as objects (``to_json()`` when they define it), paths as
    strings, numbers as numbers (numpy/torch scalars included; non-finite floats as null)."""
    if hasattr(obj, "to_json") and callable(obj.to_json):
        return to_jsonable(obj.to_json())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return to_jsonable(obj.item())
    return str(obj)


def key_values(title: str, rows: list[tuple[str, Any]], stream: Console = console) -> None:
    """A two-column table on a terminal, ``key: value`` lines otherwise (results: stdout)."""
    if _out.silent or (stream is console and _out.json):
        return
    if decorated(stream):
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows:
            table.add_row(key, str(value))
        stream.print(table)
    else:
        _plain(stream, [f"# {title}", *(f"{key}: {value}" for key, value in rows)])


def table(title: str, header: list[str], rows: list[list[Any]], stream: Console = console) -> None:
    """A table on a terminal, tab-separated lines otherwise (results: stdout)."""
    if _out.silent or (stream is console and _out.json):
        return
    if decorated(stream):
        t = Table(title=title, title_justify="left")
        for h in header:
            t.add_column(h)
        for r in rows:
            t.add_row(*[str(c) for c in r])
        stream.print(t)
    else:
        _plain(stream, [f"# {title}", "\t".join(header), *("\t".join(map(str, r)) for r in rows)])


def line(text: str) -> None:
    """One plain result line on stdout (nothing with ``--json``)."""
    if _out.silent or _out.json:
        return
    _plain(console, [text])


def _plain(stream: Console, lines: list[str]) -> None:
    """Lines as they are (tabs kept), on the stream's file."""
    out = sys.stderr if stream is err_console else sys.stdout
    out.write("".join(f"{text}\n" for text in lines))
    out.flush()


# ----- everything else (stderr) ---------------------------------------------------------------


def header(title: str, rows: list[tuple[str, Any]]) -> None:
    """What a command is about to do (the system panel): stderr, silenced by ``--quiet``."""
    if quiet():
        return
    key_values(title, rows, stream=err_console)


def note(text: str) -> None:
    """A progress/info line on stderr (never mixed into stdout results)."""
    if quiet():
        return
    err_console.print(text, markup=False, highlight=False)


def detail(text: str) -> None:
    """A line shown only with ``--verbose`` (on stderr)."""
    if verbose():
        err_console.print(text, markup=False, highlight=False)


def settings_detail(settings: Any) -> None:
    """``--verbose``: every resolved setting, one per line."""
    if verbose():
        for key, value in settings.to_yaml_dict().items():
            detail(f"  {key}: {value}")


def peak_line(rss_bytes: int, cuda_bytes: int | None) -> str:
    """``CPU RSS 1.2 GB, CUDA max allocated 3.4 GB``."""
    text = f"CPU RSS {fmt_bytes(rss_bytes)}"
    if cuda_bytes is not None:
        text += f", CUDA max allocated {fmt_bytes(cuda_bytes)}"
    return text
