"""``agc models`` and ``agc datasets``: what can be run, with presets and availability."""

from __future__ import annotations

from pathlib import Path

from agc_cli.cli import options as o
from agc_cli.cli import render
from agc_cli.cli.results import DatasetEntry, DatasetsReport, ModelInfo


def models(json_out: o.Json = False, quiet: o.Quiet = False, verbose: o.Verbose = False) -> None:
    """Every method: kind, paper, training modes and the datasets it has presets for."""
    render.configure(json_out, quiet, verbose)
    render.emit({"models": model_infos()}, show_models)


def model_infos() -> list[ModelInfo]:
    """One entry per registered method, in the registry's order."""
    from agc_cli.models.registry import MODELS
    from agc_cli.presets import PRESETS

    out = []
    for name, cls in MODELS.items():
        trainable = getattr(cls, "trainable", True)
        doc = (cls.__doc__ or "").strip().split("\n\n")[0]
        out.append(ModelInfo(
            name=name, kind="trainable" if trainable else "non-parametric",
            summary=" ".join(doc.split()), paper=cls.paper, full_batch=True, mini_batch=True,
            preset_datasets=sorted(k for k in PRESETS.get(name, {}) if k != "default"),
        ))  # fmt: skip
    return out


def show_models(result: dict[str, list[ModelInfo]]) -> None:
    rows = [
        [m.name, m.kind, _modes(m), ", ".join(m.preset_datasets) or "-", m.paper]
        for m in result["models"]
    ]
    render.table("Methods (agc train --model NAME)", ["name", "kind", "modes",
                 "dataset presets", "paper"], rows)  # fmt: skip


def _modes(m: ModelInfo) -> str:
    if m.kind == "non-parametric":
        return "no training; embeds full-batch or layer-wise"
    return "full-batch, mini-batch"


def datasets(
    root: o.Root = None,
    json_out: o.Json = False,
    quiet: o.Quiet = False,
    verbose: o.Verbose = False,
) -> None:
    """Catalog datasets and synthetic presets with their sizes, and which are on disk.

    A catalog dataset is on disk when its raw files are under --root; nothing is downloaded
    or generated.
    """
    render.configure(json_out, quiet, verbose)
    from agc_cli.settings import load_settings

    settings = load_settings(o.settings_flags(locals()))
    render.emit(DatasetsReport(settings.root, dataset_entries(settings.root)), show_datasets)


def dataset_entries(root: Path) -> list[DatasetEntry]:
    from agc_cli.data import synthetic
    from agc_cli.data.catalog import CATALOG
    from agc_cli.data.layout import missing_raw_files

    out = [
        DatasetEntry(
            e.name,
            "catalog",
            e.nodes,
            e.edges,
            e.features,
            e.classes,
            available=not missing_raw_files(e, root),
            approx_edges=e.approx_edges,
            url=e.url,
        )  # fmt: skip
        for e in CATALOG.values()
    ]
    for name, spec in synthetic.PRESETS.items():
        d = synthetic.describe(spec)
        out.append(DatasetEntry(name, "synthetic", int(d["nodes"]), int(d["edges"]),
                                int(d["features"]), int(d["classes"]), available=True))  # fmt: skip
    return out


def show_datasets(report: DatasetsReport) -> None:
    rows = []
    for d in report.datasets:
        edges = f"~{d.edges:,}" if d.approx_edges else f"{d.edges:,}"
        if d.source == "synthetic":
            where = "generated on first use"
        else:
            where = "on disk" if d.available else "not on disk (downloaded on first use)"
        rows.append([d.name, d.source, f"{d.nodes:,}", edges, f"{d.features:,}",
                     d.classes if d.classes is not None else "-", where])  # fmt: skip
    render.table(f"Datasets (agc train --dataset NAME; root {report.root})",
                 ["name", "source", "nodes", "directed edges", "features", "classes", "data"],
                 rows)  # fmt: skip
