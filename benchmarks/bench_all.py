"""Every performance number of docs/performance.md in one command; one merged JSON line at the end,
also written to results/benchmarks.json as this machine's entry (CPU model, ISA flags, torch and its
threads, date, command), beside the entries of other machines.

    python benchmarks/bench_all.py            # ~10-20 min on a 2-core CPU (2-4 rounds)
    python benchmarks/bench_all.py --quick

Runs bench_step.py (masked / dense training step, global top-k cost) and bench_inference.py
(compact int8 file size, sparse CPU latency), each in its own process so their timings do not
disturb each other, in rounds that alternate the two. Timings on a shared CPU move by 10-40% from
run to run, so rounds repeat until the last two agree within 10% on every noisy headline number
(at least 2, at most ``--max-rounds``); the JSON reports each noisy number's median over the rounds
with every round's value beside it (``<key>_runs``).

results/benchmarks.json holds ``{"machines": [entry, ...]}``, one entry per machine::

    {"machine": {"cpu", "arch", "cores", "flags": {"avx2": bool, ...}, "torch", "torch_threads",
                 "torch_cpu_capability"},
     "measured_at": ISO 8601 UTC, "command": the exact command line, "source": who measured it,
     "results": the merged JSON line (headline keys first)}

A run replaces the entry with the same machine key (CPU model, cores, flags, torch version, command)
and keeps every other entry; a file in the old single-machine layout becomes one entry of the list.
"""

import argparse
import json
import os
import platform
import re
import shlex
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
# ISA flags that decide which kernels PyTorch / MKL / oneDNN run (AVX-512 dense GEMM, native bf16)
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
# thread settings that change the timings; a command line sets them in front of ``python``
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
UNKNOWN = "unknown"
LAYOUT = ("one entry per machine; benchmarks/bench_all.py replaces its own machine's entry "
          "(same CPU model, cores, flags, torch, command) and keeps the others")


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


def _cpuinfo_field(text: str, name: str) -> str | None:
    """The first ``name : value`` line of a /proc/cpuinfo text (None when absent)."""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == name:
            return value.strip()
    return None


def machine_info(cpuinfo: str | None = None) -> dict:
    """The machine a measurement holds for: CPU model, cores, ISA flags, torch version and threads.

    ``cpuinfo`` is a /proc/cpuinfo text (read from the file when None). The CPU model is its
    "model name" ("Processor" on some ARM kernels), else ``platform.processor()``, else "unknown";
    each flag of ``ISA_FLAGS`` is True / False, or None where the flags cannot be read (not Linux).
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    cpu = (_cpuinfo_field(cpuinfo, "model name") or _cpuinfo_field(cpuinfo, "Processor")
           or platform.processor() or UNKNOWN)
    flag_line = _cpuinfo_field(cpuinfo, "flags")
    flags = set(flag_line.split()) if flag_line is not None else None
    info = {
        "cpu": cpu,
        "arch": platform.machine() or UNKNOWN,
        "cores": os.cpu_count(),
        "flags": {f: (f in flags) if flags is not None else None for f in ISA_FLAGS},
        "torch": None, "torch_threads": None, "torch_cpu_capability": None,
    }
    if hasattr(os, "sched_getaffinity"):
        info["cores_usable"] = len(os.sched_getaffinity(0))
    try:
        import torch
    except ImportError:
        return info
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    capability = getattr(getattr(torch.backends, "cpu", None), "get_cpu_capability", None)
    info["torch_cpu_capability"] = capability() if capability else None  # ATen's vector path: AVX2, AVX512...
    return info


def exact_command(argv: list[str] | None = None, env: dict | None = None) -> str:
    """The command line that ran, thread variables first, the script relative to the repository."""
    argv = list(sys.argv if argv is None else argv)
    env = os.environ if env is None else env
    script = Path(argv[0]).resolve() if argv else HERE / "bench_all.py"
    try:
        script_text = str(script.relative_to(HERE.parent))
    except ValueError:
        script_text = str(script)
    words = [f"{k}={shlex.quote(env[k])}" for k in THREAD_ENV if k in env]
    return " ".join(words + ["python", shlex.quote(script_text)] + [shlex.quote(a) for a in argv[1:]])


def iso_utc(seconds: float | None = None) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def make_entry(results: dict, machine: dict, command: str, measured_at: str | None = None,
               source: str = "measured with the command beside it") -> dict:
    return {"machine": machine, "measured_at": measured_at or iso_utc(), "command": command,
            "source": source, "results": results}


def machine_key(entry: dict) -> tuple:
    """Entries with the same key describe one machine and setting; a new run replaces the old one."""
    m = entry.get("machine") or {}
    flags = m.get("flags") or {}
    return (m.get("cpu"), m.get("cores"), tuple(sorted(flags.items())), m.get("torch"), entry.get("command"))


def _legacy_entry(flat: dict) -> dict:
    """The old single-machine layout (one flat dict) as one entry. It recorded only
    "x86_64, N CPU cores", so the CPU model and flags stay unknown."""
    results = {k: v for k, v in flat.items() if k not in ("machine", "measured_at", "command")}
    recorded = flat.get("machine")
    cores = re.search(r"(\d+) CPU cores", recorded or "")
    machine = {"cpu": UNKNOWN, "arch": (recorded or "").split(",")[0].strip() or UNKNOWN,
               "cores": int(cores.group(1)) if cores else None,
               "flags": {f: None for f in ISA_FLAGS},
               "torch": flat.get("torch"), "torch_threads": flat.get("threads"), "torch_cpu_capability": None,
               "recorded_as": recorded}
    when = flat.get("measured_at") or ""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}) UTC", when)
    return make_entry(results, machine, flat.get("command") or UNKNOWN,
                      measured_at=f"{m.group(1)}T{m.group(2)}Z" if m else (when or UNKNOWN))


def upgrade(doc: dict | None) -> dict:
    """Any stored layout -> ``{"machines": [...]}`` (the old flat dict becomes one entry)."""
    if not doc:
        return {"layout": LAYOUT, "machines": []}
    if "machines" in doc:
        return doc
    return {"layout": LAYOUT, "machines": [_legacy_entry(doc)]}


def load(path: str | Path = OUT) -> dict:
    """results/benchmarks.json in the per-machine layout, whichever layout the file has."""
    return upgrade(json.loads(Path(path).read_text()))


def merge_entry(doc: dict | None, entry: dict) -> dict:
    """``doc`` with ``entry`` in place of the entry of the same machine key (appended when new);
    every other machine's entry is kept, in its place."""
    doc = upgrade(doc)
    machines, key, replaced = [], machine_key(entry), False
    for old in doc["machines"]:
        if machine_key(old) == key and not replaced:
            machines.append(entry)
            replaced = True
        elif machine_key(old) != key:
            machines.append(old)
    if not replaced:
        machines.append(entry)
    return {**doc, "machines": machines}


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
    entry = make_entry({**headline(merged), **merged}, machine_info(), exact_command())
    print(json.dumps({**entry["results"], "machine": entry["machine"], "measured_at": entry["measured_at"],
                      "command": entry["command"]}))
    out = Path(args.output)
    doc = merge_entry(load(out) if out.exists() else None, entry)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    others = len(doc["machines"]) - 1
    print(f"[bench_all] wrote this machine's entry to {out} ({others} other machine(s) kept)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
