"""The runs of scripts/gpu_sst2.sh (see there): a prioritized part of the `gpu` profile's SST-2 grid.

GPU_SST2_ONLY=dense,l0 (run-id prefixes after "sst2-minilm-") keeps only some of them.
"""
import dataclasses
import os
from pathlib import Path

from movprune.batch import run_sweeps
from movprune.profiles import get_profile
from movprune.store import ResultStore


def pick(grid, method, seed=0, distill=False, **kw):
    for c in grid:
        if (c.method == method and c.seed == seed and c.distill == distill and c.scope == "local"
                and all(getattr(c, k) == v for k, v in kw.items())):
            return c
    raise KeyError((method, seed, distill, kw))


def wanted_configs(test: bool = False) -> list:
    """The 11 runs, most informative first (non-distilled ones train first anyway)."""
    grid = get_profile("gpu").all_configs(seeds=(0, 1))
    wanted = [pick(grid, "dense"), pick(grid, "movement", remaining=0.1), pick(grid, "magnitude", remaining=0.1),
              pick(grid, "movement", remaining=0.03), pick(grid, "soft_movement", final_lambda=100.0),
              pick(grid, "l0", final_lambda=60.0), pick(grid, "movement", remaining=0.01),
              pick(grid, "magnitude", remaining=0.03), pick(grid, "movement", seed=1, remaining=0.1),
              pick(grid, "magnitude", remaining=0.01), pick(grid, "movement", distill=True, remaining=0.1)]
    small = dict(max_steps=2, max_train_examples=64, max_eval_examples=32) if test else {}
    # no intermediate checkpoints (not part of a run's id): the machine is lent for minutes
    return [dataclasses.replace(c, save_steps=100000, **small) for c in wanted]


def main():
    test = os.environ.get("GPU_SST2_TEST") == "1"  # a seconds-long dry run of this script on any machine
    root = Path("/tmp/gpu_sst2_test" if test else ".")
    configs = wanted_configs(test)
    only = [s for s in os.environ.get("GPU_SST2_ONLY", "").split(",") if s]  # run-id prefixes
    if only:
        configs = [c for c in configs if any(c.run_id().startswith("sst2-minilm-" + o) for o in only)]
    jobs = min(6, len(configs))
    print(run_sweeps(configs, ResultStore(root / "results/gpu/runs"), root / "checkpoints/gpu", jobs=jobs))


if __name__ == "__main__":
    main()
