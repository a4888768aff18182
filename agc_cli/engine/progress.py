"""The progress protocol: the engine reports, the CLI renders (the engine never prints)."""

from __future__ import annotations

from typing import Any, Protocol


class Progress(Protocol):
    def start(self, info: dict[str, Any]) -> None: ...
    def epoch_start(self, epoch: int, epochs: int, total_nodes: int, done_nodes: int) -> None: ...
    def advance(self, nodes: int) -> None: ...
    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None: ...
    def message(self, text: str) -> None: ...


class NullProgress:
    """Reports nothing (library use, tests)."""

    def start(self, info: dict[str, Any]) -> None:
        pass

    def epoch_start(self, epoch: int, epochs: int, total_nodes: int, done_nodes: int) -> None:
        pass

    def advance(self, nodes: int) -> None:
        pass

    def epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        pass

    def message(self, text: str) -> None:
        pass
