"""A pickle reader that can only build numeric arrays, CSR matrices and lists of neighbours.

Planetoid's raw files (``ind.cora.x`` ...) are Python 2 pickles of NumPy arrays, SciPy CSR
matrices and a ``defaultdict(list)`` adjacency. Unpickling such a file with :mod:`pickle`
calls whatever callable the file names, so a planted file runs code. :func:`load` admits only
the globals those files use, and maps each one to an inert stand-in defined here: no NumPy,
SciPy or other code runs while the stream is read. Only once the whole stream has been read
are the stand-ins checked (numeric dtype, sizes that match the data) and turned into arrays.

Anything else (another global, a structured or object dtype, a wrong size) is a
:class:`~agc_cli.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from agc_cli.errors import DataError

# dtype kinds an array may have: booleans, integers and floats (never objects or records).
_NUMERIC_KINDS = frozenset("biuf")


class _NDArrayType:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``; never built."""

    def __init__(self, *args: object) -> None:
        raise pickle.UnpicklingError("numpy.ndarray may only be named, not called")


class _ListType:
    """Stands for ``list`` as the factory of a ``defaultdict``; never built."""

    def __init__(self, *args: object) -> None:
        raise pickle.UnpicklingError("list may only be a defaultdict factory")


class _Dtype:
    """What ``numpy.dtype(code, align, copy)`` plus its ``__setstate__`` would record."""

    def __init__(self, code: object, align: object = False, copy: object = True) -> None:
        if not isinstance(code, (str, bytes)):
            raise pickle.UnpicklingError(f"dtype code {code!r} is not a string")
        self.code = code.decode("latin1") if isinstance(code, bytes) else code
        self.byteorder = "="
        self.complex_state = False

    def __setstate__(self, state: object) -> None:
        # (version, byteorder, subarray, names, fields, elsize, alignment, flags)
        if not isinstance(state, tuple) or len(state) < 5 or not isinstance(state[1], str):
            raise pickle.UnpicklingError("malformed dtype state")
        self.byteorder = state[1]
        self.complex_state = any(part is not None for part in state[2:5])

    def resolve(self) -> np.dtype:
        if self.complex_state:
            raise ValueError(f"dtype {self.code!r} has fields or sub-arrays")
        dtype = np.dtype(self.code)
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype:
            raise ValueError(f"dtype {self.code!r} is not a plain numeric type")
        if self.byteorder in "<>":
            dtype = dtype.newbyteorder(self.byteorder)
        elif self.byteorder not in "|=":
            raise ValueError(f"dtype byte order {self.byteorder!r}")
        return dtype


class _Array:
    """What ``ndarray.__setstate__`` would receive; turned into an array by :meth:`resolve`."""

    def __init__(self) -> None:
        self.state: tuple | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, tuple):
            raise pickle.UnpicklingError("malformed ndarray state")
        self.state = state

    def resolve(self) -> np.ndarray:
        state = self.state
        if state is None:
            raise ValueError("an array without data")
        if len(state) == 5:
            state = state[1:]  # drop the state version
        if len(state) != 4:
            raise ValueError("malformed ndarray state")
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _Dtype):
            raise ValueError("ndarray state without a dtype")
        dtype = dtype.resolve()
        if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise ValueError(f"array shape {shape!r}")
        if isinstance(raw, str):  # a Python 2 str read with encoding="latin1"
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise ValueError("array data is not a byte string")
        if len(raw) != math.prod(shape) * dtype.itemsize:
            raise ValueError(
                f"array data holds {len(raw)} bytes, {dtype} {list(shape)} needs "
                f"{math.prod(shape) * dtype.itemsize}"
            )
        flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        return flat.reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls: object, shape: object, typecode: object) -> _Array:
    """Stands for ``numpy.core.multiarray._reconstruct(ndarray, (0,), b"b")``."""
    if cls is not _NDArrayType:
        raise pickle.UnpicklingError("_reconstruct of something other than numpy.ndarray")
    return _Array()


class _CSR:
    """What ``csr_matrix.__setstate__`` would receive (its ``__dict__``)."""

    def __init__(self) -> None:
        self.state: dict | None = None

    def __setstate__(self, state: object) -> None:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("malformed csr_matrix state")
        self.state = state

    def resolve(self) -> sp.csr_matrix:
        state = self.state or {}
        if state.get("format", "csr") != "csr":
            raise ValueError(f"sparse format {state.get('format')!r}, expected 'csr'")
        shape = state.get("_shape", state.get("shape"))
        if not (
            isinstance(shape, tuple)
            and len(shape) == 2
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)
        ):
            raise ValueError(f"csr_matrix shape {shape!r}")
        parts = {}
        for key in ("data", "indices", "indptr"):
            part = state.get(key)
            if not isinstance(part, _Array):
                raise ValueError(f"csr_matrix without {key!r}")
            parts[key] = part.resolve()
        return checked_csr(parts["data"], parts["indices"], parts["indptr"], shape)


def _defaultdict(factory: object = None) -> dict:
    """Stands for ``collections.defaultdict(list)``: a plain dict (the files only fill it)."""
    if factory is not _ListType:
        raise pickle.UnpicklingError("defaultdict with a factory other than list")
    return {}


def _encode(text: object, encoding: object = "utf-8") -> bytes:
    """Stands for ``_codecs.encode(text, "latin1")``: how Python 3 writes bytes at protocol 2."""
    if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
        raise pickle.UnpicklingError("_codecs.encode other than a latin1 byte string")
    return text.encode("latin1")


# (module, name) -> stand-in: every global a Planetoid file names, under the spellings NumPy,
# SciPy and Python 2/3 have used. Nothing else is ever looked up.
_ALLOWED: dict[tuple[str, str], object] = {
    ("numpy", "ndarray"): _NDArrayType,
    ("numpy", "dtype"): _Dtype,
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("scipy.sparse.csr", "csr_matrix"): _CSR,
    ("scipy.sparse._csr", "csr_matrix"): _CSR,
    ("collections", "defaultdict"): _defaultdict,
    ("_codecs", "encode"): _encode,
    ("__builtin__", "list"): _ListType,
    ("builtins", "list"): _ListType,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}") from None

    def persistent_load(self, pid: object) -> Any:
        raise pickle.UnpicklingError("refused persistent id")


def load(path: Path) -> Any:
    """Read the pickle at ``path`` into arrays, CSR matrices, dicts, lists and numbers.

    Raises:
        DataError: the file is unreadable, not a pickle, names a global other than the array
            reconstruction Planetoid files use, or holds an array inconsistent with its size.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
        return _resolve(obj)
    except DataError:
        raise
    except Exception as exc:  # any malformed stream: UnpicklingError, EOFError, ValueError, ...
        raise DataError(
            f"{path}: not a Planetoid array or graph file ({type(exc).__name__}: {exc}); "
            "nothing in it was run"
        ) from None


def _resolve(obj: Any, depth: int = 0) -> Any:
    """Turn the stand-ins inside ``obj`` into arrays; plain values pass through."""
    if isinstance(obj, (_Array, _CSR)):
        return obj.resolve()
    if isinstance(obj, (int, float, str, bytes, bool, type(None))):
        return obj
    if depth > 2:
        raise ValueError("nesting deeper than a Planetoid file has")
    if isinstance(obj, dict):
        return {_resolve(k, depth + 1): _resolve(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, depth + 1) for v in obj)
    raise ValueError(f"unexpected {type(obj).__name__} object")


def checked_csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, shape: tuple[int, int]
) -> sp.csr_matrix:
    """A CSR matrix from its parts, after checking that they describe one.

    Raises:
        ValueError: parts of the wrong kind or length, pointers that decrease or run past the
            entries, column indices outside ``[0, shape[1])``.
    """
    rows, cols = int(shape[0]), int(shape[1])
    if rows < 0 or cols < 0:
        raise ValueError(f"negative shape {shape}")
    for name, part in (("indices", indices), ("indptr", indptr)):
        if part.ndim != 1 or part.dtype.kind not in "iu":
            raise ValueError(f"{name} must be a 1-D integer array, got {part.dtype} {part.shape}")
    if data.ndim != 1 or data.dtype.kind not in "biuf":
        raise ValueError(f"data must be a 1-D numeric array, got {data.dtype} {data.shape}")
    if indptr.size != rows + 1 or data.size != indices.size:
        raise ValueError(
            f"{indptr.size} row pointers and {data.size} values for {indices.size} indices "
            f"in a {rows} x {cols} matrix"
        )
    indptr = indptr.astype(np.int64)
    if indptr[0] != 0 or indptr[-1] != indices.size or np.any(np.diff(indptr) < 0):
        raise ValueError("row pointers do not run from 0 to the number of entries")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= cols):
        raise ValueError(f"column indices outside [0, {cols})")
    index_dtype = np.int32 if max(rows, cols, indices.size) < 2**31 else np.int64
    return sp.csr_matrix(
        (data, indices.astype(index_dtype), indptr.astype(index_dtype)), shape=(rows, cols)
    )
