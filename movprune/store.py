"""The results store: one JSON record per run config, written atomically.

A record's file name is the run's id (a hash of the config fields that change the result), so
the same config twice is a cache hit and a sweep reruns only what is missing. Records are
written to a temporary file in the same folder, flushed, fsync'ed and renamed into place: a
reader (or a killed writer) never sees half a record. Reading validates each record; a
corrupted one is reported and treated as missing, never silently used.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional

RECORD_VERSION = 1


class StoreError(ValueError):
    """The store folder is unusable (missing permission, not a folder, ...)."""


class ResultStore:
    """A folder of ``<run_id>.json`` records (and optional ``<run_id>.npz`` side files)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def check_writable(self) -> None:
        """Fail before any training if records cannot be written here."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-", delete=True) as f:
                f.write(b"x" * 4096)
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            raise StoreError(f"results folder {self.root} is not writable: {e.strerror or e}") from None

    def path(self, run_id: str) -> Path:
        return self.root / f"{run_id}.json"

    def get(self, run_id: str) -> Optional[dict]:
        """The record of ``run_id``, or None when absent or unreadable (then a warning is printed)."""
        p = self.path(run_id)
        if not p.is_file():
            return None
        try:
            record = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(record, dict) or record.get("run_id") != run_id or "metrics" not in record:
                raise ValueError("not a complete movprune record")
            return record
        except (ValueError, UnicodeDecodeError) as e:
            print(f"warning: ignoring corrupted record {p}: {e}")
            return None

    def put(self, record: dict) -> Path:
        """Write ``record`` (must hold ``run_id``) atomically; returns its path."""
        self.root.mkdir(parents=True, exist_ok=True)
        record = {**record, "record_version": RECORD_VERSION}
        data = json.dumps(record, indent=1, sort_keys=True, default=_jsonable)
        p = self.path(record["run_id"])
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{p.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return p

    def records(self) -> Iterator[dict]:
        """Every readable record in the store."""
        if not self.root.is_dir():
            return
        for p in sorted(self.root.glob("*.json")):
            rec = self.get(p.stem)
            if rec is not None:
                yield rec

    def side_file(self, run_id: str, suffix: str) -> Path:
        return self.root / f"{run_id}{suffix}"


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a record")
