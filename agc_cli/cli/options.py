"""Option aliases shared by the subcommands.

Every settings flag defaults to ``None`` so that only what the user passed overrides the
environment, the YAML file and the presets (see ``agc_cli/settings.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

DATA = "Data"
MODEL = "Model"
TRAIN = "Training"
INFER = "Inference"
CLUSTER = "Clustering"
OUTPUT = "Output"

Config = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML settings file (train.conf.yaml format).",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
Dataset = Annotated[
    str | None,
    typer.Option("--dataset", "-d", help="Catalog name, synthetic preset or path.",
                 rich_help_panel=DATA),
]  # fmt: skip
Root = Annotated[
    Path | None,
    typer.Option("--root", help="Dataset root with raw files (never written to when present).",
                 rich_help_panel=DATA),
]  # fmt: skip
CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Where processed graphs are cached (env AGC_CACHE_DIR).",
                 rich_help_panel=DATA),
]  # fmt: skip
LabeledOnly = Annotated[
    bool | None,
    typer.Option("--labeled-only/--all-nodes",
                 help="Use the subgraph induced by labeled nodes (Papers100M).",
                 rich_help_panel=DATA),
]  # fmt: skip
Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Method: dgi, gae, magi, ccassg, daegc, dmon, ...",
                 rich_help_panel=MODEL),
]  # fmt: skip
GnnType = Annotated[
    str | None,
    typer.Option("--gnn-type", help="Encoder: gcn, sage, gat, gin.", rich_help_panel=MODEL),
]
HiddenChannels = Annotated[
    int | None, typer.Option("--hidden-channels", help="Hidden size.", rich_help_panel=MODEL)
]
NumLayers = Annotated[
    int | None, typer.Option("--num-layers", help="Encoder layers.", rich_help_panel=MODEL)
]
Heads = Annotated[
    int | None, typer.Option("--heads", help="GAT attention heads.", rich_help_panel=MODEL)
]
Dropout = Annotated[
    float | None, typer.Option("--dropout", help="Dropout on layer inputs.", rich_help_panel=MODEL)
]
NClusters = Annotated[
    int | None,
    typer.Option("--n-clusters", "-k", help="Clusters (default: number of classes).",
                 rich_help_panel=CLUSTER),
]  # fmt: skip
MiniBatch = Annotated[
    bool | None,
    typer.Option("--mini-batch/--full-batch",
                 help="Training mode (default: the `agc stats` recommendation).",
                 rich_help_panel=TRAIN),
]  # fmt: skip
BatchSize = Annotated[
    int | None, typer.Option("--batch-size", help="Seed nodes per batch.", rich_help_panel=TRAIN)
]
FanOut = Annotated[
    str | None,
    typer.Option("--fan-out", help="Neighbours per layer: 15 or 15,10 (-1 = all).",
                 rich_help_panel=TRAIN),
]  # fmt: skip
FanOutFinal = Annotated[
    str | None,
    typer.Option("--fan-out-final",
                 help="Adaptive schedule: fan-out reached at the last epoch (grows linearly).",
                 rich_help_panel=TRAIN),
]  # fmt: skip
Epochs = Annotated[
    int | None, typer.Option("--epochs", help="Training epochs.", rich_help_panel=TRAIN)
]
Lr = Annotated[float | None, typer.Option("--lr", help="Learning rate.", rich_help_panel=TRAIN)]
Device = Annotated[
    str | None,
    typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=TRAIN),
]
Precision = Annotated[
    str | None,
    typer.Option("--precision", help="32, bf16 or 16 (fp16 with a grad scaler on CUDA).",
                 rich_help_panel=TRAIN),
]  # fmt: skip
Accumulate = Annotated[
    int | None,
    typer.Option("--accumulate", help="Gradient accumulation steps.", rich_help_panel=TRAIN),
]
NumWorkers = Annotated[
    int | None,
    typer.Option("--num-workers", help="Sampler worker processes.", rich_help_panel=TRAIN),
]
Seed = Annotated[
    int | None,
    typer.Option("--seed", help="Seed of every random stream (runs are reproducible).",
                 rich_help_panel=TRAIN),
]  # fmt: skip
Patience = Annotated[
    int | None,
    typer.Option("--patience", help="Early-stopping patience in epochs (0 = off).",
                 rich_help_panel=TRAIN),
]  # fmt: skip
RunDir = Annotated[
    Path | None,
    typer.Option("--run-dir", help="Run directory (default runs/<dataset>-<model>-<time>).",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
SaveEvery = Annotated[
    int | None,
    typer.Option("--save-every", help="Checkpoint every N epochs.", rich_help_panel=OUTPUT),
]
SaveEveryBatch = Annotated[
    int | None,
    typer.Option("--save-every-batch", help="Checkpoint every N batches.",
                 rich_help_panel=OUTPUT),
]  # fmt: skip
InferBatchSize = Annotated[int | None, typer.Option("--infer-batch-size", rich_help_panel=INFER)]
InferFanOut = Annotated[
    int | None,
    typer.Option("--infer-fan-out", help="-1 = exact layer-wise; >0 samples.",
                 rich_help_panel=INFER),
]  # fmt: skip
Json = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON on stdout.", rich_help_panel=OUTPUT)
]


NprocPerNode = Annotated[
    int,
    typer.Option("--nproc-per-node", metavar="<int>",
                 help="Data-parallel processes on this machine (torchrun's launcher; gloo on "
                      "CPU, nccl on GPUs). Across machines launch `torchrun ... -m agc_cli "
                      "train` instead.", rich_help_panel=TRAIN),
]  # fmt: skip


def settings_flags(values: dict[str, Any]) -> dict[str, Any]:
    """Keep only settings the user passed; ``--fan-out`` text is parsed by the settings."""
    return {k: v for k, v in values.items() if v is not None}
