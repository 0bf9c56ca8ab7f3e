"""Movement pruning's first cut: what dropping a few percent of each matrix by movement's scores does to
the model at the end of the warm-up, against dropping the same share by |W| or at random
(docs/findings.md, "Movement's first cut").

    # 1. the model at the last warm-up step (step 1,000 of the minilm recipe): scores trained, nothing pruned
    python scripts/first_cut.py warmup --task sick --remaining 0.1     # ~14 min on one core (SICK)
    python scripts/first_cut.py warmup --task sick --fp32              # the same in fp32 (another run id)
    # 2. the cut, on 8 training batches
    python scripts/first_cut.py analyze checkpoints/first_cut/<run id>-step1000 --task sick

``warmup`` trains the ``minilm`` profile's movement configuration of the task (seed, remaining weights
as given) exactly as the batch does, copies its checkpoint at the last warm-up step aside (the Trainer
keeps only the last two) and stops the run; nothing lands in the results store. ``analyze`` loads that
checkpoint and prints the mean loss of 8 training batches (no dropout) with every weight kept, then with
the lowest ``1 - v`` of each matrix dropped by movement's scores, by |W|, at random (seed 0), and by the
scores with the largest |W| always kept; then with movement's and a random set of weights scaled by a
factor instead of dropped; and how concentrated movement's cut is on single rows or columns.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

WORK = ROOT / "checkpoints" / "first_cut"


def minilm_config(task: str, remaining: float, seed: int = 0, fp32: bool = False):
    """The minilm profile's local movement configuration of ``task`` at ``remaining``, seed ``seed``
    (``fp32``: with bf16 autocast off, the recipe otherwise unchanged)."""
    import dataclasses

    from movprune.profiles import get_profile

    prof = get_profile("minilm")
    for c in prof.all_configs(tasks=(task,), seeds=(seed,)):
        if (c.method, c.scope, c.distill) == ("movement", "local", False) and abs(c.remaining - remaining) < 1e-9:
            return dataclasses.replace(c, bf16=False) if fp32 else c
    raise ValueError(f"the minilm profile has no local movement run of {task} at {remaining:g}")


def _train(config, store, work):
    from movprune.batch import _train_one

    _train_one(config, store, work, threads=1)


def warmup(task: str, remaining: float, seed: int = 0, work: Path = WORK, poll_s: float = 10.0,
           fp32: bool = False) -> Path:
    """Train until the checkpoint at the last warm-up step exists, copy it to ``<work>/<run id>-step<N>``
    (with its ``run_config.json``), stop the run. Returns the copy."""
    from movprune.train import _safetensors_complete

    config = minilm_config(task, remaining, seed, fp32)
    step = config.pruning_config().schedule.bounds(config.max_steps)[0]
    if step % config.save_steps:
        raise ValueError(f"the warm-up ends at step {step}, not a multiple of save_steps ({config.save_steps})")
    dest = Path(work) / f"{config.run_id()}-step{step}"
    if (dest / "model.safetensors").is_file():
        print(f"already there: {dest}")
        return dest
    with tempfile.TemporaryDirectory() as tmp:
        ck = Path(tmp) / "work" / config.run_id() / f"checkpoint-{step}"
        proc = mp.get_context("spawn").Process(target=_train, args=(config, str(Path(tmp) / "store"), str(Path(tmp) / "work")))
        proc.start()
        print(f"training {config.run_id()} to step {step} (the end of its warm-up) ...", flush=True)
        try:
            while not ((ck / "trainer_state.json").is_file() and _safetensors_complete(ck / "model.safetensors")):
                if not proc.is_alive():
                    raise RuntimeError(f"the run stopped before step {step} (exit code {proc.exitcode})")
                time.sleep(poll_s)
            time.sleep(poll_s)  # the Trainer writes its optimizer state after the model
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(ck, dest)
            shutil.copy2(ck.parent / "run_config.json", dest / "run_config.json")
        finally:
            proc.terminate()
            proc.join()
    print(f"kept {dest}")
    return dest


def load(checkpoint: Path, task: str):
    """The model of ``checkpoint`` with its movement masks, and 8 training batches of ``task``."""
    from safetensors.torch import load_file
    from transformers import DataCollatorWithPadding

    from movprune import data as data_mod
    from movprune import models, squad
    from movprune.pruner import sparsify
    from movprune.train import RunConfig

    cfg = RunConfig(**json.loads((Path(checkpoint) / "run_config.json").read_text()))
    if cfg.method != "movement":
        raise ValueError(f"{checkpoint}: a {cfg.method} run; the first cut is movement pruning's")
    spec = data_mod.get_task(task)
    tok = models.load_tokenizer(cfg.model)
    model = models.load_model(cfg.model, spec.kind, spec.num_labels, 0)
    sparsify(model, cfg.pruning_config())
    result = model.load_state_dict(load_file(str(Path(checkpoint) / "model.safetensors")), strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{checkpoint}: not a checkpoint of this run ({len(result.missing_keys)} missing keys, "
                         f"{len(result.unexpected_keys)} unexpected)")
    model.eval()
    if spec.kind == "qa":
        feats = squad.prepare_train_features(squad.load_squad(cfg.data_dir, split="train")[:200], tok,
                                             cfg.max_length, cfg.doc_stride)
    else:
        feats = data_mod.tokenize_task(data_mod.load_task(task, cfg.data_dir, "train", None, 0), tok,
                                       cfg.max_length, task)
    bs = cfg.batch_size
    coll = DataCollatorWithPadding(tok)
    batches = [coll([feats[i] for i in range(j, j + bs)]) for j in range(0, min(8 * bs, len(feats) - bs + 1), bs)]
    return model, batches


def _targets(model):
    return [m for m in model.modules() if hasattr(m, "parametrizations") and "weight" in m.parametrizations]


def loss_with_masks(model, batches, choose) -> float:
    """Mean loss over ``batches`` with each target's mask (0/1, or any factor) set to ``choose(W, scores)``."""
    for mod in _targets(model):
        mk = mod.parametrizations.weight[0]
        mk.mask = choose(mod.parametrizations.weight.original.detach(), mk.scores.detach()).to(mk.mask.dtype)
        mk.selector._key = mk.selector._state_key()  # the selector keeps this mask until the next step
    with torch.no_grad():
        return sum(model(**b).loss.item() for b in batches) / len(batches)


def _keep_top(imp: torch.Tensor, v: float) -> torch.Tensor:
    k = round(v * imp.numel())
    return imp >= imp.flatten().kthvalue(imp.numel() - k + 1).values


def analyze(checkpoint: Path, task: str, v: float = 0.93) -> dict:
    """Losses of the first cut (see the module docstring); returns them as a dict and prints them."""
    model, batches = load(checkpoint, task)
    gen = torch.Generator().manual_seed(0)
    rnd = {}  # one random importance per matrix, the same for every line

    def random_imp(w):
        key = (w.data_ptr(), w.shape)
        if key not in rnd:
            rnd[key] = torch.rand(w.shape, generator=gen)
        return rnd[key]

    def protect(w, s, q):
        s = s.clone()
        s[_keep_top(w.abs(), q)] = float("inf")
        return s

    out = {"all kept": loss_with_masks(model, batches, lambda w, s: torch.ones_like(w))}
    for name, imp in (("movement", lambda w, s: s), ("magnitude", lambda w, s: w.abs()),
                      ("random", lambda w, s: random_imp(w)),
                      ("movement, top 0.1% |W| kept", lambda w, s: protect(w, s, 0.001)),
                      ("movement, top 1% |W| kept", lambda w, s: protect(w, s, 0.01))):
        out[f"{name}, v = {v:g}"] = loss_with_masks(model, batches, lambda w, s: _keep_top(imp(w, s), v).float())
    for name, imp in (("movement", lambda w, s: s), ("random", lambda w, s: random_imp(w))):
        for f in (0.9, 0.75, 0.5, 0.0):
            out[f"{name}'s {1 - v:.0%} scaled by {f:g}"] = loss_with_masks(
                model, batches, lambda w, s: torch.where(_keep_top(imp(w, s), v), 1.0, f))
    # is the cut concentrated on a few output rows or input columns? (the largest share cut in one row /
    # column of a matrix, averaged over the matrices; the cut takes 1 - v of each matrix overall)
    rows, cols = [], []
    for mod in _targets(model):
        cut = (~_keep_top(mod.parametrizations.weight[0].scores.detach(), v)).float()
        rows.append(cut.mean(1).max().item())
        cols.append(cut.mean(0).max().item())
    out["largest share of a row cut (mean over matrices)"] = sum(rows) / len(rows)
    out["largest share of a column cut (mean over matrices)"] = sum(cols) / len(cols)
    for k, val in out.items():
        print(f"{k:52s} {val:.3f}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("warmup", help="train the minilm movement run to the end of its warm-up, keep that checkpoint")
    w.add_argument("--task", required=True)
    w.add_argument("--remaining", type=float, default=0.1)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--fp32", action="store_true", help="train in fp32 instead of the recipe's bf16 autocast")
    a = sub.add_parser("analyze", help="losses of the first cut at a warm-up checkpoint")
    a.add_argument("checkpoint", type=Path)
    a.add_argument("--task", required=True)
    a.add_argument("--v", type=float, default=0.93, help="fraction kept (0.93: the minilm schedule ~50 steps in)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "warmup":
            warmup(args.task, args.remaining, args.seed, fp32=args.fp32)
        else:
            analyze(args.checkpoint, args.task, args.v)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"first_cut: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
