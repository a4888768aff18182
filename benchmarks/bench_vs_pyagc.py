"""agc against the published PyAGC package, method by method, on Cora (or Physics), CPU, one run.

For each method agc trains with its preset in this process (``run_job``: the same train →
infer → cluster path as ``agc run``), then PyAGC trains in a subprocess of
``--pyagc-python`` (a separate environment with ``pip install pyagc``) with its classes and
its published Cora configuration (``benchmark/<Method>/train.conf.yaml`` of
github.com/Cloudy1225/PyAGC: the values in :data:`PYAGC_CONF`), following its benchmark
scripts: Adam, early stopping on the training loss (``patience``), a checkpoint written with
PyAGC's own manager at each lower loss and the best one evaluated (DMoN: none, the final
weights), DAEGC pretrained then fine-tuned from k-means centres. Printed per method:

- ``agc s`` / ``pyagc s``: training seconds (DAEGC: PyAGC's pretraining, centre
  initialisation and fine-tuning; MAGI: PyAGC's positive-pair precomputation included, as
  agc's training draws its walks itself), their ratio, and the ratio of their CPU seconds
  (all threads; less moved by busy neighbours);
- ``agc NMI`` / ``pyagc NMI``: k-means on each one's embeddings (L2-normalised where the
  configuration says so), ``--runs`` k-means runs of 10 restarts, mean × 100; for DMoN and
  DAEGC also the NMI of PyAGC's own cluster head (what its benchmark reports);
- ``agc km s`` / ``pyagc km s``: each one's k-means stage over those runs (agc's cluster
  stage, metrics included; PyAGC's ``KMeansClusterHead``, torch backend).

Usage:
  python benchmarks/bench_vs_pyagc.py [--methods dgi gae ...] [--epochs N] [--threads 2]
      [--pyagc-python /tmp/pyagc-venv/bin/python] [--seed 0] [--runs 5]
      [--dataset Cora|Physics] [--side both|agc|pyagc]

``--dataset Physics`` takes PyAGC's Physics section over its default (DGI only: two layers) and
agc's Physics preset; ``--side pyagc`` runs PyAGC alone (e.g. its spread over training seeds on
this CPU), ``--side agc`` agc alone.

``--threads N`` pins both to N CPUs (agc uses every CPU it may run on). ``--epochs N`` cuts
every method to N epochs (DAEGC: two thirds pretraining) for a quick check. On a shared
machine the times move with the neighbours' load: compare ratios from one run, not across.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_PYAGC_PYTHON = Path("/tmp/pyagc-venv/bin/python")
METHODS = ("dgi", "ccassg", "gae", "dmon", "magi", "daegc")

# PyAGC 1.1.2's published Cora configurations (benchmark/<Method>/train.conf.yaml: the
# `default` section overlaid with the `Cora` one), the keys its benchmark scripts read.
_COMMON = {"dropout": 0.0, "act_first": False, "act_last": False, "norm": None, "heads": 1,
           "concat": True, "negative_slope": 0.2, "wd": 0.0, "patience": 50,
           "normalize_embeddings": True}  # fmt: skip
PYAGC_CONF: dict[str, dict[str, Any]] = {
    "dgi": {**_COMMON, "gnn_type": "gcn", "hidden_channels": 512, "num_layers": 1,
            "act": "prelu", "act_last": True, "lr": 1e-3, "epochs": 300},
    "ccassg": {**_COMMON, "gnn_type": "gcn", "hidden_channels": 512, "num_layers": 2,
               "act": "relu", "lr": 1e-3, "epochs": 50, "lam": 1e-3, "p_fm1": 0.1,
               "p_ed1": 0.4, "p_fm2": 0.1, "p_ed2": 0.4},
    "gae": {**_COMMON, "gnn_type": "gcn", "hidden_channels": 32, "num_layers": 2,
            "act": "relu", "lr": 1e-2, "epochs": 200},
    # No k-means in PyAGC's DMoN benchmark (its head assigns clusters) and no checkpoint: the
    # final weights are evaluated.
    "dmon": {**_COMMON, "gnn_type": "gcn", "hidden_channels": 64, "num_layers": 1,
             "act": "selu", "dropout": 0.5, "lr": 1e-3, "wd": 1e-5, "epochs": 1000,
             "lam": 1.0, "normalize_embeddings": False},
    "magi": {**_COMMON, "gnn_type": "gcn", "hidden_channels": 512, "num_layers": 1,
             "act": "leaky_relu", "negative_slope": 0.5, "dropout": 0.1, "lr": 5e-4,
             "wd": 1e-3, "epochs": 400, "tau": 0.3, "num_walks": 100, "walk_length": 2,
             "scale_embeddings": True},
    # `heads: 4` is in PyAGC's file, but its create_tuned_gnn drops it for GAT (one head).
    "daegc": {**_COMMON, "gnn_type": "gat", "hidden_channels": 64, "num_layers": 2,
              "act": "elu", "heads": 4, "pretrain_lr": 1e-2, "finetune_lr": 1e-3,
              "pretrain_epochs": 200, "finetune_epochs": 100, "gamma": 10.0,
              "update_interval": 5},
}  # fmt: skip
# The dataset sections of the same files, for the methods this benchmark runs there.
PYAGC_DATASET_CONF: dict[str, dict[str, dict[str, Any]]] = {
    "Cora": {method: {} for method in PYAGC_CONF},
    "Physics": {"dgi": {"num_layers": 2}},
}
# Where PyG's dataset classes look for each dataset's raw files under a root.
_PYG_RAW = {"Cora": "cora/raw", "Physics": "Physics/raw"}


# ----- the PyAGC side (runs in the pyagc environment; imports nothing of agc) ----------------


def _pyagc_worker(
    method: str, root: str, seed: int, runs: int, epochs: int | None, dataset: str = "Cora"
) -> dict:
    """Train ``method`` with PyAGC's classes on ``dataset``; return times and NMIs."""
    import torch
    from pyagc.clusters import KMeansClusterHead
    from pyagc.data import get_dataset
    from pyagc.encoders import create_tuned_gnn
    from pyagc.utils import CheckpointManager, MultiStageCheckpointManager, set_seed
    from sklearn.metrics import normalized_mutual_info_score
    from torch_geometric.data import Data

    conf = {**PYAGC_CONF[method], **PYAGC_DATASET_CONF[dataset][method]}
    if epochs is not None:
        conf["epochs"] = epochs
        conf["pretrain_epochs"] = max(1, 2 * epochs // 3)
        conf["finetune_epochs"] = max(1, epochs - conf["pretrain_epochs"])
    cpus = len(os.sched_getaffinity(0))
    torch.set_num_threads(min(cpus, int(os.environ.get("OMP_NUM_THREADS", cpus))))
    set_seed(seed)
    x, edge_index, y = get_dataset(dataset, root=root, return_splits=False)
    data = Data(x=x, edge_index=edge_index)
    k = int(y.max()) + 1
    set_seed(seed)
    import warnings

    with warnings.catch_warnings():  # "heads/concat not applicable to GAT"
        warnings.simplefilter("ignore")
        encoder = create_tuned_gnn(
            gnn_type=conf["gnn_type"],
            in_channels=data.num_features,
            hidden_channels=conf["hidden_channels"],
            num_layers=conf["num_layers"],
            out_channels=None,
            dropout=conf["dropout"],
            act=conf["act"],
            act_first=conf["act_first"],
            act_last=conf["act_last"],
            norm=conf["norm"],
            heads=conf["heads"],
            concat=conf["concat"],
            negative_slope=conf["negative_slope"],
            cached=True,
        )
    model = _pyagc_model(method, encoder, conf, k)
    set_seed(seed)
    start, start_cpu = time.perf_counter(), time.process_time()
    head_nmi = None
    epochs_run = 0
    if method == "magi":
        from pyagc.models.magi import precompute_full_graph_positive_pairs

        data.pos_pairs = precompute_full_graph_positive_pairs(
            data, num_walks=conf["num_walks"], walk_length=conf["walk_length"]
        )
    ckpt_dir = str(Path(root) / "ckpts" / method)
    if method == "daegc":
        ckpt = MultiStageCheckpointManager(ckpt_dir, f"seed{seed}", stages=["pretrain"])
        epochs_run += _pyagc_fit(
            model,
            data,
            conf,
            conf["pretrain_lr"],
            conf["pretrain_epochs"],
            ckpt,
            "pretrain",
            pretrain=True,
        )
        with torch.no_grad():
            model.eval()
            z = torch.nn.functional.normalize(model.embed(data.x, data.edge_index), dim=1)
        km = KMeansClusterHead(
            n_clusters=k, backend="torch", n_init=10, max_iter=300, random_state=seed
        )
        km.fit_predict(z)
        model.cluster_head.reset_cluster_centers(km.cluster_centers.detach())
        ckpt = MultiStageCheckpointManager(ckpt_dir, f"seed{seed}_run1", stages=["finetune"])
        epochs_run += _pyagc_fit(
            model,
            data,
            conf,
            conf["finetune_lr"],
            conf["finetune_epochs"],
            ckpt,
            "finetune",
            pretrain=False,
        )
    else:
        ckpt = None if method == "dmon" else CheckpointManager(ckpt_dir, f"seed{seed}")
        epochs_run += _pyagc_fit(model, data, conf, conf["lr"], conf["epochs"], ckpt)
    train_seconds = time.perf_counter() - start
    train_cpu_seconds = time.process_time() - start_cpu
    model.eval()
    with torch.no_grad():
        z = model.embed(data.x, data.edge_index)
        if method in ("dmon", "daegc"):
            head = model(data.x, data.edge_index)
            head_nmi = 100 * normalized_mutual_info_score(y.numpy(), head.numpy())
    if conf["normalize_embeddings"]:
        z = torch.nn.functional.normalize(z, p=2, dim=1)
    t0 = time.perf_counter()
    nmis = []
    for run in range(runs):
        head = KMeansClusterHead(
            n_clusters=k, backend="torch", n_init=10, max_iter=300, random_state=seed + 42 * run
        )
        pred = head.fit_predict(z)
        nmis.append(100 * normalized_mutual_info_score(y.numpy(), pred.numpy()))
    kmeans_seconds = time.perf_counter() - t0
    return {
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "epochs": epochs_run,
        "nmi": sum(nmis) / runs,
        "head_nmi": head_nmi,
        "kmeans_seconds": kmeans_seconds,
        "threads": torch.get_num_threads(),
    }


def _pyagc_model(method: str, encoder: Any, conf: dict, k: int) -> Any:
    from pyagc import models

    if method == "dgi":
        return models.DGI(hidden_channels=conf["hidden_channels"], encoder=encoder)
    if method == "ccassg":
        from pyagc.transforms import GSSLTransform

        return models.CCASSG(
            encoder=encoder,
            transform1=GSSLTransform(p_feat_mask=conf["p_fm1"], p_edge_drop=conf["p_ed1"]),
            transform2=GSSLTransform(p_feat_mask=conf["p_fm2"], p_edge_drop=conf["p_ed2"]),
            lam=conf["lam"],
        )
    if method == "gae":
        return models.GAE(encoder)
    if method == "dmon":
        return models.DMoN(
            encoder=encoder, n_features=conf["hidden_channels"], n_clusters=k, lam=conf["lam"]
        )
    if method == "magi":
        return models.MAGI(
            encoder=encoder, tau=conf["tau"], scale_embeddings=conf["scale_embeddings"]
        )
    return models.DAEGC(
        encoder=encoder,
        n_clusters=k,
        hidden_channels=conf["hidden_channels"],
        gamma=conf["gamma"],
        update_interval=conf["update_interval"],
    )


def _pyagc_fit(
    model: Any,
    data: Any,
    conf: dict,
    lr: float,
    epochs: int,
    ckpt: Any,
    stage: str | None = None,
    **loss_kwargs: Any,
) -> int:
    """PyAGC's full-batch loop: Adam; a checkpoint (PyAGC's manager: last and best) at each
    lower loss, none at all for DMoN (``ckpt`` None); stop after ``patience`` epochs without
    a lower loss and load the best weights. Returns the epochs run."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=conf["wd"])
    stage_arg = {} if stage is None else {"stage": stage}
    best, bad, epoch = float("inf"), 0, 0
    for epoch in range(1, epochs + 1):
        loss = model.train_full(data, optimizer, epoch, verbose=False, **loss_kwargs)
        improved = loss < best
        best, bad = (loss, 0) if improved else (best, bad + 1)
        if ckpt is not None and (improved or epoch == epochs):
            ckpt.save_checkpoint(
                model,
                optimizer,
                epoch,
                loss,
                is_best=improved,
                additional_info={"patience_counter": bad},
                **stage_arg,
            )
        if bad >= conf["patience"]:
            break
    if ckpt is not None:  # read back with weights_only (PyAGC's own loader unpickles)
        path = ckpt.stage_paths[stage]["best"] if stage else ckpt.best_path
        model.load_state_dict(torch.load(path, weights_only=True)["model_state_dict"])
    return epoch


# ----- the agc side ---------------------------------------------------------------------------


def run_agc(
    method: str,
    root: Path,
    seed: int,
    runs: int,
    epochs: int | None,
    work: Path,
    overrides: dict[str, str],
    dataset: str = "Cora",
) -> dict:
    """``agc run`` of ``method`` on ``dataset`` with its preset (and ``overrides``); times, NMI."""
    from agc_cli.cli import common, render
    from agc_cli.cli.jobs import run_job
    from agc_cli.presets import model_preset
    from agc_cli.settings import load_settings

    flags: dict[str, Any] = {
        "model": method,
        "dataset": dataset,
        "root": root,
        "seed": seed,
        "device": "cpu",
        "runs": runs,
        "run_dir": work / f"agc-{method}",
        "cache_dir": work / "cache",
    }
    if epochs is not None:
        flags["epochs"] = epochs
        if "pretrain_epochs" in model_preset(method, dataset):
            flags["pretrain_epochs"] = max(1, 2 * epochs // 3)
    flags.update(overrides)
    settings = load_settings(flags, env={})
    render.configure(quiet=True)  # the table is the output; agc's notes would bury it
    # The training stage's CPU seconds too (less moved by busy neighbours than wall time).
    train, cpu = common.run_training, {}

    def timed_training(*args: Any) -> Any:
        start = time.process_time()
        try:
            return train(*args)
        finally:
            cpu["train"] = time.process_time() - start

    common.run_training = timed_training
    try:
        report, _ = run_job(settings)
    finally:
        common.run_training = train
    seconds = {stage.stage: stage.seconds for stage in report.stages}
    return {
        "train_seconds": report.train.seconds,
        "train_cpu_seconds": cpu["train"],
        "epochs": report.train.epochs,
        "nmi": 100 * report.metrics["mean"]["nmi"],
        "kmeans_seconds": seconds["cluster"],
        "threads": _torch_threads(),
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_pyagc(
    python: Path,
    method: str,
    root: Path,
    seed: int,
    runs: int,
    epochs: int | None,
    threads: int,
    dataset: str = "Cora",
) -> dict:
    """The PyAGC side of ``method`` in a subprocess of ``python``; its result as a dict, or
    ``{"error": its last line of stderr}`` when it failed (PyAGC's MAGI needs torch-sparse)."""
    cmd = [
        str(python),
        __file__,
        "--pyagc-worker",
        method,
        "--pyagc-root",
        str(root),
        "--seed",
        str(seed),
        "--runs",
        str(runs),
        "--dataset",
        dataset,
    ]
    if epochs is not None:
        cmd += ["--epochs", str(epochs)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["no output"]
        return {"error": lines[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def pyagc_available(python: Path) -> str | None:
    """None when ``python`` can import pyagc, else why not."""
    if not python.exists():
        return f"{python} does not exist"
    done = subprocess.run(
        [str(python), "-c", "import pyagc, torch_geometric"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else done.stderr.strip().splitlines()[-1]


def pyagc_root(work: Path, dataset: str = "Cora") -> Path:
    """A root where PyG's dataset class finds ``dataset``'s raw files (linked to the shared,
    read-only copy) and writes its processed files next to them, inside ``work``."""
    root = work / "pyagc-data"
    link = root / _PYG_RAW[dataset]
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(DATA / dataset / "raw", target_is_directory=True)
    return root


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--epochs", type=int, default=None, help="override every method's")
    parser.add_argument("--threads", type=int, default=None, help="CPUs (default: all)")
    parser.add_argument("--pyagc-python", type=Path, default=DEFAULT_PYAGC_PYTHON)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=5, help="k-means runs per method")
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--dataset", choices=sorted(PYAGC_DATASET_CONF), default="Cora")
    parser.add_argument(
        "--side", choices=("both", "agc", "pyagc"), default="both", help="which to run"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="agc settings overrides, e.g. save_every=0",
    )
    parser.add_argument("--pyagc-worker", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--pyagc-root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pyagc_worker:
        result = _pyagc_worker(
            args.pyagc_worker, args.pyagc_root, args.seed, args.runs, args.epochs, args.dataset
        )
        print(json.dumps(result))
        return
    if args.threads is not None:  # children inherit the affinity
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    threads = len(os.sched_getaffinity(0))
    raw = DATA / args.dataset / "raw"
    if not raw.is_dir():
        sys.exit(f"{args.dataset}'s raw files are not in {raw}")
    unsupported = [m for m in args.methods if m not in PYAGC_DATASET_CONF[args.dataset]]
    if unsupported:
        sys.exit(f"no PyAGC configuration of {', '.join(unsupported)} on {args.dataset} here")
    missing = "not asked for (--side agc)" if args.side == "agc" else None
    missing = missing or pyagc_available(args.pyagc_python)
    if missing and args.side == "pyagc":
        sys.exit(f"pyagc is not importable with {args.pyagc_python} ({missing})")
    if missing and args.side == "both":
        print(
            f"PyAGC side skipped: pyagc is not importable with {args.pyagc_python} "
            f"({missing}); python3 -m venv /tmp/pyagc-venv && /tmp/pyagc-venv/bin/pip "
            "install pyagc torch torch_geometric",
            file=sys.stderr,
        )
    overrides = dict(item.split("=", 1) for item in args.set)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-vs-pyagc-") as tmp:
        work = Path(tmp)
        for method in args.methods:
            agc = None
            if args.side != "pyagc":
                agc = run_agc(
                    method, DATA, args.seed, args.runs, args.epochs, work, overrides, args.dataset
                )
            ref = None
            if not missing:
                ref = run_pyagc(
                    args.pyagc_python,
                    method,
                    pyagc_root(work, args.dataset),
                    args.seed,
                    args.runs,
                    args.epochs,
                    threads,
                    args.dataset,
                )
            if ref is not None and "error" in ref:
                print(f"{method}: PyAGC failed: {ref['error']}", file=sys.stderr)
            rows.append({"method": method, "agc": agc, "pyagc": ref})
            done = []
            if agc:
                done.append(f"agc {agc['train_seconds']:.2f}s ({agc['epochs']} epochs)")
            if ref and "error" not in ref:
                done.append(f"pyagc {ref['train_seconds']:.2f}s ({ref['epochs']} epochs)")
            print(
                f"{method}: {', '.join(done) or 'nothing ran'}",
                file=sys.stderr,
                flush=True,
            )
            if args.json:  # after every method: a long run keeps what it measured
                args.json.write_text(json.dumps(rows, indent=2))
    header = (
        "method",
        "agc s",
        "pyagc s",
        "agc/pyagc",
        "cpu agc/pyagc",
        "agc NMI",
        "pyagc NMI",
        "pyagc head NMI",
        "agc km s",
        "pyagc km s",
    )
    print(
        f"# {args.dataset}, CPU, {threads} thread(s), seed {args.seed}, {args.runs} k-means runs"
        + (f", {args.epochs} epochs" if args.epochs else ", configured epochs")
        + (f", agc {' '.join(args.set)}" if args.set else "")
    )
    print("\t".join(header))
    failed: list[str] = []
    for row in rows:
        agc, ref = row["agc"] or {}, row["pyagc"] or {}
        if "error" in ref:
            failed.append(f"# {row['method']}: PyAGC failed: {ref['error']}")
            ref = {}
        both = bool(agc and ref)
        ratio = agc["train_seconds"] / ref["train_seconds"] if both else None
        cpu = agc["train_cpu_seconds"] / ref["train_cpu_seconds"] if both else None
        print(
            "\t".join(
                [
                    row["method"],
                    _fmt(agc.get("train_seconds")),
                    _fmt(ref.get("train_seconds")),
                    _fmt(ratio),
                    _fmt(cpu),
                    _fmt(agc.get("nmi")),
                    _fmt(ref.get("nmi")),
                    _fmt(ref.get("head_nmi")),
                    _fmt(agc.get("kmeans_seconds")),
                    _fmt(ref.get("kmeans_seconds")),
                ]
            )
        )
    for line in failed:
        print(line)


if __name__ == "__main__":
    main()
