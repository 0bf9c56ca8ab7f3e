"""Train chosen runs of a profile, one after another, on a fixed number of threads.

    python scripts/train_runs.py --profile minilm --threads 1 sick-minilm-movement_v0.03_local-s0
    python scripts/train_runs.py --profile minilm --list sick-          # ids that would train

Each argument is a run-id prefix (``--force``: retrain stored runs too, e.g. a record trained on another
software stack, which the new record replaces); the runs are the profile's own configs (same ids as
``python -m movprune batch --profile P --tasks all``), so their records land in
``results/<profile>/runs`` beside the batch's and the notebooks render them. Runs already stored are
skipped; a distilled run trains its teacher first when the teacher's model is not in the work dir.
"""
import argparse
import sys
from pathlib import Path

from movprune.batch import _train_one
from movprune.profiles import get_profile
from movprune.store import ResultStore


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("prefixes", nargs="+", help="run-id prefixes (every matching missing run trains)")
    p.add_argument("--profile", default="minilm")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--results", default="results")
    p.add_argument("--work-dir", default="checkpoints")
    p.add_argument("--list", action="store_true", help="print the matching missing run ids, train nothing")
    p.add_argument("--force", action="store_true",
                   help="retrain matching runs the store already holds (e.g. a record of another software stack); "
                        "the new record replaces the old one")
    a = p.parse_args(argv)
    prof = get_profile(a.profile)
    store = ResultStore(Path(a.results) / a.profile / "runs")
    configs = [c for c in prof.all_configs(tasks=prof.all_tasks)
               if any(c.run_id().startswith(x) for x in a.prefixes) and (a.force or store.get(c.run_id()) is None)]
    if not configs:
        print("no missing run matches", file=sys.stderr)
        return 1
    for c in configs:
        print(c.run_id(), flush=True)
        if not a.list:
            print(*_train_one(c, str(store.root), str(Path(a.work_dir) / a.profile), threads=a.threads, force=a.force), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
