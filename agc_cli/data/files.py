"""User-supplied graphs: a ``.npz`` file, a directory of ``.npy`` files, or an edge-list CSV.

Accepted forms:
- ``graph.npz`` with arrays ``edge_index`` (2×E or E×2 integers), ``x`` (float ``[N, F]``) and
  optionally ``y`` (integer ``[N]``, negative = unlabeled);
- a directory holding ``edge_index.npy``, ``x.npy`` and optionally ``y.npy`` (or ``edges.csv``
  instead of ``edge_index.npy``);
- ``edges.csv`` (two integer columns ``source,target``; a non-numeric header line is skipped)
  with the features in ``x.npy`` (or ``features.npy``) beside it, ``y.npy`` optional.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from agc_cli.data.graph import Graph
from agc_cli.errors import DataError
from agc_cli.utils.io import reading

_FEATURE_NAMES = ("x.npy", "features.npy")


def is_user_graph(path: Path) -> bool:
    path = Path(path)
    return path.suffix in (".npz", ".csv") and path.is_file() or path.is_dir()


def load_user_graph(path: Path) -> Graph:
    """Load and validate a user graph; every problem raises DataError naming the file."""
    path = Path(path)
    if path.suffix == ".npz":
        with reading(path, "not a readable .npz file"):
            with np.load(path, allow_pickle=False) as archive:
                arrays = {key: archive[key] for key in archive.files}
        for key in ("edge_index", "x"):
            if key not in arrays:
                raise DataError(f"{path}: missing array '{key}' (has {sorted(arrays)})")
        edge_index, x, y = arrays["edge_index"], arrays["x"], arrays.get("y")
        names = {k: f"{path}[{k}]" for k in ("edge_index", "x", "y")}
    else:
        folder = path if path.is_dir() else path.parent
        if path.is_dir():
            edges_file = _first(folder, ("edge_index.npy", "edges.csv"), "edge_index.npy")
        else:
            edges_file = path
        x_file = _first(folder, _FEATURE_NAMES, "x.npy")
        y_file = folder / "y.npy"
        edge_index = _read_edges(edges_file)
        x = _read_npy(x_file)
        y = _read_npy(y_file) if y_file.is_file() else None
        names = {"edge_index": str(edges_file), "x": str(x_file), "y": str(y_file)}
    return _validate(path.stem if path.is_file() else path.name, edge_index, x, y, names)


def _first(folder: Path, candidates: tuple[str, ...], label: str) -> Path:
    for name in candidates:
        if (folder / name).is_file():
            return folder / name
    raise DataError(f"{folder}: missing {label} (looked for {', '.join(candidates)})")


def _read_npy(path: Path) -> np.ndarray:
    with reading(path, "not a readable .npy file"):
        array = np.load(path, allow_pickle=False)
    if not isinstance(array, np.ndarray):
        raise DataError(f"{path}: not a .npy array file")
    return array


def _read_edges(path: Path) -> np.ndarray:
    if path.suffix == ".npy":
        return _read_npy(path)
    with reading(path, "not an edge list of 'source,target' integers"):
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
        skip = 0 if first.replace(",", "").replace(" ", "").strip().lstrip("-").isdigit() else 1
        edges = np.loadtxt(path, delimiter=",", dtype=np.int64, skiprows=skip, ndmin=2)
    return edges


def _validate(
    name: str, edge_index: np.ndarray, x: np.ndarray, y: np.ndarray | None, files: dict[str, str]
) -> Graph:
    if not np.issubdtype(edge_index.dtype, np.integer):
        raise DataError(f"{files['edge_index']}: edge ids must be integers, got {edge_index.dtype}")
    if edge_index.ndim != 2 or 2 not in edge_index.shape:
        raise DataError(
            f"{files['edge_index']}: expected shape 2×E or E×2, got {tuple(edge_index.shape)}"
        )
    if edge_index.shape[0] != 2:
        edge_index = edge_index.T
    if x.ndim != 2:
        raise DataError(f"{files['x']}: features must be 2-D [nodes, features], got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{files['x']}: features must be numeric, got {x.dtype}")
    num_nodes = x.shape[0]
    if num_nodes == 0:
        raise DataError(f"{files['x']}: the graph has no nodes (the feature matrix has 0 rows)")
    if x.shape[1] == 0:
        raise DataError(f"{files['x']}: features have width 0; give at least one per node")
    if edge_index.size:
        low, high = int(edge_index.min()), int(edge_index.max())
        if low < 0 or high >= num_nodes:
            bad = low if low < 0 else high
            raise DataError(
                f"{files['edge_index']}: node id {bad} out of range [0, {num_nodes}) "
                f"(the feature matrix has {num_nodes} rows)"
            )
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        r = int(np.argwhere(~finite)[0][0])
        raise DataError(f"{files['x']}: features contain NaN or inf (first in row {r})")
    labels = None
    if y is not None:
        y = np.asarray(y).reshape(-1) if np.asarray(y).ndim == 2 and 1 in y.shape else y
        if y.ndim != 1 or y.shape[0] != num_nodes:
            raise DataError(f"{files['y']}: expected {num_nodes} labels, got shape {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{files['y']}: labels must be integers, got {y.dtype}")
        if y.size and int(y.max()) >= num_nodes:
            bad = int(np.argmax(y))
            raise DataError(
                f"{files['y']}: label {int(y[bad])} of node {bad} is not below the node count "
                f"{num_nodes} (labels are class ids 0, 1, ...; negative = unlabeled)"
            )
        labels = torch.from_numpy(y.astype(np.int64))
    return Graph.from_edge_index(
        name, torch.from_numpy(edge_index.astype(np.int64)), num_nodes, torch.from_numpy(x), labels
    )
