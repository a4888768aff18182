"""``.npy`` files larger than RAM: opened as memory maps, read and written in blocks of rows.

Reading a range of rows through a memory map leaves every page it touched mapped into the
process, so one pass over a file grows the resident set (``VmRSS``, ``VmHWM``) to the file's size
even though those pages are only page cache. :func:`read_rows` therefore reads a top-level
read-only map's rows with a plain positioned read of the file instead (nothing stays mapped), and
:class:`NpyWriter` appends rows with plain writes, so a pass over any number of rows keeps about
one block resident.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from agc_cli.errors import DataError
from agc_cli.utils.io import _fsync_dir, _umask, reading, writing

# Bytes per block of rows read or written at once.
BLOCK_BYTES = 64 << 20


def open_npy(path: str | os.PathLike) -> np.ndarray:
    """The array of the ``.npy`` file ``path``, memory-mapped read-only (nothing is read yet).

    Raises:
        DataError: the file is missing or not a readable ``.npy`` array (objects refused).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with reading(path, "not a readable .npy file"):
        if path.stat().st_size and _data_bytes(path):
            return np.load(path, mmap_mode="r", allow_pickle=False)
        return np.load(path, allow_pickle=False)  # an empty array cannot be mapped


def _data_bytes(path: Path) -> int:
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read_header(fh)
    return math.prod(shape) * dtype.itemsize


def block_rows(array: Any, block_bytes: int = BLOCK_BYTES) -> int:
    """Rows of ``array`` (numpy, memory map or tensor) in about ``block_bytes``; at least 1."""
    itemsize = array.element_size() if hasattr(array, "element_size") else array.dtype.itemsize
    return max(1, block_bytes // max(1, math.prod(array.shape[1:]) * itemsize))


def read_rows(array: Any, start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of ``array`` as a new (or, for in-memory arrays, a view) numpy
    array; a memory map opened on a whole file is read without mapping the pages.

    Raises:
        DataError: the file ended early (truncated after it was opened).
    """
    if _is_file_map(array):
        row_items = math.prod(array.shape[1:])
        count = (stop - start) * row_items
        offset = int(array.offset) + start * row_items * array.dtype.itemsize
        out = np.fromfile(array.filename, dtype=array.dtype, count=count, offset=offset)
        if out.size != count:
            raise DataError(f"{array.filename}: ended early; was it truncated after opening?")
        return out.reshape((stop - start, *array.shape[1:]))
    block = array[start:stop]
    if isinstance(block, np.ndarray):
        return block
    return block.numpy() if hasattr(block, "numpy") else np.asarray(block)  # a CPU tensor


def _is_file_map(array: Any) -> bool:
    """A read-only :class:`numpy.memmap` over a whole file's data (not a slice or a view, whose
    ``offset`` numpy does not update)."""
    import mmap

    return (
        isinstance(array, np.memmap)
        and array.filename is not None
        and isinstance(array.base, mmap.mmap)
        and array.flags.c_contiguous
        and array.mode == "r"
    )


def iter_blocks(array: Any, rows: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(first row, rows)`` blocks of ``array`` in order, ``rows`` (default about
    :data:`BLOCK_BYTES`) rows each."""
    step = rows or block_rows(array)
    total = int(array.shape[0])
    for start in range(0, total, step):
        yield start, read_rows(array, start, min(start + step, total))


class NpyWriter:
    """Writes a ``.npy`` array of a known shape row block by row block, atomically.

    Rows go to a temporary file beside ``path`` with plain writes (nothing is mapped, so the
    written rows do not stay resident); :meth:`commit` checks every row was written, fsyncs
    and renames it over ``path``. Leaving the ``with`` block without committing removes the
    temporary file and leaves ``path`` untouched.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        with writing(self.path):
            fd, tmp = tempfile.mkstemp(
                prefix=f".{self.path.name}.{os.getpid()}.", suffix=".tmp", dir=self.path.parent
            )
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb")
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": self.shape,
        }
        with writing(self.path):
            np.lib.format.write_array_header_2_0(self._fh, header)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()

    def discard(self) -> None:
        """Remove the temporary file unless committed; ``path`` is untouched."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)

    def write(self, block: np.ndarray) -> None:
        """Append ``block`` (``[rows, *shape[1:]]``, cast to the file's dtype)."""
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.shape[1:] or self.rows + block.shape[0] > self.shape[0]:
            raise ValueError(
                f"block {block.shape} does not continue a {self.shape} array at row {self.rows}"
            )
        with writing(self.path):
            block.tofile(self._fh)
        self.rows += block.shape[0]

    def commit(self) -> Path:
        """Publish the file at ``path`` (every row must have been written)."""
        if self.rows != self.shape[0]:
            raise ValueError(f"{self.rows} of {self.shape[0]} rows written to {self.path}")
        with writing(self.path):
            self._fh.flush()
            os.fsync(self._fh.fileno())
            # mkstemp creates 0600; results get the permissions of any new file.
            os.fchmod(self._fh.fileno(), 0o666 & ~_umask())
            self._fh.close()
            self._fh = None
            os.replace(self._tmp, self.path)
        _fsync_dir(self.path.parent)
        return self.path
