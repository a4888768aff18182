"""Training seeds (`agc run --seeds`) and the benchmark grid (`agc bench`): the protocol
(std over training seeds, one run directory per seed), resumability, reference parsing,
skip-with-reason and the markdown table."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from cli_helpers import run_agc

from agc_cli.cli import jobs
from agc_cli.cli.options import gather_multi_values, parse_seeds
from agc_cli.engine import bench
from agc_cli.errors import UsageError

TINY = "sbm:nodes=300,clusters=3,degree=8,homophily=0.9,features=12,snr=3,seed=2"
FAST = ("--epochs", "2", "--runs", "1")

REFERENCE_MD = """# Published

### Cora

| Method | NMI | ARI | ACC | F1 | Mod | Cond | Total Time | Peak GPU Memory |
|---|---|---|---|---|---|---|---|---|
| KMeans | 13.89±4.46 | 6.95±2.61 | 33.09±4.00 | 25.99±2.91 | 18.73±3.05 | 57.49±5.83 | 0.28s | - |
| CCASSG | 58.74±0.87 | 51.84±3.32 | 73.35±1.92 | 72.29±1.48 | 73.46±0.42 | 10.18±0.22 | 0.46s | - |

### Photo

| Method | NMI | ARI | ACC | F1 | Mod | Cond | Total Time | Peak GPU Memory |
|---|---|---|---|---|---|---|---|---|
| SSGC | 70.75±1.39 | 59.17±3.81 | 76.34±4.04 | 70.17±3.78 | 70.13±1.91 | 9.04±1.23 | - | - |
"""


# ----- seeds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seeds"), [("5", [0, 1, 2, 3, 4]), ("1", [0]), ("0,3,7", [0, 3, 7]), ("2 9", [2, 9])]
)
def test_parse_seeds_reads_a_count_or_the_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["0", "-1,2", "1,1", "a", "", "1.5"])
def test_parse_seeds_refuses_bad_values(text):
    with pytest.raises(UsageError):
        parse_seeds(text)


def test_gather_multi_values_joins_the_integers_after_seeds():
    argv = ["run", "--seeds", "0", "1", "2", "--epochs", "3"]
    assert gather_multi_values(argv) == ["run", "--seeds", "0,1,2", "--epochs", "3"]
    assert gather_multi_values(["run", "--seeds", "5"]) == ["run", "--seeds", "5"]
    assert gather_multi_values(["run", "--epochs", "0", "1"]) == ["run", "--epochs", "0", "1"]


def test_run_seeds_trains_one_model_per_seed_and_reports_std_over_seeds(capsys, tmp_path):
    folder = tmp_path / "seeds"
    r = run_agc(capsys, "run", "--dataset", TINY, "--model", "gae", *FAST, "--seeds", "0", "1",
                "2", "--run-dir", str(folder), "--json")  # fmt: skip
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert [s["seed"] for s in out["seeds"]] == [0, 1, 2]
    per_seed = []
    for record in out["seeds"]:
        run = folder / f"seed-{record['seed']}"
        assert record["run_dir"] == str(run)
        settings = (run / "settings.yaml").read_text()
        assert f"seed: {record['seed']}" in settings  # each run trained with its own seed
        assert (run / "model.pt").is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert record["metrics"]["nmi"] == pytest.approx(metrics["mean"]["nmi"])
        per_seed.append(record["metrics"]["nmi"])
    assert out["mean"]["nmi"] == pytest.approx(np.mean(per_seed))
    assert out["std"]["nmi"] == pytest.approx(np.std(per_seed))
    assert len(set(per_seed)) > 1 or out["std"]["nmi"] == 0.0
    assert json.loads((folder / "seeds.json").read_text())["mean"] == out["mean"]
    assert r.err.count("loading ") == 1  # the graph is loaded once


def test_run_seeds_refuses_seed_and_seeds_together(capsys, tmp_path):
    r = run_agc(capsys, "run", "--dataset", TINY, "--seed", "1", "--seeds", "2",
                "--run-dir", str(tmp_path / "x"))  # fmt: skip
    assert r.code == 2
    assert not (tmp_path / "x").exists()


def test_run_seeds_refuses_a_folder_holding_a_run(capsys, tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    r = run_agc(capsys, "run", "--dataset", TINY, "--seeds", "2", "--run-dir", str(folder))
    assert r.code == 2, r.err
    assert (folder / "notes.txt").read_text() == "mine"
    assert not (folder / "seed-0").exists()


# ----- reference ------------------------------------------------------------------------------


def test_read_reference_parses_markdown_tables(tmp_path):
    path = tmp_path / "REFERENCE.md"
    path.write_text(REFERENCE_MD)
    ref = bench.read_reference(path)
    assert ref[("ccassg", "cora")]["nmi"] == 58.74
    assert ref[("ccassg", "cora")]["conductance"] == 10.18
    assert ref[("ccassg", "cora")]["total_seconds"] == 0.46
    assert ref[("kmeans", "cora")]["modularity"] == 18.73
    assert ref[("ssgc", "photo")]["nmi"] == 70.75
    assert "total_seconds" not in ref[("ssgc", "photo")]  # "-" is no number
    assert ("ssgc", "cora") not in ref


def test_read_reference_parses_csv(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("method,dataset,metric,value\nCCA-SSG,Cora,NMI,58.74\nDGI,Cora,Cond,12.43\n")
    ref = bench.read_reference(path)
    assert ref == {("ccassg", "cora"): {"nmi": 58.74}, ("dgi", "cora"): {"conductance": 12.43}}


@pytest.mark.parametrize("text", ["nothing here\n", "method,dataset,metric,value\nDGI,Cora,xx,1\n"])
def test_read_reference_refuses_files_without_numbers(tmp_path, text):
    path = tmp_path / "ref.txt"
    path.write_text(text)
    with pytest.raises(UsageError):
        bench.read_reference(path)


def test_the_official_reference_file_parses(shared_data):
    ref = bench.read_reference(shared_data / "REFERENCE.md")
    assert ref[("dgi", "physics")]["nmi"] == 74.39
    assert ref[("ms2cag", "photo")]["nmi"] == 72.49


# ----- tables ---------------------------------------------------------------------------------


def _record(model, dataset, seed, nmi, cond=0.1):
    return {"model": model, "dataset": dataset, "seed": seed, "status": "ok",
            "metrics": {"nmi": nmi, "conductance": cond}, "train_seconds": 2.0,
            "total_seconds": 3.0, "peak_rss_bytes": 2**20}  # fmt: skip


def test_markdown_table_has_pyagc_layout_with_delta_and_verdict():
    cells = bench.grid(["ccassg", "dgi"], ["Cora"], [0, 1])
    records = {c.key: _record(c.model, c.dataset, c.seed, 0.58 + 0.01 * c.seed)
               for c in cells if c.model == "ccassg"}  # fmt: skip
    skipped = {c.key: "Cora: raw files missing" for c in cells if c.model == "dgi"}
    ref = {("ccassg", "cora"): {"nmi": 58.74}}
    rows = bench.summarize(cells, records, skipped, ref)
    text = bench.markdown_table(rows, "nmi", 0.5, compare=True)
    lines = text.splitlines()
    assert lines[0] == "### Cora"
    header = lines[2]
    assert header.startswith("| Method | NMI | ARI | ACC | F1 | Mod | Cond | Train Time |")
    assert header.endswith("| Ref NMI | Δ | ±0.5 |")
    ccassg = next(line for line in lines if line.startswith("| ccassg"))
    cols = [c.strip() for c in ccassg.strip("|").split("|")]
    assert cols[1] == "58.50±0.50"  # mean ± population std over the two seeds, ×100
    assert cols[header.strip("|").split("|").index(" Ref NMI ")] == "58.74"
    assert cols[-2] == "-0.24" and cols[-1] == "✓"
    dgi = next(line for line in lines if line.startswith("| dgi"))
    assert "skipped: Cora: raw files missing" in dgi
    assert all(line.count("|") == header.count("|") for line in lines if line.startswith("|"))


def test_passes_follows_the_direction_of_the_metric():
    row = bench.Row("m", "d", [0], {"nmi": 0.50, "conductance": 0.12}, {"nmi": 0, "conductance": 0},
                    reference={"nmi": 51.0, "conductance": 11.0})  # fmt: skip
    assert row.passes("nmi", 0.5) is False and row.passes("nmi", 1.0) is True
    assert row.passes("conductance", 0.5) is False and row.passes("conductance", 1.0) is True


def test_results_log_ignores_a_last_line_cut_short(tmp_path):
    log = bench.ResultsLog(tmp_path)
    log.append(_record("gae", "Cora", 0, 0.5))
    with open(log.path, "a") as fh:
        fh.write('{"model": "gae", "dat')  # a kill in the middle of a write
    assert list(log.finished()) == ["gae/Cora/seed-0"]
    log.append(_record("gae", "Cora", 1, 0.6))
    assert list(log.finished()) == ["gae/Cora/seed-0", "gae/Cora/seed-1"]


# ----- the grid -------------------------------------------------------------------------------


def _bench(capsys, out, *extra):
    return run_agc(capsys, "bench", "--models", "sgc,gae", "--datasets", TINY, "--seeds", "2",
                   *FAST, "--out", str(out), *extra)  # fmt: skip


def test_bench_runs_the_grid_and_writes_jsonl_csv_and_table(capsys, tmp_path):
    out = tmp_path / "grid"
    r = _bench(capsys, out, "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert (report["cells"], report["ran"], report["reused"]) == (4, 4, 0)
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(x["model"], x["seed"]) for x in records] == [("sgc", 0), ("sgc", 1), ("gae", 0),
                                                          ("gae", 1)]  # fmt: skip
    for x in records:
        assert (out / x["run_dir"] / "metrics.json").is_file()
    rows = {row["model"]: row for row in report["rows"]}
    nmis = [x["metrics"]["nmi"] for x in records if x["model"] == "gae"]
    assert rows["gae"]["mean"]["nmi"] == pytest.approx(np.mean(nmis))
    assert rows["gae"]["std"]["nmi"] == pytest.approx(np.std(nmis))
    assert (out / "results.csv").read_text().splitlines()[0].startswith("model,dataset,seed")
    assert "| sgc |" in (out / "table.md").read_text()


def test_bench_killed_mid_grid_continues_without_rerunning_finished_cells(
    capsys, tmp_path, monkeypatch
):
    out = tmp_path / "grid"
    real = jobs.run_job
    calls: list[str] = []

    def dies_on_third(settings, graph=None):
        calls.append(f"{settings.model}/{settings.seed}")
        if len(calls) == 3:
            settings.run_dir.mkdir(parents=True)
            (settings.run_dir / "train.log").write_text("partial")  # a run cut short
            raise KeyboardInterrupt
        return real(settings, graph)

    monkeypatch.setattr(jobs, "run_job", dies_on_third)
    r = _bench(capsys, out)
    assert r.code == 130
    finished = bench.ResultsLog(out).finished()
    assert sorted(finished) == [f"sgc/{bench.slug(TINY)}/seed-0", f"sgc/{bench.slug(TINY)}/seed-1"]
    kept = out / finished[f"sgc/{bench.slug(TINY)}/seed-0"]["run_dir"] / "metrics.json"
    before = kept.stat().st_mtime_ns
    assert "| sgc |" in (out / "table.md").read_text()  # the table holds what finished

    calls.clear()
    monkeypatch.setattr(jobs, "run_job", lambda s, g=None: (calls.append(f"{s.model}/{s.seed}"),
                                                            real(s, g))[1])  # fmt: skip
    r = _bench(capsys, out, "--json")
    assert r.code == 0, r.err
    assert calls == ["gae/0", "gae/1"]  # only the cells that had not finished
    report = json.loads(r.out)
    assert (report["ran"], report["reused"]) == (2, 2)
    assert kept.stat().st_mtime_ns == before
    assert "unfinished run" in r.err


def test_bench_refuses_an_out_folder_run_with_other_settings(capsys, tmp_path):
    out = tmp_path / "grid"
    assert _bench(capsys, out).code == 0
    r = run_agc(capsys, "bench", "--models", "sgc,gae", "--datasets", TINY, "--seeds", "2",
                "--epochs", "3", "--runs", "1", "--out", str(out))  # fmt: skip
    assert r.code == 2
    assert "other settings" in r.err


def test_bench_skips_a_cell_whose_data_is_missing_and_goes_on(capsys, tmp_path, monkeypatch):
    import agc_cli.data.real as real

    def offline(url, path):
        raise OSError("network is unreachable")

    monkeypatch.setattr(real, "_download", offline)
    out = tmp_path / "grid"
    r = run_agc(capsys, "bench", "--models", "sgc", "--datasets", f"CiteSeer,{TINY}", "--seeds",
                "1", "--runs", "1", "--root", str(tmp_path / "empty"), "--out", str(out),
                "--json")  # fmt: skip
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert list(report["skipped"]) == ["sgc/CiteSeer/seed-0"]
    assert "CiteSeer" in report["skipped"]["sgc/CiteSeer/seed-0"]
    assert report["ran"] == 1
    rows = {row["dataset"]: row for row in report["rows"]}
    assert rows["CiteSeer"]["seeds"] == [] and rows["CiteSeer"]["skipped"]
    assert not math.isnan(rows[TINY]["mean"]["nmi"])
    assert not (out / "cells" / "sgc" / "CiteSeer").exists()
    assert "skipped" in (out / "table.md").read_text()


@pytest.mark.parametrize(
    "args",
    [("--models", "nope", "--datasets", TINY), ("--models", "sgc", "--datasets", "nope"),
     ("--models", "sgc,sgc", "--datasets", TINY), ("--models", "sgc", "--datasets", TINY,
                                                   "--metric", "speed")],
)  # fmt: skip
def test_bench_validates_before_work(capsys, tmp_path, args):
    r = run_agc(capsys, "bench", *args, "--out", str(tmp_path / "grid"))
    assert r.code == 2, r.err
    assert not (tmp_path / "grid").exists()


def test_an_interrupted_cell_tells_to_rerun_the_bench_not_to_resume_the_cell(
    capsys, tmp_path, monkeypatch
):
    from agc_cli.errors import InterruptedRun

    def interrupted(settings, graph=None):
        stopped = "SIGINT: stopped at epoch 3, batch 1; checkpoint written"
        raise InterruptedRun(f"{stopped}; continue with: agc resume {settings.run_dir}", stopped)

    monkeypatch.setattr(jobs, "run_job", interrupted)
    r = _bench(capsys, tmp_path / "grid")
    assert r.code == 130
    assert "rerun the same agc bench command" in r.err and "agc resume" not in r.err
    assert "stopped at epoch 3, batch 1" in r.err
