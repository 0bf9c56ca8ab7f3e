"""The `minilm` profile's missing runs on one GPU, a few at a time (scripts/gpu_run.sh with GPU_JOB=minilm).

The configs are the profile's own (same run ids as `python -m movprune batch`), so the
records land in results/minilm/runs next to the CPU ones and the batch renders them. Order: the tasks
of GPU_TASKS (default "squad,sick": SQuAD is the task a 2-core CPU can least afford), each task's
dense run first (the distillation teacher), then the profile's order.

    GPU_TASKS=squad python scripts/gpu_minilm.py        # GPU_MINILM_JOBS=6 by default
    GPU_MINILM_TEST=1 python scripts/gpu_minilm.py      # a seconds-long dry run on any machine
    GPU_MINILM_ONLY=squad-,sick-minilm-soft python scripts/gpu_minilm.py   # only runs whose id starts so

With SQuAD among the tasks it also trains, beside the sweep, the dense SQuAD run with 384-token windows
(results/squad_windows/runs): the measurement behind the profile's choice of 192-token windows.
"""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

from movprune.batch import run_sweeps
from movprune.profiles import get_profile
from movprune.store import ResultStore


def wanted_configs(tasks=("squad", "sick"), store=None, test: bool = False) -> list:
    """The minilm profile's configs of ``tasks`` not yet in ``store``, in task order, dense first."""
    profile = get_profile("minilm")
    out = []
    for task in tasks:
        configs = profile.all_configs(tasks=(task,))
        configs.sort(key=lambda c: c.method != "dense")  # stable: the profile's order otherwise
        out += [c for c in configs if store is None or store.get(c.run_id()) is None]
    if test:  # two runs per task, two steps each, the schedule as fractions
        out = [c for t in tasks for c in [c for c in out if c.task == t][:2]]
    small = dict(max_steps=2, max_train_examples=64, max_eval_examples=32, sparsity_warmup_steps=None,
                 sparsity_cooldown_steps=None) if test else {}
    # no intermediate checkpoints (not part of a run's id): the machine is lent for minutes
    return [dataclasses.replace(c, save_steps=100000, **small) for c in out]


WINDOW_STORE = "results/squad_windows/runs"


def window_check_config(test: bool = False):
    """The SQuAD dense run of the minilm recipe with the paper's 384-token windows (stride 128), to set
    beside the profile's 192-token one: do the shorter windows keep the dense F1? Stored apart
    (``WINDOW_STORE``) so that the profile's tables keep one dense SQuAD run per seed."""
    (dense,) = [c for c in wanted_configs(("squad",), None, test) if c.method == "dense"]
    return dataclasses.replace(dense, max_length=384, doc_stride=128)


def main():
    test = os.environ.get("GPU_MINILM_TEST") == "1"
    root = Path("/tmp/gpu_minilm_test" if test else ".")
    tasks = tuple(t for t in os.environ.get("GPU_TASKS", "squad,sick").split(",") if t)
    if sys.argv[1:] == ["--window-check"]:
        print(run_sweeps([window_check_config(test)], ResultStore(root / WINDOW_STORE), root / "checkpoints/windows"))
        return
    store = ResultStore(root / "results/minilm/runs")
    configs = wanted_configs(tasks, store, test)
    only = [p for p in os.environ.get("GPU_MINILM_ONLY", "").split(",") if p]
    if only:  # runs trained elsewhere meanwhile (on the CPU, say) are left out
        configs = [c for c in configs if any(c.run_id().startswith(p) for p in only)]
    # not capped by len(configs): retrained teachers share the first phase (movprune.batch.sweep_phases)
    jobs = max(1, int(os.environ.get("GPU_MINILM_JOBS", "6")))
    check = None
    if "squad" in tasks and ResultStore(root / WINDOW_STORE).get(window_check_config(test).run_id()) is None:
        check = subprocess.Popen([sys.executable, __file__, "--window-check"])  # beside the sweep
        jobs = max(1, jobs - 1)
    print(f"{len(configs)} missing runs of the minilm profile ({', '.join(tasks)}), {jobs} at a time"
          + (", and the 384-token SQuAD window check beside them" if check else ""))
    print(run_sweeps(configs, store, root / "checkpoints/minilm", jobs=jobs))
    if check is not None:
        check.wait()


if __name__ == "__main__":
    main()
