"""Rich rendering of the engine's progress protocol (progress bars on a terminal only)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from agc_cli.cli import render
from agc_cli.cli.render import err_console
from agc_cli.engine.progress import NullProgress


class _NodesPerSecond(TextColumn):
    def __init__(self) -> None:
        super().__init__("")

    def render(self, task):  # type: ignore[override]
        speed = task.finished_speed or task.speed
        return f"{speed:,.0f} nodes/s" if speed else ""


class RichProgress:
    """A per-epoch bar (nodes processed, nodes/s, ETA) and one line per finished epoch."""

    def __init__(self, show_bar: bool | None = None):
        self.show_bar = sys.stderr.isatty() if show_bar is None else show_bar
        self._progress: Progress | None = None
        self._task = None
        self._epochs = 0

    def start(self, info: dict[str, Any]) -> None:
        self._epochs = info["epochs"]
        if info.get("start_epoch"):
            self.message(f"resuming at epoch {info['start_epoch'] + 1}/{self._epochs}")

    def epoch_start(self, epoch: int, epochs: int, total_nodes: int, done_nodes: int) -> None:
        if not self.show_bar:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("[bold]Epoch {task.fields[epoch]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                _NodesPerSecond(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self._progress.start()
        label = f"{epoch + 1}/{epochs}"
        if self._task is None:
            self._task = self._progress.add_task("train", total=total_nodes, epoch=label)
        self._progress.reset(self._task, total=total_nodes, completed=done_nodes, epoch=label)

    def advance(self, nodes: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, nodes)

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        parts = {
            k: v for k, v in record.items()
            if k not in ("epoch", "loss", "seconds", "nodes_per_s", "step")
        }  # fmt: skip
        detail = ", ".join(f"{k}={v:.4f}" for k, v in parts.items())
        line = f"Epoch {epoch + 1:>4}/{self._epochs}: loss={record['loss']:.4f}"
        if detail:
            line += f" ({detail})"
        line += f" [{record['seconds']:.2f}s]"
        self.message(line)

    def message(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text, markup=False, highlight=False)
        else:
            err_console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class _Silent(NullProgress):
    """``--quiet``: no epoch lines, no bar."""

    def close(self) -> None:
        pass


def make_progress() -> RichProgress | _Silent:
    """Epoch lines and a bar on stderr, or nothing with ``--quiet``."""
    return _Silent() if render.quiet() else RichProgress()


@contextlib.contextmanager
def byte_progress(label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A bar over ``total`` bytes on a terminal (nothing otherwise); yields ``advance(n)``."""
    if not sys.stderr.isatty() or render.quiet():
        yield lambda n: None
        return
    with Progress(
        TextColumn(label), BarColumn(), TaskProgressColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
