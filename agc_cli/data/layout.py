"""Where a source's files live: a store's ``meta.json``, a catalog dataset's raw files.

Plain path logic without torch or numpy, shared by the loaders (``store``, ``real``) and by
:mod:`agc_cli.data.info`, which answers before anything heavy is imported.
"""

from __future__ import annotations

from pathlib import Path

from agc_cli.data.catalog import CatalogEntry

META_FILE = "meta.json"  # the file that makes a directory a store (see agc_cli.data.store)


def is_store(path: str | Path) -> bool:
    """Whether ``path`` is a store directory (it holds ``meta.json``)."""
    return (Path(path).expanduser() / META_FILE).is_file()


def raw_dir(entry: CatalogEntry, root: Path) -> Path:
    """Where ``entry``'s raw files are expected under ``root``."""
    return Path(root) / entry.name / ("" if entry.loader == "ogb" else "raw")


def missing_raw_files(entry: CatalogEntry, root: Path) -> list[Path]:
    base = raw_dir(entry, root)
    return [base / f for f in entry.raw_files if not (base / f).is_file()]
