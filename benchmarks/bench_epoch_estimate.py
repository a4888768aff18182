"""`agc stats`'s epoch-time estimate against measured training steps, full-batch and mini-batch.

    python benchmarks/bench_epoch_estimate.py [--root ../shared/data] [--steps 3] [--only NAME]

For each configuration (real bag-of-words graphs from ``--root``, skipped when absent, and a
dense-feature synthetic graph of the size the planner's 10K-node rule sends to mini-batch), it
trains one untimed warm-up step and ``--steps`` timed ones with agc's own trainer, and prints
the measured seconds per epoch (mini-batch: per step × steps per epoch), the estimate and
measured / estimate. The CPU rates in ``agc_cli/engine/epoch_time.py`` are calibrated with it.
The data root is only read (raw files are symlinked into a temporary root).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import tempfile
import time
from pathlib import Path

import torch

from agc_cli.data.sources import info_of, load_graph
from agc_cli.engine.epoch_time import cpu_rates, estimate_epoch_time
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.settings import load_settings

SYNTHETIC = "sbm:nodes=13752,clusters=10,degree=36,homophily=0.8,features=767,snr=1,seed=0"
# (name, dataset, settings): the DGI preset unless said otherwise.
CONFIGS = [
    ("Cora dgi full", "Cora", {"mini_batch": False}),
    ("Photo dgi full", "Photo", {"mini_batch": False}),
    # GAE's decoder (node-pair scores) is beyond the encoder the model counts: shown, not fitted.
    ("Photo gae full (decoder not modelled)", "Photo", {"model": "gae", "mini_batch": False}),
    ("Physics dgi mini x1", "Physics", {"mini_batch": True, "num_layers": 1}),
    ("Physics dgi mini x2", "Physics", {"mini_batch": True}),
    ("Physics dgi full x2", "Physics", {"mini_batch": False}),
    ("sbm-13.7K dgi full", SYNTHETIC, {"mini_batch": False}),
    ("sbm-13.7K dgi mini", SYNTHETIC, {"mini_batch": True, "num_layers": 1}),
    ("sbm-13.7K ccassg mini", SYNTHETIC, {"model": "ccassg", "mini_batch": True}),
]


def linked_root(shared: Path, out: Path) -> Path | None:
    """A temporary root whose datasets' raw folders link to ``shared``'s (never written)."""
    if not shared.is_dir():
        return None
    for entry in shared.iterdir():
        if (entry / "raw").is_dir():
            (out / entry.name).mkdir()
            (out / entry.name / "raw").symlink_to((entry / "raw").resolve())
    return out


def measure(dataset: str, overrides: dict, root: Path, cache: Path, steps: int) -> tuple:
    graph = load_graph(dataset, root, cache)
    settings = load_settings({"dataset": dataset, "model": "dgi", "epochs": 1000,
                              "save_every": 0, "root": root, "cache_dir": cache,
                              "device": "cpu", **overrides})  # fmt: skip
    session = open_session(settings, graph)
    s = session.settings
    Trainer(graph, session.model, s, session.device, max_steps=1).fit()  # warm-up
    t0 = time.perf_counter()
    Trainer(graph, session.model, s, session.device, max_steps=steps).fit()
    per_step = (time.perf_counter() - t0) / steps
    per_epoch = per_step * (math.ceil(graph.num_nodes / s.batch_size) if s.mini_batch else 1)
    estimate = estimate_epoch_time(info_of(graph, "bench"), s, cpu_rates(2))
    return s, per_epoch, estimate["mini_batch_train" if s.mini_batch else "full_batch_train"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--only", help="run the configurations whose name contains this")
    p.add_argument("--fit", action="store_true",
                   help="also fit the rates to the measurements (non-negative least "
                        "squares of measured seconds on estimated parts)")  # fmt: skip
    a = p.parse_args()
    torch.set_num_threads(2)
    os.environ.setdefault("AGC_QUIET", "1")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        (tmp_path / "root").mkdir()
        root = linked_root(Path(a.root), tmp_path / "root")
        print(f"{'configuration':<38} {'mode':>5} {'steps/ep':>8} {'measured s':>10} "
              f"{'estimate s':>10} {'ratio':>6}  largest estimated part")  # fmt: skip
        rows = []
        for name, dataset, overrides in CONFIGS:
            if a.only and a.only not in name:
                continue
            if not dataset.startswith("sbm") and (root is None or not (root / dataset).exists()):
                print(f"{name:<38} skipped: {dataset} not under {a.root}")
                continue
            with contextlib.redirect_stderr(open(os.devnull, "w")):  # noqa: SIM115
                s, measured, est = measure(
                    dataset, overrides, root or tmp_path, tmp_path / "cache", a.steps
                )
            if "not modelled" not in name:
                rows.append((measured, est.parts))
            top = max(est.parts, key=est.parts.get)
            print(f"{name:<38} {'mini' if s.mini_batch else 'full':>5} {est.steps:>8} "
                  f"{measured:>10.3f} {est.seconds:>10.3f} {measured / est.seconds:>6.2f}  "
                  f"{top} {est.parts[top]:.3f} s", flush=True)  # fmt: skip
        if a.fit and rows:
            fit(rows)


def fit(rows: list[tuple[float, dict[str, float]]]) -> None:
    """Scale each rate so that the estimates best match the measurements: minimise the
    relative error of ``measured ≈ Σ_k c_k · part_k`` over the configurations, ``c_k ≥ 0``
    (a part's new rate is its old one divided by ``c_k``)."""
    import numpy as np
    from scipy.optimize import nnls

    from agc_cli.engine.epoch_time import CPU_RATES_2_THREADS as R

    keys = sorted({k for _, parts in rows for k in parts})
    a = np.array([[parts.get(k, 0.0) / m for k in keys] for m, parts in rows])
    c, _ = nnls(a, np.ones(len(rows)))
    rate = {"dense matmuls": ("matmul_flops", R.matmul_flops),
            "sparse feature product": ("sparse_flops", R.sparse_flops),
            "propagation": ("gather_bytes", R.gather_bytes),
            "blocked first-layer propagation": ("blocked_gather_bytes", R.blocked_gather_bytes),
            "element-wise": ("stream_bytes", R.stream_bytes)}  # fmt: skip
    print("fitted scale per part (new rate = rate / scale):")
    for k, scale in zip(keys, c, strict=True):
        field, old = rate.get(k, ("-", None))
        new = f"{field} = {old / scale:.3g}" if old and scale > 0 else ""
        print(f"  {k:<26} {scale:6.3f}  {new}")
    print("measured / fitted estimate:", " ".join(f"{r:.2f}" for r in 1 / (a @ c)))


if __name__ == "__main__":
    main()
