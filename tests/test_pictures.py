"""Pictures people read: the training-loss plot and the cluster plot's matched colours."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import run_agc

pytest.importorskip("matplotlib")

TINY = "sbm:nodes=300,clusters=3,degree=8,homophily=0.9,features=12,snr=3,seed=2"


def test_train_writes_loss_png_and_resume_redraws_it(capsys, tmp_path):
    run = tmp_path / "run"
    r = run_agc(capsys, "train", "--dataset", TINY, "--hidden-channels", "8", "--epochs", "2",
                "--run-dir", str(run))  # fmt: skip
    assert r.code == 0, r.err
    png = run / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    before = png.stat().st_mtime_ns
    assert run_agc(capsys, "resume", str(run), "--epochs", "3").code == 0
    assert png.stat().st_mtime_ns > before


def test_clusters_are_renumbered_after_their_matched_class():
    from agc_cli.cli.cluster import match_to_classes

    true = np.array([0, 0, 1, 1, 2, 2, -1])
    predicted = np.array([7, 7, 3, 3, 5, 5, 3])  # a relabelling of the classes
    assert match_to_classes(predicted, true).tolist() == [0, 0, 1, 1, 2, 2, 1]
    extra = np.array([1, 1, 0, 0, 2, 4, 0])  # one cluster more than classes
    matched = match_to_classes(extra, true)
    assert matched[:4].tolist() == [0, 0, 1, 1] and matched[5] >= 3  # unmatched: a new id


def test_cluster_plot_has_both_panels_with_legends(capsys, tmp_path, monkeypatch):
    import matplotlib.figure

    run = tmp_path / "run"
    r = run_agc(capsys, "run", "--dataset", TINY, "--hidden-channels", "8", "--epochs", "2",
                "--run-dir", str(run), "--runs", "1")  # fmt: skip
    assert r.code == 0, r.err
    seen = {}
    original = matplotlib.figure.Figure.savefig

    def spy(fig, path, *args, **kwargs):
        seen["axes"] = [(ax.get_title(), ax.get_xlabel(), ax.get_legend() is not None)
                        for ax in fig.axes]  # fmt: skip
        seen["title"] = fig._suptitle.get_text()
        return original(fig, path, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", spy)
    r = run_agc(capsys, "cluster", str(run), "--runs", "1", "--plot", str(tmp_path / "c.png"))
    assert r.code == 0, r.err
    assert [a[0] for a in seen["axes"]] == [
        "coloured by predicted cluster (numbered after its matched class)",
        "coloured by ground-truth class",
    ]
    assert all(label == "PCA 1" and legend for _, label, legend in seen["axes"])
    assert "dgi" in seen["title"] and "NMI" in seen["title"]
