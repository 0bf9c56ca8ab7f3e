"""The benchmark scripts' plumbing (their measurements run on demand, not in CI)."""

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_all_puts_the_issue_keys_first():
    bench_all = _load("bench_all")
    merged = bench_all.last_json_line('table\n{"step_overhead_64": 1.09, "global_topk_ms": 29.0}\n')
    merged.update({"global_topk_share": 0.027, "sparse_speedup_3pct_b1": 2.07, "sparse_speedup_3pct_b32": 1.16,
                   **{f"bytes_per_kept_weight_{t}_{s}": v for (t, s), v in {
                       ("10pct", "per_tensor"): 1.187, ("3pct", "per_tensor"): 1.3955,
                       ("10pct", "per_row"): 1.4953, ("3pct", "per_row"): 1.7412}.items()}})
    head = bench_all.headline(merged)
    assert list(head)[:2] == ["step_overhead", "global_topk_ms"]
    assert head["step_overhead"] == 1.09 and head["global_topk_ms"] == 29.0
    assert head["bytes_per_kept_weight"] == {"per_tensor": {"10pct": 1.187, "3pct": 1.3955},
                                             "per_row": {"10pct": 1.4953, "3pct": 1.7412}}
    assert head["sparse_speedup_3pct"] == {"b1": 2.07, "b32": 1.16}


def test_bench_quant_accuracy_refuses_a_folder_that_is_not_a_run(tmp_path, capsys, monkeypatch):
    bench = _load("bench_quant_accuracy")
    monkeypatch.setattr("sys.argv", ["bench_quant_accuracy.py", str(tmp_path)])
    assert bench.main() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not a run's final folder" in err[0]


def test_bench_all_repeats_rounds_until_two_agree_within_10pct():
    bench_all = _load("bench_all")
    r = lambda step, b1: {"step_overhead_64": step, "sparse_speedup_3pct_b1": b1, "bytes": 1.4}  # noqa: E731
    assert not bench_all.settled([r(1.1, 2.0)])                      # one round decides nothing
    assert not bench_all.settled([r(1.1, 1.52), r(1.1, 2.13)])       # 40% apart: another round
    assert bench_all.settled([r(1.1, 1.52), r(1.1, 2.13), r(1.08, 2.05)])
    assert not bench_all.settled([r(1.0, 2.0), r(1.2, 2.0)])         # the step overhead must agree too
    merged = bench_all.combine([r(1.1, 1.52), r(1.1, 2.13), r(1.08, 2.05)])
    assert merged["sparse_speedup_3pct_b1"] == 2.05 and merged["sparse_speedup_3pct_b1_runs"] == [1.52, 2.13, 2.05]
    assert merged["bytes"] == 1.4 and merged["rounds"] == 3
