"""Seconds per training step of a profile's runs on this machine's device, for the batch's dry run.

    python benchmarks/bench_gpu_hours.py --profile paper --tasks all     # then:
    python -m movprune batch --profile paper --tasks all --dry-run      # GPU-hours and wall time on N GPUs

For every shape the profile's runs take (model, batch size, sequence length, bf16, classification or
QA head) and every kind of step (dense; masked: movement at 10% kept, its scores trained; distilled:
masked plus a dense teacher's forward pass), times ``--steps`` optimizer steps after ``--warmup``
steps: forward, backward, gradient clipping, fused AdamW, the sparsity schedule's update, as a run
takes them. Batches are synthetic and full length (a real batch is padded to its longest example
only: the estimate is an upper end). The weights are random; a hub model that is not on this
machine gets its architecture from its config, or for ``bert-base-uncased`` from BERT-base's own
defaults (12 layers, hidden 768), which is all a step's time depends on.

Writes the times into ``benchmarks/step_times.json`` (``--out``), replacing this device's entries
for the same shapes and keeping every other entry.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it

import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from movprune import data as data_mod  # noqa: E402
from movprune import models  # noqa: E402
from movprune.estimate import STEP_TIMES, _shape  # noqa: E402
from movprune.profiles import get_profile  # noqa: E402
from movprune.pruner import PruningConfig, sparsify  # noqa: E402
from movprune.trainer import MAX_GRAD_NORM, freeze_embeddings, make_adamw  # noqa: E402


def device_name() -> str:
    """The device as records name it: ``cuda:<GPU name>`` or ``cpu x<threads>``."""
    return "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}"


def build_model(name: str, qa: bool, num_labels: int):
    """A randomly initialised model of ``name``'s architecture with the task's head."""
    import transformers

    auto = transformers.AutoModelForQuestionAnswering if qa else transformers.AutoModelForSequenceClassification
    extra = {} if qa else {"num_labels": num_labels}
    if name in models.ALIASES:
        return models.load_model(name, "qa" if qa else "classification", num_labels)
    try:
        config = transformers.AutoConfig.from_pretrained(models.resolve(name), **extra)
    except (OSError, ValueError):
        if name != "bert-base-uncased":
            raise SystemExit(f"bench_gpu_hours: cannot read the config of {name!r} here (offline?)")
        config = transformers.BertConfig(**extra)  # BERT-base: 12 layers, hidden 768, vocab 30,522
    torch.manual_seed(0)
    return auto.from_config(config)


def time_steps(shape: tuple, num_labels: int, steps: int, warmup: int, device: str) -> float:
    """Seconds per optimizer step of one shape (:func:`movprune.estimate._shape`)."""
    name, batch, length, bf16, qa, variant = shape
    model = build_model(name, qa, num_labels).to(device)
    freeze_embeddings(model)
    pruner = sparsify(model, PruningConfig(method="movement", remaining=0.1)) if variant != "dense" else None
    teacher = build_model(name, qa, num_labels).to(device).eval() if variant == "distilled" else None
    model.train()
    scores = {id(p) for p in pruner.score_parameters()} if pruner else set()
    groups = [{"params": [p for p in model.parameters() if p.requires_grad and id(p) not in scores]}]
    if pruner:
        groups.append({"params": pruner.score_parameters(), "lr": 1e-2})
    opt = make_adamw(groups, lr=3e-5)
    vocab = model.config.vocab_size
    ids = torch.randint(1000 % vocab, vocab, (batch, length), device=device)
    labels = ({"start_positions": torch.zeros(batch, dtype=torch.long, device=device),
               "end_positions": torch.ones(batch, dtype=torch.long, device=device)} if qa
              else {"labels": torch.zeros(batch, dtype=torch.long, device=device)})
    kind = "cuda" if device == "cuda" else "cpu"

    def step(i: int, total: int):
        if pruner:
            pruner.update(total // 2 + i, total * 2)  # mid-ramp: masks live and re-selected every step
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, **labels).loss
            if teacher is not None:
                with torch.no_grad():
                    teacher(input_ids=ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], MAX_GRAD_NORM)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for i in range(warmup):
        step(i, warmup + steps)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(warmup + i, warmup + steps)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main(argv=None) -> int:
    """Measure and write; prints one line per shape."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--tasks", default="all", help="comma-separated tasks or 'all' (default)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per shape (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    ap.add_argument("--out", default=str(STEP_TIMES))
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU only: torch threads (the batch gives each of its runs cores // runs at once)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        if args.threads < 1:
            ap.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.steps < 1 or args.warmup < 0:
        ap.error("--steps must be >= 1 and --warmup >= 0")
    try:
        prof = get_profile(args.profile)
    except ValueError as e:
        ap.error(str(e))
    tasks = list(prof.all_tasks) if args.tasks == "all" else [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in prof.budgets]
    if unknown:
        ap.error(f"profile {args.profile!r} has no task(s) {', '.join(unknown)}")
    shapes = {}
    for c in prof.all_configs(tasks):
        shapes.setdefault(_shape(c), data_mod.get_task(c.task).num_labels or 1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name, now = device_name(), time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    command = "python benchmarks/bench_gpu_hours.py " + " ".join(argv if argv is not None else sys.argv[1:])
    entries = []
    for shape, num_labels in sorted(shapes.items(), key=lambda kv: str(kv[0])):
        seconds = time_steps(shape, num_labels, args.steps, args.warmup, device)
        model, batch, length, bf16, qa, variant = shape
        print(f"{name}: {model} batch {batch} x {length}{' bf16' if bf16 else ''}{' QA' if qa else ''} {variant}: "
              f"{seconds * 1000:.1f} ms/step", flush=True)
        entries.append({"device": name, "model": model, "batch_size": batch, "max_length": length, "bf16": bf16,
                        "qa": qa, "variant": variant, "s_per_step": round(seconds, 5), "steps_timed": args.steps,
                        "measured_at": now, "torch": torch.__version__, "command": command.strip()})
    out = Path(args.out)
    try:
        kept = json.loads(out.read_text())["entries"]
    except (OSError, ValueError, KeyError):
        kept = []
    mine = {(e["device"], e["model"], e["batch_size"], e["max_length"], e["bf16"], e["qa"], e["variant"])
            for e in entries}
    kept = [e for e in kept if (e["device"], e["model"], e["batch_size"], e["max_length"], e["bf16"], e["qa"],
                                e["variant"]) not in mine]
    out.write_text(json.dumps({"layout": "seconds per optimizer step of full-length synthetic batches, one entry "
                                         "per device and shape (benchmarks/bench_gpu_hours.py)",
                               "entries": kept + entries}, indent=1) + "\n")
    print(f"wrote {len(entries)} entries to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
