"""Why movement pruning to 10 % collapses on MiniLM-L6 / SST-2 at the demo profile's budget (300 steps; the profile was called `small`).

Three experiments behind the README's "Why movement pruning collapses here" (each prints one line
starting with RESULT; run from the repo root with the demo profile's runs in checkpoints/demo):

    python scripts/collapse_study.py probe        # remove the layers' output offsets post hoc, probe [CLS]
    python scripts/collapse_study.py probe --model-dir checkpoints/demo/<magnitude 10 % run>/final
    python scripts/collapse_study.py finetuned    # movement 10 % starting from the dense fine-tuned model
    python scripts/collapse_study.py bias-lr      # movement 10 % with biases/LayerNorm at 100x the lr

Runs and records go to /tmp/collapse_study (not the results store: these are diagnostics, not
table cells).
"""

from __future__ import annotations

import argparse
import json
import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
SMALL = dict(task="sst2", max_steps=300, batch_size=32, max_length=64, lr=5e-5, max_train_examples=9600)
MOVEMENT_RUN = "checkpoints/demo/sst2-minilm-movement_v0.1_local-s0-65616c652b/final"
DENSE_RUN = "checkpoints/demo/sst2-minilm-dense-s0-37ca5297a0/final"
OUT = "/tmp/collapse_study"


def probe(model_dir: str = MOVEMENT_RUN) -> dict:
    """Subtract every targeted linear's mean output (over 256 training phrases, layer by layer), then
    fit a logistic-regression probe on the last layer's [CLS] vector (2,000 other phrases) -> dev."""
    from transformers import AutoTokenizer

    from movprune import data as D
    from movprune.diagnose import hidden_spread
    from movprune.pruner import find_targets, from_pretrained

    tok, model = AutoTokenizer.from_pretrained(model_dir), from_pretrained(model_dir).eval()

    def enc(examples):
        return tok([e["text_a"] for e in examples], padding=True, truncation=True, max_length=64,
                   return_tensors="pt")

    cal = D.load_task("sst2", None, "train", 256, 1)
    train = D.load_task("sst2", None, "train", 2000, 2)
    dev = D.load_task("sst2", None, "eval", None, 0)
    before = hidden_spread(model, enc(dev[:128]))[-1]["spread"]
    offsets, targets = {}, find_targets(model)
    for name, module in targets.items():
        module.register_forward_hook(lambda m, a, out, name=name: out - offsets[name] if name in offsets else None)
    batch = enc(cal)
    keep = batch["attention_mask"].bool()
    for name, module in targets.items():  # in forward order: each offset measured with earlier ones removed
        seen = {}
        handle = module.register_forward_hook(lambda m, a, out, seen=seen: seen.update(o=out[keep].mean(0)))
        with torch.no_grad():
            model(**batch)
        handle.remove()
        offsets[name] = seen["o"].detach()
    after = [round(r["spread"], 4) for r in hidden_spread(model, enc(dev[:128]))]

    def cls(examples):
        with torch.no_grad():
            return torch.cat([model(**enc(examples[i:i + 256]), output_hidden_states=True).hidden_states[-1][:, 0]
                              for i in range(0, len(examples), 256)])

    x_tr, x_dev = cls(train), cls(dev)
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    x_tr, x_dev = (x_tr - mu) / sd, (x_dev - mu) / sd
    y_tr = torch.tensor([e["label"] for e in train])
    y_dev = torch.tensor([e["label"] for e in dev])
    torch.manual_seed(0)
    clf = torch.nn.Linear(x_tr.shape[1], 2)
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=200)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(clf(x_tr), y_tr) + 1e-3 * clf.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    acc = float((clf(x_dev).argmax(-1) == y_dev).float().mean()) * 100
    return {"last_layer_spread_before": before, "spreads_after": after, "probe_dev_accuracy": round(acc, 2)}


def finetuned() -> dict:
    """Small-profile movement 10 % run whose starting point is the dense fine-tuned model (82.5 %)."""
    import movprune
    from movprune.pruner import from_pretrained
    from movprune.train import RunConfig, run
    from transformers import AutoTokenizer

    start = os.path.join(OUT, "dense_finetuned")
    if not os.path.isdir(start):
        movprune.bake(from_pretrained(DENSE_RUN)).save_pretrained(start)
        AutoTokenizer.from_pretrained(DENSE_RUN).save_pretrained(start)
    r = run(RunConfig(model=start, method="movement", remaining=0.1, **SMALL), store=f"{OUT}/runs",
            work_dir=f"{OUT}/work", progress=False)
    return {"accuracy": r["score"], "remaining": r["remaining"], "loss_curve": r["loss_curve"]}


def bias_lr(lr: float = 5e-3) -> dict:
    """Small-profile movement 10 % run with every 1-D parameter (biases, LayerNorm) at ``lr``."""
    import movprune.train as T

    plain = T.build_optimizer

    def build(model, pruner, config):
        groups = [{"params": g["params"], "lr": g["lr"], "weight_decay": 0.0} for g in plain(model, pruner, config).param_groups]
        weights = groups[0]["params"]
        groups[0]["params"] = [p for p in weights if p.dim() != 1]
        groups.insert(1, {"params": [p for p in weights if p.dim() == 1], "lr": lr, "weight_decay": 0.0})
        return T.make_adamw(groups, lr=config.lr)

    T.build_optimizer = build
    r = T.run(T.RunConfig(method="movement", remaining=0.1, **SMALL), store=f"{OUT}/runs_bias_lr",
              work_dir=f"{OUT}/work_bias_lr", progress=False)
    return {"accuracy": r["score"], "remaining": r["remaining"], "loss_curve": r["loss_curve"]}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("experiment", choices=["probe", "finetuned", "bias-lr"])
    ap.add_argument("--model-dir", default=MOVEMENT_RUN, help="probe: the run's final/ folder")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    result = probe(args.model_dir) if args.experiment == "probe" else \
        {"finetuned": finetuned, "bias-lr": bias_lr}[args.experiment]()
    print("RESULT", args.experiment, json.dumps(result))
