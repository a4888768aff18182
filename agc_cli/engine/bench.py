"""The benchmark grid (``agc bench``): cells, the results log, reference numbers and tables.

A grid is model × dataset × training seed. Each finished cell is one line of
``results.jsonl`` (appended and fsynced, so a killed grid keeps every cell that finished); a
rerun reads them back and runs only the rest. What a cell ran with is pinned by a fingerprint
of its resolved settings, so a rerun with other settings cannot silently mix results.

Metrics are stored as fractions, as ``metrics.json`` holds them; tables show them ×100, like
PyAGC's published benchmark. Standard deviations are over training seeds (numpy's ``std``,
ddof 0). No printing here: the command renders.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agc_cli.errors import DataError, UsageError

METRICS = ("nmi", "ari", "acc", "f1", "modularity", "conductance")
LOWER_IS_BETTER = frozenset({"conductance"})
TIMES = ("train_seconds", "total_seconds")
RESULTS_FILE = "results.jsonl"
CSV_FILE = "results.csv"
TABLE_FILE = "table.md"
CELLS_DIR = "cells"
# Column titles of PyAGC's tables → agc's metric names.
REFERENCE_COLUMNS = {"nmi": "nmi", "ari": "ari", "acc": "acc", "f1": "f1", "mod": "modularity",
                     "modularity": "modularity", "cond": "conductance",
                     "conductance": "conductance", "totaltime": "total_seconds"}  # fmt: skip
SHORT = {"modularity": "Mod", "conductance": "Cond"}


def key_of(name: str) -> str:
    """How names are matched across agc and a reference: ``CCA-SSG``, ``CCASSG`` and
    ``ccassg`` are one method; ``Cora`` and ``cora`` one dataset."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


def slug(name: str) -> str:
    """A dataset (a name, a spec or a path) as one safe folder name."""
    text = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name or name).strip("._")
    return text or "data"


@dataclass(frozen=True)
class Cell:
    """One training run of the grid."""

    model: str
    dataset: str
    seed: int

    @property
    def key(self) -> str:
        return f"{self.model}/{slug(self.dataset)}/seed-{self.seed}"

    def folder(self, out: Path) -> Path:
        """The cell's run directory, inside the grid's folder."""
        return out / CELLS_DIR / self.model / slug(self.dataset) / f"seed-{self.seed}"


def grid(models: Iterable[str], datasets: Iterable[str], seeds: Iterable[int]) -> list[Cell]:
    """Cells in the order they run: dataset by dataset (each graph is loaded once), then
    model, then seed."""
    models, seeds = list(models), list(seeds)
    return [Cell(m, d, s) for d in datasets for m in models for s in seeds]


def fingerprint(settings: Mapping[str, Any]) -> str:
    """What a cell ran with, as a short hash of its resolved settings (without the run
    directory, which differs by cell)."""
    values = {k: v for k, v in settings.items() if k != "run_dir"}
    text = json.dumps(values, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# ----- the results log ------------------------------------------------------------------------


class ResultsLog:
    """``results.jsonl``: one record per cell that finished (``status: ok``) or was skipped
    (``status: skipped`` with a ``reason``; retried by the next run)."""

    def __init__(self, out: Path):
        self.path = Path(out) / RESULTS_FILE

    def read(self) -> list[dict[str, Any]]:
        """Every well-formed record, in order. A last line cut short by a kill is ignored (its
        cell did not finish); a malformed line elsewhere is a data error."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        records = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    continue
                raise DataError(f"{self.path}:{number}: not a JSON record; move the file "
                                "away to start the grid again") from None  # fmt: skip
            if not isinstance(record, dict) or not {"model", "dataset", "seed"} <= record.keys():
                raise DataError(f"{self.path}:{number}: not a cell record")
            records.append(record)
        return records

    def finished(self) -> dict[str, dict[str, Any]]:
        """The finished cells by :attr:`Cell.key` (a later record of a cell wins)."""
        out = {}
        for record in self.read():
            if record.get("status") == "ok":
                out[Cell(record["model"], record["dataset"], int(record["seed"])).key] = record
        return out

    def append(self, record: Mapping[str, Any]) -> None:
        """Append one record durably (a kill after this returns keeps it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._drop_partial_line()
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def _drop_partial_line(self) -> None:
        """Cut a last line a kill left unterminated (a record never completed: its cell did
        not finish), so the next record starts on a line of its own."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        data = self.path.read_bytes()
        if data.endswith(b"\n"):
            return
        with open(self.path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)


# ----- summaries ------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and population standard deviation (numpy's default), NaN for no values."""
    values = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def summarize_seeds(records: list[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """``{"mean": {...}, "std": {...}}`` over training seeds of every metric and time the
    records carry (each record: one seed's ``metrics`` and times)."""
    keys = [k for k in METRICS if any(k in r.get("metrics", {}) for r in records)]
    mean, std = {}, {}
    for key in keys:
        mean[key], std[key] = mean_std([r["metrics"].get(key) for r in records])
    for key in (*TIMES, "peak_rss_bytes", "peak_cuda_bytes"):
        values = [r.get(key) for r in records if r.get(key) is not None]
        if values:
            mean[key], std[key] = mean_std(values)
    return {"mean": mean, "std": std}


@dataclass
class Row:
    """One model on one dataset: mean ± std over its finished seeds."""

    model: str
    dataset: str
    seeds: list[int]
    mean: dict[str, float]
    std: dict[str, float]
    skipped: list[str] = field(default_factory=list)  # reasons of cells that did not run
    reference: dict[str, float] | None = None  # the published values (×100)

    def delta(self, metric: str) -> float | None:
        """agc − reference on ``metric`` in points ×100 (None without a reference value)."""
        if self.reference is None or metric not in self.reference or metric not in self.mean:
            return None
        return 100 * self.mean[metric] - self.reference[metric]

    def passes(self, metric: str, tolerance: float) -> bool | None:
        """Within ``tolerance`` points of the reference or better (None: nothing to compare)."""
        delta = self.delta(metric)
        if delta is None or math.isnan(delta):
            return None
        return delta <= tolerance if metric in LOWER_IS_BETTER else delta >= -tolerance

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "seeds": self.seeds,
                "mean": self.mean, "std": self.std, "skipped": self.skipped,
                "reference": self.reference}  # fmt: skip


def summarize(
    cells: list[Cell], records: Mapping[str, Mapping[str, Any]], skipped: Mapping[str, str],
    reference: Mapping[tuple[str, str], dict[str, float]] | None = None,
) -> list[Row]:  # fmt: skip
    """One row per (model, dataset) of the grid, in grid order, from the finished records
    (by cell key) and the reasons of skipped cells."""
    rows: dict[tuple[str, str], Row] = {}
    for cell in cells:
        row = rows.get((cell.model, cell.dataset))
        if row is None:
            ref = None if reference is None else reference.get((key_of(cell.model),
                                                                key_of(cell.dataset)))  # fmt: skip
            row = rows[(cell.model, cell.dataset)] = Row(cell.model, cell.dataset, [], {}, {},
                                                         reference=ref)  # fmt: skip
        if cell.key in records:
            row.seeds.append(cell.seed)
        elif cell.key in skipped and skipped[cell.key] not in row.skipped:
            row.skipped.append(skipped[cell.key])
    for (model, dataset), row in rows.items():
        found = [records[c.key] for c in cells
                 if c.model == model and c.dataset == dataset and c.key in records]  # fmt: skip
        summary = summarize_seeds(found)
        row.mean, row.std = summary["mean"], summary["std"]
    return list(rows.values())


# ----- reference numbers ----------------------------------------------------------------------


def read_reference(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    """Published numbers by ``(method key, dataset key)``: ``{metric: value ×100}`` (and
    ``total_seconds``).

    Two formats: markdown like ``REFERENCE.md`` (a ``### Dataset`` heading, then a table whose
    header starts ``| Method |`` and whose cells read ``56.22±0.87``), or a CSV with the columns
    ``method, dataset, metric, value``.

    Raises:
        UsageError: the file is missing or holds no reference numbers.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"reference: cannot read {path} ({type(exc).__name__})") from None
    first = text.lstrip().splitlines()[0] if text.strip() else ""
    if key_of(first.split(",")[0]) == "method" and "," in first:
        table = _reference_csv(text, path)
    else:
        table = _reference_markdown(text)
    if not table:
        raise UsageError(
            f"reference: {path} holds no numbers (expected '### Dataset' + "
            "'| Method | NMI | ...' tables or a method,dataset,metric,value CSV)"
        )
    return table


def _number(text: str) -> float | None:
    """The leading number of ``56.22±0.87``, ``15.50s`` or ``0.5``; None for ``-``."""
    match = re.match(r"\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)", text)
    return float(match.group(1)) if match else None


def _reference_markdown(text: str) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    dataset, columns = None, None
    for line in text.splitlines():
        line = line.strip()
        heading = re.match(r"#{2,6}\s+(.+)", line)
        if heading:
            dataset, columns = key_of(heading.group(1)), None
            continue
        if not line.startswith("|") or dataset is None:
            if not line.startswith("|"):
                columns = None
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if columns is None:
            if cells and key_of(cells[0]) == "method":
                columns = [REFERENCE_COLUMNS.get(key_of(c)) for c in cells]
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the separator row
        values = {}
        for name, cell in zip(columns[1:], cells[1:], strict=False):
            number = _number(cell) if name else None
            if name and number is not None:
                values[name] = number
        if values:
            out[(key_of(cells[0]), dataset)] = values
    return out


def _reference_csv(text: str, path: Path) -> dict[tuple[str, str], dict[str, float]]:
    out: dict[tuple[str, str], dict[str, float]] = {}
    reader = csv.DictReader(io.StringIO(text))
    fields = {key_of(f): f for f in reader.fieldnames or []}
    if not {"method", "dataset", "metric", "value"} <= fields.keys():
        raise UsageError(f"reference: {path} needs the columns method, dataset, metric, value")
    for number, row in enumerate(reader, 2):
        metric = REFERENCE_COLUMNS.get(key_of(row[fields["metric"]] or ""))
        value = _number(row[fields["value"]] or "")
        if metric is None or value is None:
            raise UsageError(f"reference: {path}:{number}: unknown metric or value "
                             f"({row[fields['metric']]!r}, {row[fields['value']]!r})")  # fmt: skip
        method, dataset = key_of(row[fields["method"]]), key_of(row[fields["dataset"]])
        out.setdefault((method, dataset), {})[metric] = value
    return out


# ----- tables ---------------------------------------------------------------------------------


def _pm(row: Row, key: str) -> str:
    if key not in row.mean or math.isnan(row.mean[key]):
        return "-"
    return f"{100 * row.mean[key]:.2f}±{100 * row.std[key]:.2f}"


def _seconds(row: Row, key: str) -> str:
    return "-" if key not in row.mean else f"{row.mean[key]:.2f}s"


def _memory(row: Row) -> str:
    cuda = row.mean.get("peak_cuda_bytes")
    if cuda is not None:
        return f"{cuda / 2**20:.1f} MB (GPU)"
    rss = row.mean.get("peak_rss_bytes")
    return "-" if rss is None else f"{rss / 2**20:.1f} MB (RSS)"


def markdown_table(
    rows: list[Row], metric: str = "nmi", tolerance: float = 0.5, compare: bool = False
) -> str:
    """The grid as PyAGC lays out its benchmark: one ``### Dataset`` table each, a row per
    method with NMI, ARI, ACC, F1, Mod and Cond as mean ± std over training seeds (×100),
    training time, total time and peak memory; with ``compare`` the reference value of
    ``metric``, agc − reference and ✓/✗ against ``tolerance``."""
    lines: list[str] = []
    header = ["Method", *(SHORT.get(m, m.upper()) for m in METRICS), "Train Time",
              "Total Time", "Peak Memory", "Seeds"]  # fmt: skip
    name = SHORT.get(metric, metric.upper())
    if compare:
        header += [f"Ref {name}", "Δ", f"±{tolerance:g}"]
    for dataset in dict.fromkeys(r.dataset for r in rows):
        lines += [f"### {dataset}", "", "| " + " | ".join(header) + " |",
                  "|" + "---|" * len(header)]  # fmt: skip
        for row in (r for r in rows if r.dataset == dataset):
            cells = [row.model, *(_pm(row, m) for m in METRICS),
                     _seconds(row, "train_seconds"), _seconds(row, "total_seconds"),
                     _memory(row), str(len(row.seeds))]  # fmt: skip
            if row.skipped and not row.seeds:
                cells = [row.model, f"skipped: {row.skipped[0]}", *[""] * (len(header) - 2)]
            elif compare:
                ref = None if row.reference is None else row.reference.get(metric)
                delta, ok = row.delta(metric), row.passes(metric, tolerance)
                cells += ["-" if ref is None else f"{ref:.2f}",
                          "-" if delta is None else f"{delta:+.2f}",
                          "" if ok is None else ("✓" if ok else "✗")]  # fmt: skip
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
        lines.append("")
    return "\n".join(lines)


CSV_COLUMNS = ("model", "dataset", "seed", "status", *METRICS, "train_seconds", "total_seconds",
               "epochs", "peak_rss_bytes", "peak_cuda_bytes", "run_dir", "reason")  # fmt: skip


def cells_csv(records: Iterable[Mapping[str, Any]]) -> str:
    """One CSV row per cell record (metrics as fractions, as in ``metrics.json``)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        metrics = r.get("metrics", {})
        writer.writerow([metrics.get(c, "") if c in METRICS else r.get(c, "")
                         for c in CSV_COLUMNS])  # fmt: skip
    return buf.getvalue()
