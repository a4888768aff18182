"""``agc convert DATASET OUT_DIR``: write a graph as an on-disk store for out-of-core training."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import ConvertReport
from agc_cli.errors import UsageError


def convert(
    dataset: Annotated[
        str, typer.Argument(help="Catalog name, synthetic preset or spec, path, or store.")
    ],
    out_dir: Annotated[Path, typer.Argument(help="Store directory to create.")],
    dtype: Annotated[
        str, typer.Option("--dtype", help="Feature dtype on disk: float32 or float16.")
    ] = "float32",
    force: o.Force = False,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    labeled_only: o.LabeledOnly = None,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Write a graph as an on-disk store that train, infer and cluster memory-map.

    Use the store (.npy files + meta.json) with --dataset OUT_DIR. Synthetic graphs are
    generated straight into the files, so they may be larger than RAM. An existing OUT_DIR is
    never overwritten without --force; a crash leaves it untouched.
    """
    render.configure(json_out, quiet, verbose)
    from agc_cli.settings import load_settings

    settings = load_settings(o.settings_flags(locals()))
    if dtype not in ("float32", "float16"):
        raise UsageError(f"--dtype: expected float32 or float16, got {dtype!r}")
    common.check_dataset(settings.dataset)
    from agc_cli.data.sources import convert_dataset
    from agc_cli.data.store import data_bytes
    from agc_cli.engine.memory import MemoryMonitor

    t0 = time.perf_counter()
    with MemoryMonitor() as monitor:
        meta = convert_dataset(
            settings.dataset, out_dir, settings.root, settings.cache_dir, settings.labeled_only,
            dtype=dtype, force=force, report=render.note,
        )  # fmt: skip
    seconds = time.perf_counter() - t0
    size = data_bytes(meta)
    report = ConvertReport(out_dir, size, seconds, int(monitor.peak.rss_bytes), meta)
    render.emit(report, show)
    render.note(f"use it with: agc train --dataset {out_dir}")


def show(report: ConvertReport) -> None:
    meta, fmt_bytes = report.meta, render.fmt_bytes
    labeled = meta["labeled_nodes"]
    files = ", ".join(f"{e['file']} {fmt_bytes(e['bytes'])}" for e in meta["files"].values())
    rows = [
        ("nodes", f"{meta['nodes']:,}"),
        ("directed edges", f"{meta['edges']:,}"),
        ("features", f"{meta['features']:,} {meta['feature_dtype']} ({meta['feature_layout']})"),
        ("labeled nodes", f"{labeled:,}" if labeled is not None else "-"),
        ("files", files),
        ("size", fmt_bytes(report.bytes)),
        ("time", f"{report.seconds:.1f} s"),
        ("peak memory", render.peak_line(report.peak_rss_bytes, None)),
    ]
    render.key_values(f"Store {report.path}", rows)
