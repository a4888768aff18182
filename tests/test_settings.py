"""Settings: precedence, YAML layouts, and one `key: message` per problem with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from agc_cli.errors import SettingsError
from agc_cli.settings import Settings, load_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "train.conf.yaml"
    path.write_text(text)
    return path


def test_precedence_flag_over_env_over_yaml_over_default(tmp_path, monkeypatch):
    cfg = write(tmp_path, "hidden_channels: 100\nlr: 0.5\nepochs: 7\n")
    assert load_settings(config=cfg).hidden_channels == 100
    monkeypatch.setenv("AGC_HIDDEN_CHANNELS", "200")
    monkeypatch.setenv("AGC_LR", "0.25")
    s = load_settings(config=cfg)
    assert (s.hidden_channels, s.lr, s.epochs) == (200, 0.25, 7)
    s = load_settings({"hidden_channels": 300}, config=cfg)
    assert (s.hidden_channels, s.lr, s.epochs) == (300, 0.25, 7)
    # a flag the user did not pass (None) never overrides lower layers
    assert load_settings({"hidden_channels": None}, config=cfg).hidden_channels == 200


def test_defaults_apply_when_nothing_is_set():
    s = load_settings({"model": "no-preset-model"})
    assert s.dataset == "sbm-small"
    assert s.hidden_channels == Settings.model_fields["hidden_channels"].default
    assert s.infer_fan_out == -1


def test_model_preset_sits_between_yaml_and_defaults(tmp_path):
    assert load_settings({"model": "dgi", "dataset": "Cora"}).hidden_channels == 512  # preset
    # a dataset entry of the preset overrides its default entry
    assert load_settings({"model": "dgi", "dataset": "sbm-small"}).hidden_channels == 256
    cfg = write(tmp_path, "model: dgi\nhidden_channels: 64\n")
    assert load_settings(config=cfg).hidden_channels == 64


def test_a_presets_mini_batch_values_follow_the_users_choice_of_mode(tmp_path, monkeypatch):
    # DGI on Physics trains full-batch by its preset; asked for mini-batch (flag, AGC_*,
    # YAML), it gets the batch size and schedule measured for that mode, below any flag.
    physics = {"model": "dgi", "dataset": "Physics"}
    full = load_settings(physics)
    assert (full.mini_batch, full.batch_size, full.epochs) == (False, 2048, 300)
    mini = load_settings({**physics, "mini_batch": True})
    assert (mini.batch_size, mini.epochs, mini.sampled_norm) == (8192, 75, "rescale")
    assert load_settings({**physics, "mini_batch": True, "epochs": 5}).epochs == 5
    assert load_settings({**physics, "mini_batch": False}).batch_size == 2048
    cfg = write(tmp_path, "mini_batch: true\n")
    assert load_settings(physics, config=cfg).batch_size == 8192
    for value in ("1", "y", "on"):  # whatever pydantic reads as true
        monkeypatch.setenv("AGC_MINI_BATCH", value)
        assert load_settings(physics).batch_size == 8192
    assert load_settings({**physics, "mini_batch": False}).batch_size == 2048  # flag wins


def test_mini_batch_values_of_a_default_entry_and_a_dataset_entry_merge(monkeypatch):
    from agc_cli import presets

    monkeypatch.setitem(presets.PRESETS, "toy", {
        "default": {"lr": 0.1, presets.MINI_BATCH: {"batch_size": 64, "epochs": 5}},
        "Cora": {"lr": 0.2, presets.MINI_BATCH: {"epochs": 7}},
    })  # fmt: skip
    assert presets.model_preset("toy", "Cora") == {"lr": 0.2}
    assert presets.model_preset("toy", "Cora", mini_batch=True) == {
        "lr": 0.2, "batch_size": 64, "epochs": 7,
    }  # fmt: skip
    assert presets.model_preset("toy", "Photo", mini_batch=True) == {
        "lr": 0.1, "batch_size": 64, "epochs": 5,
    }  # fmt: skip


def test_yaml_default_and_dataset_sections(tmp_path):
    cfg = write(
        tmp_path,
        "default:\n  hidden_channels: 128\n  lr: 0.01\n"
        "cora:\n  lr: 0.005\n  dataset: Cora\n"
        "Reddit:\n  mini_batch: true\n",
    )
    s = load_settings({"dataset": "Cora"}, config=cfg)
    assert (s.hidden_channels, s.lr) == (128, 0.005)
    s = load_settings({"dataset": "reddit"}, config=cfg)  # section match is case-insensitive
    assert (s.mini_batch, s.lr) == (True, 0.01)


def test_env_selects_the_dataset_section(tmp_path, monkeypatch):
    cfg = write(tmp_path, "default:\n  lr: 0.01\nPhoto:\n  lr: 0.002\n")
    monkeypatch.setenv("AGC_DATASET", "Photo")
    assert load_settings(config=cfg).lr == 0.002


def test_example_configs_parse():
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert files, "examples/ must hold at least one config"
    for path in files:
        load_settings(config=path)


def test_seed_flat_keys_accepted_verbatim(tmp_path):
    cfg = write(
        tmp_path,
        "dataset: Reddit\ngnn_type: sage\nhidden_channels: 256\nnum_layers: 2\ndropout: 0.1\n"
        "mini_batch: true\nbatch_size: 2048\nfan_out: [15, 10]\nnum_workers: 4\nepochs: 20\n"
        "lr: 0.001\ninfer_batch_size: 8192\ninfer_fan_out: -1\n"
        "force_full_batch_inference: false\nallow_cpu_fallback: true\nsave_every: 1\n"
        "save_every_batch: 500\n",
    )
    s = load_settings(config=cfg)
    assert s.fan_out_list() == [15, 10] and s.save_every_batch == 500 and s.gnn_type == "sage"


def test_fan_out_int_and_string_forms(monkeypatch):
    assert load_settings({"fan_out": 10, "num_layers": 3}).fan_out_list() == [10, 10, 10]
    assert load_settings({"fan_out": "15,10", "num_layers": 2}).fan_out_list() == [15, 10]
    monkeypatch.setenv("AGC_FAN_OUT", "5,5,5")
    assert load_settings({"num_layers": 3}).fan_out_list() == [5, 5, 5]


def test_fan_out_defaults_follow_rule_of_thumb():
    for layers, fan in [(1, 15), (2, 15), (3, 10), (4, 5)]:
        assert load_settings({"num_layers": layers}).fan_out_list() == [fan] * layers


def problems(**kwargs) -> dict[str, str]:
    with pytest.raises(SettingsError) as info:
        load_settings(**kwargs)
    assert info.value.exit_code == 2
    return dict(info.value.problems)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("bogus_key: 1\n", "bogus_key"),
        ("batch_size: -5\n", "batch_size"),
        ("hidden_channels: 0\n", "hidden_channels"),
        ("epochs: many\n", "epochs"),
        ("num_layers: 2\nfan_out: [10, 10, 10]\n", "fan_out"),
        ("infer_fan_out: 0\n", "infer_fan_out"),
        ("infer_fan_out: -3\n", "infer_fan_out"),
        ("fan_out: 0\n", "fan_out"),
        ("dropout: 1.5\n", "dropout"),
        ("gnn_type: transformer\n", "gnn_type"),
        ("mini_batch: maybe\n", "mini_batch"),
        ("precision: 8\n", "precision"),
        ("device: tpu\n", "device"),
        ("num_workers: -1\n", "num_workers"),
        ("default:\n  bogus: 1\n", "bogus"),
    ],
)
def test_bad_setting_names_its_key(tmp_path, text, key):
    assert key in problems(config=write(tmp_path, text))


def test_all_problems_reported_at_once(tmp_path):
    cfg = write(tmp_path, "batch_size: -1\nnum_layers: 2\nfan_out: [1, 2, 3]\nwhat: 1\nlr: 0\n")
    found = problems(config=cfg)
    assert {"batch_size", "fan_out", "what", "lr"} <= set(found)
    assert "num_layers" in found["fan_out"]


def test_missing_config_file_is_a_settings_error(tmp_path):
    assert "config" in problems(config=tmp_path / "nope.yaml")


def test_invalid_yaml_is_a_settings_error(tmp_path):
    assert "config" in problems(config=write(tmp_path, "a: [1, 2\n"))


def test_bad_env_variable_names_its_key(monkeypatch):
    monkeypatch.setenv("AGC_EPOCHS", "abc")
    assert "epochs" in problems()


def test_error_lines_are_key_colon_message(tmp_path):
    with pytest.raises(SettingsError) as info:
        load_settings(config=write(tmp_path, "batch_size: -1\n"))
    assert info.value.lines()[0].startswith("batch_size: ")
