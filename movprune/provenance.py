"""What a record was trained on and with: its training data's fingerprint and its software stack.

Two records of one config pool into a table cell only when they ran on the same pinned software
(``torch`` and ``transformers``, the versions every record names) and trained on as many features: a
SQuAD run whose contexts were cut into other windows trained on other data under the same run id.
Records also keep ``tokenizers`` / ``datasets`` versions and a hash of their training features
(:func:`train_fingerprint`) to tell two such runs apart exactly. :func:`stack_key` names a record's
stack; :func:`pool_key` adds its training data; :func:`split_by_pool` keeps the records of the
pinned stack and reports the rest.

    from movprune.provenance import pool_key, split_by_pool
    kept, left_out = split_by_pool(records)      # records: dicts as the store holds them
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Iterable, Optional

# the packages whose versions decide a run's arithmetic or its training data (the local build tag of
# torch, "+cpu" / "+cu130", is dropped: the pinned version's CPU and CUDA builds are one stack)
STACK_PACKAGES = ("torch", "transformers", "tokenizers", "datasets")
POOL_PACKAGES = ("torch", "transformers")  # named by every record, old ones included
FEATURE_COLUMNS = ("input_ids", "token_type_ids", "labels", "label", "start_positions", "end_positions")


def train_fingerprint(train_ds) -> dict:
    """``{"features": n, "sha1": ...}`` of a tokenized training set: its rows' token ids and targets.

    Two runs of one config with the same fingerprint trained on the same features (in the same order
    of rows; the Trainer's shuffling is drawn from the run's seed)."""
    columns = [c for c in FEATURE_COLUMNS if c in getattr(train_ds, "column_names", ())]
    h = hashlib.sha1()
    for c in columns:
        h.update(c.encode())
        for row in train_ds[c]:
            h.update(json.dumps(row.tolist() if hasattr(row, "tolist") else row, separators=(",", ":")).encode())
    return {"features": len(train_ds), "sha1": h.hexdigest()[:16]}


def stack_versions() -> dict:
    """The versions of :data:`STACK_PACKAGES` in this interpreter (None for one not installed)."""
    from importlib import metadata

    out = {}
    for name in STACK_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _base(version: Optional[str]) -> Optional[str]:
    return version.split("+", 1)[0] if isinstance(version, str) else version


def stack_key(record: dict, packages=POOL_PACKAGES) -> str:
    """The software stack of a record, e.g. ``"torch 2.13.0, transformers 5.24.0"`` (``packages``: those
    named; with :data:`STACK_PACKAGES` the full stack a newer record names)."""
    versions = record.get("versions") or {}
    parts = [f"{p} {_base(versions[p])}" for p in packages if versions.get(p)]
    return ", ".join(parts) if parts else "unknown"


def pool_key(record: dict) -> str:
    """:func:`stack_key` and the number of training features: records of one config pool into one
    cell only under one key."""
    data = record.get("train_data") or {}
    n = data.get("features", record.get("train_examples"))
    return stack_key(record) + (f"; {n} training features" if n is not None else "")


def here_stack() -> str:
    """:func:`stack_key` of this interpreter (the pinned versions when installed from pyproject.toml)."""
    return stack_key({"versions": stack_versions()})


def pinned_pool(keys: Iterable[str]) -> Optional[str]:
    """Of several pool keys (:func:`pool_key`), the one to keep: the most common of those on this
    interpreter's stack, else the most common."""
    keys = [k for k in keys if isinstance(k, str)]
    if not keys:
        return None
    here = here_stack()
    mine = [k for k in keys if k.split(";")[0] == here]
    return Counter(mine or keys).most_common(1)[0][0]


def pinned_key(records: Iterable[dict]) -> Optional[str]:
    """The pool key of the pinned stack among ``records``: the one that matches this interpreter's
    torch and transformers if any does, else the most common one."""
    return pinned_pool(pool_key(r) for r in records)


def split_by_pool(records: list, key: Optional[str] = None) -> tuple[list, list]:
    """``(kept, left_out)``: the records under ``key`` (default :func:`pinned_key` of each task's
    records) and the others, which a cell must not pool with them."""
    kept, left = [], []
    by_task: dict = {}
    for r in records:
        by_task.setdefault(r.get("task"), []).append(r)
    for task_records in by_task.values():
        k = key or pinned_key(task_records)
        for r in task_records:
            (kept if pool_key(r) == k else left).append(r)
    return kept, left
