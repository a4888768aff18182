"""What each command returns: typed results, printed as tables or, with ``--json``, as JSON.

Numbers stay numbers (seconds as floats, bytes as ints), paths stay paths; the rendering in
``agc_cli/cli/render.py`` turns them into text or JSON. No torch here: ``--help`` imports this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Peak:
    """Peak memory of a stage."""

    rss_bytes: int
    cuda_bytes: int | None = None

    @classmethod
    def of(cls, peak: Any) -> Peak:
        """From the engine's ``PeakMemory``."""
        return cls(int(peak.rss_bytes), None if peak.cuda_bytes is None else int(peak.cuda_bytes))


@dataclass
class TrainReport:
    """``agc train`` / ``agc resume``: how training went and where the run is."""

    run_dir: Path | None
    dataset: str
    model: str
    mode: str
    epochs: int
    seconds: float
    ms_per_epoch: float
    loss: float
    best_loss: float
    stopped_early: bool
    peak: Peak
    trained: bool = True  # False: a non-parametric method (nothing to train)
    resumed_from: str | None = None  # resume: the checkpoint file
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per epoch


@dataclass
class InferReport:
    """``agc infer``: the embeddings written and how they were computed."""

    run_dir: Path
    files: list[Path]
    mode: str
    nodes: int
    total_nodes: int
    dim: int
    seconds: float
    batch_size: int | None
    peak: Peak
    events: list[str] = field(default_factory=list)  # fallback steps taken


@dataclass
class ClusterReport:
    """``agc cluster``: the metrics (as ``metrics.json`` holds them) and the files written."""

    metrics: dict[str, Any]
    nodes: int
    total_nodes: int
    embeddings: Path
    clusters_file: Path
    metrics_file: Path
    plot: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.metrics, "nodes": self.nodes, "total_nodes": self.total_nodes,
                "embeddings": self.embeddings, "clusters_file": self.clusters_file,
                "metrics_file": self.metrics_file, "plot": self.plot}  # fmt: skip


@dataclass
class Stage:
    """One stage of ``agc run``."""

    stage: str
    seconds: float
    peak: Peak | None
    detail: str


@dataclass
class RunReport:
    """``agc run``: every stage and the clustering metrics."""

    run_dir: Path
    stages: list[Stage]
    metrics: dict[str, Any]
    train: TrainReport | None
    infer: InferReport
    seconds: float


@dataclass
class SeedsReport:
    """``agc run --seeds``: one run per training seed (``RUN/seed-<s>/``) and mean ± std over
    the seeds of every metric and time (std: numpy's, ddof 0)."""

    run_dir: Path
    seeds: list[dict[str, Any]]  # one record per seed: seed, run_dir, metrics, times, memory
    mean: dict[str, float]
    std: dict[str, float]
    seconds: float


@dataclass
class BenchReport:
    """``agc bench``: the grid's folder, its files, one row per (model, dataset) and what ran,
    was read back or was skipped in this invocation."""

    out: Path
    rows: list[Any]  # engine.bench.Row
    cells: int
    ran: int
    reused: int
    skipped: dict[str, str]  # cell key → reason
    files: dict[str, Path]
    metric: str
    tolerance: float | None  # None without a reference
    seconds: float
    table: str = ""  # the markdown table (text output only; table.md holds it too)

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "rows": [r.to_json() for r in self.rows], "cells": self.cells,
                "ran": self.ran, "reused": self.reused, "skipped": self.skipped,
                "files": self.files, "metric": self.metric, "tolerance": self.tolerance,
                "seconds": self.seconds}  # fmt: skip


@dataclass
class StatsReport:
    """``agc stats``: what the graph is, what each mode needs and what to run it with."""

    dataset: Any  # GraphInfo
    statistics: dict[str, Any] | None
    settings: dict[str, Any]
    plan: Any  # engine.planner.Plan
    emitted_config: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset.as_dict(), "statistics": self.statistics,
                "settings": self.settings, **self.plan.as_dict(),
                "emitted_config": self.emitted_config}  # fmt: skip


@dataclass
class ProfileStage:
    name: str
    ms: float
    share: float  # fraction of the recorded time


@dataclass
class ProfileReport:
    """``agc profile``: time per stage, the heaviest operators and the files written."""

    run_dir: Path
    stage: str
    device: str
    clock: str  # "device" or "CPU"
    active_steps: int
    stages: list[ProfileStage]
    operators: list[dict[str, Any]]
    trace: Path
    memory_snapshot: Path | None
    table: str = ""  # torch.profiler's key_averages table (text output only)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "table"}


@dataclass
class ConvertReport:
    """``agc convert``: the store written."""

    path: Path
    bytes: int
    seconds: float
    peak_rss_bytes: int
    meta: dict[str, Any]


@dataclass
class ModelInfo:
    """One method of ``agc models``."""

    name: str
    kind: str  # "trainable" or "non-parametric"
    summary: str
    paper: str
    full_batch: bool  # trains (or embeds) on the whole graph at once
    mini_batch: bool  # trains on sampled batches (non-parametric: embeds layer-wise in batches)
    preset_datasets: list[str]


@dataclass
class DatasetEntry:
    """One graph of ``agc datasets``."""

    name: str
    source: str  # "catalog" or "synthetic"
    nodes: int
    edges: int
    features: int
    classes: int | None
    available: bool  # catalog: raw files present under --root; synthetic: always
    approx_edges: bool = False
    url: str | None = None


@dataclass
class DatasetsReport:
    root: Path
    datasets: list[DatasetEntry]


@dataclass
class DryRunReport:
    """``agc train/run --dry-run``: the resolved settings, the source of each value (flag, env,
    config, preset, planner, default) and the planner's choices with their reasons."""

    settings: dict[str, Any]
    sources: dict[str, str]
    planner: list[dict[str, Any]] = field(default_factory=list)
