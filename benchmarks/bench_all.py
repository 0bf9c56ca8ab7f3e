"""Every performance number of the README in one command; prints one merged JSON line at the end.

    python benchmarks/bench_all.py            # ~5 min on a 2-core CPU
    python benchmarks/bench_all.py --quick

Runs bench_step.py (masked / dense training step, global top-k cost) and bench_inference.py
(compact int8 file size, sparse CPU latency), each in its own process so their timings do not
disturb each other, and merges the JSON line each prints last.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    args = parser.parse_args()
    step = [sys.executable, str(HERE / "bench_step.py"), "--lengths", "64", "128",
            "--repeats", "3" if args.quick else "5"]
    infer = [sys.executable, str(HERE / "bench_inference.py")] + (["--quick"] if args.quick else [])
    merged = {}
    for cmd in (step, infer):
        out = subprocess.run(cmd, capture_output=True, text=True)
        sys.stdout.write(out.stdout)
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-3000:])
            return out.returncode
        merged.update(last_json_line(out.stdout))
    print(json.dumps({**headline(merged), **merged}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
