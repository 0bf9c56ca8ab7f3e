"""What one fine-pruning run costs per task on this machine (MiniLM-L6, movement pruning, real data).

For each candidate budget, a real ``movprune.train.run`` of ``--steps`` optimizer steps is trained
(movement to 10%, the recipe's bf16 autocast, uniform shuffling) on the task's real data and
evaluated on the full eval split. Reported: seconds per optimizer step (training time over the
steps, first step included), the eval time, the features a SQuAD window setting makes, and what a
run of the candidate's length would cost (steps x s/step + eval).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tasks.py                 # all candidates
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_tasks.py --only squad-192 --steps 20

Run it on an otherwise idle machine; one thread per run is how the batch trains on a 2-core CPU
(two runs side by side). The last line is one JSON object; ``--out`` also writes it to a file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

# name -> (RunConfig fields, optimizer steps of a full run of that budget (None: from epochs), epochs)
CANDIDATES = {
    "sst2-64": (dict(task="sst2", batch_size=64, max_length=64), 2400, None),
    "sick-64": (dict(task="sick", batch_size=32, max_length=64), 2400, None),
    "squad-384": (dict(task="squad", batch_size=16, max_length=384, doc_stride=128), None, 2.0),
    "squad-256": (dict(task="squad", batch_size=16, max_length=256, doc_stride=96), None, 2.0),
    "squad-192": (dict(task="squad", batch_size=16, max_length=192, doc_stride=64), None, 2.0),
}


def measure(name: str, steps: int, work: Path) -> dict:
    """Train ``steps`` steps of candidate ``name`` into a throw-away store; return its costs."""
    import torch

    from movprune.store import ResultStore
    from movprune.train import RunConfig, run

    fields, full_steps, epochs = CANDIDATES[name]
    config = RunConfig(model="minilm", method="movement", remaining=0.1, lr=5e-5, score_lr=1e-2, bf16=True,
                       max_steps=steps, sparsity_warmup_steps=steps // 3, sparsity_cooldown_steps=steps // 3,
                       **fields)
    t0 = time.time()
    rec = run(config, store=ResultStore(work / "runs"), work_dir=work / "ckpt", progress=False)
    wall = time.time() - t0
    per_step = rec["train_time_s"] / steps
    n_train = rec["train_examples"]  # SQuAD: window features
    if full_steps is None:  # SQuAD: epochs over the window features of the training questions
        full_steps = math.ceil(epochs * n_train / config.batch_size)
    return {
        "candidate": name, **fields, "steps_timed": steps, "s_per_step": round(per_step, 3),
        "eval_s": rec["eval_time_s"], "train_features": n_train, "full_run_steps": full_steps,
        "full_run_epochs": epochs, "full_run_min": round((full_steps * per_step + rec["eval_time_s"]) / 60, 1),
        "wall_s_this_measurement": round(wall, 1), "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps timed per candidate")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    if args.steps < 3:
        ap.error("--steps must be at least 3")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            row = measure(name, args.steps, Path(tmp) / name)
            rows.append(row)
            print(f"{name:10s} {row['s_per_step']:.3f} s/step  eval {row['eval_s']:.0f} s  "
                  f"{row['train_features']} train features  full run {row['full_run_steps']} steps "
                  f"= {row['full_run_min']} min", flush=True)
    out = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "rows": rows}
    if args.out:
        args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
