"""Masked vs dense training step on a GPU (MiniLM-L6, batch 32, length 64, synthetic tokens).

    MOVPRUNE_MINILM_DIR=<MiniLM folder> python benchmarks/bench_gpu_step.py

One model per variant, 5 warm-up + 20 timed steps (forward, backward, AdamW, zero_grad) with the
schedule mid-ramp, so masks are live and re-selected after every optimizer step. Prints ms/step
and the ratio to dense. (This is the script behind the H200 numbers in the README; there it was
run inline, with the default AdamW, before make_adamw existed.)
"""

import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers reads it

import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from movprune import PruningConfig, sparsify  # noqa: E402
from movprune.models import minilm_path  # noqa: E402


def bench(method: str, steps: int = 20, warmup: int = 5) -> float:
    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2,
                                                               dtype=torch.float32).cuda()
    if method != "dense":
        sparsify(model, PruningConfig(method=method, remaining=0.1)).update(50, 100)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    x = torch.randint(1000, 2000, (32, 64), device="cuda")
    y = torch.randint(0, 2, (32,), device="cuda")
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            t0 = time.time()
        model(input_ids=x, labels=y).loss.backward()
        opt.step()
        opt.zero_grad()
    torch.cuda.synchronize()
    return (time.time() - t0) / steps * 1000


if __name__ == "__main__":
    times = {m: bench(m) for m in ("dense", "movement", "magnitude")}
    for m, ms in times.items():
        print(f"{m:10s} {ms:6.1f} ms/step  x{ms / times['dense']:.2f}")
