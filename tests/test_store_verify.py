"""``--verify``: every byte of an on-disk store against the full checksums of convert time."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_agc

# 20,000 × 32 float32 features: x.npy is 2.5 MiB, so its middle lies outside the open-time
# checksum (first and last MiB).
SPEC = "sbm:nodes=20000,clusters=4,degree=4,features=32,seed=3"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("verify") / "store"
    from agc_cli.data.sources import convert_dataset

    convert_dataset(SPEC, path, tmp_path_factory.mktemp("root"), tmp_path_factory.mktemp("c"))
    return path


def _damaged_copy(store, tmp_path):
    import shutil

    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    x = copy / "x.npy"
    data = bytearray(x.read_bytes())
    middle = len(data) // 2
    assert (1 << 20) < middle < len(data) - (1 << 20)
    data[middle : middle + 4] = b"\x00\x00\xc0\x7f"  # a NaN, same size
    x.write_bytes(bytes(data))
    return copy


def test_meta_records_a_full_checksum_per_file(store):
    meta = json.loads((store / "meta.json").read_text())
    assert all(len(entry["blake2b"]) == 32 for entry in meta["files"].values())


def test_verify_passes_on_an_intact_store(capsys, store):
    r = run_agc(capsys, "stats", str(store), "--verify")
    assert r.code == 0, r.err
    assert "every byte matches" in r.err


def test_damage_in_the_middle_is_found_only_by_verify(capsys, store, tmp_path):
    damaged = _damaged_copy(store, tmp_path)
    assert run_agc(capsys, "stats", str(damaged)).code == 0  # open-time checks miss it
    for command in (
        ["stats", str(damaged)],
        ["train", "--dataset", str(damaged), "--epochs", "1", "--run-dir", str(tmp_path / "run")],
    ):
        r = run_agc(capsys, *command, "--verify")
        assert r.code == 3, r.err
        assert "x.npy" in r.err and "full checksum" in r.err
    assert not (tmp_path / "run").exists()  # refused before any training


def test_verify_needs_a_store_and_full_checksums(capsys, store, tmp_path):
    r = run_agc(capsys, "stats", "sbm-small", "--verify")
    assert r.code == 2 and "not an on-disk store" in r.err
    import shutil

    old = tmp_path / "old"
    shutil.copytree(store, old)
    meta = json.loads((old / "meta.json").read_text())
    for entry in meta["files"].values():
        del entry["blake2b"]
    (old / "meta.json").write_text(json.dumps(meta))
    r = run_agc(capsys, "stats", str(old), "--verify")
    assert r.code == 3 and "convert it again" in r.err
