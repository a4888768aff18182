"""The run directory: resolved settings, per-epoch metrics, log, checkpoints, outputs."""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from typing import Any

import yaml

from agc_cli.errors import CheckpointError, UsageError
from agc_cli.settings import Settings
from agc_cli.utils.io import atomic_write_text

SETTINGS_FILE = "settings.yaml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoints"


class RunDir:
    """One run's folder. ``create`` never reuses a folder that already holds a run."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, settings: Settings, base: Path = Path("runs")) -> RunDir:
        run = cls(cls.reserve(settings, base))
        run.write_settings(settings)
        return run

    @classmethod
    def reserve(cls, settings: Settings, base: Path = Path("runs")) -> Path:
        """Choose and make the run's folder (``settings.run_dir`` or a new timestamped one)
        without writing into it; refuses a folder that already holds a run."""
        if settings.run_dir is not None:
            path = Path(settings.run_dir)
            if (path / SETTINGS_FILE).exists():
                raise UsageError(
                    f"run_dir: {path} already holds a run; continue it with `agc resume {path}` "
                    "or choose another directory"
                )
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(settings.dataset).name or "data")
            path = base / f"{name}-{settings.model}-{stamp}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = base / f"{name}-{settings.model}-{stamp}-{suffix}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @classmethod
    def open(cls, path: Path) -> RunDir:
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"run directory {path} does not exist")
        if not (path / SETTINGS_FILE).is_file():
            raise CheckpointError(f"{path} is not an agc run directory (no {SETTINGS_FILE})")
        return cls(path)

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def write_settings(self, settings: Settings) -> None:
        text = yaml.safe_dump(settings.to_yaml_dict(), sort_keys=False)
        atomic_write_text(self.path / SETTINGS_FILE, text)

    def read_settings(self) -> dict[str, Any]:
        return yaml.safe_load((self.path / SETTINGS_FILE).read_text()) or {}

    def append_metrics(self, record: dict[str, Any]) -> None:
        with open(self.path / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def truncate_metrics(self, epochs: int) -> None:
        """Drop records of epochs after ``epochs`` (redone after resuming an older checkpoint)."""
        records = [r for r in self.read_metrics() if r.get("epoch", 0) <= epochs]
        if len(records) != len(self.read_metrics()):
            atomic_write_text(
                self.path / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in records)
            )

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def logger(self) -> logging.Logger:
        """A logger writing to the run's log file (attached once per run directory)."""
        log = logging.getLogger(f"agc.run.{self.path.resolve()}")
        if not log.handlers:
            handler = logging.FileHandler(self.path / LOG_FILE)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        return log
