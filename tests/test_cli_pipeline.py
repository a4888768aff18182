"""`agc infer`, `agc cluster` and `agc run` end to end on a tiny synthetic graph."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from cli_helpers import run_agc

TINY = "sbm:nodes=400,clusters=4,degree=8,homophily=0.9,features=16,snr=3,seed=4"


def trained(capsys, tmp_path, *extra: str) -> str:
    run = tmp_path / "run"
    r = run_agc(capsys, "train", "--dataset", TINY, "--hidden-channels", "16", "--epochs", "5",
                "--run-dir", str(run), *extra)  # fmt: skip
    assert r.code == 0, r.err
    return str(run)


def test_infer_writes_embeddings_for_all_nodes_and_npy(capsys, tmp_path):
    run = trained(capsys, tmp_path)
    r = run_agc(capsys, "infer", run, "--format", "npy")
    assert r.code == 0, r.err
    assert "Inference: full-batch (cpu)" in r.out  # the result, on stdout
    state = torch.load(tmp_path / "run" / "embeddings.pt", weights_only=True)
    assert state["embeddings"].shape == (400, 16)
    assert torch.equal(state["node_ids"], torch.arange(400))
    assert np.load(tmp_path / "run" / "embeddings.npy").shape == (400, 16)


def test_infer_subset_matches_full_rows(capsys, tmp_path):
    run = trained(capsys, tmp_path)
    assert run_agc(capsys, "infer", run).code == 0
    full = torch.load(tmp_path / "run" / "embeddings.pt", weights_only=True)["embeddings"]
    ids = tmp_path / "ids.txt"
    ids.write_text("5\n3\n250\n")
    r = run_agc(capsys, "infer", run, "--nodes", str(ids), "--infer-batch-size", "64",
                "--device", "cpu")  # fmt: skip
    assert r.code == 0, r.err
    sub = torch.load(tmp_path / "run" / "embeddings-ids.pt", weights_only=True)
    assert sub["node_ids"].tolist() == [5, 3, 250]
    kept = torch.load(tmp_path / "run" / "embeddings.pt", weights_only=True)["embeddings"]
    assert torch.equal(kept, full)  # the all-node embeddings are never replaced by a subset
    torch.testing.assert_close(sub["embeddings"], full[[5, 3, 250]], atol=1e-5, rtol=1e-4)


def test_infer_bad_inputs(capsys, tmp_path):
    assert run_agc(capsys, "infer", str(tmp_path / "missing")).code == 4
    run = trained(capsys, tmp_path)
    bad = tmp_path / "ids.txt"
    bad.write_text("1\n999999\n")
    r = run_agc(capsys, "infer", run, "--nodes", str(bad))
    assert r.code == 3 and "node ids must be in" in r.err
    assert run_agc(capsys, "infer", run, "--format", "csv").code == 2


def test_cluster_reports_runs_and_writes_outputs(capsys, tmp_path):
    run = trained(capsys, tmp_path)
    assert run_agc(capsys, "infer", run).code == 0
    r = run_agc(capsys, "cluster", run, "--runs", "3", "--plot", str(tmp_path / "p.png"))
    assert r.code == 0, r.err
    lines = [x for x in r.err.splitlines() if x.startswith("Run ")]
    assert len(lines) == 3 and lines[0].startswith("Run 1/3: NMI=") and "ACC=" in lines[0]
    assert any(x.startswith("Final: NMI=") and "±" in x for x in r.out.splitlines())
    rows = list(csv.reader((tmp_path / "run" / "clusters.csv").open()))
    assert rows[0] == ["node_id", "cluster"] and len(rows) == 401
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert len(metrics["runs"]) == 3
    for key in ("nmi", "ari", "acc", "f1", "modularity", "conductance", "mean_conductance"):
        assert key in metrics["mean"], key
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_cluster_json_and_embeddings_file_mode(capsys, tmp_path):
    emb = tmp_path / "emb.npy"
    g = torch.Generator().manual_seed(0)
    np.save(emb, torch.randn(400, 8, generator=g).numpy())
    r = run_agc(capsys, "cluster", "--embeddings", str(emb), "--dataset", TINY, "--runs", "2",
                "--json", "--n-clusters", "4")  # fmt: skip
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert out["n_clusters"] == 4 and len(out["runs"]) == 2
    assert (tmp_path / "clusters.csv").is_file()


def test_cluster_errors(capsys, tmp_path):
    assert run_agc(capsys, "cluster").code == 2
    run = trained(capsys, tmp_path)
    r = run_agc(capsys, "cluster", run)
    assert r.code == 3 and "agc infer" in r.err  # no embeddings yet


def test_train_refuses_a_non_parametric_method_before_loading(capsys, tmp_path):
    run_dir = tmp_path / "run"
    r = run_agc(capsys, "train", "--model", "ssgc", "--dataset", "sbm-small",
                "--run-dir", str(run_dir))  # fmt: skip
    assert r.code == 2 and "non-parametric" in r.err and "agc run --model ssgc" in r.err
    assert len(r.err.strip().splitlines()) == 1 and r.out == ""
    assert not run_dir.exists()  # refused before a run directory (or the data) was touched


def test_run_main_job_summary(capsys, tmp_path):
    r = run_agc(capsys, "run", "--dataset", TINY, "--hidden-channels", "16", "--epochs", "5",
                "--runs", "2", "--run-dir", str(tmp_path / "run"))  # fmt: skip
    assert r.code == 0, r.err
    assert "agc run summary" in r.out
    for stage in ("train", "infer", "cluster", "total"):
        assert stage in r.out
    assert "NMI=" in r.out
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--bogus"], "No such option: --bogus"),
        (["train", "--nproc-per-node", "abc"], "Invalid value for '--nproc-per-node'"),
        (["cluster", "--runs", "many"], "Invalid value for '--runs'"),
    ],
)
def test_malformed_flags_exit_2_with_one_error_line(capsys, args, message):
    result = run_agc(capsys, *args)
    assert result.code == 2
    assert message in result.err and "Traceback" not in result.err
