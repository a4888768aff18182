"""Mini-batch quality under each sampled-batch normalisation (``--sampled-norm``).

    python benchmarks/bench_sampled_norm.py [--dataset Physics] [--root ../shared/data]
        [--model dgi] [--norms block,subgraph,rescale] [--epochs 18] [--seeds 0]
        [--batch-size 2048] [--threads 2]

Each combination is one ``agc run --mini-batch --sampled-norm NORM --epochs E --seed S`` in
its own process (the preset's encoder, batch size and fan-out unless given; exact inference;
k-means with agc's defaults), on a temporary root whose ``<dataset>/raw`` links to the real
raw files (only read). Prints NMI × 100 per run and the mean ± std over seeds per
normalisation, with the training time. ``--epochs 0 --batch-size 0`` keeps the preset's
mini-batch schedule (DGI on Physics: batch 8192, 75 epochs) and early stopping.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="Physics")
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1] / "../shared/data"))
    p.add_argument("--model", default="dgi")
    p.add_argument("--norms", default="block,subgraph,rescale")
    p.add_argument("--epochs", type=int, default=18)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--batch-size", type=int, default=2048, help="seeds per batch (0: preset)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args()
    raw = Path(a.root) / a.dataset / "raw"
    if not raw.is_dir():
        raise SystemExit(f"{raw} not found: pass --root")
    work = Path(tempfile.mkdtemp(prefix="agc-bench-norm-"))
    (work / "root" / a.dataset).mkdir(parents=True)
    os.symlink(raw.resolve(), work / "root" / a.dataset / "raw")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), AGC_CACHE_DIR=str(work / "cache"))
    print(f"{a.model} on {a.dataset}, --mini-batch, epochs {a.epochs or 'preset'}, batch "
          f"{a.batch_size or 'preset'}, seeds {a.seeds}, {a.threads} threads")  # fmt: skip
    summary = {}
    for norm in a.norms.split(","):
        scores, seconds = [], []
        for seed in a.seeds:
            command = [sys.executable, "-m", "agc_cli", "run", "--model", a.model, "--dataset",
                       a.dataset, "--root", str(work / "root"), "--mini-batch", "--sampled-norm",
                       norm, "--seed", str(seed), "--run-dir", str(work / f"{norm}-{seed}"),
                       "--json", "--quiet"]  # fmt: skip
            if a.epochs:
                command += ["--epochs", str(a.epochs)]
            if a.batch_size:
                command += ["--batch-size", str(a.batch_size)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{norm} seed {seed} failed: {done.stderr.strip()[-400:]}")
            result = json.loads(done.stdout)
            scores.append(100 * result["metrics"]["mean"]["nmi"])
            seconds.append(result["seconds"])
            epoch = result["train"]["ms_per_epoch"] / 1000
            print(f"{norm:<9} seed {seed}: NMI {scores[-1]:.2f} ({seconds[-1]:.0f} s, "
                  f"{epoch:.2f} s per epoch)", flush=True)  # fmt: skip
        spread = statistics.stdev(scores) if len(scores) > 1 else 0.0
        summary[norm] = (statistics.mean(scores), spread, statistics.mean(seconds))
    for norm, (mean, spread, secs) in summary.items():
        print(f"{norm:<9} NMI {mean:.2f} ± {spread:.2f} over {len(a.seeds)} seed(s), "
              f"{secs:.0f} s per run")  # fmt: skip


if __name__ == "__main__":
    main()
