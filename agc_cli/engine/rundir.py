"""The run directory: resolved settings, per-epoch metrics, log, checkpoints, outputs.

A run is a folder holding ``settings.yaml``; the ``run_id`` recorded there is written into
every checkpoint, so a checkpoint of another run is refused. A process that writes a run
(``agc train``, ``agc resume``) holds an advisory lock on its ``.lock`` file: a second one is
refused at once, and temporaries the lock holder finds are stale and removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from agc_cli.errors import CheckpointError, SettingsError, UsageError
from agc_cli.settings import Settings, load_settings
from agc_cli.utils.io import (
    atomic_write_text,
    make_dir,
    read_text,
    reading,
    remove_stale_temporaries,
    writing,
)

SETTINGS_FILE = "settings.yaml"
METRICS_FILE = "metrics.jsonl"
LOG_FILE = "train.log"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"
MODEL_FILE = "model.pt"
RUN_ID_KEY = "run_id"
# What a run holds before its first checkpoint: a folder of only these may be started again.
_START_FILES = {SETTINGS_FILE, METRICS_FILE, LOG_FILE, LOCK_FILE}

# Locks this process holds, by resolved run path: the lock guards against other processes, so
# the same process (e.g. a test training then resuming in one go) may take it again.
_HELD: dict[Path, int] = {}


class RunDir:
    """One run's folder. ``create`` never reuses a folder that holds a run's results or data
    that is not a run's."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._created = False  # this object made the folder (so a failed start removes it)
        self._run_id: str | None = None  # read once from settings.yaml ("" = none recorded)

    # ----- creating and opening ---------------------------------------------------------------

    @classmethod
    def create(cls, settings: Settings, base: Path = Path("runs")) -> RunDir:
        """Make (or take over an unstarted) run folder, lock it and write the settings."""
        existed = settings.run_dir is not None and Path(settings.run_dir).exists()
        run = cls(cls.reserve(settings, base))
        run._created = not existed
        run.lock()
        try:
            run.check_startable()
            run._clear_start_files()
            run._write_settings(settings, uuid.uuid4().hex)
        except BaseException:
            run.release()
            raise
        return run

    @classmethod
    def reserve(cls, settings: Settings, base: Path = Path("runs")) -> Path:
        """Choose and make the run's folder (``settings.run_dir`` or a new timestamped one)
        without writing into it; refuses a folder that holds anything but an unstarted run."""
        if settings.run_dir is not None:
            path = Path(settings.run_dir)
            if path.exists() and not path.is_dir():
                raise UsageError(f"run_dir: {path} exists and is not a directory")
            cls(path).check_startable()
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(settings.dataset).name or "data")
            path = base / f"{name}-{settings.model}-{stamp}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = base / f"{name}-{settings.model}-{stamp}-{suffix}"
        make_dir(path, "run_dir: cannot create the run directory")
        return path

    @classmethod
    def open(cls, path: Path, clean: bool = True) -> RunDir:
        """An existing run; ``clean``: remove stale temporaries if no process writes it."""
        path = Path(path)
        if not path.is_dir():
            raise CheckpointError(f"run directory {path} does not exist")
        if not (path / SETTINGS_FILE).is_file():
            raise CheckpointError(f"{path} is not an agc run directory (no {SETTINGS_FILE})")
        run = cls(path)
        if clean:
            run._clean_if_idle()
        return run

    def check_startable(self) -> None:
        """Refuse a folder holding a run's weights or results, or files that are not a run's.

        An empty folder may be used; so may one that holds only what a run writes before its
        first checkpoint (its start was killed), which is then cleared.
        """
        if not self.path.is_dir():
            return
        entries = {p.name for p in self.path.iterdir()}
        if not entries - {LOCK_FILE}:
            return
        if SETTINGS_FILE not in entries:
            raise UsageError(
                f"run_dir: {self.path} is a non-empty directory that is not an agc run; its "
                "files are never replaced: choose an empty or new directory"
            )
        if self.has_weights() or not self._only_start_files(entries):
            raise UsageError(
                f"run_dir: {self.path} already holds a run; continue it with "
                f"`agc resume {self.path}` or choose another directory"
            )

    def _only_start_files(self, entries: set[str]) -> bool:
        for name in entries - _START_FILES:
            if name == CHECKPOINT_DIR and self.checkpoints.is_dir():
                if all(_is_temporary(p.name) for p in self.checkpoints.iterdir()):
                    continue
                return False
            if not _is_temporary(name):
                return False
        return True

    def has_weights(self) -> bool:
        """Whether the run holds a checkpoint or final weights (it can be resumed or used)."""
        if (self.path / MODEL_FILE).is_file():
            return True
        directory = self.checkpoints
        return directory.is_dir() and any(
            p.suffix == ".pt" and not _is_temporary(p.name) for p in directory.iterdir()
        )

    def _clear_start_files(self) -> None:
        """Remove what a killed start left (settings, metrics, log, temporaries)."""
        self._close_log()  # a log handler of this process may still hold the old file
        for name in (SETTINGS_FILE, METRICS_FILE, LOG_FILE):
            (self.path / name).unlink(missing_ok=True)
        self.clean_temporaries()

    def discard_unstarted(self) -> None:
        """After a failed start: remove the run's files if it holds no weights yet (the folder
        too when this object made it), so no stub is left behind."""
        if not self.path.is_dir() or self.has_weights():
            return
        self._clear_start_files()
        if self.checkpoints.is_dir() and not any(self.checkpoints.iterdir()):
            self.checkpoints.rmdir()
        (self.path / LOCK_FILE).unlink(missing_ok=True)
        self.release()
        if self._created and not any(self.path.iterdir()):
            self.path.rmdir()

    @contextmanager
    def discard_on_failure(self) -> Iterator[None]:
        """Leave no stub: an exception before the first checkpoint removes the run's files."""
        try:
            yield
        except BaseException:
            self.discard_unstarted()
            raise

    # ----- the lock ---------------------------------------------------------------------------

    def lock(self, wait: float = 0.5) -> None:
        """Take the run's advisory lock (held until :meth:`release` or the process ends), then
        remove stale temporaries. ``wait`` seconds cover another process's brief hold (an
        ``agc infer`` cleaning temporaries as it opens the run).

        Raises:
            UsageError: another process holds it (it is training or resuming this run).
        """
        key = self.path.resolve()
        if key not in _HELD:
            lock_path = self.path / LOCK_FILE
            with writing(lock_path, "cannot create the run's lock file"):
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_flock(fd, wait):
                holder = _read_pid(fd)
                os.close(fd)
                who = f" (pid {holder})" if holder else ""
                raise UsageError(
                    f"{self.path} is in use by another agc process{who}; wait for it to "
                    "finish or stop it (Ctrl-C writes a checkpoint)"
                ) from None
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _HELD[key] = fd
        self.clean_temporaries()

    def _clean_if_idle(self) -> None:
        """Remove stale temporaries when no process writes the run (best effort: a run this
        process cannot lock, or that another process holds, is left as it is)."""
        if self.path.resolve() in _HELD:
            self.clean_temporaries()
            return
        try:
            self.lock(wait=0)
        except UsageError:
            return
        self.release()

    def release(self) -> None:
        fd = _HELD.pop(self.path.resolve(), None)
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock

    def clean_temporaries(self) -> list[Path]:
        """Remove temporaries of killed writers: in ``checkpoints/`` (only the lock holder
        writes there) every one not of this process, in the run folder those whose writer is
        gone (``agc infer``/``cluster`` write there without the lock)."""
        if self.path.resolve() not in _HELD:
            return []
        return remove_stale_temporaries(self.checkpoints, exclusive=True) + (
            remove_stale_temporaries(self.path)
        )

    # ----- files ------------------------------------------------------------------------------

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def run_id(self) -> str | None:
        """The id recorded in ``settings.yaml`` (None for runs written before ids existed)."""
        if self._run_id is None:
            value = self._read_settings_file().get(RUN_ID_KEY)
            self._run_id = str(value) if value is not None else ""
        return self._run_id or None

    def write_settings(self, settings: Settings) -> None:
        """Rewrite ``settings.yaml`` (keeping the run's id)."""
        self._write_settings(settings, self.run_id or uuid.uuid4().hex)

    def _write_settings(self, settings: Settings, run_id: str) -> None:
        doc = {RUN_ID_KEY: run_id, **settings.to_yaml_dict()}
        atomic_write_text(self.path / SETTINGS_FILE, yaml.safe_dump(doc, sort_keys=False))
        self._run_id = run_id

    def read_settings(self) -> dict[str, Any]:
        """The run's settings as written (without its id)."""
        doc = dict(self._read_settings_file())
        doc.pop(RUN_ID_KEY, None)
        return doc

    def settings(self) -> Settings:
        """The run's validated settings; invalid ones are a :class:`CheckpointError`."""
        try:
            return load_settings(self.read_settings())
        except SettingsError as exc:
            raise CheckpointError(
                f"{self.path / SETTINGS_FILE}: the run's settings are invalid ({exc})"
            ) from None

    def _read_settings_file(self) -> dict[str, Any]:
        path = self.path / SETTINGS_FILE
        text = read_text(path, "not a readable run settings file", CheckpointError)
        with reading(path, "not a run's settings file (invalid YAML)", CheckpointError):
            doc = yaml.safe_load(text)
        if not isinstance(doc, dict):
            raise CheckpointError(
                f"{path}: not a run's settings file (it holds a {type(doc).__name__}, not a "
                "mapping of settings)"
            )
        return doc

    def weights_file(self) -> Path | None:
        """The weights ``agc infer`` uses by default: ``checkpoints/best.pt`` if present, else
        the final ``model.pt``, else ``checkpoints/last.pt`` (None: the run holds none)."""
        from agc_cli.engine import checkpoint as ckpt

        options = [self.checkpoints / ckpt.BEST, self.path / MODEL_FILE]
        options.append(self.checkpoints / ckpt.LAST)
        return next((p for p in options if p.is_file()), None)

    def weights_provenance(self, path: Path | None, explicit: bool = False) -> dict[str, Any]:
        """What embeddings computed from the weights file ``path`` were made from: its name in
        the run, a digest of its bytes (BLAKE2b) and whether it was chosen explicitly."""
        if path is None:
            return {"file": None, "digest": None, "explicit": explicit}
        digest = hashlib.blake2b(digest_size=16)
        with reading(path, "not a readable weights file", CheckpointError), open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        name = path.resolve().relative_to(self.path.resolve()).as_posix()
        return {"file": name, "digest": digest.hexdigest(), "explicit": explicit}

    def check_fresh(self, artifact: Path, provenance: dict[str, Any] | None) -> None:
        """Refuse an artifact (embeddings) computed from other weights than the run holds now.

        Default-chosen weights must still be the run's default file with the same bytes (a
        resumed run rewrites ``best.pt``/``model.pt``); explicitly chosen ones must be
        unchanged. Artifacts written before provenance was recorded are not checked.
        """
        if not isinstance(provenance, dict) or "digest" not in provenance:
            return
        if provenance.get("file") is None:
            if self.weights_file() is None:
                return
            current = self.weights_provenance(self.weights_file())
        elif provenance.get("explicit"):
            path = self.path / str(provenance["file"])
            current = self.weights_provenance(path if path.is_file() else None, explicit=True)
        else:
            current = self.weights_provenance(self.weights_file())
        if (current["file"], current["digest"]) != (provenance.get("file"), provenance["digest"]):
            made = provenance.get("file") or "no weights"
            raise CheckpointError(
                f"{artifact} was computed from older weights ({made}) than {self.path} holds now "
                f"({current['file']}); run `agc infer {self.path}` again"
            )

    def checkpoint_path(self, name: str, model_file: bool = False) -> Path:
        """The run's checkpoint ``name``: a file name in ``checkpoints/`` or a path inside it
        (``model.pt`` of the run too, with ``model_file``).

        Raises:
            CheckpointError: the path leads outside the run (a checkpoint of another run, a
                symlink out) or the file does not exist.
        """
        given = Path(name)
        model = self.path / MODEL_FILE
        if len(given.parts) == 1 and given.name not in (".", ".."):
            path = model if model_file and name == MODEL_FILE else self.checkpoints / name
        else:
            path = given
        resolved = path.resolve()
        inside = resolved.is_relative_to(self.checkpoints.resolve()) or (
            model_file and resolved == model.resolve()
        )
        if not inside:
            raise CheckpointError(
                f"--checkpoint: {name} is not a checkpoint of {self.path} (a run uses only its "
                f"own; give a file name in {self.checkpoints})"
            )
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        return path

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Load a checkpoint of this run (see :func:`agc_cli.engine.checkpoint.load_checkpoint`);
        one that records another run's id is refused."""
        from agc_cli.engine import checkpoint as ckpt

        state = ckpt.load_checkpoint(path)
        mine = self.run_id
        if mine is not None and state.get(RUN_ID_KEY) != mine:
            raise CheckpointError(
                f"{path} is not a checkpoint of {self.path} (it was written by another run); "
                "a run resumes only from its own checkpoints"
            )
        return state

    def append_metrics(self, record: dict[str, Any]) -> None:
        with writing(self.path / METRICS_FILE), open(self.path / METRICS_FILE, "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def truncate_metrics(self, epochs: int) -> None:
        """Drop records of epochs after ``epochs`` (redone after resuming an older checkpoint)."""
        records = self.read_metrics()
        kept = [r for r in records if r.get("epoch", 0) <= epochs]
        if len(kept) != len(records):
            atomic_write_text(self.path / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))

    def read_metrics(self) -> list[dict[str, Any]]:
        path = self.path / METRICS_FILE
        if not path.is_file():
            return []
        text = read_text(path, "not a readable metrics file", CheckpointError)
        with reading(path, "not a metrics file (one JSON object per line)", CheckpointError):
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
            if not all(isinstance(r, dict) for r in records):
                raise ValueError("a line is not a JSON object")
        return records

    def logger(self) -> logging.Logger:
        """A logger writing to the run's log file (attached once per run directory)."""
        log = logging.getLogger(self._logger_name())
        if not log.handlers:
            with writing(self.path / LOG_FILE):
                handler = logging.FileHandler(self.path / LOG_FILE)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False
        return log

    def _logger_name(self) -> str:
        return f"agc.run.{self.path.resolve()}"

    def _close_log(self) -> None:
        log = logging.getLogger(self._logger_name())
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()


def _is_temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _try_flock(fd: int, wait: float) -> bool:
    """An exclusive ``flock`` on ``fd``, retried for up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
