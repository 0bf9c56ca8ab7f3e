"""Hours before spending them: the steps of a profile's runs and their training time per device kind.

    python -m movprune batch --profile paper --tasks all --dry-run

A run's steps are its ``max_steps``, or its epochs over its training set, whose size comes from a
stored record of the same data, else the local data files, else the published size of the full
set (:data:`PUBLISHED_TRAIN_SIZES`). Its seconds per step on a device come from the store's records
of the same task and shapes on that device, else from a measured step time
(``benchmarks/bench_gpu_hours.py`` writes ``benchmarks/step_times.json``: full-length synthetic
batches, so an upper end for batches padded to their longest example). Training only: evaluation
and start-up are not counted. The wall time on N devices places each run on one device, longest
first, the undistilled runs (teachers among them) before the distilled ones.
"""

from __future__ import annotations

import functools
import heapq
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

from . import data as data_mod

STEP_TIMES = Path(__file__).resolve().parents[1] / "benchmarks" / "step_times.json"
DEVICE_COUNTS = (1, 8, 32)  # the wall times printed

# The training sets' sizes for tasks whose data is not on this machine (the full sets: GLUE's MNLI and
# QQP training pairs; SQuAD v1.1's 87,599 training questions cut into 384-token windows with stride 128
# by bert-base-uncased's tokenizer, the paper's setting: no other window size is known here)
PUBLISHED_TRAIN_SIZES = {
    "mnli": (392_702, None, "MNLI's training pairs"),
    "qqp": (363_846, None, "QQP's training pairs"),
    "squad": (88_641, (384, 128), "SQuAD v1.1's training windows of 384 tokens, stride 128"),
}


def variant(config) -> str:
    """The kind of step a run takes: ``dense`` (dense and the zeroed-encoder control), ``masked`` (every
    pruning method) or ``distilled`` (masked, plus the teacher's forward pass)."""
    if config.distill:
        return "distilled"
    return "dense" if config.method in ("dense", "zero_encoder") else "masked"


def _same_data(record: dict, config) -> bool:
    keys = ["task", "train_split", "max_train_examples"]
    if data_mod.get_task(config.task).kind == "qa":  # windows depend on the length, stride and tokenizer
        keys += ["max_length", "doc_stride", "model"]
    return all(record.get(k, getattr(config, k)) == getattr(config, k) for k in keys)


def train_size(config, records=()) -> tuple:
    """``(examples, source)``: the number of training examples (QA: windows) of ``config``, or
    ``(None, why)`` when it is not known here."""
    for r in records:
        if r.get("train_examples") and _same_data(r, config):
            return int(r["train_examples"]), "a stored record"
    n = _count_local(config.task, config.train_split, config.max_train_examples, config.model, config.max_length,
                     config.doc_stride)
    if n is not None:
        return n, "the local data"
    published = PUBLISHED_TRAIN_SIZES.get(config.task)
    if published and (published[1] is None or published[1] == (config.max_length, config.doc_stride)):
        n = published[0] if config.max_train_examples is None else min(published[0], config.max_train_examples)
        return n, f"published size: {published[2]}"
    return None, "no local data, no stored record and no published size"


@functools.lru_cache(maxsize=None)
def _count_local(task: str, split: str, max_examples, model: str, max_length: int, doc_stride: int) -> Optional[int]:
    """Training examples (QA: windows, which needs the model's tokenizer) in this machine's data files, or
    None when the task's files (or the tokenizer) are not here."""
    spec = data_mod.get_task(task)
    root, _ = data_mod.resolve_data_dir(None)
    if root is None:
        return None
    if spec.kind == "qa":
        from . import models, squad

        if not (root / spec.folder).is_dir():
            return None
        from transformers import AutoTokenizer

        try:  # only a tokenizer already on this machine: a dry run downloads nothing
            tokenizer = AutoTokenizer.from_pretrained(models.resolve(model), local_files_only=True)
        except (OSError, ValueError):
            return None
        examples = data_mod.subsample(squad.load_squad(None, split="train"), max_examples, 0)
        return len(squad.prepare_train_features(examples, tokenizer, max_length, doc_stride, return_dataset=False)
                   ["input_ids"])
    name = spec.splits[data_mod._split_key(spec, split)]
    if not any(p.is_file() for p in data_mod.task_file_candidates(root, spec, name)):
        return None
    return len(data_mod.load_task(task, None, split, max_examples, 0))


def planned_steps(config, records=()) -> tuple:
    """``(optimizer steps, source)`` of ``config`` (``(None, why)`` when its training set's size is unknown)."""
    if config.max_steps:
        return config.max_steps, "max_steps"
    n, source = train_size(config, records)
    if n is None:
        return None, source
    return max(1, math.ceil(math.ceil(n / config.batch_size) * config.epochs)), f"{n:,} examples, {source}"


def _shape(config) -> tuple:
    return (config.model, config.batch_size, config.max_length, bool(config.bf16),
            data_mod.get_task(config.task).kind == "qa", variant(config))


def record_step_times(records) -> dict:
    """``{(device, task, shape): [seconds per step, ...]}`` from records that kept their training time."""
    from .batch import run_train_time

    out = defaultdict(list)
    for r in records:
        seconds, steps = run_train_time(r), r.get("steps")
        if not seconds or not steps or r.get("stopped_at"):
            continue
        shape = (r.get("model"), r.get("batch_size"), r.get("max_length"), bool(r.get("bf16")),
                 data_mod.get_task(r["task"]).kind == "qa",
                 "distilled" if r.get("distill") else "dense" if r.get("method") in ("dense", "zero_encoder")
                 else "masked")
        out[(r.get("device", "unknown"), r["task"], shape)].append(seconds / steps)
    return dict(out)


def measured_step_times(path: Optional[Path] = None) -> dict:
    """``{(device, shape): seconds per step}`` from ``path`` (default ``benchmarks/step_times.json``)."""
    try:
        entries = json.loads(Path(path or STEP_TIMES).read_text())["entries"]
    except (OSError, ValueError, KeyError):
        return {}
    return {(e["device"], (e["model"], e["batch_size"], e["max_length"], e["bf16"], e["qa"], e["variant"])):
            e["s_per_step"] for e in entries}


def wall_hours(phases, devices: int) -> float:
    """Hours until the last run ends on ``devices`` devices: each phase (a list of run hours) starts when the
    one before it has ended, and places its runs longest first on the device free soonest."""
    total = 0.0
    for hours in phases:
        free = [0.0] * devices
        for h in sorted(hours, reverse=True):
            heapq.heapreplace(free, free[0] + h)
        total += max(free, default=0.0)
    return total


def estimate(configs, records=(), measured: Optional[dict] = None) -> dict:
    """Steps and training hours of ``configs``.

    Returns ``{"steps": {run_id: (steps, source)}, "devices": {device: {"hours": {run_id: h},
    "sources": {"records" | "measured": n}}}}``; a run without a step time on a device is absent from it.
    """
    records = list(records)
    measured = measured_step_times() if measured is None else measured
    from_records = record_step_times(records)
    steps = {c.run_id(): planned_steps(c, records) for c in configs}
    devices = sorted({d for d, _, _ in from_records} | {d for d, _ in measured})
    out = {}
    for device in devices:
        hours, sources = {}, defaultdict(int)
        for c in configs:
            n = steps[c.run_id()][0]
            if n is None:
                continue
            times = from_records.get((device, c.task, _shape(c)))
            if times:
                per_step, source = sum(times) / len(times), "records"
            elif (device, _shape(c)) in measured:
                per_step, source = measured[(device, _shape(c))], "measured"
            else:
                continue
            hours[c.run_id()] = n * per_step / 3600
            sources[source] += 1
        if hours:
            out[device] = {"hours": hours, "sources": dict(sources)}
    return {"steps": steps, "devices": out}


def estimate_lines(configs, records=(), measured: Optional[dict] = None, device_counts=DEVICE_COUNTS,
                   profile: str = "<profile>") -> list:
    """The dry run's estimate of ``configs``, as lines: the steps per task, then per device kind the hours
    of training one run at a time and the wall time on ``device_counts`` devices."""
    est = estimate(configs, records, measured)
    lines = []
    by_task = defaultdict(list)
    for c in configs:
        by_task[c.task].append(est["steps"][c.run_id()])
    for task, items in by_task.items():
        known = [s for s, _ in items if s is not None]
        sources = sorted({src for s, src in items if s is not None and src != "max_steps"})
        if known:
            lines.append(f"{task}: {len(items)} run(s), {min(known):,}" + (f"-{max(known):,}" if max(known) != min(known)
                                                                        else "") + " steps each"
                         + (f" ({'; '.join(sources)})" if sources else "")
                         + (f"; {len(items) - len(known)} with unknown steps" if len(known) < len(items) else ""))
        else:
            lines.append(f"{task}: {len(items)} run(s), steps unknown ({items[0][1]})")
    phases_of = {c.run_id(): int(c.distill) for c in configs}
    for device, info in est["devices"].items():
        hours = info["hours"]
        phases = [[h for rid, h in hours.items() if phases_of[rid] == p] for p in (0, 1)]
        gpu = device.startswith("cuda")
        walls = " / ".join(f"{_hours(wall_hours(phases, n))} on {n}" for n in device_counts)
        source = ", ".join(f"{n} from {'its stored records' if s == 'records' else 'a measured step time'}"
                           for s, n in sorted(info["sources"].items()))
        missing = len(configs) - len(hours)
        lines.append(f"estimate on {device}: {sum(hours.values()):,.1f} {'GPU-hours' if gpu else 'h'} of training "
                     f"one run at a time, {len(hours)} run(s) ({source}){f', {missing} not timed on it' if missing else ''}"
                     f"; wall time with one run per {'GPU' if gpu else 'such device'}: {walls} "
                     f"(eval and start-up not counted)")
    if not est["devices"]:
        lines.append(f"no step time for these runs on any device yet: `python benchmarks/bench_gpu_hours.py "
                     f"--profile {profile}` measures this machine's (a few minutes on a GPU)")
    return lines


def _hours(h: float) -> str:
    return f"{h:,.0f} h" if h >= 10 else f"{h:.1f} h" if h >= 1 else f"{h * 60:.0f} min"
