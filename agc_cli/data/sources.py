"""One entry point for every graph source: catalog names, synthetic specs and user files."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from agc_cli.data import catalog, store, synthetic
from agc_cli.data.cache import load_cached_graph, save_graph
from agc_cli.data.files import is_user_graph, load_user_graph
from agc_cli.data.graph import Graph
from agc_cli.data.info import GraphInfo, describe_source, info_of, unknown_dataset
from agc_cli.data.real import fetch_raw, load_real, source_identity
from agc_cli.errors import UsageError

__all__ = ["GraphInfo", "convert_dataset", "describe_source", "info_of", "load_graph"]


def load_graph(
    dataset: str,
    root: Path,
    cache_dir: Path,
    labeled_only: bool = False,
    storage: str = "memory",
) -> Graph:
    """Load ``dataset``: a catalog name, a synthetic preset/spec, a path to user files, or a
    store directory written by ``agc convert`` (memory-mapped, see :mod:`agc_cli.data.store`).

    Catalog and synthetic graphs are cached under ``cache_dir`` (None: no cache), so the second
    load is a file read; a catalog graph's cache entry is keyed by its raw files (resolved
    path, size, inode, times), so another ``root`` or a replaced file is loaded afresh.
    ``root`` is only ever read unless raw files must be downloaded. With
    ``storage="disk"`` they are converted once into a store under ``cache_dir/stores`` and
    memory-mapped from there.
    """
    cache_dir = Path(cache_dir)
    if store.is_store(dataset):
        if labeled_only:
            raise UsageError(
                f"labeled_only: {dataset} is an on-disk store; convert the labeled subgraph "
                "with `agc convert --labeled-only` instead"
            )
        return store.open_store(dataset)
    entry = catalog.lookup(dataset)
    spec = synthetic.parse_synthetic(dataset) if entry is None else None
    if entry is None and spec is None:
        path = Path(dataset).expanduser()
        if not is_user_graph(path):
            raise unknown_dataset(dataset)
        if storage == "disk":
            raise UsageError(
                f"storage disk: convert {dataset} once with `agc convert {dataset} OUT_DIR` "
                "and use --dataset OUT_DIR"
            )
        return load_user_graph(path)
    if entry is not None:
        # Keyed by the raw files' identity, not the name alone: the same name under another
        # --root, or files replaced in place, is another graph. Missing files are fetched
        # first so that the key names the files actually read.
        fetch_raw(entry, Path(root))
        identity = f"{entry.name}:{source_identity(entry, Path(root))}"
    else:
        identity = f"{spec.name}:{synthetic.spec_key(spec)}"
    key = _cache_key(identity, labeled_only)
    if storage == "disk":
        directory = cache_dir / "stores" / f"{key}-v{store.VERSION}"
        if not store.is_store(directory):
            convert_dataset(dataset, directory, root, cache_dir, labeled_only, force=True)
        return store.open_store(directory)
    cache_file = cache_dir / "graphs" / f"{key}.pt"
    cached = load_cached_graph(cache_file)
    if cached is not None:
        return cached
    if entry is not None:
        graph = load_real(entry, Path(root), labeled_only)
    else:
        graph = synthetic.generate(spec)
    save_graph(graph, cache_file)
    return graph


def convert_dataset(
    dataset: str,
    out_dir: Path,
    root: Path,
    cache_dir: Path,
    labeled_only: bool = False,
    dtype: str = "float32",
    force: bool = False,
    report: store.Report | None = None,
) -> dict[str, Any]:
    """Write ``dataset`` (any source :func:`load_graph` reads) as a store in ``out_dir``.

    Synthetic graphs are generated straight into the files, so they may exceed RAM; other
    sources are loaded first, then copied chunk by chunk.

    Returns:
        The store's ``meta.json`` content.

    Raises:
        UsageError: ``out_dir`` is refused (checked before any loading), or a bad ``dtype``.
    """
    out_dir = Path(out_dir).expanduser()
    store.check_target(out_dir, force)
    from_store = store.is_store(dataset)
    entry = None if from_store else catalog.lookup(dataset)
    spec = None if from_store or entry is not None else synthetic.parse_synthetic(dataset)
    source: dict[str, Any] = {"dataset": dataset}
    if spec is not None:
        source.update(kind="synthetic", spec=synthetic.spec_key(spec))
        return store.write_synthetic(
            spec, out_dir, dtype=dtype, force=force, source=source, report=report
        )
    graph = load_graph(dataset, root, cache_dir, labeled_only)
    normalization = "none"
    if isinstance(graph, store.StoredGraph):
        source.update(kind="store", source=graph.meta["source"])
        normalization = graph.meta["feature_normalization"]
    elif entry is not None:
        source.update(kind="catalog", labeled_only=bool(labeled_only))
        normalization = "row-sum" if entry.bag_of_words else "none"
    else:
        source.update(kind="file", path=str(Path(dataset).expanduser().resolve()))
    return store.write_graph(
        graph, out_dir, dtype=dtype, force=force, source=source, normalization=normalization,
        report=report,
    )  # fmt: skip


def _cache_key(identity: str, labeled_only: bool) -> str:
    digest = hashlib.sha1(identity.encode()).hexdigest()[:10]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", identity.split(":")[0])
    return f"{stem}-{digest}{'-labeled' if labeled_only else ''}"
