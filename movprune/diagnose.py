"""Why does a pruned model predict one class? Measure whether its hidden states still depend on the input.

A fine-pruned encoder can *collapse*: every token of every input ends with (nearly) the same hidden
state, the head sees a constant and predicts the majority class, and since the gradient through a
constant representation is tiny, training does not bring it back. :func:`hidden_spread` measures
this per layer: the *spread* (how much hidden states vary across the batch's real tokens) against
the *offset* (the norm of their common mean vector). A healthy model keeps a spread of the order
of its embeddings' all the way up; a collapsed one sees it fall by orders of magnitude.

    python -m movprune diagnose checkpoints/small/<run id>/final --task sst2

What we found with it (README, "Why movement pruning collapses here"): in the collapsed small-profile
movement run at 10 % the spread falls from 0.47 (embeddings) to 0.0004 at layer 5 and 0.000004 at
the last layer, while the layer-5 FFN output carries an offset of 242 with no spread; magnitude
pruning to the same 10 % keeps a spread of 0.39 at the last layer.
"""

from __future__ import annotations

import torch
from torch import nn


_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@torch.no_grad()
def _measure(model: nn.Module, batch: dict, target_modules=None, linears: bool = True):
    """One eval-mode forward pass: ``(outputs with hidden states, {linear name: output stats})``."""
    from .pruner import find_targets

    keep = batch["attention_mask"].bool()
    stats, hooks = {}, []

    def hook(name):
        def record(module, args, output):
            tokens = output[keep].float()
            stats[name] = {"offset": float(tokens.mean(0).norm()), "spread": float(tokens.std(0).mean())}
        return record

    if linears:
        hooks = [module.register_forward_hook(hook(name))
                 for name, module in find_targets(model, target_modules).items()]
    was_training = model.training
    model.eval()
    try:
        out = model(**{k: batch[k] for k in _MODEL_INPUTS if k in batch}, output_hidden_states=True)
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return out, stats


def _spread_rows(hidden_states, attention_mask) -> list[dict]:
    keep = attention_mask.bool()
    rows = []
    for i, h in enumerate(hidden_states):
        tokens = h[keep].float()
        spread = float(tokens.std(0).mean())
        offset = float(tokens.mean(0).norm())
        rows.append({"layer": i, "spread": spread, "offset": offset,
                     "relative_spread": spread * tokens.shape[1] ** 0.5 / max(offset, 1e-12)})
    return rows


def _histogram(logits: torch.Tensor) -> list[int]:
    return torch.bincount(logits.argmax(-1), minlength=logits.shape[-1]).tolist()


def hidden_spread(model: nn.Module, batch: dict) -> list[dict]:
    """Per hidden-state layer (0 = embeddings output): ``spread``, ``offset`` and their ratio.

    ``spread`` is the mean over features of the standard deviation across all non-padding tokens of
    the batch; ``offset`` is the norm of the mean hidden vector over those tokens. ``batch`` holds
    ``input_ids`` and ``attention_mask`` (and ``token_type_ids`` if the model uses them).
    """
    out, _ = _measure(model, batch, linears=False)
    return _spread_rows(out.hidden_states, batch["attention_mask"])


def linear_offsets(model: nn.Module, batch: dict, target_modules=None) -> dict[str, dict]:
    """``{module name: {"offset", "spread"}}`` of every targeted linear layer's *output* over the
    batch's real tokens (offset: norm of the mean output vector; spread: mean per-feature std).

    A pruned layer whose kept weights add up coherently on the mean of its input shows a large
    offset with a small spread: its output is mostly the same vector for every token.
    """
    return _measure(model, batch, target_modules)[1]


def prediction_histogram(model: nn.Module, batch: dict) -> list[int]:
    """How many examples of the batch a sequence classifier assigns to each class."""
    return _histogram(_measure(model, batch, linears=False)[0].logits)


def diagnose_folder(path: str, task: str = "sst2", n_examples: int = 128, data_dir: str | None = None,
                    max_length: int = 128) -> dict:
    """Load a model folder (movprune's final model or a plain Hugging Face one), run ``n_examples``
    eval examples of ``task`` through it; return ``{"layers": hidden_spread rows, "predictions": class
    counts, "linears": linear_offsets, "examples": n}``."""
    import os

    from transformers import AutoTokenizer

    from . import data as data_mod
    from .pruner import WEIGHTS_NAME, from_pretrained

    if not os.path.isdir(path):
        raise ValueError(f"model folder {path} does not exist")
    spec = data_mod.get_task(task)
    if spec.kind != "classification":
        raise ValueError(f"diagnose needs a classification task, {task} is {spec.kind}")
    if os.path.isfile(os.path.join(path, WEIGHTS_NAME)):
        model = from_pretrained(path)
    else:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    examples = data_mod.load_task(task, data_dir, "eval", n_examples, 0)
    texts = [e["text_a"] for e in examples]
    pairs = [e["text_b"] for e in examples] if examples and examples[0].get("text_b") is not None else None
    batch = tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    pruning = getattr(model.config, "movprune", None)  # the pruned modules, when movprune saved it
    targets = pruning.get("target_modules") if isinstance(pruning, dict) else None
    out, linears = _measure(model, batch, targets)  # one forward pass for the whole report
    return {"layers": _spread_rows(out.hidden_states, batch["attention_mask"]), "predictions": _histogram(out.logits),
            "linears": linears, "examples": len(texts)}


def format_report(report: dict) -> str:
    """The table ``python -m movprune diagnose`` prints."""
    lines = [f"{'layer':>5} {'spread':>10} {'offset':>10} {'spread/offset':>14}"]
    for r in report["layers"]:
        lines.append(f"{r['layer']:>5} {r['spread']:>10.4f} {r['offset']:>10.2f} {r['relative_spread']:>14.4f}")
    linears = report.get("linears") or {}
    if linears:
        worst = sorted(linears.items(), key=lambda kv: -kv[1]["offset"] / max(kv[1]["spread"], 1e-12))[:3]
        lines.append("largest offset/spread among the targeted linear layers' outputs:")
        for name, st in worst:
            lines.append(f"  {name}: offset {st['offset']:.2f}, spread {st['spread']:.4f}")
    first, last = report["layers"][0]["spread"], report["layers"][-1]["spread"]
    lines.append(f"predicted classes over {report['examples']} eval examples: {report['predictions']}")
    if last < 0.01 * first:
        lines.append("collapsed: the last layer's hidden states barely depend on the input "
                     f"(spread {last:.2g} vs {first:.2g} after the embeddings)")
    return "\n".join(lines)
