"""Do runs trained with emulated bf16 (movprune.bf16) follow the runs trained with bf16 kernels?

Every undistilled magnitude / movement / soft movement run of one task and seed trains the same dense
model until its first weight is pruned (step ``pruning_starts_at``): same data order, same
initialisation. Their logged training losses before that step compare runs whose only difference
is how they were computed. This prints, for each pair of distinct loss curves, the mean and largest
absolute difference over the shared logged steps before pruning, and the first step where they differ
by 0.001 or more, grouped by the kind of pair (bf16 kernels vs bf16 kernels, emulated vs kernels).

    python scripts/bf16_curves.py --results results/minilm --task sick --seed 0

Records written before ``versions.bf16_kernel`` existed (2026-12-02) were trained on CPUs with
avx512_bf16, i.e. with bf16 kernels; they are counted as such.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from movprune.bf16 import EMULATED, NATIVE  # noqa: E402
from movprune.store import ResultStore  # noqa: E402

DENSE_START = ("magnitude", "movement", "soft_movement", "dense")  # L0 masks are stochastic from step 0


def kernel(record: dict) -> str:
    """How a bf16 record's products were computed (records before the field: bf16 kernels)."""
    return (record.get("versions") or {}).get("bf16_kernel") or NATIVE


def curves(results: Path, task: str, seed: int) -> dict:
    """run id -> (kernel, {step: loss before the first pruning}) for the comparable bf16 runs."""
    out = {}
    for r in ResultStore(Path(results) / "runs").records():
        if (r.get("task"), r.get("seed"), r.get("bf16"), r.get("distill")) != (task, seed, True, False):
            continue
        if r.get("method") not in DENSE_START or not r.get("loss_curve"):
            continue
        start = r.get("pruning_starts_at") or r.get("steps") or 0
        out[r["run_id"]] = (kernel(r), {int(s): float(v) for s, v in r["loss_curve"] if s < start})
    return out


def compare(a: dict, b: dict):
    """(shared steps, mean |diff|, max |diff|, first step with |diff| >= 0.001) or None."""
    steps = sorted(set(a) & set(b))
    if not steps:
        return None
    d = [abs(a[s] - b[s]) for s in steps]
    first = next((s for s in steps if abs(a[s] - b[s]) >= 1e-3), None)
    return len(steps), sum(d) / len(d), max(d), first


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default="results/minilm", help="a profile's results folder")
    ap.add_argument("--task", default="sick")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    found = curves(Path(args.results), args.task, args.seed)
    distinct = {}  # identical curves (runs of one method share their dense phase exactly) counted once
    for rid, (kind, curve) in sorted(found.items()):
        key = kind + json.dumps(sorted(curve.items()))  # an emulated curve equal to a kernel one still counts
        distinct.setdefault(key, (rid, kind, curve))
    runs = list(distinct.values())
    if not any(k == EMULATED for _, k, _ in runs) or len(runs) < 2:
        print(f"movprune: error: need an emulated and another bf16 run of {args.task} seed {args.seed} "
              f"in {args.results}/runs (found {len(found)} comparable runs)", file=sys.stderr)
        return 2
    print(f"{args.task}, seed {args.seed}: {len(found)} runs, {len(runs)} distinct loss curves before pruning")
    for rid, kind, curve in runs:
        print(f"  {'emulated' if kind == EMULATED else 'kernels '}  {rid}  ({len(curve)} logged steps)")
    print(f"\n{'pair':62s} {'steps':>5s} {'mean|d|':>8s} {'max|d|':>7s} {'first >=0.001':>13s}")
    for (ra, ka, ca), (rb, kb, cb) in itertools.combinations(runs, 2):
        res = compare(ca, cb)
        if res is None:
            continue
        kind = {0: "kernels vs kernels", 1: "emulated vs kernels", 2: "emulated vs emulated"}[
            (ka == EMULATED) + (kb == EMULATED)]
        n, mean, mx, first = res
        name = f"{kind}: {ra.split('-')[2]} / {rb.split('-')[2]}"
        print(f"{name:62s} {n:5d} {mean:8.4f} {mx:7.4f} {str(first):>13s}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
