"""One-time migration (2026-12-08): ``steps`` of a run stopped on collapse becomes the steps it trained.

Until 2026-12-08 :mod:`movprune.train` wrote a stopped run's budget (``max_steps``) as its ``steps``
and the stop step as ``stopped_at``; :func:`movprune.records.trained_steps` reads such records right,
and this script rewrites the committed ones so the files say the same: ``steps`` = ``stopped_at``,
the budget stays in ``max_steps``. Only that one value changes; the file is written as the store
writes it (``json.dumps(indent=1, sort_keys=True)``, which reproduces every committed record byte for
byte), so ``git diff`` shows one line per record.

    python scripts/migrate_stopped_steps.py --before 2026-12-08T02:30:00Z   # records last written before
    python scripts/migrate_stopped_steps.py --before ... --dry-run          # list, write nothing
"""
import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

from movprune.store import _jsonable

ROOT = Path(__file__).resolve().parents[1]


def migrate(text: str) -> str | None:
    """The record ``text`` with ``steps`` set to ``stopped_at``, or None when there is nothing to change
    (not stopped, or already migrated). Raises when the budget would be lost (``max_steps`` unset or
    different from ``steps``) or the rewrite would change more than that one line."""
    rec = json.loads(text)
    stopped = rec.get("stopped_at")
    if stopped is None or rec.get("steps") == stopped:
        return None
    if rec.get("max_steps") != rec.get("steps"):
        raise ValueError(f"{rec.get('run_id')}: steps {rec.get('steps')} is not the budget max_steps "
                         f"{rec.get('max_steps')}; not migrated")
    new = json.dumps({**rec, "steps": int(stopped)}, indent=1, sort_keys=True, default=_jsonable)
    changed = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    if len(text.splitlines()) != len(new.splitlines()) or len(changed) != 1:
        raise ValueError(f"{rec.get('run_id')}: the rewrite changes {len(changed)} lines, not 1")
    return new


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, help="only records last written before this UTC time")
    p.add_argument("--dry-run", action="store_true")
    a = p.parse_args(argv)
    cutoff = datetime.fromisoformat(a.before.replace("Z", "+00:00")).timestamp()
    for path in sorted(ROOT.glob("results/*/runs/*.json")):
        if path.stat().st_mtime >= cutoff:
            print(f"skipped (written after {a.before}): {path.relative_to(ROOT)}")
            continue
        new = migrate(path.read_text(encoding="utf-8"))
        if new is None:
            continue
        print(f"{'would migrate' if a.dry_run else 'migrated'}: {path.relative_to(ROOT)} "
              f"steps -> {json.loads(new)['steps']}")
        if not a.dry_run:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
