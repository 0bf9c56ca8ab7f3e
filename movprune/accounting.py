"""Counting what is left: remaining weights, two conventions, per matrix and per layer.

* ``remaining`` - kept fraction of the *targeted* linear weights (what the method controls).
* ``remaining_paper`` - the paper's convention: over the encoder's linear weights **and** biases
  **and** LayerNorm parameters (embeddings excluded), pruned entries count as removed and
  everything never pruned (biases, LayerNorm, untargeted weights) counts as kept.

Both work on a masked model (counting non-zero mask entries) and on a plain / baked model
(counting non-zero weights of the targeted layers).
"""

from __future__ import annotations

import os
import re
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from .pruner import _masks, find_targets

_LAYER_RE = re.compile(r"\.(\d+)\.")


def _kept_and_total(model: nn.Module, target_modules=None) -> dict[str, tuple[int, int]]:
    """``{target name: (kept, total)}`` from masks when present, else from non-zero weights."""
    masks = _masks(model)
    out = {}
    if masks:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            for name, m in masks.items():
                mask = m.current_mask()
                out[name] = (int((mask != 0).sum()), mask.numel())
        model.train(was_training)
        return out
    for name, module in find_targets(model, target_modules or _configured_targets(model)).items():
        w = module.weight
        out[name] = (int((w != 0).sum()), w.numel())
    return out


def _configured_targets(model: nn.Module) -> Optional[list]:
    """Custom ``target_modules`` recorded in ``model.config`` by ``sparsify`` (kept by ``bake``)."""
    for attr in ("movprune", "movprune_baked"):
        cfg = getattr(getattr(model, "config", None), attr, None)
        if isinstance(cfg, dict) and cfg.get("target_modules"):
            return cfg["target_modules"]
    return None


def remaining_weights(model: nn.Module, target_modules: Optional[list] = None) -> float:
    """Fraction of targeted linear weights kept (masks in eval mode; non-zeros for a plain model)."""
    counts = _kept_and_total(model, target_modules)
    return sum(k for k, _ in counts.values()) / sum(t for _, t in counts.values())


def _encoder_prefix(names: list[str]) -> str:
    """The longest common dotted prefix of the target names, cut before the first layer index
    (e.g. 'bert.encoder.layer', also when every target sits in the same layer)."""
    parts = os.path.commonprefix([n.split(".") for n in names])
    digits = [i for i, p in enumerate(parts) if p.isdigit()]
    if digits:
        parts = parts[:digits[0]]
    return ".".join(parts)


def sparsity_report(model: nn.Module, target_modules: Optional[list] = None) -> dict:
    """Remaining weights in both conventions, per matrix and per layer.

    Returns ``{"remaining", "remaining_paper", "kept", "total", "per_matrix": {name: frac},
    "per_layer": {layer index: frac}, "per_type": {short name: frac}}``.
    """
    counts = _kept_and_total(model, target_modules)
    kept = sum(k for k, _ in counts.values())
    total = sum(t for _, t in counts.values())

    prefix = _encoder_prefix(list(counts))
    encoder = model.get_submodule(prefix) if prefix else model
    mask_param_ids = {id(p) for m in _masks(model).values() for p in m.parameters()}
    encoder_total = 0
    for p in encoder.parameters():
        if id(p) not in mask_param_ids:
            encoder_total += p.numel()
    pruned = total - kept
    per_layer: dict[int, list[int]] = {}
    per_type: dict[str, list[int]] = {}
    for name, (k, t) in counts.items():
        rel = name[len(prefix):] if prefix else name
        m = _LAYER_RE.search(rel + ".")
        layer = int(m.group(1)) if m else -1
        short = (rel + ".")[m.end():].rstrip(".") if m else rel  # e.g. 'attention.self.query'
        for d, key in ((per_layer, layer), (per_type, short)):
            acc = d.setdefault(key, [0, 0])
            acc[0] += k
            acc[1] += t
    return {
        "remaining": kept / total,
        "remaining_paper": (encoder_total - pruned) / encoder_total,
        "kept": kept,
        "total": total,
        "encoder_params": encoder_total,
        "per_matrix": {n: k / t for n, (k, t) in counts.items()},
        "per_layer": {layer: k / t for layer, (k, t) in sorted(per_layer.items())},
        "per_type": {n: k / t for n, (k, t) in per_type.items()},
    }
