"""One settings object shared by every subcommand.

Precedence, highest first: flags the user passed > ``AGC_*`` environment variables > the YAML
file given with ``--config`` > the model's preset > the defaults below.

The YAML file takes the flat keys of PyAGC's ``train.conf.yaml`` verbatim, or a ``default:``
section plus per-dataset sections (the section of the selected dataset overrides ``default``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from platformdirs import user_cache_path, user_data_path
from pydantic import (
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from agc_cli.errors import SettingsError
from agc_cli.presets import model_preset

ENV_PREFIX = "AGC_"
MAX_INT = 2**31 - 1  # bound of every integer setting

# Layers below the environment, set by load_settings for the duration of one construction.
_LAYERS: ContextVar[dict[str, dict[str, Any]] | None] = ContextVar("agc_layers", default=None)


def _parse_fan_out(value: Any) -> Any:
    """Accept ``15``, ``"15"``, ``"15,10"``, ``[15, 10]``; the per-hop values are checked later."""
    if isinstance(value, str):
        parts = [p for p in value.replace("[", "").replace("]", "").split(",") if p.strip()]
        try:
            ints = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"expected an integer or a comma-separated list, got {value!r}"
            ) from None
        return ints[0] if len(ints) == 1 else ints
    if isinstance(value, bool):
        raise ValueError("expected an integer or a list of integers")
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError("expected a list of integers")
        return list(value)
    return value


FanOut = Annotated[int | list[int] | None, NoDecode, BeforeValidator(_parse_fan_out)]


def _parse_view_rates(value: Any) -> Any:
    """Accept ``0.2``, ``"0.2"``, ``"0.2,0.4"``, ``[0.2, 0.4]``: one rate for both augmented
    views or one per view; always returned as two values."""
    if isinstance(value, str):
        parts = [p for p in value.replace("[", "").replace("]", "").split(",") if p.strip()]
        try:
            value = [float(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"expected a number or two comma-separated numbers, got {value!r}"
            ) from None
    if isinstance(value, bool):
        raise ValueError("expected a number or two numbers")
    if isinstance(value, (int, float)):
        value = [value]
    if isinstance(value, (list, tuple)):
        if len(value) not in (1, 2) or any(isinstance(v, bool) for v in value):
            raise ValueError("expected one rate (both views) or two (one per view)")
        if not all(isinstance(v, (int, float)) and 0 <= v < 1 for v in value):
            raise ValueError("each rate must be a number in [0, 1)")
        return [float(value[0]), float(value[-1])]
    return value


ViewRates = Annotated[list[float], NoDecode, BeforeValidator(_parse_view_rates)]


class Settings(BaseSettings):
    """Every setting of agc; the field names are the YAML keys and ``AGC_<NAME>`` variables."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True, case_sensitive=False
    )

    # data
    dataset: str = Field("sbm-small", description="catalog name, synthetic preset or path")
    root: Path = Field(
        user_data_path("agc") / "datasets", description="dataset root (read-only ok)"
    )
    cache_dir: Path = Field(user_cache_path("agc"), description="where processed graphs are cached")
    storage: Literal["memory", "disk"] = "memory"
    labeled_only: bool = Field(False, description="restrict to labeled nodes (Papers100M)")

    # model
    model: str = "dgi"
    gnn_type: Literal["gcn", "sage", "gat", "gatv2", "gin"] = "gcn"
    hidden_channels: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)
    heads: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation: Literal["relu", "prelu", "elu", "gelu", "leaky_relu", "tanh", "identity"] = "prelu"
    norm: Literal["none", "batch", "layer"] = "none"
    residual: bool = False
    jk: Literal["none", "last", "cat", "max"] = "none"
    n_clusters: int | None = Field(None, ge=2, description="default: number of label classes")
    update_interval: int = Field(1, ge=1, description="DAEGC: steps between target refreshes")
    pretrain_epochs: int = Field(
        0, ge=0, description="DAEGC, Dink-Net: pretraining epochs before the clustering loss"
    )
    gamma: float = Field(
        10.0,
        ge=0.0,
        description="DAEGC: clustering (KL) loss weight; MS2CAG: modularity weight; "
        "NS4GC: sparsity-term weight",
    )
    tau: float = Field(
        0.5, gt=0.0, description="MAGI: contrastive temperature; NS4GC: sparsity-term temperature"
    )
    lambd: float = Field(
        1.0, ge=0.0,
        description="NS4GC: weight of the neighbour term; MinCut: of the orthogonality term; "
        "Neuromap: of the collapse term",
    )  # fmt: skip
    threshold: float = Field(
        0.6, ge=-1.0, le=1.0, description="NS4GC: similarity threshold s of the sparsity term"
    )
    edge_drop: ViewRates = Field(
        [0.2, 0.2], description="NS4GC/GBT: fraction of edges dropped, both views or one per view"
    )
    feature_mask: ViewRates = Field(
        [0.2, 0.2],
        description="NS4GC/GBT: fraction of feature columns masked, both views or one per view",
    )
    feature_masking: Literal["columns", "entries"] = Field(
        "columns",
        description="CCA-SSG/NS4GC/GBT: mask whole feature columns (the papers' code) or "
        "single entries, a mask per node (PyAGC's)",
    )
    num_walks: int = Field(20, ge=1, description="MAGI: random walks per node")
    walk_length: int = Field(4, ge=1, description="MAGI: steps per random walk")
    context_size: int = Field(
        5, ge=2, description="Node2Vec: nodes per skip-gram window, at most walk_length + 1"
    )
    walk_p: float = Field(1.0, gt=0.0, description="Node2Vec: return parameter p of the walks")
    walk_q: float = Field(1.0, gt=0.0, description="Node2Vec: in-out parameter q of the walks")
    negatives: int = Field(1, ge=1, description="Node2Vec: negative windows per positive one")
    alpha: float = Field(
        0.05,
        ge=0.0,
        description="SSGC: teleport weight in [0, 1]; S2CAG: walk weight decay; "
        "Dink-Net: discrimination-loss weight after pretraining",
    )
    subspace_iterations: int = Field(
        50, ge=1, description="S2CAG/M-S2CAG: iterations of the randomized spectral solver"
    )
    bias: float = Field(
        2**-0.5, ge=0.0, description="SAGSC: bias c of the quadratic kernel (u·v + c)²"
    )
    r_list: list[float] = Field(
        [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        min_length=1,
        description="NAFS: exponents r of the operators D̃^(r-1) Ã D̃^(-r), one smoothing each",
    )
    ensemble: Literal["concat", "mean", "max"] = Field(
        "concat", description="NAFS: how the smoothings of r_list combine"
    )

    # training
    mini_batch: bool | None = Field(None, description="None: follow the stats recommendation")
    batch_size: int = Field(2048, ge=1)
    fan_out: FanOut = Field(None, description="int or per-layer list; -1 = all neighbours")
    fan_out_final: FanOut = Field(None, description="adaptive schedule: fan-out at the last epoch")
    sampler: Literal["auto", "agc", "pyg"] = "auto"
    sampled_norm: Literal["rescale", "block", "subgraph"] = Field(
        "rescale",
        description="mini-batch aggregation weights: rescale = full-graph degrees, sums over s "
        "sampled of d neighbours times d/s (unbiased); block = degrees counted inside each "
        "layer's sampled block; subgraph = inside the whole sampled subgraph (PyG)",
    )
    num_workers: int = Field(0, ge=0)
    epochs: int = Field(100, ge=1)
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    accumulate: int = Field(1, ge=1)
    precision: Literal["32", "bf16", "16"] = "32"
    patience: int = Field(0, ge=0, description="early stopping patience in epochs (0 = off)")
    seed: int = Field(0, ge=0)
    device: str = "auto"

    # inference
    infer_batch_size: int = Field(8192, ge=1)
    force_full_batch_inference: bool = False
    infer_fan_out: int = -1
    allow_cpu_fallback: bool = True

    # clustering
    runs: int = Field(5, ge=1, description="independent k-means runs")
    n_init: int = Field(
        10, ge=1, description="k-means++ restarts within each run; the lowest inertia is kept"
    )
    normalize_embeddings: bool = False
    kmeans_backend: Literal["auto", "sklearn", "torch", "minibatch"] = "auto"
    cluster_out_of_core: bool | None = Field(
        None,
        description="k-means fitted on a sample of an .npy's rows, then one streamed pass over "
        "every node (None: when the .npy exceeds a quarter of the available memory; in "
        "`agc run`, when a store exceeds the available memory or its embeddings a quarter)",
    )

    # checkpoints and output
    save_every: int = Field(1, ge=0, description="checkpoint every N epochs (0 = off)")
    save_every_batch: int = Field(0, ge=0, description="checkpoint every N batches (0 = off)")
    checkpoint_interval: float = Field(
        10.0,
        ge=0,
        description="at least this many seconds between periodic checkpoints, so that short "
        "epochs are not slowed by writes (the first, the last and an interrupted one are always "
        "written; 0 = every save_every epochs)",
    )
    keep_checkpoints: int = Field(2, ge=0, description="older checkpoints kept besides last/best")
    run_dir: Path | None = None

    # Cross-field checks are field validators reading earlier fields (``info.data``), so they
    # are reported together with every other problem instead of only after all fields pass.
    @field_validator("*")
    @classmethod
    def _check_int_range(cls, value: Any) -> Any:
        """Every integer setting fits the 32-bit counters, seeds and sizes it feeds."""
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_INT for v in values):
            raise ValueError(f"must be at most {MAX_INT:,} in magnitude")
        return value

    @field_validator("cache_dir", "run_dir")
    @classmethod
    def _check_directory(cls, value: Path | None) -> Path | None:
        """A directory to create must not lie below a regular file (checked before any work)."""
        if value is None:
            return value
        for parent in [Path(value), *Path(value).parents]:
            if parent.exists():
                if not parent.is_dir():
                    raise ValueError(f"{parent} is a file, not a directory")
                break
        return value

    @field_validator("fan_out", "fan_out_final")
    @classmethod
    def _check_fan_out(
        cls, value: int | list[int] | None, info: ValidationInfo
    ) -> int | list[int] | None:
        values = [value] if isinstance(value, int) else (value or [])
        if any(v == 0 or v < -1 for v in values):
            raise ValueError("each fan-out must be -1 (all neighbours) or >= 1")
        num_layers = info.data.get("num_layers")
        if isinstance(value, list) and num_layers is not None and len(value) != num_layers:
            raise ValueError(f"has {len(value)} values but num_layers is {num_layers}")
        return value

    @field_validator("infer_fan_out")
    @classmethod
    def _check_infer_fan_out(cls, value: int, info: ValidationInfo) -> int:
        if value == 0 or value < -1:
            raise ValueError("must be -1 (all neighbours, exact) or >= 1")
        if value != -1 and info.data.get("force_full_batch_inference"):
            raise ValueError("must be -1 when force_full_batch_inference is true")
        return value

    @field_validator("save_every_batch")
    @classmethod
    def _check_save_every_batch(cls, value: int, info: ValidationInfo) -> int:
        if value and info.data.get("mini_batch") is False:
            raise ValueError("only applies to mini-batch training (mini_batch is false)")
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        value = value.strip().lower()
        if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("expected auto, cpu, cuda or cuda:N")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            _LayerSource(settings_cls, "yaml"),
            _LayerSource(settings_cls, "preset"),
        )

    def fan_out_list(self, final: bool = False) -> list[int]:
        """Per-layer fan-out; an int applies to every layer, unset follows the rule of thumb."""
        value = self.fan_out_final if final and self.fan_out_final is not None else self.fan_out
        if value is None:
            value = default_fan_out(self.num_layers)
        return [value] * self.num_layers if isinstance(value, int) else list(value)

    def to_yaml_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class _LayerSource(PydanticBaseSettingsSource):
    """A plain dict layer (the YAML file or the model preset) taken from ``_LAYERS``."""

    def __init__(self, settings_cls: type[BaseSettings], layer: str):
        super().__init__(settings_cls)
        self.layer = layer

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return (_LAYERS.get() or {}).get(self.layer, {}).get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict((_LAYERS.get() or {}).get(self.layer, {}))


def default_fan_out(num_layers: int) -> int:
    """Rule of thumb: 15 for up to 2 layers, 10 for 3, 5 for deeper."""
    return 15 if num_layers <= 2 else 10 if num_layers == 3 else 5


def read_config(path: Path) -> dict[str, Any]:
    """Read a YAML config file; problems raise :class:`SettingsError` under the key ``config``."""
    from agc_cli.utils.io import read_text

    path = Path(path)
    if not path.is_file():
        raise SettingsError([("config", f"file not found: {path}")])

    def error(message: str) -> SettingsError:
        return SettingsError([("config", message)])

    text = read_text(path, "not a readable UTF-8 text file", error)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingsError([("config", f"invalid YAML in {path}: {_one_line(exc)}")]) from None
    if doc is None:  # an empty file (or only comments)
        doc = {}
    if not isinstance(doc, dict):
        raise SettingsError(
            [("config", f"{path} must hold a mapping of settings, not a {type(doc).__name__}")]
        )
    doc.pop("run_id", None)  # the id a run's settings.yaml records is not a setting
    return doc


def select_yaml_layer(doc: Mapping[str, Any], dataset: str | None) -> dict[str, Any]:
    """Flatten a config document for ``dataset``: flat keys < ``default:`` < dataset section.

    Keys that are not settings and hold a mapping are dataset sections; sections for other
    datasets are ignored. ``dataset`` None means "whatever the document itself selects".
    """
    fields = Settings.model_fields
    flat = {k: v for k, v in doc.items() if k in fields or not isinstance(v, dict)}
    sections = {k: v for k, v in doc.items() if k not in fields and isinstance(v, dict)}
    default = sections.pop("default", {})
    merged = {**flat, **default}
    name = dataset or merged.get("dataset") or fields["dataset"].default
    for section, values in sections.items():
        if str(section).lower() == str(name).lower():
            merged.update(values)
    return merged


def value_sources(
    cli: Mapping[str, Any] | None = None,
    config: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Where :func:`load_settings` takes each setting from, with the same precedence:
    ``flag``, ``env`` (``AGC_*``), ``config`` (the YAML file), ``preset`` or ``default``."""
    cli, env_value, yaml_layer, preset = _layers(cli, config, env)
    layers = (("flag", cli), ("env", env_value), ("config", yaml_layer), ("preset", preset))
    return {
        name: next((source for source, layer in layers if name in layer), "default")
        for name in Settings.model_fields
    }


def load_settings(
    cli: Mapping[str, Any] | None = None,
    config: Path | str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve settings from flags, environment, YAML and presets.

    Args:
        cli: values of the flags the user passed (``None`` values are ignored).
        config: path of a YAML config file, or None.
        env: the environment whose ``AGC_*`` variables pydantic-settings reads; only used here
            to pick the dataset section and preset (default ``os.environ``).

    Raises:
        SettingsError: listing every problem as ``(key, message)``.
    """
    cli, _, yaml_layer, preset = _layers(cli, config, env)
    token = _LAYERS.set({"yaml": yaml_layer, "preset": preset})
    try:
        settings = Settings(**cli)
    except ValidationError as exc:
        raise SettingsError(_problems(exc)) from None
    finally:
        _LAYERS.reset(token)
    return settings


def _layers(
    cli: Mapping[str, Any] | None, config: Path | str | None, env: Mapping[str, str] | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The flag, ``AGC_*``, YAML and preset layers, top first: the YAML file's section and the
    preset follow the dataset and model the upper layers name, and the preset's mini-batch
    values the mode they ask for."""
    env = os.environ if env is None else env
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    env_value = {
        k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)
    }
    doc = read_config(Path(config)) if config else {}
    dataset = cli.get("dataset") or env_value.get("dataset")
    yaml_layer = select_yaml_layer(doc, dataset)
    dataset = dataset or yaml_layer.get("dataset") or Settings.model_fields["dataset"].default
    model = cli.get("model") or env_value.get("model") or yaml_layer.get("model") or "dgi"
    requested = _mini_batch_requested(cli, env_value, yaml_layer)
    return cli, env_value, yaml_layer, model_preset(str(model), str(dataset), requested)


def _mini_batch_requested(*layers: Mapping[str, Any]) -> bool | None:
    """``mini_batch`` as the first of the flag, ``AGC_*`` and YAML layers that sets it (a
    preset's mini-batch values follow the user's choice of mode, not its own)."""
    for layer in layers:
        value = layer.get("mini_batch")
        if value is None:
            continue
        try:  # as pydantic reads the setting itself ("y", "on", "1", ...)
            return TypeAdapter(bool).validate_python(value)
        except ValidationError:
            return None  # the settings' own validation reports it
    return None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = loc[0] if loc else "settings"
        if key in seen:
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown setting"
        elif err["type"].endswith("_parsing") or err["type"].endswith("_type"):
            msg = f"{msg} (got {err.get('input')!r})"
        seen[key] = msg
    return list(seen.items())


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())
