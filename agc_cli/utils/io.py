"""The file boundary: atomic writes, and the one place OS and file-format failures become
one-line agc errors.

Reading a file a user gave (a config, a graph, a checkpoint) goes through :func:`reading`: any
failure of the parser or the operating system is a :class:`~agc_cli.errors.DataError` (or the
error the caller names) that names the file. Writing goes through :func:`atomic_write` and
:func:`make_dir`: a place that cannot be written (below a regular file, under ``/proc``, no
permission, a full disk) is a :class:`~agc_cli.errors.UsageError` naming the path.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from agc_cli.errors import AgcError, DataError, UsageError

ErrorFactory = Callable[[str], AgcError]

# ``.<name>.<pid>.<random>.tmp``: the temporary files of atomic_write (the pid tells whether
# the writer still runs).
_TEMPORARY = re.compile(r"^\.(?P<name>.+?)\.(?:(?P<pid>\d+)\.)?[^.]+\.tmp$")


def reason(exc: BaseException) -> str:
    """A short, one-line account of ``exc``: ``strerror`` for OS errors, else the message."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {text[:160]}" if text else name


@contextmanager
def reading(path: Path | str, what: str, error: ErrorFactory = DataError) -> Iterator[None]:
    """Turn any failure inside the block (parsing or reading ``path``) into one error.

    Keep the block to the parse call itself: everything it raises, short of an
    :class:`AgcError` or ``MemoryError``, is blamed on the file.

    Args:
        path: the file read, named in the message.
        what: what the file should have been, e.g. ``"not a readable .npy file"``.
        error: builds the error from the message (default :class:`DataError`, exit 3).
    """
    try:
        yield
    except (AgcError, MemoryError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a parser raises, the file is to blame
        raise error(f"{path}: {what} ({reason(exc)})") from None


@contextmanager
def writing(path: Path | str, what: str = "cannot write") -> Iterator[None]:
    """Turn an ``OSError`` inside the block into a :class:`UsageError` naming ``path``.

    Args:
        what: the message's lead, e.g. ``"run_dir: cannot create the run directory"``.
    """
    try:
        yield
    except OSError as exc:
        raise UsageError(f"{what} {path} ({reason(exc)}); choose another location") from None


def read_text(path: Path, what: str = "not a readable text file",
              error: ErrorFactory = DataError) -> str:  # fmt: skip
    """The UTF-8 text of ``path``; unreadable or binary content raises ``error``."""
    with reading(path, what, error):
        return Path(path).read_text(encoding="utf-8")


def make_dir(path: Path, what: str = "cannot create the directory") -> Path:
    """``mkdir -p path``; a place that cannot hold a directory is a :class:`UsageError`."""
    path = Path(path)
    with writing(path, what):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it exists and is not a directory")
        path.mkdir(parents=True, exist_ok=True)
    return path


@functools.cache
def _umask() -> int:
    """The process umask, read once (reading it means setting it for a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s directory, fsync it, then rename it over
    ``path``; on any exception the temporary file is removed and ``path`` is untouched.

    Raises:
        UsageError: the directory cannot be created or written (the path is named).
    """
    path = Path(path)
    make_dir(path.parent)
    with writing(path):
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    try:
        with writing(path):
            with os.fdopen(fd, "wb") as fh:
                # mkstemp creates 0600; results get the permissions of any new file (0644
                # under the usual umask), as a plain open() would give them.
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_torch_save(obj: Any, path: Path) -> None:
    import torch

    atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temporaries(directory: Path, exclusive: bool = False) -> list[Path]:
    """Delete temporaries of :func:`atomic_write` left by writers that were killed.

    Args:
        directory: where to look (not recursive).
        exclusive: the caller holds the lock that every writer of ``directory`` takes, so any
            temporary not written by this process is stale; otherwise only those whose
            writer's process is gone.

    Returns:
        The files removed.
    """
    removed = []
    if not Path(directory).is_dir():
        return removed
    for entry in Path(directory).iterdir():
        match = _TEMPORARY.match(entry.name)
        if match is None or not entry.is_file():
            continue
        pid = int(match["pid"]) if match["pid"] else None
        if pid == os.getpid():
            continue
        if exclusive or (pid is not None and not pid_alive(pid)):
            entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
