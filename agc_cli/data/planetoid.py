"""Planetoid's raw citation datasets (Cora, CiteSeer, PubMed) read without running any code.

The eight files ``ind.<name>.{x,tx,allx,y,ty,ally,graph,test.index}`` of
https://github.com/kimiyoung/planetoid are read with :mod:`agc_cli.data.safe_pickle` (and the
test index as text), then assembled the way PyG's ``Planetoid`` dataset does, so the graph is
the one users of PyG know:

- the nodes are ``allx`` followed by ``tx``; ``test.index`` lists, in file order, the node id of
  each test row, so the rows are permuted to put each at its id;
- CiteSeer's test ids skip isolated nodes: its ``tx``/``ty`` are spread over the whole id range
  with zero rows (label 0) for the missing ones;
- labels are the argmax of the one-hot rows (0 for an all-zero row);
- the public split: the first ``len(y)`` nodes train, the next 500 validate, the test ids test;
- edges come from the adjacency lists, self-loops dropped (duplicates fold later).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from agc_cli.data import safe_pickle
from agc_cli.errors import DataError

NAMES = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
VALIDATION_SIZE = 500


@dataclass
class PlanetoidData:
    """A Planetoid graph as arrays: CSR features, labels, edges ``[2, E]`` and split ids."""

    x: sp.csr_matrix
    y: np.ndarray
    edge_index: np.ndarray
    splits: dict[str, np.ndarray]


def read_planetoid(folder: Path, name: str) -> PlanetoidData:
    """Read and assemble the Planetoid dataset ``name`` (``cora``, ...) from ``folder``.

    Raises:
        DataError: naming the file that is unreadable, not one of Planetoid's arrays, or
            inconsistent with the others.
    """
    folder = Path(folder)
    prefix = name.lower()
    path = {n: folder / f"ind.{prefix}.{n}" for n in NAMES}
    arrays = {n: _matrix(path[n]) for n in ("x", "tx", "allx", "y", "ty", "ally")}
    graph = _adjacency(path["graph"])
    test_index = _test_index(path["test.index"])

    allx, tx, ally, ty = arrays["allx"], arrays["tx"], arrays["ally"], arrays["ty"]
    for a, b in (("allx", "ally"), ("tx", "ty")):
        if arrays[a].shape[0] != arrays[b].shape[0]:
            raise DataError(
                f"{path[b]}: {arrays[b].shape[0]} label rows for {arrays[a].shape[0]} "
                f"feature rows in {path[a].name}"
            )
    for n in ("x", "tx"):
        if arrays[n].shape[1] != allx.shape[1]:
            raise DataError(f"{path[n]}: {arrays[n].shape[1]} features, allx has {allx.shape[1]}")
    for n in ("y", "ty"):
        if arrays[n].shape[1] != ally.shape[1]:
            raise DataError(f"{path[n]}: {arrays[n].shape[1]} classes, ally has {ally.shape[1]}")
    if test_index.size != tx.shape[0]:
        raise DataError(
            f"{path['test.index']}: {test_index.size} test ids for {tx.shape[0]} rows in "
            f"{path['tx'].name}"
        )
    if np.unique(test_index).size != test_index.size:
        raise DataError(f"{path['test.index']}: a test id is listed twice")
    order = np.sort(test_index)
    if test_index.size and order[0] < 0:
        raise DataError(f"{path['test.index']}: negative test id {order[0]}")

    if prefix == "citeseer" and test_index.size:
        # Isolated nodes have no test row: spread tx/ty over the id range, zeros in the gaps.
        span = int(order[-1] - order[0]) + 1
        at = order - order[0]
        tx = _spread(tx, at, span)
        ty = _spread(ty, at, span)

    x = sp.vstack([sp.csr_matrix(allx), sp.csr_matrix(tx)], format="csr")
    labels = np.vstack([_dense(ally), _dense(ty)])
    n = x.shape[0]
    if test_index.size and order[-1] >= n:
        raise DataError(f"{path['test.index']}: test id {order[-1]} beyond the {n} nodes")
    # Row test_index[i] takes the row of id order[i]: the test rows are stored in id order.
    perm = np.arange(n)
    perm[test_index] = order
    x = x[perm]
    y = labels.argmax(axis=1).astype(np.int64)[perm] if labels.shape[1] else np.zeros(n, np.int64)

    train = np.arange(arrays["y"].shape[0], dtype=np.int64)
    valid = np.arange(train.size, train.size + VALIDATION_SIZE, dtype=np.int64)
    if valid.size and valid[-1] >= n:
        raise DataError(
            f"{path['y']}: {train.size} training rows leave no {VALIDATION_SIZE} validation "
            f"nodes among {n}"
        )
    edge_index = _edges(graph, n, path["graph"])
    return PlanetoidData(x, y, edge_index, {"train": train, "val": valid, "test": order})


def _matrix(path: Path) -> np.ndarray | sp.csr_matrix:
    value = safe_pickle.load(path)
    if isinstance(value, np.ndarray) and value.ndim == 2 or isinstance(value, sp.csr_matrix):
        return value
    raise DataError(f"{path}: expected a 2-D array or CSR matrix, found {type(value).__name__}")


def _dense(a: np.ndarray | sp.csr_matrix) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a)


def _spread(a: np.ndarray | sp.csr_matrix, at: np.ndarray, rows: int) -> sp.csr_matrix:
    """``a``'s rows placed at rows ``at`` of a ``rows``-row matrix, zeros elsewhere."""
    a = sp.coo_matrix(a)
    return sp.csr_matrix((a.data, (at[a.row], a.col)), shape=(rows, a.shape[1]))


def _adjacency(path: Path) -> dict:
    value = safe_pickle.load(path)
    if not isinstance(value, dict):
        raise DataError(f"{path}: expected the adjacency lists, found {type(value).__name__}")
    return value


def _edges(graph: dict, num_nodes: int, path: Path) -> np.ndarray:
    """``[2, E]`` int64 edges (node, neighbour) of the adjacency lists, self-loops dropped."""
    sources, targets = [], []
    for node, neighbours in graph.items():
        if not (isinstance(node, int) and isinstance(neighbours, list)):
            raise DataError(f"{path}: expected node id -> list of neighbour ids")
        sources.append(np.full(len(neighbours), node, dtype=np.int64))
        try:
            targets.append(np.asarray(neighbours, dtype=np.int64).reshape(-1))
        except (TypeError, ValueError, OverflowError):
            raise DataError(f"{path}: node {node}: neighbour ids must be integers") from None
    if not sources:
        return np.empty((2, 0), dtype=np.int64)
    edge_index = np.stack([np.concatenate(sources), np.concatenate(targets)])
    if edge_index.size and (edge_index.min() < 0 or edge_index.max() >= num_nodes):
        bad = edge_index.min() if edge_index.min() < 0 else edge_index.max()
        raise DataError(f"{path}: node id {bad} outside the {num_nodes} nodes")
    return edge_index[:, edge_index[0] != edge_index[1]]


def _test_index(path: Path) -> np.ndarray:
    try:
        tokens = path.read_text(encoding="ascii").split()
        return np.array([int(t) for t in tokens], dtype=np.int64)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except (UnicodeDecodeError, ValueError, OverflowError):
        raise DataError(f"{path}: expected one integer node id per line") from None
