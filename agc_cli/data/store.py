"""On-disk graph stores: a graph as ``.npy`` files plus ``meta.json``, read through memory maps.

A store directory (format version 1) holds:

=====================  ==========================================================================
``meta.json``          format and version, name, source, counts (nodes, edges, features, classes,
                       labeled nodes), feature layout/dtype/density/normalisation, one entry per
                       file (below), creation time
``colptr.npy``         int64 ``[N + 1]``: CSC column pointers
``row.npy``            int32 ``[E]`` (int64 when ``N > 2**31 - 1``): sources, sorted per column
``x.npy``              float32 or float16 ``[N, F]``: dense features, C order
``x_crow.npy`` ...     sparse (bag-of-words) features instead of ``x.npy``, CSR: ``x_crow``
                       int64 ``[N + 1]``, ``x_col`` int64 ``[nnz]``, ``x_values`` float32/float16
``y.npy``              int64 ``[N]`` labels, ``-1`` = unlabeled (when the graph has labels)
``split_<name>.npy``   int64 node ids of each split (``train``, ``valid``, ...)
=====================  ==========================================================================

Every file entry in ``meta.json`` records ``file``, ``dtype``, ``shape``, ``bytes`` and
``checksum``: the hex BLAKE2b digest (16 bytes) of the file's first and last MiB (the whole file
when smaller than 2 MiB). Opening a store checks all of them against the files and their
``.npy`` headers, so a missing, truncated, replaced or re-written file is reported (``DataError``
naming it) for about 2 MiB read per file, whatever the data size. A change in the middle of a
large file is caught by ``blake2b``, the digest of every byte, which :func:`verify_store`
(``--verify``) checks in one full pass; reading batches also bound-checks ids and finite-checks
features.

Writing (:class:`StoreWriter`) fills ``.npy`` memory maps preallocated in a hidden sibling
folder, chunk by chunk; files are fsynced, ``meta.json`` is written last and the folder renamed
into place, so a crash never leaves a half store under the target name. Synthetic graphs are
generated straight into the files (:func:`write_synthetic`), so a graph larger than RAM can be
written.

Reading (:func:`open_store`) returns a :class:`StoredGraph` whose tensors are read-only memory
maps: nothing is loaded until touched. Dense feature rows for mini-batches come through
:meth:`StoredGraph.feature_rows`, which reads only the requested rows, in file order.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import secrets
import shutil
import warnings
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agc_cli import __version__
from agc_cli.data import synthetic
from agc_cli.data.graph import Graph
from agc_cli.data.layout import META_FILE, is_store
from agc_cli.errors import DataError, UsageError
from agc_cli.utils.io import pid_alive, reading

FORMAT = "agc-store"
VERSION = 1
FEATURE_DTYPES = {"float32": np.dtype(np.float32), "float16": np.dtype(np.float16)}
CHECKSUM_SPAN = 1 << 20
# Every byte: checked on demand (`--verify`), not at every open.
FULL_CHECKSUM_KEY = "blake2b"
FULL_CHECKSUM_BLOCK = 8 << 20
# Bytes copied per step when converting an in-memory graph (bounds the temporary copies).
_COPY_BYTES = 64 << 20
# Largest value float16 represents; features beyond it would become inf.
_FLOAT16_MAX = 65504.0
# Feature rows are read by this many threads when a gather has at least _PARALLEL_ROWS rows:
# positioned reads release the GIL, and a deeper queue is what a disk needs for random reads
# (measured on this project's VM: 9K rows/s with one thread, 54K with 16, from an uncached file).
READ_THREADS = 8
_PARALLEL_ROWS = 4096
# Longest single read; Linux transfers at most ~2 GiB per call.
_MAX_READ_BYTES = 256 << 20
# Rows this close in the file are read together with what lies between them.
_GAP_BYTES = 4096

Report = Callable[[str], None]
_DAMAGED = "the store is damaged: convert the dataset again"


def row_dtype(num_nodes: int) -> np.dtype:
    """int32 when every node id fits (it halves the largest topology array), else int64."""
    return np.dtype(np.int32 if num_nodes <= np.iinfo(np.int32).max else np.int64)


def file_checksum(path: Path) -> str:
    """BLAKE2b (16-byte) hex digest of the first and last ``CHECKSUM_SPAN`` bytes of ``path``."""
    digest = hashlib.blake2b(digest_size=16)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        digest.update(fh.read(CHECKSUM_SPAN))
        if size > CHECKSUM_SPAN:
            fh.seek(max(CHECKSUM_SPAN, size - CHECKSUM_SPAN))
            digest.update(fh.read())
    return digest.hexdigest()


def full_checksum(path: Path, advance: Callable[[int], None] | None = None) -> str:
    """BLAKE2b (16-byte) hex digest of every byte of ``path``, read in 8 MiB blocks;
    ``advance(n)`` is called with the bytes of each block read."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(FULL_CHECKSUM_BLOCK), b""):
            digest.update(block)
            if advance is not None:
                advance(len(block))
    return digest.hexdigest()


def verify_store(
    path: str | os.PathLike, advance: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Read every byte of the store at ``path`` and compare each file with the full checksum
    written at convert time (``meta.json``'s ``blake2b``). Returns ``{file: bytes}``.

    Raises:
        DataError: naming the first file whose bytes differ, and for a store converted before
            full checksums were written.
    """
    directory = Path(path).expanduser()
    meta = read_meta(directory)
    checked = {}
    for entry in meta["files"].values():
        file = store_file(directory, entry["file"])
        expected = entry.get(FULL_CHECKSUM_KEY)
        if expected is None:
            raise DataError(
                f"{directory}: converted before full checksums were recorded; convert it again "
                "to verify it"
            )
        with reading(file, "not a readable store file"):
            if full_checksum(file, advance) != expected:
                raise DataError(
                    f"{file}: its bytes differ from the full checksum in {META_FILE} (damaged "
                    f"after conversion); {_DAMAGED}"
                )
            checked[entry["file"]] = file.stat().st_size
    return checked


def check_neighbour_ids(neighbours: Tensor, num_nodes: int, edge: Tensor, source: str) -> None:
    """Refuse node ids read from a topology's ``row`` array that lie outside ``[0, num_nodes)``.

    One vectorised pass over the ids of a batch: damage in the middle of a large ``row.npy``
    (which the open-time checksum does not cover) becomes a one-line data error instead of an
    index error deep in a gather.

    Args:
        neighbours: the ids gathered from ``row``.
        edge: the positions in ``row`` they were read from (same length).
        source: the file (or array) ``row`` is, for the message.

    Raises:
        DataError: naming ``source``, the position and the id.
    """
    if neighbours.numel() == 0:
        return
    low, high = torch.aminmax(neighbours)
    if int(low) >= 0 and int(high) < num_nodes:
        return
    at = int(((neighbours < 0) | (neighbours >= num_nodes)).nonzero()[0, 0])
    raise DataError(
        f"{source}: row {int(edge[at])} holds node id {int(neighbours[at])}, outside the "
        f"graph's {num_nodes} nodes; {_DAMAGED}"
    )


def check_target(out_dir: Path, force: bool) -> None:
    """Refuse a target that exists unless it is empty, or a store replaced with ``force``.

    Raises:
        UsageError: ``out_dir`` is a file, a non-empty directory without ``force``, or a
            non-empty directory that is not a store (never replaced, ``force`` or not).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} exists and is not a directory; choose another OUT_DIR")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not is_store(out_dir):
            raise UsageError(
                f"{out_dir} is a non-empty directory that is not an agc store (no {META_FILE}); "
                "it is never replaced: choose another OUT_DIR"
            )
        if not force:
            raise UsageError(f"{out_dir} already holds a store; pass --force to replace it")


class StoreWriter:
    """Writes one store into a hidden sibling of ``out_dir``, published by :meth:`commit`.

    Use it as a context manager: leaving the block without committing (an exception, Ctrl-C)
    removes the partial folder, and ``out_dir`` is untouched until the final rename.

    Args:
        out_dir: the store directory to create (see :func:`check_target`).
        force: replace an existing store.
        report: receives one line per file started (the CLI prints them).
    """

    def __init__(self, out_dir: Path, force: bool = False, report: Report | None = None):
        self.out_dir = Path(out_dir).expanduser()
        check_target(self.out_dir, force)
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(self.out_dir)
        # mkdir, unlike mkdtemp, gives the usual permissions (umask), which the store keeps.
        self.tmp = self.out_dir.with_name(
            f".{self.out_dir.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        )
        self.tmp.mkdir()
        self.report = report or (lambda line: None)
        self._arrays: dict[str, np.memmap] = {}

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._arrays.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def allocate(
        self, name: str, shape: tuple[int, ...], dtype: np.dtype, scratch: bool = False
    ) -> Tensor:
        """A writable tensor over a new ``name.npy`` of ``shape`` and ``dtype``.

        A ``scratch`` file is never published: it is unlinked at once, so its disk space
        returns when the caller drops the tensor (the mapping outlives the name).
        """
        dtype = np.dtype(dtype)
        path = self.tmp / f"{name}.npy"
        if not scratch:
            size = math.prod(shape) * dtype.itemsize
            self.report(f"writing {name}.npy: {dtype} {list(shape)}, {size / 2**20:,.1f} MiB")
        array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=tuple(shape))
        if scratch:
            path.unlink()
        else:
            self._arrays[name] = array
        return torch.from_numpy(array)

    def commit(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Flush and fsync the files, write ``meta.json`` (``meta`` plus the file entries), and
        rename the folder to ``out_dir`` (replacing an existing store there).

        Returns:
            The complete ``meta.json`` content.
        """
        self.report("syncing to disk")
        files = {}
        for name, array in self._arrays.items():
            if array.size:
                array.flush()
            path = self.tmp / f"{name}.npy"
            _fsync(path)
            files[name] = {
                "file": path.name,
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "bytes": path.stat().st_size,
                "checksum": file_checksum(path),
                FULL_CHECKSUM_KEY: full_checksum(path),
            }
        self._arrays.clear()
        meta = {
            "format": FORMAT,
            "version": VERSION,
            **meta,
            "files": files,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "agc_version": __version__,
        }
        meta_path = self.tmp / META_FILE
        meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        _fsync(meta_path)
        _fsync(self.tmp)
        self._publish()
        return meta

    def _publish(self) -> None:
        old = None
        if self.out_dir.is_dir():
            # A directory cannot be renamed over a non-empty one: move the old store aside first.
            old = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
            os.replace(self.out_dir, old)
        os.replace(self.tmp, self.out_dir)
        _fsync(self.out_dir.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def remove_stale_partials(out_dir: Path) -> None:
    """Remove ``.<name>.partial-<pid>-*`` and ``.<name>.old-<pid>`` folders of ``out_dir`` left
    by a writer that was killed (its process is gone); a live writer's folder is kept."""
    pattern = re.compile(rf"^\.{re.escape(out_dir.name)}\.(?:partial|old)-(\d+)(?:-[0-9a-f]+)?$")
    for entry in out_dir.parent.iterdir():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not pid_alive(int(match[1])):
            shutil.rmtree(entry, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def write_graph(
    graph: Graph,
    out_dir: Path,
    *,
    dtype: str = "float32",
    force: bool = False,
    source: dict[str, Any] | None = None,
    normalization: str = "none",
    report: Report | None = None,
) -> dict[str, Any]:
    """Write ``graph`` (in memory or itself a store) as a store in ``out_dir``, chunk by chunk.

    Args:
        dtype: feature dtype on disk, ``"float32"`` or ``"float16"``.
        force: replace an existing store in ``out_dir``.
        source: where the graph came from, recorded in ``meta.json``.
        normalization: what the source did to the features (``"none"``, ``"row-sum"``).

    Returns:
        The store's ``meta.json`` content.

    Raises:
        UsageError: bad ``dtype``, float16 features out of range, or a refused ``out_dir``.
    """
    feature_dtype = _feature_dtype(dtype)
    n = graph.num_nodes
    with StoreWriter(out_dir, force, report) as writer:
        _copy(writer, "colptr", graph.colptr, np.int64)
        _copy(writer, "row", graph.row, row_dtype(n))
        if graph.sparse_features:
            x = graph.x
            _copy(writer, "x_crow", x.crow_indices(), np.int64)
            _copy(writer, "x_col", x.col_indices(), np.int64)
            _copy(writer, "x_values", x.values(), feature_dtype)
            density = x.values().numel() / max(1, n * graph.num_features)
        else:
            _copy(writer, "x", graph.x, feature_dtype)
            density = 1.0
        labeled = None
        if graph.y is not None:
            _copy(writer, "y", graph.y, np.int64)
            labeled = int((graph.y >= 0).sum())
        for name, ids in graph.splits.items():
            if not re.fullmatch(r"[A-Za-z0-9_-]+", name):
                raise UsageError(
                    f"split {name!r}: a split name becomes a file name: use [A-Za-z0-9_-]"
                )
            _copy(writer, f"split_{name}", ids, np.int64)
        return writer.commit(
            _meta_fields(
                graph.name, n, graph.num_edges, graph.num_features, graph.num_classes, labeled,
                "csr" if graph.sparse_features else "dense", feature_dtype, density,
                normalization, source, sorted(graph.splits),
            )
        )  # fmt: skip


def write_synthetic(
    spec: synthetic.SyntheticSpec,
    out_dir: Path,
    *,
    dtype: str = "float32",
    force: bool = False,
    source: dict[str, Any] | None = None,
    report: Report | None = None,
) -> dict[str, Any]:
    """Generate ``spec``'s graph straight into a store: the same graph as
    :func:`agc_cli.data.synthetic.generate`, never held in memory as a whole.

    Memory: see :func:`agc_cli.data.synthetic.build` (O(N) index arrays and the cross-cluster
    edge keys; the features and topology go to the files).

    Returns:
        The store's ``meta.json`` content.
    """
    feature_dtype = _feature_dtype(dtype)
    if feature_dtype == np.float16 and spec.snr > _FLOAT16_MAX / 2:
        raise UsageError(f"--dtype float16: snr={spec.snr:g} puts features beyond float16's range")
    # The store's dtype of every array build() asks for (see its docstring).
    store_dtype = {
        "y": np.dtype(np.int64),
        "grouped": np.dtype(np.int32),
        "colptr": np.dtype(np.int64),
        "row": row_dtype(spec.nodes),
        "x": feature_dtype,
    }
    with StoreWriter(out_dir, force, report) as writer:

        def allocate(name: str, shape: tuple[int, ...], _: torch.dtype) -> Tensor:
            return writer.allocate(name, shape, store_dtype[name], scratch=name == "grouped")

        arrays = synthetic.build(spec, allocate)
        edges = int(arrays["row"].numel())
        del arrays
        return writer.commit(
            _meta_fields(
                spec.name, spec.nodes, edges, spec.features, spec.clusters, spec.nodes, "dense",
                feature_dtype, 1.0, "none", source, [],
            )
        )  # fmt: skip


def _feature_dtype(dtype: str) -> np.dtype:
    if dtype not in FEATURE_DTYPES:
        raise UsageError(f"--dtype: expected {' or '.join(FEATURE_DTYPES)}, got {dtype!r}")
    return FEATURE_DTYPES[dtype]


def _copy(writer: StoreWriter, name: str, tensor: Tensor, dtype: np.dtype) -> None:
    """Copy ``tensor`` into a new file ``name`` in steps of about ``_COPY_BYTES``."""
    dtype = np.dtype(dtype)
    out = writer.allocate(name, tuple(tensor.shape), dtype)
    row_bytes = math.prod(tensor.shape[1:]) * max(dtype.itemsize, tensor.element_size())
    step = max(1, _COPY_BYTES // max(1, row_bytes))
    for a in range(0, tensor.shape[0], step):
        chunk = tensor[a : a + step]
        if dtype == np.float16 and chunk.numel():
            peak = float(chunk.abs().max())
            if peak > _FLOAT16_MAX:
                raise UsageError(
                    f"--dtype float16: features reach {peak:.4g}, beyond float16's range "
                    f"({_FLOAT16_MAX:g}); use float32"
                )
        out[a : a + step] = chunk


def _meta_fields(
    name: str, nodes: int, edges: int, features: int, classes: int | None,
    labeled: int | None, layout: str, feature_dtype: np.dtype, density: float,
    normalization: str, source: dict[str, Any] | None, splits: list[str],
) -> dict[str, Any]:  # fmt: skip
    return {
        "name": name,
        "source": source or {},
        "nodes": nodes,
        "edges": edges,
        "features": features,
        "classes": classes,
        "labeled_nodes": labeled,
        "feature_layout": layout,
        "feature_dtype": str(feature_dtype),
        "feature_density": density,
        "feature_normalization": normalization,
        "splits": splits,
    }


# ----- reading --------------------------------------------------------------------------------


def data_bytes(meta: dict[str, Any]) -> int:
    """Bytes of every file a store's ``meta.json`` lists (what reading it all would take)."""
    return sum(int(entry.get("bytes", 0)) for entry in meta.get("files", {}).values())


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """``meta.json`` of the store at ``path``, checked for format and version only.

    Raises:
        DataError: unreadable, not JSON, another format or an unsupported version.
    """
    meta_path = Path(path).expanduser() / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{meta_path}: not a readable JSON file ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DataError(f"{meta_path}: not an agc store description (format != {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise DataError(
            f"{meta_path}: store format version {meta.get('version')!r}, this agc reads "
            f"{VERSION}; convert the dataset again with `agc convert`"
        )
    for key, optional in (("nodes", False), ("edges", False), ("features", False),
                          ("classes", True), ("labeled_nodes", True)):  # fmt: skip
        value = meta.get(key)
        if not (optional and value is None) and (
            not isinstance(value, int) or isinstance(value, bool) or value < 0
        ):
            raise DataError(f"{meta_path}: {key!r} must be an integer >= 0, got {value!r}")
    return meta


@dataclass(eq=False)
class StoredGraph(Graph):
    """A :class:`Graph` whose arrays are read-only memory maps of a store directory.

    The tensors map the files (``torch.from_numpy`` over ``np.memmap``): reading touches only
    the pages read, and writing into them would crash the process (nothing in agc does).
    :meth:`feature_rows` reads dense rows without the mapping; it pickles as its path, so
    worker processes reopen the files instead of receiving copies.

    Attributes:
        path: the store directory.
        meta: its ``meta.json``.
    """

    path: Path = field(default=Path(), kw_only=True)
    meta: dict[str, Any] = field(default_factory=dict, kw_only=True)
    reader: RowReader | None = field(default=None, kw_only=True, repr=False)

    def feature_rows(self, index: Tensor) -> Tensor:
        """Float32 rows of ``x`` for ``index`` (any order, repeats allowed).

        Dense rows are read from the file in ascending order (positioned reads, several threads
        for large gathers) and put back in the requested order: a gather through the mapping
        would map whole page-cache folios (about 1.4 MB per row on Linux 6.18), growing the
        resident set to the file size within a few batches.

        Raises:
            DataError: an id outside the store's nodes, or a row holding NaN or inf (damage
                the open-time checksum does not cover), naming the file and the row.
        """
        if self.reader is None:  # sparse features: the checked CSR rows, densified
            return self.sparse_feature_rows(index).to_dense()
        self._check_ids(index)
        rows = torch.from_numpy(self.reader.take(index.cpu().numpy())).float()
        finite = torch.isfinite(rows)
        if not bool(finite.all()):
            at = int((~finite).reshape(rows.shape[0], -1).any(1).nonzero()[0, 0])
            raise DataError(
                f"{self._file('x')}: row {int(index[at])} holds a non-finite feature "
                f"(NaN or inf); {_DAMAGED}"
            )
        return rows

    def sparse_feature_rows(self, index: Tensor) -> Tensor:
        """Float32 CSR rows of sparse features, checked like :meth:`feature_rows`; column
        indices outside the feature range are a :class:`DataError` too."""
        self._check_ids(index)
        crow = self.x.crow_indices()
        index = index.to(crow.device).long()
        starts, ends = crow[index], crow[index + 1]
        bad_row = (ends < starts) | (starts < 0) | (ends > self.x.values().numel())
        if bool(bad_row.any()):
            row = int(index[int(bad_row.nonzero()[0, 0])])
            raise DataError(
                f"{self._file('x_crow')}: the row pointers of node {row} run from "
                f"{int(crow[row])} to {int(crow[row + 1])}; {_DAMAGED}"
            )
        rows = super().sparse_feature_rows(index)
        cols, values = rows.col_indices(), rows.values()
        bad_col = (cols < 0) | (cols >= self.num_features)
        bad = bad_col | ~torch.isfinite(values)
        if bool(bad.any()):
            at = int(bad.nonzero()[0, 0])
            row = int(index[int(torch.searchsorted(rows.crow_indices(), at, right=True)) - 1])
            name = "x_col" if bool(bad_col[at]) else "x_values"
            what = (
                f"feature column {int(cols[at])} outside [0, {self.num_features})"
                if bool(bad_col[at])
                else "a non-finite feature (NaN or inf)"
            )
            raise DataError(f"{self._file(name)}: node {row} holds {what}; {_DAMAGED}")
        return rows

    def _check_ids(self, index: Tensor) -> None:
        if index.numel() == 0:
            return
        low, high = torch.aminmax(index)
        if int(low) < 0 or int(high) >= self.num_nodes:
            bad = int(low) if int(low) < 0 else int(high)
            raise DataError(
                f"{self.path}: node id {bad} requested, outside the store's {self.num_nodes} "
                "nodes (a damaged row.npy, or a node list naming nodes the graph lacks)"
            )

    def _file(self, name: str) -> Path:
        return store_file(self.path, self.meta["files"][name]["file"])

    def __reduce__(self) -> tuple:
        return open_store, (self.path,)


def open_store(path: str | os.PathLike) -> StoredGraph:
    """Map the store at ``path`` after checking every file against ``meta.json``.

    Raises:
        DataError: naming the file that is missing, truncated, of another dtype or shape than
            ``meta.json`` says, fails its checksum, or disagrees with the counts.
    """
    directory = Path(path).expanduser()
    meta = read_meta(directory)
    try:
        layout = meta["feature_layout"]
        names = ["colptr", "row"]
        names += ["x"] if layout == "dense" else ["x_crow", "x_col", "x_values"]
        names += ["y"] if "y" in meta["files"] else []
        names += [f"split_{s}" for s in meta["splits"]]
        mapped = {name: _map_file(directory, meta["files"][name]) for name in names}
        _check_counts(directory, meta, {name: array for name, (array, _, _) in mapped.items()})
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{directory / META_FILE}: malformed or incomplete ({type(exc).__name__}: {exc})"
        ) from None
    tensors = {name: _tensor(array) for name, (array, _, _) in mapped.items()}
    reader = None
    if layout == "dense":
        array, offset, x_path = mapped["x"]
        reader = RowReader(x_path, offset, array.shape, array.dtype)
        x = tensors["x"]
    else:
        x = torch.sparse_csr_tensor(
            tensors["x_crow"], tensors["x_col"], tensors["x_values"],
            size=(meta["nodes"], meta["features"]), check_invariants=False,
        )  # fmt: skip
    splits = {s: tensors[f"split_{s}"] for s in meta["splits"]}
    return StoredGraph(
        meta["name"], tensors["colptr"], tensors["row"], x, tensors.get("y"), splits,
        meta["classes"], path=directory, meta=meta, reader=reader,
    )  # fmt: skip


def _check_counts(directory: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Every array's dtype and shape agree with the counts in ``meta.json``."""
    nodes, edges, features = int(meta["nodes"]), int(meta["edges"]), int(meta["features"])
    feature_dtype = meta["feature_dtype"]
    nnz = arrays["x_col"].shape if "x_col" in arrays else None
    expected = {
        "colptr": (("int64",), (nodes + 1,)),
        "row": (("int32", "int64"), (edges,)),
        "x": ((feature_dtype,), (nodes, features)),
        "x_crow": (("int64",), (nodes + 1,)),
        "x_col": (("int64",), nnz),
        "x_values": ((feature_dtype,), nnz),
        "y": (("int64",), (nodes,)),
    }
    for name, array in arrays.items():
        dtypes, shape = expected.get(name, (("int64",), array.shape[:1]))
        if str(array.dtype) not in dtypes or array.shape != shape or array.ndim != len(shape):
            raise DataError(
                f"{directory / meta['files'][name]['file']}: holds {array.dtype} "
                f"{list(array.shape)}, but {META_FILE} (nodes={nodes}, edges={edges}, "
                f"features={features}) needs {'/'.join(dtypes)} {list(shape)}"
            )
    colptr = arrays["colptr"]
    if colptr[0] != 0 or colptr[-1] != edges:
        raise DataError(
            f"{directory / meta['files']['colptr']['file']}: column pointers run from "
            f"{colptr[0]} to {colptr[-1]}, expected 0 to {edges} (the edge count)"
        )


def store_file(directory: Path, name: object) -> Path:
    """The path of the store file ``name`` (as ``meta.json`` gives it), confined to the store.

    A name is one plain file name: no directory part, no ``..``, not absolute; and the file
    it names, symlinks resolved, lies inside the (resolved) store directory.

    Raises:
        DataError: naming the file and the store when ``name`` would lead anywhere else.
    """
    meta_path = Path(directory) / META_FILE
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or Path(name).is_absolute()
    ):
        raise DataError(
            f"{meta_path}: file {name!r} is not a plain file name inside the store; "
            "a store only reads its own files"
        )
    path = Path(directory) / name
    try:
        inside = path.resolve().is_relative_to(Path(directory).resolve())
    except (OSError, RuntimeError) as exc:  # a symlink loop, say
        raise DataError(f"{path}: cannot be resolved ({exc})") from None
    if not inside:
        raise DataError(
            f"{path}: leads outside the store {directory} (a symlink to {path.resolve()}); "
            "a store only reads its own files"
        )
    return path


def _map_file(directory: Path, entry: dict[str, Any]) -> tuple[np.ndarray, int, Path]:
    """Check one file against its ``meta.json`` entry and map it read-only.

    Returns:
        The mapped array, the byte offset of its data in the file and the file's path.
    """
    path = store_file(directory, entry["file"])
    if not path.is_file():
        raise DataError(f"{path}: missing (listed in {directory / META_FILE})")
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }[version]
            shape, fortran_order, dtype = read_header(fh)
            offset = fh.tell()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    if fortran_order or dtype.hasobject:
        raise DataError(f"{path}: expected a C-ordered numeric array")
    if str(dtype) != entry["dtype"] or list(shape) != list(entry["shape"]):
        raise DataError(
            f"{path}: holds {dtype} {list(shape)}, but {META_FILE} says "
            f"{entry['dtype']} {entry['shape']}"
        )
    needed = offset + math.prod(shape) * dtype.itemsize
    if size != needed:
        state = "truncated" if size < needed else "longer than its header says"
        raise DataError(
            f"{path}: {state}: {size:,} bytes, the {dtype} {list(shape)} needs {needed:,}"
        )
    if size != entry["bytes"]:
        raise DataError(f"{path}: {size:,} bytes, but {META_FILE} says {entry['bytes']:,}")
    if file_checksum(path) != entry["checksum"]:
        raise DataError(
            f"{path}: checksum differs from {META_FILE}: the file changed after conversion; "
            "convert the dataset again"
        )
    if math.prod(shape) == 0:
        return np.empty(shape, dtype), offset, path
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape), offset, path


def _tensor(array: np.ndarray) -> Tensor:
    with warnings.catch_warnings():
        # Read-only on purpose: agc never writes into a graph's arrays.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


class RowReader:
    """Rows of a C-ordered ``.npy`` array, read with positioned reads instead of a mapping.

    The file descriptor and the reading threads belong to one process: a forked DataLoader
    worker opens its own on first use.

    Args:
        path: the ``.npy`` file.
        offset: byte offset of the data (after the header).
        shape: the array's shape; rows are along the first axis.
        dtype: the array's dtype.
    """

    def __init__(self, path: Path, offset: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path = Path(path)
        self.offset = offset
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.row_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        self._pid: int | None = None
        self._fd = -1
        self._pool: ThreadPoolExecutor | None = None

    def take(self, index: np.ndarray) -> np.ndarray:
        """Rows ``index`` (int, any order, repeats allowed) as a new ``[len(index), ...]`` array.

        Raises:
            IndexError: an index outside ``[0, shape[0])``.
            DataError: the file ended early (it was truncated after the store was opened).
        """
        ids, inverse = np.unique(np.asarray(index, dtype=np.int64), return_inverse=True)
        if ids.size and (ids[0] < 0 or ids[-1] >= self.shape[0]):
            bad = ids[0] if ids[0] < 0 else ids[-1]
            raise IndexError(f"row {bad} out of range [0, {self.shape[0]}) in {self.path}")
        if ids.size == 0:
            return np.empty((inverse.size, *self.shape[1:]), self.dtype)
        # Rows at most _GAP_BYTES apart are read as one span, gap included: a system call
        # costs more than copying a page, and the disk reads whole pages anyway.
        gap_rows = _GAP_BYTES // max(1, self.row_bytes)
        first = np.flatnonzero(np.diff(ids, prepend=ids[0] - gap_rows - 2) > gap_rows + 1)
        span_start = ids[first]
        span_rows = np.append(ids[first[1:] - 1], ids[-1]) + 1 - span_start
        span_at = np.cumsum(span_rows) - span_rows  # where each span lands in `spans`
        spans = np.empty((int(span_rows.sum()), *self.shape[1:]), self.dtype)
        self._open()
        jobs = np.stack([span_at, span_start, span_rows], axis=1)
        if ids.size < _PARALLEL_ROWS or READ_THREADS == 1:
            self._read(spans, jobs)
        else:
            groups = np.array_split(jobs, min(READ_THREADS, len(jobs)))
            # list() waits for every group and re-raises the first error.
            list(self._pool.map(lambda group: self._read(spans, group), groups))
        span_of = np.repeat(np.arange(first.size), np.diff(np.append(first, ids.size)))
        return spans[(span_at - span_start)[span_of] + ids][inverse]

    def _read(self, spans: np.ndarray, jobs: np.ndarray) -> None:
        """Read each job ``(row in spans, first row in the file, rows)``."""
        flat = memoryview(spans.reshape(spans.shape[0], -1)).cast("B")
        size = self.row_bytes
        for at, start, count in jobs.tolist():
            view = flat[at * size : (at + count) * size]
            position = self.offset + start * size
            done = 0
            while done < len(view):
                got = os.preadv(self._fd, [view[done : done + _MAX_READ_BYTES]], position + done)
                if got == 0:
                    raise DataError(f"{self.path}: ended early; was it truncated after opening?")
                done += got

    def _open(self) -> None:
        if self._pid == os.getpid():
            return
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if hasattr(os, "posix_fadvise"):
            # Gathers are random: readahead would read (and cache) neighbours nobody asked for.
            os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_RANDOM)
        weakref.finalize(self, os.close, self._fd)
        self._pool = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="agc-store-read")
        weakref.finalize(self, self._pool.shutdown, wait=False)
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_pid=None, _fd=-1, _pool=None)
        return state
