"""The benchmark scripts' plumbing (their measurements run on demand, not in CI)."""

import importlib.util
import json
import subprocess
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


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni
"""


def test_machine_info_names_the_cpu_and_its_isa_flags():
    bench_all = _load("bench_all")
    info = bench_all.machine_info(CPUINFO)
    assert info["cpu"] == "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz"
    assert info["flags"]["avx2"] is True and info["flags"]["avx512f"] is True
    assert info["flags"]["avx512_bf16"] is False and info["flags"]["amx_bf16"] is False  # absent = False
    assert {"avx2", "avx512f", "avx512_bf16", "amx_bf16"} <= set(info["flags"])
    assert info["cores"] >= 1
    import torch
    assert info["torch"] == torch.__version__ and info["torch_threads"] == torch.get_num_threads()
    # no flags line (not Linux): flags unknown (None), not False
    bare = bench_all.machine_info("")
    assert isinstance(bare["cpu"], str) and bare["cpu"]
    assert set(bare["flags"].values()) == {None}


def test_machine_info_reads_this_machine():
    bench_all = _load("bench_all")
    info = bench_all.machine_info()
    assert isinstance(info["cpu"], str) and info["cpu"].strip()
    if Path("/proc/cpuinfo").exists() and "flags" in Path("/proc/cpuinfo").read_text():
        assert info["cpu"] != "unknown"
        assert all(isinstance(v, bool) for v in info["flags"].values())


def test_exact_command_keeps_thread_variables_and_arguments():
    bench_all = _load("bench_all")
    cmd = bench_all.exact_command([str(BENCH / "bench_all.py"), "--quick", "--output", "/tmp/a b.json"],
                                  {"OMP_NUM_THREADS": "1", "HOME": "/x"})
    assert cmd == "OMP_NUM_THREADS=1 python benchmarks/bench_all.py --quick --output '/tmp/a b.json'"


def _entry(bench_all, cpu, b1, command="python benchmarks/bench_all.py"):
    machine = {"cpu": cpu, "arch": "x86_64", "cores": 2,
               "flags": {f: f == "avx2" for f in bench_all.ISA_FLAGS}, "torch": "2.13.0+cpu"}
    return bench_all.make_entry({"sparse_speedup_3pct": {"b1": b1}}, machine, command,
                                measured_at="2026-12-08T00:00:00Z")


def test_merge_replaces_only_its_own_machine_and_keeps_the_others():
    bench_all = _load("bench_all")
    doc = bench_all.merge_entry(None, _entry(bench_all, "CPU A", 2.6))
    doc = bench_all.merge_entry(doc, _entry(bench_all, "CPU B", 1.2))
    doc = bench_all.merge_entry(doc, _entry(bench_all, "CPU A", 2.4))          # A again: replaces A
    assert [(e["machine"]["cpu"], e["results"]["sparse_speedup_3pct"]["b1"]) for e in doc["machines"]] \
        == [("CPU A", 2.4), ("CPU B", 1.2)]
    quick = _entry(bench_all, "CPU A", 1.9, command="python benchmarks/bench_all.py --quick")
    assert len(bench_all.merge_entry(doc, quick)["machines"]) == 3          # a --quick run is its own entry
    other_flags = _entry(bench_all, "CPU A", 3.0)
    other_flags["machine"]["flags"]["avx512f"] = True                        # same name, other ISA
    assert len(bench_all.merge_entry(doc, other_flags)["machines"]) == 3


def test_old_single_machine_file_becomes_one_entry_and_is_kept(tmp_path):
    bench_all = _load("bench_all")
    old = {"step_overhead": 1.01, "sparse_speedup_3pct": {"b1": 2.646, "b32": 1.8825}, "threads": 2,
           "torch": "2.13.0+cpu", "measured_at": "2026-12-01 10:36 UTC", "machine": "x86_64, 2 CPU cores",
           "command": "python benchmarks/bench_all.py"}
    path = tmp_path / "benchmarks.json"
    path.write_text(json.dumps(old))
    doc = bench_all.load(path)
    (legacy,) = doc["machines"]
    assert legacy["machine"]["cpu"] == "unknown" and legacy["machine"]["cores"] == 2
    assert legacy["measured_at"] == "2026-12-01T10:36Z" and legacy["command"] == old["command"]
    assert legacy["results"]["sparse_speedup_3pct"] == {"b1": 2.646, "b32": 1.8825}
    merged = bench_all.merge_entry(doc, _entry(bench_all, "AMD EPYC", 2.7))
    assert [e["machine"]["cpu"] for e in merged["machines"]] == ["unknown", "AMD EPYC"]


def test_committed_benchmarks_json_has_one_entry_per_machine():
    bench_all = _load("bench_all")
    doc = bench_all.load(BENCH.parent / "results" / "benchmarks.json")
    assert len(doc["machines"]) >= 2
    keys = [bench_all.machine_key(e) for e in doc["machines"]]
    assert len(set(keys)) == len(keys)
    for e in doc["machines"]:
        assert e["command"].startswith("python benchmarks/bench_all.py") or "bench_all.py" in e["command"]
        assert e["measured_at"][:4].isdigit() and isinstance(e["machine"]["cpu"], str)
        b = e["results"]["sparse_speedup_3pct"]
        assert b["b1"] > 0 and b["b32"] > 0 and e["results"]["step_overhead"] > 0


def test_bench_all_main_writes_its_entry_beside_another_machines(tmp_path, monkeypatch, capsys):
    bench_all = _load("bench_all")
    out = tmp_path / "benchmarks.json"
    other = _entry(bench_all, "Some other CPU", 1.19)
    out.write_text(json.dumps({"machines": [other]}))
    step = {"step_overhead_64": 1.05, "global_step_overhead_64": 1.04, "global_topk_ms": 20.0,
            "global_topk_share": 0.02, "torch": "2.13.0+cpu", "threads": 2}
    infer = {"sparse_speedup_3pct_b1": 2.5, "sparse_speedup_3pct_b32": 1.8}

    def fake_run(cmd, capture_output, text):
        payload = step if cmd[1].endswith("bench_step.py") else infer
        return subprocess.CompletedProcess(cmd, 0, stdout="table\n" + json.dumps(payload) + "\n", stderr="")

    monkeypatch.setattr(bench_all.subprocess, "run", fake_run)
    for name in bench_all.THREAD_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.argv", [str(BENCH / "bench_all.py"), "--output", str(out)])
    assert bench_all.main() == 0
    doc = json.loads(out.read_text())
    assert [e["machine"]["cpu"] for e in doc["machines"]][0] == "Some other CPU"
    (mine,) = doc["machines"][1:]
    here = bench_all.machine_info()
    assert mine["machine"]["cpu"] == here["cpu"] and mine["machine"]["flags"] == here["flags"]
    assert mine["command"] == f"python benchmarks/bench_all.py --output {out}"
    assert mine["results"]["sparse_speedup_3pct"] == {"b1": 2.5, "b32": 1.8}
    assert mine["results"]["rounds"] == 2 and mine["results"]["settled_within_10pct"] is True
    assert mine["measured_at"].endswith("Z") and "T" in mine["measured_at"]
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-2])
    assert list(line)[:2] == ["step_overhead", "global_topk_ms"] and line["machine"]["cpu"] == mine["machine"]["cpu"]
