"""Option aliases shared by the subcommands, each declared once.

Every settings flag defaults to ``None`` so that only what the user passed overrides the
environment, the YAML file and the presets (see ``agc_cli/settings.py``); ``--help`` shows the
value that applies otherwise, read from the settings and the presets. This module imports
neither torch nor a model, so ``agc --help`` is instant.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from agc_cli.presets import PRESETS
from agc_cli.settings import Settings

DATA = "Data"
MODEL = "Model"
TRAIN = "Training"
INFER = "Inference"
CLUSTER = "Clustering"
OUTPUT = "Output"

# The registry's method names (agc_cli.models.registry.MODELS, in its order), kept here so that
# `--help` and the check of --model need no torch; tests/test_discover.py keeps them equal.
MODEL_NAMES = ("dgi", "gae", "ccassg", "dmon", "magi", "daegc", "sgc", "ssgc", "s2cag",
               "ms2cag", "ns4gc", "dinknet", "gbt", "vgae", "kmeans", "mincut", "s3gc", "arga",
               "argva", "neuromap", "sagsc", "nafs", "node2vec")  # fmt: skip

_PRESET_KEYS = {key for method in PRESETS.values() for entry in method.values() for key in entry}


def default(name: str) -> str | bool:
    """What ``--help`` shows as the default of setting ``name``: its value, noting a preset."""
    value = Settings.model_fields[name].default
    if value is None:
        return False
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return f"model preset, else {text}" if name in _PRESET_KEYS else text


def _opt(*names: str, setting: str | None = None, panel: str, **kwargs: Any) -> Any:
    """A settings flag: default None (not passed), ``--help`` showing the setting's default."""
    if setting is not None:
        kwargs.setdefault("show_default", default(setting))
    return typer.Option(*names, rich_help_panel=panel, **kwargs)


Config = Annotated[
    Path | None,
    _opt("--config", "-c", help="YAML settings file (train.conf.yaml format).", panel=OUTPUT),
]
Dataset = Annotated[
    str | None,
    _opt("--dataset", "-d", setting="dataset", panel=DATA,
         help="Catalog name, synthetic preset or path (list them: agc datasets)."),
]  # fmt: skip
Root = Annotated[
    Path | None,
    _opt("--root", panel=DATA,
         help="Dataset root with raw files (never written to when present; env AGC_ROOT)."),
]  # fmt: skip
CacheDir = Annotated[
    Path | None,
    _opt("--cache-dir", help="Where processed graphs are cached (env AGC_CACHE_DIR).", panel=DATA),
]
LabeledOnly = Annotated[
    bool | None,
    _opt("--labeled-only/--all-nodes", setting="labeled_only", panel=DATA,
         help="Use the subgraph induced by labeled nodes (Papers100M)."),
]  # fmt: skip
Model = Annotated[
    str | None,
    _opt("--model", "-m", setting="model", panel=MODEL,
         help=f"Method: {', '.join(MODEL_NAMES)} (details: agc models)."),
]  # fmt: skip
GnnType = Annotated[
    str | None,
    _opt(
        "--gnn-type", setting="gnn_type", help="Encoder: gcn, sage, gat, gatv2, gin.", panel=MODEL
    ),
]
HiddenChannels = Annotated[
    int | None, _opt("--hidden-channels", setting="hidden_channels", help="Hidden size.",
                     panel=MODEL)
]  # fmt: skip
NumLayers = Annotated[
    int | None, _opt("--num-layers", setting="num_layers", help="Encoder layers.", panel=MODEL)
]
Heads = Annotated[
    int | None, _opt("--heads", setting="heads", help="GAT attention heads.", panel=MODEL)
]
Dropout = Annotated[
    float | None,
    _opt("--dropout", setting="dropout", help="Dropout on layer inputs.", panel=MODEL),
]
NClusters = Annotated[
    int | None,
    _opt("--n-clusters", "-k", help="Clusters (default: number of classes).", panel=CLUSTER),
]
Runs = Annotated[
    int | None,
    _opt("--runs", setting="runs", help="Independent k-means runs.", panel=CLUSTER),
]
NInit = Annotated[
    int | None,
    _opt("--n-init", setting="n_init", panel=CLUSTER,
         help="k-means++ restarts within each run; the lowest inertia is kept."),
]  # fmt: skip
OutOfCore = Annotated[
    bool | None,
    _opt("--out-of-core/--in-memory", panel=CLUSTER,
         help="Fit k-means on a sample of an .npy's rows, then assign every node in one "
              "streamed pass (labels to clusters.npy). Default: when the .npy exceeds a "
              "quarter of the available memory; for `agc run` (embeddings streamed into "
              "embeddings.npy), when the dataset is a store larger than the available "
              "memory or its embeddings would exceed a quarter of it."),
]  # fmt: skip
MiniBatch = Annotated[
    bool | None,
    _opt("--mini-batch/--full-batch", panel=TRAIN,
         help="Training mode (default: the `agc stats` recommendation)."),
]  # fmt: skip
BatchSize = Annotated[
    int | None,
    _opt("--batch-size", setting="batch_size", help="Seed nodes per batch.", panel=TRAIN),
]
FanOut = Annotated[
    str | None,
    _opt("--fan-out", panel=TRAIN,
         help="Neighbours per layer: 15 or 15,10 (-1 = all; default: 15 for ≤2 layers, 10 for 3, "
              "5 deeper)."),
]  # fmt: skip
FanOutFinal = Annotated[
    str | None,
    _opt("--fan-out-final", panel=TRAIN,
         help="Adaptive schedule: fan-out reached at the last epoch (grows linearly)."),
]  # fmt: skip
SampledNorm = Annotated[
    str | None,
    _opt("--sampled-norm", setting="sampled_norm", panel=TRAIN,
         help="Mini-batch aggregation weights: rescale (full degrees, sums over s of d "
              "neighbours scaled by d/s: unbiased), block (degrees inside each layer's sampled "
              "block) or subgraph (inside the whole sampled subgraph, as PyG)."),
]  # fmt: skip
Epochs = Annotated[
    int | None, _opt("--epochs", setting="epochs", help="Training epochs.", panel=TRAIN)
]
Lr = Annotated[float | None, _opt("--lr", setting="lr", help="Learning rate.", panel=TRAIN)]
Device = Annotated[
    str | None,
    _opt("--device", setting="device", help="auto, cpu, cuda or cuda:N.", panel=TRAIN),
]
Precision = Annotated[
    str | None,
    _opt("--precision", setting="precision", panel=TRAIN,
         help="32, bf16 or 16 (fp16 with a grad scaler on CUDA)."),
]  # fmt: skip
Accumulate = Annotated[
    int | None,
    _opt("--accumulate", setting="accumulate", help="Gradient accumulation steps.", panel=TRAIN),
]
NumWorkers = Annotated[
    int | None,
    _opt("--num-workers", setting="num_workers", help="Sampler worker processes.", panel=TRAIN),
]
Seed = Annotated[
    int | None,
    _opt("--seed", setting="seed", panel=TRAIN,
         help="Seed of every random stream (runs are reproducible)."),
]  # fmt: skip
Patience = Annotated[
    int | None,
    _opt("--patience", setting="patience", panel=TRAIN,
         help="Early-stopping patience in epochs (0 = off)."),
]  # fmt: skip
RunDir = Annotated[
    Path | None,
    _opt("--run-dir", panel=OUTPUT,
         help="Run directory (default runs/<dataset>-<model>-<time>)."),
]  # fmt: skip
SaveEvery = Annotated[
    int | None,
    _opt("--save-every", setting="save_every", help="Checkpoint every N epochs.", panel=OUTPUT),
]
CheckpointInterval = Annotated[
    float | None,
    _opt("--checkpoint-interval", setting="checkpoint_interval", panel=OUTPUT,
         help="Seconds at least between periodic checkpoints (0 = every --save-every epochs)."),
]  # fmt: skip
SaveEveryBatch = Annotated[
    int | None,
    _opt("--save-every-batch", setting="save_every_batch", help="Checkpoint every N batches.",
         panel=OUTPUT),
]  # fmt: skip
InferBatchSize = Annotated[
    int | None,
    _opt("--infer-batch-size", setting="infer_batch_size", help="Nodes per inference batch.",
         panel=INFER),
]  # fmt: skip
InferFanOut = Annotated[
    int | None,
    _opt("--infer-fan-out", setting="infer_fan_out", help="-1 = exact layer-wise; >0 samples.",
         panel=INFER),
]  # fmt: skip
NprocPerNode = Annotated[
    int,
    typer.Option("--nproc-per-node", metavar="<int>",
                 help="Data-parallel processes on this machine (torchrun's launcher; gloo on "
                      "CPU, nccl on GPUs). Across machines launch `torchrun ... -m agc_cli "
                      "train` instead.", rich_help_panel=TRAIN),
]  # fmt: skip

# Output options: every command takes all three.
Json = Annotated[
    bool,
    typer.Option("--json", help="Print the result as one JSON document on stdout, nothing else.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Checkpoint = Annotated[
    str | None,
    typer.Option("--checkpoint",
                 help="A weights file of this run: a file name in checkpoints/ (or model.pt "
                      "for infer). Default: infer uses best, else final; resume the newest."),
]  # fmt: skip
Force = Annotated[
    bool,
    typer.Option("--force", help="Overwrite what this command writes if it exists (a store, "
                                 "an --emit-config file)."),
]  # fmt: skip
DryRun = Annotated[
    bool,
    typer.Option("--dry-run",
                 help="Print the resolved settings with the source of each value (flag, env, "
                      "config, preset, planner, default) and exit; loads no data.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Verify = Annotated[
    bool,
    typer.Option("--verify",
                 help="On-disk store: first read every byte and check it against the full "
                      "checksums written at convert time (progress bar).",
                 rich_help_panel=DATA),
]  # fmt: skip
Quiet = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress, headers or notes on stderr (errors only).",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="More detail on stderr (e.g. every resolved setting).",
                 rich_help_panel=OUTPUT),
]  # fmt: skip

# Training seeds (agc run, agc bench): not a setting — each seed's run has its own `seed`.
BENCH = "Benchmark"
Seeds = Annotated[
    str | None,
    typer.Option("--seeds", metavar="N | S S ...",
                 help="Train one model per training seed and report mean ± std over them: a "
                      "count (5 = seeds 0..4) or the seeds themselves (--seeds 0 1 2, or "
                      "0,1,2).", rich_help_panel=BENCH),
]  # fmt: skip
Models = Annotated[
    str,
    typer.Option("--models", metavar="A,B,...",
                 help=f"Methods of the grid, comma-separated ({', '.join(MODEL_NAMES)}).",
                 rich_help_panel=BENCH),
]  # fmt: skip
Datasets = Annotated[
    str,
    typer.Option("--datasets", metavar="X,Y,...",
                 help="Datasets of the grid, comma-separated (catalog names, synthetic "
                      "presets, stores or graph paths).", rich_help_panel=BENCH),
]  # fmt: skip
Reference = Annotated[
    Path | None,
    typer.Option("--reference", metavar="FILE",
                 help="Published numbers to compare with: markdown tables like REFERENCE.md "
                      "(### Dataset, | Method | NMI | ...) or a CSV of method,dataset,metric,"
                      "value (×100).", rich_help_panel=BENCH),
]  # fmt: skip
Tolerance = Annotated[
    float,
    typer.Option("--tolerance", min=0.0, show_default=True,
                 help="A cell passes (✓) when its mean is ≥ the reference − this (points ×100).",
                 rich_help_panel=BENCH),
]  # fmt: skip
Metric = Annotated[
    str,
    typer.Option("--metric", show_default=True,
                 help="The metric compared with the reference: nmi, ari, acc, f1, "
                      "modularity or conductance (lower is better).", rich_help_panel=BENCH),
]  # fmt: skip
BenchOut = Annotated[
    Path,
    typer.Option("--out", "-o", show_default=True,
                 help="The grid's folder: one run per cell, results.jsonl, results.csv and "
                      "table.md. Rerunning with the same folder continues the grid.",
                 rich_help_panel=BENCH),
]  # fmt: skip


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``"5"`` → 0..4; ``"0,1,2"`` / ``"0 1 2"`` → those (distinct, ≥ 0).

    Raises:
        UsageError: not integers, negative, repeated, or a count below 1.
    """
    from agc_cli.errors import UsageError

    parts = [p for p in text.replace(",", " ").split() if p]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise UsageError(f"seeds: expected a count or integers, got {text!r}") from None
    if not values:
        raise UsageError("seeds: expected a count or integers, got nothing")
    if len(values) == 1:
        if values[0] < 1:
            raise UsageError(f"seeds: a count must be >= 1, got {values[0]}")
        return list(range(values[0]))
    if min(values) < 0:
        raise UsageError(f"seeds: training seeds must be >= 0, got {min(values)}")
    if len(set(values)) != len(values):
        raise UsageError(f"seeds: each seed once, got {text!r}")
    return values


MULTI_VALUE = ("--seeds",)


def gather_multi_values(argv: list[str]) -> list[str]:
    """``--seeds 0 1 2`` → ``--seeds 0,1,2`` (click options take one value each): the integers
    that follow a multi-value flag, up to the next option or a non-integer."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        out.append(arg)
        i += 1
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg in MULTI_VALUE:
            values = []
            while i < len(argv) and argv[i].isdigit():
                values.append(argv[i])
                i += 1
            if values:
                out.append(",".join(values))
    return out


# Flag names that differ from the setting they set.
RENAMED = {"normalize": "normalize_embeddings", "backend": "kmeans_backend"}


def settings_flags(values: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The settings the user passed, from a command's parameters (``locals()``): every
    parameter named like a setting (or in ``RENAMED``) whose value is not None. ``--fan-out``
    text is parsed by the settings."""
    skip = set(exclude)
    out = {}
    for name, value in values.items():
        key = RENAMED.get(name, name)
        if name not in skip and key in Settings.model_fields and value is not None:
            out[key] = value
    return out
