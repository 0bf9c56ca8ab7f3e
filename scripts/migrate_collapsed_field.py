"""One-time migration: a record's ``collapsed`` takes the one meaning of :mod:`movprune.records`.

Records written before kept "every eval example in one class" as ``collapsed``; that observation is now
``one_class``, and ``collapsed`` is :func:`movprune.records.is_collapsed` (the training loss sat at the
constant-prediction level after pruning began until training ended; None where the record cannot tell).
Files are written as the store writes them (``json.dumps(indent=1, sort_keys=True)``); a file whose
round trip would change anything else is left alone and reported.

    python scripts/migrate_collapsed_field.py results/*/runs          # --dry-run: list, write nothing
"""
import argparse
import json
import sys
from pathlib import Path

from movprune.records import is_collapsed
from movprune.store import _jsonable


def dump(rec: dict) -> str:
    return json.dumps(rec, indent=1, sort_keys=True, default=_jsonable)


def migrate(text: str):
    """The migrated text, or None when the record already has ``one_class``."""
    rec = json.loads(text)
    if "one_class" in rec:
        return None
    if dump(rec) != text.rstrip("\n") and dump(rec) + "\n" != text:
        raise ValueError("not written as the store writes records")
    rec["one_class"] = rec.get("collapsed")
    rec["collapsed"] = is_collapsed(rec)
    return dump(rec) + ("\n" if text.endswith("\n") else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stores", nargs="+", type=Path)
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    changed = skipped = 0
    for store in a.stores:
        for path in sorted(store.glob("*.json")):
            try:
                new = migrate(path.read_text())
            except ValueError as e:
                print(f"left alone: {path}: {e}", file=sys.stderr)
                skipped += 1
                continue
            if new is not None:
                changed += 1
                if not a.dry_run:
                    path.write_text(new)
    print(f"{changed} record(s) migrated, {skipped} left alone")
    return 0


if __name__ == "__main__":
    sys.exit(main())
