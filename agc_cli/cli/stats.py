"""``agc stats``: statistics, memory estimate per mode, device fit and recommended settings."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from agc_cli.cli import common, render
from agc_cli.cli import options as o
from agc_cli.cli.results import StatsReport
from agc_cli.errors import UsageError

if TYPE_CHECKING:
    from agc_cli.data.info import GraphInfo

# Synthetic graphs up to this size are generated for detailed statistics without --load.
_AUTO_LOAD_NODES = 1_000_000


def stats(
    dataset: Annotated[
        str | None, typer.Argument(help="Catalog name, synthetic preset, path or store.")
    ] = None,
    load: Annotated[
        bool, typer.Option("--load", help="Load (or download) the data for detailed statistics.")
    ] = False,
    gpu_memory: Annotated[
        str | None,
        typer.Option("--gpu-memory", help="What-if device budget, e.g. 32GB (default: detect)."),
    ] = None,
    emit_config: Annotated[
        Path | None,
        typer.Option("--emit-config", help="Write the recommendation as a train.conf.yaml."),
    ] = None,
    force: o.Force = False,
    config: o.Config = None,
    root: o.Root = None,
    cache_dir: o.CacheDir = None,
    labeled_only: o.LabeledOnly = None,
    model: o.Model = None,
    gnn_type: o.GnnType = None,
    hidden_channels: o.HiddenChannels = None,
    num_layers: o.NumLayers = None,
    heads: o.Heads = None,
    batch_size: o.BatchSize = None,
    fan_out: o.FanOut = None,
    infer_batch_size: o.InferBatchSize = None,
    precision: o.Precision = None,
    device: o.Device = None,
    verify: o.Verify = False,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Statistics, memory estimate per mode, device fit and recommended settings.

    Answers from catalog metadata without downloading anything; --load computes the
    detailed statistics from the data.
    """
    render.configure(json_out, quiet, verbose)
    from agc_cli.data.info import describe_source
    from agc_cli.engine.planner import detect_device, parse_size, recommend
    from agc_cli.settings import load_settings

    settings = load_settings(o.settings_flags(locals()), config)
    common.check_model(settings.model)
    if verify:
        common.verify_dataset(settings.dataset)
    if emit_config is not None and emit_config.exists() and not force:
        raise UsageError(f"--emit-config: {emit_config} exists; pass --force to overwrite it")
    try:
        budget = parse_size(gpu_memory) if gpu_memory else None
    except ValueError as exc:
        raise UsageError(f"--gpu-memory: {exc}") from None
    info = describe_source(settings.dataset, settings.root)
    statistics = None
    auto = info.source == "file" or (info.source == "synthetic" and info.nodes <= _AUTO_LOAD_NODES)
    if load or auto:
        from agc_cli.data.sources import info_of, load_graph
        from agc_cli.data.statistics import graph_statistics

        render.note(f"loading {info.name} ...")
        graph = load_graph(
            settings.dataset, settings.root, settings.cache_dir, settings.labeled_only
        )
        statistics = graph_statistics(graph)
        info = info_of(graph, info.source)
    plan = recommend(info, settings, detect_device(budget, settings.device))
    chosen = {
        k: getattr(settings, k)
        for k in ("model", "gnn_type", "hidden_channels", "num_layers", "precision")
    }
    report = StatsReport(info, statistics, chosen, plan, emit_config)  # fmt: skip
    if emit_config is not None:
        _write_config(emit_config, plan.recommendation.settings, info)
        render.note(f"wrote {emit_config} (use: agc train --config {emit_config})")
    render.emit(report, show)


def show(report: StatsReport) -> None:
    _render(report.dataset, report.statistics, report.plan, report.settings)


def _write_config(path: Path, rec: dict[str, Any], info: GraphInfo) -> None:
    import yaml

    from agc_cli.utils.io import atomic_write_text

    header = f"# agc stats recommendation for {info.name} ({info.nodes:,} nodes)\n"
    atomic_write_text(path, header + yaml.safe_dump(rec, sort_keys=False))


def _render(info: GraphInfo, statistics: dict | None, plan: Any, settings: dict) -> None:
    fmt_bytes = render.fmt_bytes
    rows: list[tuple[str, Any]] = [
        ("source", info.source),
        ("nodes", f"{info.nodes:,}"),
        ("directed edges", f"{info.edges:,}"),
        ("features", f"{info.features:,}"),
        ("classes", info.classes if info.classes is not None else "-"),
    ]
    if statistics is None and info.source == "store":
        rows.append(("detail", "the store's meta.json; --load for detailed statistics"))
    elif statistics is None:
        where = "on disk" if info.available else "not on disk"
        rows.append(("detail", f"catalog metadata ({where}); --load for detailed statistics"))
    else:
        s = statistics
        rows += [
            ("undirected edges", f"{s['undirected_edges']:,}"),
            ("avg degree", f"{s['avg_degree']:.2f}"),
            ("max degree", f"{s['max_degree']:,}"),
            ("isolated nodes", f"{s['isolated_nodes']:,}"),
            ("self-loops", f"{s['self_loops']:,}"),
            ("density", f"{s['density']:.3g}"),
        ]
        for key in ("edge_homophily", "node_homophily"):
            if s.get(key) is not None:
                rows.append((key.replace("_", " "), f"{s[key]:.3f}"))
    render.key_values(f"{info.name}", rows)

    dev = plan.device
    dev_line = f"{dev.name} ({dev.kind}), free {fmt_bytes(dev.free_bytes)}"
    dev_line += f", plan budget {dev.budget_derivation()}"
    header = ["mode", "estimate", "fits " + ("what-if budget" if dev.what_if else dev.kind)]
    rows2 = []
    for key, est in plan.estimates.items():
        parts = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in est.components.items())
        rows2.append(
            [est.mode, f"{fmt_bytes(est.total)} ({parts})", "yes" if plan.fits(key) else "NO"]
        )
    model_desc = (
        f"{settings['model']}/{settings['gnn_type']}, hidden {settings['hidden_channels']}, "
        f"{settings['num_layers']} layer(s)"
    )
    render.table(f"Memory estimate ({model_desc}) on {dev_line}", header, rows2)
    if plan.epoch_times:
        rows3 = []
        for est in plan.epoch_times.values():
            parts = sorted(est.parts.items(), key=lambda kv: -kv[1])[:2]
            main = ", ".join(f"{k} {_seconds(v)}" for k, v in parts)
            rows3.append([est.mode, f"{est.steps:,}", _seconds(est.seconds), main])
        basis = "calibrated CPU rates" if dev.kind == "cpu" else "assumed GPU rates, not measured"
        render.table(
            f"Training epoch time estimate (encoder only; {basis})",
            ["mode", "steps", "epoch", "largest parts"], rows3,
        )  # fmt: skip
    rec = plan.recommendation
    render.key_values("Recommendation", list(rec.settings.items()))
    render.table("Why", ["reason"], [[r] for r in rec.reasons])


def _seconds(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s" if value < 600 else f"{value / 60:.0f} min"
