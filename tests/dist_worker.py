"""Run under ``torchrun`` by ``tests/test_distributed.py``: train, then save what this rank saw.

Each rank writes ``OUT/rank{R}.pt`` with its final parameters, the seed nodes of every batch it
trained on and the trainer's epoch history.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from agc_cli.engine import distributed
from agc_cli.engine.session import open_session
from agc_cli.engine.trainer import Trainer
from agc_cli.settings import load_settings

GRAPH = "sbm:nodes=2000,clusters=4,degree=10,homophily=0.8,features=32,snr=1,seed=0"


def settings_for(model: str, batch_size: int, epochs: int):
    return load_settings({
        "dataset": GRAPH, "model": model, "mini_batch": True, "batch_size": batch_size,
        "epochs": epochs, "device": "cpu", "seed": 0, "hidden_channels": 32, "num_layers": 2,
        "fan_out": "5,5", "save_every": 0,
    })  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--model", default="dgi")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None)
    a = p.parse_args()
    session = open_session(settings_for(a.model, a.batch_size, a.epochs))
    seen: list[list[int]] = []
    loss = session.model.loss

    def recording(batch):
        seen.append(batch.n_id[: batch.batch_size].tolist())
        return loss(batch)

    session.model.loss = recording
    trainer = Trainer(
        session.graph, session.model, session.settings, session.device, None,
        dist=session.dist, max_steps=a.max_steps,
    )  # fmt: skip
    trainer.fit()
    state = {k: v.detach().clone() for k, v in session.model.named_parameters()}
    torch.save(
        {"rank": session.dist.rank, "world": session.dist.world_size, "params": state,
         "seen": seen, "history": trainer.history, "threads": torch.get_num_threads()},
        a.out / f"rank{session.dist.rank}.pt",
    )  # fmt: skip
    distributed.shutdown(synchronize=True)


if __name__ == "__main__":
    main()
