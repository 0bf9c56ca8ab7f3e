"""Every performance number of docs/performance.md in one command; one merged JSON line at the end,
also written to results/benchmarks.json (with the date, machine and command).

    python benchmarks/bench_all.py            # ~10-20 min on a 2-core CPU (2-4 rounds)
    python benchmarks/bench_all.py --quick

Runs bench_step.py (masked / dense training step, global top-k cost) and bench_inference.py
(compact int8 file size, sparse CPU latency), each in its own process so their timings do not
disturb each other, in rounds that alternate the two. Timings on a shared CPU move by 10-40% from
run to run, so rounds repeat until the last two agree within 10% on every noisy headline number
(at least 2, at most ``--max-rounds``); the JSON reports each noisy number's median over the rounds
with every round's value beside it (``<key>_runs``).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "results" / "benchmarks.json"
# timings (noisy); every other key (file sizes, errors) is the same in every round
NOISY = ("step_overhead_64", "global_step_overhead_64", "step_overhead_128", "global_step_overhead_128",
         "global_topk_ms", "global_topk_share", "sparse_speedup_3pct_b1", "sparse_speedup_3pct_b32")
AGREE = ("step_overhead_64", "sparse_speedup_3pct_b1")  # rounds repeat until these agree within 10%


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            return json.loads(line)
    raise RuntimeError("benchmark printed no JSON line")


def headline(m: dict) -> dict:
    """The issue's four keys, first in the JSON line (the detailed keys follow)."""
    return {
        "step_overhead": m.get("step_overhead_64"),  # local movement, batch 32, length 64
        "global_topk_ms": m.get("global_topk_ms"),
        "global_topk_share": m.get("global_topk_share"),
        "bytes_per_kept_weight": {
            scheme: {tag: m.get(f"bytes_per_kept_weight_{tag}_{scheme}") for tag in ("10pct", "3pct")}
            for scheme in ("per_tensor", "per_row")
        },
        "sparse_speedup_3pct": {b: m.get(f"sparse_speedup_3pct_{b}") for b in ("b1", "b32")},
    }


def agree(a: float, b: float, tol: float = 0.10) -> bool:
    """Two measurements of one number agree when the larger is within ``tol`` of the smaller."""
    return min(a, b) > 0 and max(a, b) / min(a, b) <= 1.0 + tol


def combine(rounds: list[dict]) -> dict:
    """One dict from several rounds: noisy keys -> median (and ``<key>_runs``), others -> last round."""
    merged = dict(rounds[-1])
    for key in NOISY:
        values = [r[key] for r in rounds if isinstance(r.get(key), (int, float))]
        if values:
            merged[key] = round(statistics.median(values), 4)
            merged[f"{key}_runs"] = values
    merged["rounds"] = len(rounds)
    return merged


def settled(rounds: list[dict]) -> bool:
    """True when the last two rounds agree within 10% on every AGREE key."""
    if len(rounds) < 2:
        return False
    a, b = rounds[-2], rounds[-1]
    return all(agree(a[k], b[k]) for k in AGREE if k in a and k in b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and one round (noisier)")
    parser.add_argument("--max-rounds", type=int, default=4, help="most rounds before giving up on agreement")
    parser.add_argument("--output", default=str(OUT), help="JSON file to write (default results/benchmarks.json)")
    args = parser.parse_args()
    step = [sys.executable, str(HERE / "bench_step.py"), "--lengths", "64", "128",
            "--repeats", "3" if args.quick else "5"]
    infer = [sys.executable, str(HERE / "bench_inference.py")] + (["--quick"] if args.quick else [])
    rounds = []
    while len(rounds) < (1 if args.quick else args.max_rounds):
        merged = {}
        for cmd in (step, infer) if len(rounds) % 2 == 0 else (infer, step):  # alternate the order
            out = subprocess.run(cmd, capture_output=True, text=True)
            sys.stdout.write(out.stdout)
            if out.returncode != 0:
                sys.stderr.write(out.stderr[-3000:])
                return out.returncode
            merged.update(last_json_line(out.stdout))
        rounds.append(merged)
        print(f"[bench_all] round {len(rounds)}: " + ", ".join(f"{k} {merged.get(k)}" for k in AGREE), flush=True)
        if settled(rounds):
            break
    merged = combine(rounds)
    merged["settled_within_10pct"] = settled(rounds)
    result = {**headline(merged), **merged,
              "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
              "command": "python benchmarks/bench_all.py" + (" --quick" if args.quick else "")}
    line = json.dumps(result)
    print(line)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
