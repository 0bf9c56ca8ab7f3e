"""Masked vs dense training step on a GPU (MiniLM-L6, batch 32, length 64, synthetic tokens).

    MOVPRUNE_MINILM_DIR=<MiniLM folder> python benchmarks/bench_gpu_step.py [--steps 30]

One model per variant, warm-up steps then timed steps (forward, backward, fused AdamW from
``movprune.train.make_adamw``, zero_grad) with the schedule mid-ramp, so masks are live and
re-selected after every optimizer step. Variants: dense; movement and magnitude with local
(per-matrix) and global top-k; soft movement; L0. ``movement-local-bracket`` is local movement
with the CPU's selection (sampled bracket, which reads counts back from the device) forced on
the GPU: the side-by-side for the sync-free ``torch.topk`` selection that GPUs use by default.
Prints ms/step and the ratio to dense, then one JSON line.
"""

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

import movprune.masks  # noqa: E402
from movprune import PruningConfig, sparsify  # noqa: E402
from movprune.models import minilm_path  # noqa: E402
from movprune.train import make_adamw  # noqa: E402

VARIANTS = {
    "dense": None,
    "movement-local": PruningConfig(method="movement", remaining=0.1, scope="local"),
    "movement-local-bracket": PruningConfig(method="movement", remaining=0.1, scope="local"),
    "movement-global": PruningConfig(method="movement", remaining=0.1, scope="global"),
    "magnitude-local": PruningConfig(method="magnitude", remaining=0.1, scope="local"),
    "soft_movement": PruningConfig(method="soft_movement", final_lambda=100.0, final_threshold=0.1),
    "l0": PruningConfig(method="l0", final_lambda=100.0),
}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench(variant: str, steps: int, warmup: int = 5, device: str = "cuda") -> float:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2,
                                                               dtype=torch.float32).to(device)
    config = VARIANTS[variant]
    pruner = sparsify(model, config) if config is not None else None
    if pruner is not None:
        pruner.update(50, 100)
    model.train()
    opt = make_adamw([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    x = torch.randint(1000, 2000, (32, 64), device=device)
    y = torch.randint(0, 2, (32,), device=device)
    original = movprune.masks.topk_mask_by_indices
    if variant.endswith("-bracket"):
        movprune.masks.topk_mask_by_indices = movprune.masks.topk_mask_by_bracket
    try:
        for i in range(warmup + steps):
            if i == warmup:
                _sync(device)
                t0 = time.perf_counter()
            loss = model(input_ids=x, labels=y).loss
            if pruner is not None and config.method in ("soft_movement", "l0"):
                loss = loss + pruner.regularization()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync(device)
        return (time.perf_counter() - t0) / steps * 1000
    finally:
        movprune.masks.topk_mask_by_indices = original


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all variants; medians")
    ap.add_argument("--device", default="cuda", help="'cpu' for a dry run of this script")
    args = ap.parse_args()
    times = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for v in VARIANTS:
            times[v].append(bench(v, args.steps, device=args.device))
    med = {v: sorted(t)[len(t) // 2] for v, t in times.items()}
    for v, ms in med.items():
        print(f"{v:24s} {ms:6.2f} ms/step  x{ms / med['dense']:.2f}   (runs: {', '.join(f'{t:.2f}' for t in times[v])})")
    print(json.dumps({
        "device": torch.cuda.get_device_name() if args.device == "cuda" else args.device, "torch": torch.__version__,
        "ms_per_step": {v: round(ms, 2) for v, ms in med.items()},
        "overhead": {v: round(ms / med["dense"], 3) for v, ms in med.items()},
        "batch": 32, "length": 64, "steps": args.steps, "repeats": args.repeats,
    }))


if __name__ == "__main__":
    main()
