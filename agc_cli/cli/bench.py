"""``agc bench``: the model × dataset × training-seed grid, resumable, against a reference."""

from __future__ import annotations

from pathlib import Path

from agc_cli.cli import common, jobs, render
from agc_cli.cli import options as o
from agc_cli.cli.results import BenchReport
from agc_cli.errors import InterruptedRun, UsageError


def bench(
    models: o.Models,
    datasets: o.Datasets,
    seeds: o.Seeds = "5",
    config: o.Config = None,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    device: o.Device = None,
    epochs: o.Epochs = None,
    runs: o.Runs = None,
    n_init: o.NInit = None,
    reference: o.Reference = None,
    tolerance: o.Tolerance = 0.5,
    metric: o.Metric = "nmi",
    out: o.BenchOut = Path("bench"),
    dry_run: o.DryRun = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Benchmark methods as PyAGC does: each model trained once per seed, clustered by k-means.

    Each cell uses its method's preset for its dataset; results are mean ± std over the seeds.
    Finished cells are read back from OUT/results.jsonl, never re-run: after Ctrl-C, rerun.
    A cell that cannot run (data missing offline, will not fit) is skipped with its reason.
    Writes OUT/results.csv and OUT/table.md; --reference adds a Δ column and ✓/✗.
    """
    render.configure(json_out, quiet, verbose)
    from agc_cli.engine import bench as grid

    names = _names(models, "models")
    for name in names:
        common.check_model(name)
    places = _names(datasets, "datasets")
    for place in places:
        common.check_dataset(place)
    chosen = o.parse_seeds(seeds or "5")
    if metric not in grid.METRICS:
        raise UsageError(f"metric: unknown {metric!r}; choose one of {', '.join(grid.METRICS)}")
    table = grid.read_reference(reference) if reference is not None else None
    if out.exists() and not out.is_dir():
        raise UsageError(f"out: {out} exists and is not a directory")
    cells = grid.grid([n.lower() for n in names], places, chosen)
    flags = o.settings_flags(locals(), exclude=("models", "datasets", "seeds", "metric"))
    if dry_run:
        render.emit({"cells": [c.__dict__ | {"run_dir": c.folder(out)} for c in cells]},
                    _show_cells)  # fmt: skip
        return
    try:
        report = jobs.run_grid(cells, flags, config, out, table, metric, tolerance)
    except InterruptedRun as exc:  # a grid continues by rerunning, not by `agc resume`
        raise InterruptedRun(
            f"{exc.stopped}; the grid keeps every finished cell: rerun the same agc bench "
            f"command (--out {out}) to continue"
        ) from None
    render.emit(report, show)


def _names(text: str, what: str) -> list[str]:
    """Comma-separated names; a synthetic spec keeps its own commas (``sbm:nodes=300,k=3``:
    a part like ``k=3`` continues the spec before it)."""
    names: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if names and "=" in part and ":" not in part and ":" in names[-1]:
            names[-1] += f",{part}"
        elif part:
            names.append(part)
    if not names:
        raise UsageError(f"{what}: expected a comma-separated list, got {text!r}")
    if len(set(names)) != len(names):
        raise UsageError(f"{what}: each name once, got {text!r}")
    return names


def _show_cells(plan: dict) -> None:
    rows = [[c["model"], c["dataset"], str(c["seed"]), str(c["run_dir"])] for c in plan["cells"]]
    render.table(f"agc bench: {len(rows)} cells (dry run)", ["model", "dataset", "seed", "run"],
                 rows)  # fmt: skip


def show(report: BenchReport) -> None:
    render.line(report.table)
    done = f"{report.ran} ran, {report.reused} read back, {len(report.skipped)} skipped"
    render.note(f"{report.cells} cells: {done} in {report.seconds:.1f} s; "
                f"tables in {report.files['table']} and {report.files['csv']}")  # fmt: skip
