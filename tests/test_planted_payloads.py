"""Planted malicious files in every place agc reads from never run code.

Each payload is a pickle whose unpickling creates a marker file (the test first shows that
plain :mod:`pickle` runs it); agc must refuse the file with a one-line error and the marker
must never appear.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_agc

TINY = "sbm:nodes=200,clusters=2,degree=6,homophily=0.9,features=8,snr=3,seed=1"


class _Payload:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _payload(marker: Path) -> bytes:
    return pickle.dumps(_Payload(marker), protocol=2)


def _torch_payload(marker: Path, path: Path) -> None:
    """A ``torch.save`` file whose ``weights_only=False`` load would run the payload."""
    torch.save({"model": _Payload(marker), "embeddings": _Payload(marker)}, path)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    import subprocess
    import sys

    run = tmp_path_factory.mktemp("tpl") / "run"
    done = subprocess.run(
        [sys.executable, "-m", "agc_cli", "train", "--dataset", TINY, "--hidden-channels", "8",
         "--epochs", "1", "--run-dir", str(run), "-q"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "agc_cli", "infer", str(run), "-q"],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return run


def test_the_payload_is_a_real_exploit(tmp_path):
    marker = tmp_path / "marker"
    pickle.loads(_payload(marker))
    assert marker.exists()
    marker.unlink()
    _torch_payload(marker, tmp_path / "p.pt")
    torch.load(tmp_path / "p.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize(
    "plant, command, code",
    [
        ("model.pt", ["infer", "{run}", "--checkpoint", "model.pt"], 4),
        ("checkpoints/last.pt", ["resume", "{run}"], 4),
        ("checkpoints/best.pt", ["infer", "{run}"], 4),
        ("embeddings.pt", ["cluster", "{run}"], 3),
    ],
)
def test_planted_run_files_never_run_code(capsys, tmp_path, template, plant, command, code):
    run = Path(shutil.copytree(template, tmp_path / "run"))
    marker = tmp_path / "marker"
    _torch_payload(marker, run / plant)
    r = run_agc(capsys, *[part.format(run=run) for part in command])
    assert r.code == code, r.err
    assert not marker.exists()
    assert "Traceback" not in r.err


def test_planted_node_list_embeddings_graph_and_yaml_never_run_code(capsys, tmp_path, template):
    run = Path(shutil.copytree(template, tmp_path / "run"))
    marker = tmp_path / "marker"
    nodes = tmp_path / "nodes.txt"
    nodes.write_bytes(_payload(marker))
    assert run_agc(capsys, "infer", str(run), "--nodes", str(nodes)).code in (2, 3)
    npy = tmp_path / "emb.npy"
    np.save(npy, np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    r = run_agc(capsys, "cluster", "--embeddings", str(npy), "--dataset", TINY)
    assert r.code == 3, r.err
    graph = tmp_path / "graph.npz"
    np.savez(graph, edge_index=np.array([_Payload(marker)], dtype=object), x=np.ones((2, 2)))
    assert run_agc(capsys, "stats", str(graph), "--load").code == 3
    config = tmp_path / "evil.yaml"
    config.write_text(f"epochs: !!python/object/apply:os.system ['touch {marker}']\n")
    assert run_agc(capsys, "train", "--config", str(config), "--dataset", TINY).code == 2
    assert not marker.exists()
