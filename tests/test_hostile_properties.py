"""Property tests of issue 11: no settings file and no user graph file misbehaves.

Whatever a YAML settings file or a user graph file holds, agc either accepts it (and the result
is valid) or refuses it with the error of its class: never another exception.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")

from cli_helpers import graph_dir  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from agc_cli.data.files import load_user_graph  # noqa: E402
from agc_cli.errors import DataError, SettingsError  # noqa: E402
from agc_cli.settings import load_settings  # noqa: E402

SLOW_OK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SLOW_OK
@given(st.binary(max_size=300))
def test_any_bytes_as_config_are_settings_or_a_settings_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(data)
    try:
        load_settings(config=path)
    except SettingsError:
        pass


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8)
)
_values = st.recursive(_scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(
    st.text(max_size=6), c, max_size=3), max_leaves=6)  # fmt: skip
_keys = st.sampled_from(["epochs", "batch_size", "fan_out", "lr", "model", "seed", "run_dir",
                         "cache_dir", "default", "Cora", "nope", "mini_batch"])  # fmt: skip


@SLOW_OK
@given(st.one_of(st.dictionaries(_keys, _values, max_size=5), _values))
def test_any_yaml_document_is_settings_or_a_settings_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        s = load_settings(config=path)
    except SettingsError as exc:
        assert exc.lines()
    else:
        assert s.epochs >= 1 and s.batch_size >= 1


@SLOW_OK
@given(
    x=hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int64, np.bool_]),
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5),
    ),
    edges=hnp.arrays(
        np.int64, hnp.array_shapes(min_dims=1, max_dims=2, max_side=6), elements=st.integers(-2, 8)
    ),
    y=st.none() | hnp.arrays(np.int64, st.integers(0, 6), elements=st.integers(-1, 10**9)),
)
def test_any_user_graph_loads_valid_or_raises_data_error(tmp_path_factory, x, edges, y):
    folder = graph_dir(tmp_path_factory.mktemp("g"), x, edges=edges, y=y)
    try:
        graph = load_user_graph(folder)
    except DataError:
        return
    assert graph.num_nodes >= 1 and graph.num_features >= 1
    assert graph.num_nodes == x.shape[0]
    if graph.y is not None:
        assert int(graph.y.max()) < graph.num_nodes
    if graph.row.numel():
        assert 0 <= int(graph.row.min()) and int(graph.row.max()) < graph.num_nodes


@SLOW_OK
@given(st.binary(max_size=200), st.sampled_from(["x.npy", "edge_index.npy", "y.npy", "g.npz"]))
def test_any_bytes_as_a_graph_file_are_a_data_error(tmp_path_factory, data, name):
    folder = graph_dir(tmp_path_factory.mktemp("g"), np.ones((2, 3), np.float32))
    (folder / name).write_bytes(data)
    try:
        load_user_graph(folder / name if name.endswith(".npz") else folder)
    except DataError:
        pass
