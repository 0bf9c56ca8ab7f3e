"""The collapse map: when does movement pruning collapse on MiniLM-L6 / SST-2?

One factor at a time around one base recipe, several seeds per setting (docs/findings.md):

    python scripts/collapse_map.py list                      # settings, their commands, what is stored
    python scripts/collapse_map.py run warmup1000 warmup180  # train the missing runs (2 at a time)
    python scripts/collapse_map.py table                     # the markdown table of docs/findings.md

Base recipe: all 76,961 SST-2 phrases, batch 64, max length 64, 2,400 optimizer steps (2 epochs),
weight lr 5e-5 and score lr 1e-2 with linear warm-up over 10% of the steps then linear decay, no weight
decay, embeddings frozen, uniform shuffling, local top-k over the six linear maps of each layer, cubic
schedule whose ramp lasts 1,000 steps and ends 400 steps before the end; bf16 autocast; 10% of the
weights kept. Settings change one thing; the ``ramp2000`` settings stretch the ramp to 2,000 steps and
the run to 3,400 steps (warm-up and cool-down unchanged): that is the ``minilm`` profile's recipe
(movprune.profiles.RECIPE), so their records are its records (``results/minilm/runs``). Collapsed runs
stop 200 steps after their loss reached the constant-prediction level (``--stop-on-collapse``): their
accuracy is that of the model at that step, pruned to the final target.

The other settings' records are in ``results/collapse_map/runs``. Checkpoints: ``checkpoints/collapse_map``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dataclasses  # noqa: E402

from movprune.profiles import TaskBudget  # noqa: E402

STORE = ROOT / "results" / "collapse_map" / "runs"
MINILM_STORE = ROOT / "results" / "minilm" / "runs"  # the ramp2000 settings' runs are the minilm profile's
WORK = ROOT / "checkpoints" / "collapse_map"
# the map's base recipe (its runs' ids depend on it: change nothing here, add a setting instead)
MAP_STEPS, MAP_WARMUP, MAP_RAMP = 2400, 1000, 1000
BASE = dict(task="sst2", model="minilm", method="movement", remaining=0.1, score_lr=1e-2,
            **dataclasses.asdict(TaskBudget(max_steps=MAP_STEPS, batch_size=64, max_length=64, lr=5e-5, bf16=True,
                                            stop_on_collapse=True, sparsity_warmup_steps=MAP_WARMUP,
                                            sparsity_cooldown_steps=MAP_STEPS - MAP_WARMUP - MAP_RAMP)))


def _warmup(steps: int) -> dict:
    """First weight pruned after ``steps`` optimizer steps; the 1,000-step ramp and the total stay fixed."""
    return dict(sparsity_warmup_steps=steps, sparsity_cooldown_steps=MAP_STEPS - steps - MAP_RAMP)


def _ramp(ramp: int, remaining: float) -> dict:
    """A ``ramp``-step ramp to ``remaining`` after the base 1,000-step warm-up; the run grows to keep the cool-down."""
    cooldown = MAP_STEPS - MAP_WARMUP - MAP_RAMP
    return dict(remaining=remaining, max_steps=MAP_WARMUP + ramp + cooldown,
                sparsity_warmup_steps=MAP_WARMUP, sparsity_cooldown_steps=cooldown)


# name -> (what changes, RunConfig overrides of BASE)
SETTINGS = {
    "warmup1000": ("first weight pruned after 1,000 steps (the base recipe)", _warmup(MAP_WARMUP)),
    "warmup180": ("first weight pruned after 180 steps", _warmup(180)),
    "warmup500": ("first weight pruned after 500 steps", _warmup(500)),
    "warmup1000-grouped": ("warm-up 1,000, length-grouped batches", dict(_warmup(MAP_WARMUP), group_by_length=True)),
    "warmup1000-fp32": ("warm-up 1,000, fp32", dict(_warmup(MAP_WARMUP), bf16=False)),
    "warmup1000-bs32": ("warm-up 1,000, batch 32 (same steps)", dict(_warmup(MAP_WARMUP), batch_size=32)),
    "warmup1000-lr3e-5": ("warm-up 1,000, weight lr 3e-5", dict(_warmup(MAP_WARMUP), lr=3e-5)),
    # the base recipe at 3% and 1% (one seed: collapsed), then the same with a ramp twice as long
    "warmup1000-3pct": ("3% kept, warm-up 1,000", dict(_warmup(MAP_WARMUP), remaining=0.03)),
    "warmup1000-1pct": ("1% kept, warm-up 1,000", dict(_warmup(MAP_WARMUP), remaining=0.01)),
    "warmup1000-3pct-magnitude": ("magnitude, 3% kept, warm-up 1,000",
                                  dict(_warmup(MAP_WARMUP), remaining=0.03, method="magnitude")),
    "ramp2000-10pct": ("10% kept, 2,000-step ramp (3,400 steps)", _ramp(2000, 0.1)),
    "ramp2000-3pct": ("3% kept, 2,000-step ramp (3,400 steps)", _ramp(2000, 0.03)),
    "ramp2000-1pct": ("1% kept, 2,000-step ramp (3,400 steps)", _ramp(2000, 0.01)),
    # magnitude under the same schedule: the baseline movement has to beat at 3% and 1%
    "ramp2000-10pct-magnitude": ("magnitude, 10% kept, 2,000-step ramp", dict(_ramp(2000, 0.1), method="magnitude")),
    "ramp2000-3pct-magnitude": ("magnitude, 3% kept, 2,000-step ramp", dict(_ramp(2000, 0.03), method="magnitude")),
    "ramp2000-1pct-magnitude": ("magnitude, 1% kept, 2,000-step ramp", dict(_ramp(2000, 0.01), method="magnitude")),
}
SEEDS = (0, 1, 2)


def store_of(name: str) -> Path:
    """The ramp2000 settings are the minilm profile's recipe: their runs are its records."""
    return MINILM_STORE if name.startswith("ramp2000") else STORE


def configs(name: str, seeds=SEEDS):
    from movprune.train import RunConfig

    _, overrides = SETTINGS[name]
    return [RunConfig(**{**BASE, **overrides, "seed": s}) for s in seeds]


def command(config, store: Path) -> str:
    """The ``python -m movprune run`` line that trains ``config`` into ``store``."""
    from movprune.train import RunConfig

    default = RunConfig()
    parts = ["python -m movprune run"]
    for key, value in config.to_dict().items():
        if key == "bf16":  # the command line's default depends on the machine: always say it
            parts.append("--bf16" if value else "--no-bf16")
            continue
        if key == "constant_lambda" or value == getattr(default, key):
            continue
        flag = "--" + key.replace("_", "-")
        parts.append(flag if value is True else f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    parts += [f"--store {store.relative_to(ROOT)}", f"--work-dir {WORK.relative_to(ROOT)}"]
    return " ".join(parts)


def table() -> str:
    """One row per setting: accuracy per seed, collapsed or not, the step the loss reached ln 2."""
    from movprune.store import ResultStore

    rows = ["| setting | n | SST-2 dev accuracy per seed (s0, s1, s2) | mean ± std | collapsed | loss at the constant-prediction level (≈ ln 2) from step |",
            "|---|---|---|---|---|---|"]
    for name, (what, _) in SETTINGS.items():
        store = ResultStore(store_of(name))
        recs = [store.get(c.run_id()) for c in configs(name)]
        done = [r for r in recs if r is not None]
        if not done:
            continue
        accs = " / ".join(f"{r['score']:.2f}" if r else "–" for r in recs)
        scores = [r["score"] for r in done]
        mean = statistics.mean(scores)
        spread = f" ± {statistics.stdev(scores):.2f}" if len(scores) > 1 else " (one seed)"
        collapsed = sum(bool(r.get("collapsed")) or r.get("collapse_step") is not None for r in done)
        steps = ", ".join(str(r["collapse_step"]) for r in done if r.get("collapse_step") is not None) or "never"
        rows.append(f"| `{name}`: {what} | {len(done)} | {accs} | {mean:.2f}{spread} | {collapsed} of {len(done)} | {steps} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    p_run = sub.add_parser("run")
    p_run.add_argument("settings", nargs="+", choices=list(SETTINGS))
    p_run.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p_run.add_argument("--jobs", type=int, default=2)
    sub.add_parser("table")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        from movprune.store import ResultStore

        for name, (what, _) in SETTINGS.items():
            print(f"{name}: {what}")
            store = ResultStore(store_of(name))
            for c in configs(name):
                print(f"  [{'stored' if store.get(c.run_id()) else 'missing'}] {command(c, store_of(name))}")
    elif args.cmd == "run":
        from movprune.batch import run_sweeps
        from movprune.store import ResultStore

        failed = False
        for name in args.settings:  # one store per setting
            result = run_sweeps(configs(name, args.seeds), ResultStore(store_of(name)), WORK, jobs=args.jobs)
            failed |= bool(result.get("failed"))
        return 1 if failed else 0
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
