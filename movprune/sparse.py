"""Sparse CPU inference for pruned ("baked") models.

:func:`sparsify_for_inference` takes a plain Hugging Face model whose pruned
weights are exact zeros and returns an equivalent model that runs faster:

1. **Free structured pruning** (BERT-family layers, exact in exact arithmetic;
   only float summation order changes):

   * an attention head is removed when its columns of ``attention.output.dense``
     are all zero (it contributes nothing), or when its ``value`` rows are all
     zero: then every position's value vector is the value bias ``b_v``, the
     softmax weights sum to 1, so the head's context is the constant ``b_v``
     and its contribution ``O[:, head] @ b_v`` is folded into the output bias.
     A head whose query and key rows are zero is *not* removable (it still
     averages the values uniformly over unmasked positions); it is only
     reported.  If every head is removable, one dead head (output columns
     zeroed) is kept so the attention shapes stay valid.
   * an FFN neuron ``i`` is removed when column ``i`` of ``output.dense`` is
     all zero, or when row ``i`` of ``intermediate.dense`` is all zero: then
     the neuron outputs the constant ``act(b1[i])`` and ``W2[:, i] * act(b1[i])``
     is folded into the ``output.dense`` bias.

   Layers are shrunk by building smaller ``nn.Linear`` modules (the
   ``prune_heads`` idea); the model config is left unchanged, so a shrunk
   model is for inference, not for ``save_pretrained``/``from_pretrained``.

2. **Sparse kernels**: every targeted ``nn.Linear`` whose sparsity is at least
   ``min_sparsity`` may become a :class:`SparseLinear` (weight stored as
   ``torch.sparse_csr``; forward is ``torch.sparse.addmm(b, W, x^T)^T``).
   With ``benchmark=True`` the switch is made only where a micro-benchmark of
   the layer alone, on inputs of the ``example_shapes`` token counts and the
   current thread count, shows the sparse kernel at least ``min_speedup``
   times faster (geometric mean over shapes).  ``force="sparse"``/``"dense"``
   overrides the choice for every targeted layer (deterministic tests).

   CSR was chosen over BSR: with unstructured sparsity nearly every small
   block is nonzero, so BSR multiplies mostly zeros.

The returned report lists per matrix the zero rows/columns, per layer the
removed heads/neurons, and per targeted layer the density, chosen kernel and
measured speedups.  The model must be in eval mode (folding assumes dropout
off); it is switched to eval.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
from typing import Sequence

import torch
from torch import nn

from movprune.export import find_target_linears

__all__ = [
    "SparseLinear",
    "benchmark_linear",
    "remove_structured",
    "sparsify_for_inference",
    "structure_report",
]


# --------------------------------------------------------------------------
# sparse module
# --------------------------------------------------------------------------
class SparseLinear(nn.Module):
    """Drop-in replacement for an inference-only ``nn.Linear`` with a sparse
    CSR weight.  Computes ``x @ W^T + b`` as ``(b + W @ x^T)^T`` with
    ``torch.sparse.addmm``; the result is a transposed (non-contiguous) view,
    which every following op of a BERT layer accepts."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            weight = linear.weight.detach().to_sparse_csr()
        self.register_buffer("weight", weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        self.register_buffer("bias", bias)

    @property
    def nnz(self) -> int:
        return int(self.weight.values().numel())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, self.in_features).t()
        if self.bias is None:
            out = torch.sparse.mm(self.weight, x2)
        else:
            out = torch.sparse.addmm(self.bias.unsqueeze(1), self.weight, x2)
        return out.t().reshape(*x.shape[:-1], self.out_features)

    def to_dense_linear(self) -> nn.Linear:
        """Return an equivalent dense ``nn.Linear``."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            lin.weight.copy_(self.weight.to_dense())
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        density = self.nnz / max(1, self.in_features * self.out_features)
        return f"in_features={self.in_features}, out_features={self.out_features}, density={density:.4f}"


# --------------------------------------------------------------------------
# structure analysis and exact structural removal
# --------------------------------------------------------------------------
def _bert_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Modules shaped like a BERT encoder layer (self-attention + FFN)."""
    found = {}
    for name, mod in model.named_modules():
        try:
            sa, ao = mod.attention.self, mod.attention.output.dense
            w1, w2 = mod.intermediate.dense, mod.output.dense
        except AttributeError:
            continue
        linears = (sa.query, sa.key, sa.value, ao, w1, w2)
        if all(isinstance(l, nn.Linear) for l in linears) and hasattr(sa, "attention_head_size"):
            found[name] = mod
    return found


def _zero_rows_cols(w: torch.Tensor) -> tuple[int, int]:
    nz = w != 0
    return int((~nz.any(dim=1)).sum()), int((~nz.any(dim=0)).sum())


def _head_status(layer: nn.Module) -> dict[str, list[int]]:
    sa, out = layer.attention.self, layer.attention.output.dense
    d = sa.attention_head_size
    n_heads = sa.query.out_features // d
    status = {"output_zero": [], "value_zero": [], "query_key_zero": [], "all_zero": []}
    for h in range(n_heads):
        r = slice(h * d, (h + 1) * d)
        o = bool((out.weight[:, r] == 0).all())
        v = bool((sa.value.weight[r] == 0).all())
        qk = bool((sa.query.weight[r] == 0).all() and (sa.key.weight[r] == 0).all())
        if o:
            status["output_zero"].append(h)
        if v:
            status["value_zero"].append(h)
        if qk:
            status["query_key_zero"].append(h)
        if o and v and qk:
            status["all_zero"].append(h)
    return status


@torch.no_grad()
def structure_report(model: nn.Module, target_modules: Sequence[str] | None = None) -> dict:
    """Report structure that magnitude/movement pruning left for free.

    ``matrices``: per targeted Linear its shape, density and number of
    all-zero rows and columns.  ``layers``: per BERT-like layer the heads whose
    output columns / value rows / query+key rows (/ all of them) are zero, the
    heads removable exactly, and the FFN neurons with a zero ``output.dense``
    column or a zero ``intermediate.dense`` row.
    """
    matrices = {}
    for name, lin in find_target_linears(model, target_modules).items():
        w = lin.weight
        rows, cols = _zero_rows_cols(w)
        matrices[name] = {
            "shape": list(w.shape),
            "density": float(torch.count_nonzero(w)) / max(1, w.numel()),
            "zero_rows": rows,
            "zero_cols": cols,
        }
    layers = {}
    for name, layer in _bert_layers(model).items():
        heads = _head_status(layer)
        removable = sorted(set(heads["output_zero"]) | set(heads["value_zero"]))
        w1, w2 = layer.intermediate.dense.weight, layer.output.dense.weight
        col_zero = (w2 == 0).all(dim=0)
        row_zero = (w1 == 0).all(dim=1)
        layers[name] = {
            "heads": heads,
            "heads_removable": removable,
            "ffn_out_col_zero": int(col_zero.sum()),
            "ffn_in_row_zero": int(row_zero.sum()),
            "ffn_removable": int((col_zero | row_zero).sum()),
            "ffn_size": int(w1.shape[0]),
        }
    return {"matrices": matrices, "layers": layers}


def _new_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Linear:
    with warnings.catch_warnings():  # "Initializing zero-element tensors is a no-op"
        warnings.simplefilter("ignore", UserWarning)
        lin = torch.nn.utils.skip_init(
            nn.Linear, weight.shape[1], weight.shape[0], bias=bias is not None,
            device=weight.device, dtype=weight.dtype,
        )
    lin.weight.copy_(weight)
    if bias is not None:
        lin.bias.copy_(bias)
    return lin


def _fold_into_bias(linear: nn.Linear, columns: torch.Tensor, constants: torch.Tensor) -> None:
    """``linear.bias += linear.weight[:, columns] @ constants`` (in float64)."""
    if columns.numel() == 0:
        return
    if linear.bias is None:
        linear.bias = nn.Parameter(torch.zeros(linear.out_features, dtype=linear.weight.dtype))
    extra = linear.weight[:, columns].double() @ constants.double()
    linear.bias.copy_((linear.bias.double() + extra).to(linear.bias.dtype))


@torch.no_grad()
def _shrink_heads(layer: nn.Module) -> dict:
    sa, out = layer.attention.self, layer.attention.output.dense
    d = sa.attention_head_size
    n_heads = sa.query.out_features // d
    status = _head_status(layer)
    output_zero = set(status["output_zero"])
    removable = sorted(output_zero | set(status["value_zero"]))
    if not removable:
        return {"removed": [], "folded": []}
    # a head with zero value rows outputs the constant b_v: fold O[:, head] @ b_v
    folded = [h for h in removable if h not in output_zero]
    if sa.value.bias is not None and folded:
        cols = torch.cat([torch.arange(h * d, (h + 1) * d) for h in folded])
        _fold_into_bias(out, cols, sa.value.bias[cols])
    keep = [h for h in range(n_heads) if h not in removable]
    dead_kept = not keep
    if dead_kept:  # keep one head with zero output so the shapes stay valid
        keep = [removable[0]]
    idx = torch.cat([torch.arange(h * d, (h + 1) * d) for h in keep])
    for attr in ("query", "key", "value"):
        lin = getattr(sa, attr)
        setattr(sa, attr, _new_linear(lin.weight[idx], None if lin.bias is None else lin.bias[idx]))
    new_w = out.weight[:, idx].clone()
    if dead_kept:
        new_w.zero_()
    layer.attention.output.dense = _new_linear(new_w, out.bias)
    sa.num_attention_heads = len(keep)
    sa.all_head_size = len(keep) * d
    removed = [h for h in removable if not (dead_kept and h == keep[0])]
    return {"removed": removed, "folded": folded, "kept_dead_head": dead_kept}


@torch.no_grad()
def _shrink_ffn(layer: nn.Module) -> dict:
    inter, outp = layer.intermediate, layer.output
    w1, b1, w2 = inter.dense.weight, inter.dense.bias, outp.dense.weight
    col_zero = (w2 == 0).all(dim=0)
    row_zero = (w1 == 0).all(dim=1) & ~col_zero
    # a neuron with a zero input row outputs act(b1[i]): fold W2[:, i] * act(b1[i])
    fold = torch.nonzero(row_zero).flatten()
    if fold.numel():
        b = b1[fold] if b1 is not None else torch.zeros(fold.numel(), dtype=w1.dtype)
        _fold_into_bias(outp.dense, fold, inter.intermediate_act_fn(b))
    keep = torch.nonzero(~(col_zero | row_zero)).flatten()
    n_removed = w1.shape[0] - keep.numel()
    if n_removed:
        inter.dense = _new_linear(w1[keep], None if b1 is None else b1[keep])
        outp.dense = _new_linear(w2[:, keep], outp.dense.bias)
    return {"removed": int(n_removed), "folded": int(fold.numel()), "remaining": int(keep.numel())}


@torch.no_grad()
def remove_structured(model: nn.Module, heads: bool = True, ffn: bool = True) -> dict:
    """Physically remove attention heads and FFN neurons that are exactly
    removable (see module docstring), in place.  Returns, per BERT-like
    layer, the removed/folded heads and neuron counts."""
    model.eval()
    report = {}
    for name, layer in _bert_layers(model).items():
        if getattr(layer, "crossattention", None) is not None:
            continue  # decoder layers with cross-attention: leave alone
        entry = {}
        if heads:
            entry["heads"] = _shrink_heads(layer)
        if ffn:
            entry["ffn"] = _shrink_ffn(layer)
        report[name] = entry
    return report


# --------------------------------------------------------------------------
# micro-benchmark
# --------------------------------------------------------------------------
def _time_block(fn, x, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(x)
    return (time.perf_counter() - start) / n


@torch.inference_mode()
def benchmark_linear(
    dense: nn.Module,
    sparse: nn.Module,
    tokens: int,
    repeats: int = 7,
    min_block_s: float = 0.003,
) -> dict:
    """Time ``dense`` vs ``sparse`` on a random ``[tokens, in_features]``
    input.  Runs are interleaved (dense block, sparse block, ...) and each
    block repeats the call until it lasts about ``min_block_s``; returns the
    median seconds per call of each and ``speedup = dense / sparse``."""
    x = torch.randn(tokens, dense.in_features)
    for _ in range(2):  # warm-up (allocations, MKL handles)
        dense(x)
        sparse(x)
    start = time.perf_counter()
    dense(x)
    once = time.perf_counter() - start
    n = max(1, min(100, math.ceil(min_block_s / max(once, 1e-7))))
    td, ts = [], []
    for _ in range(repeats):
        td.append(_time_block(dense, x, n))
        ts.append(_time_block(sparse, x, n))
    d, s = statistics.median(td), statistics.median(ts)
    return {"dense_s": d, "sparse_s": s, "speedup": d / s}


# --------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------
def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


@torch.no_grad()
def sparsify_for_inference(
    model: nn.Module,
    target_modules: Sequence[str] | None = None,
    min_sparsity: float = 0.7,
    benchmark: bool = True,
    force: str | None = None,
    example_shapes: Sequence[tuple[int, int]] = ((1, 128),),
    min_speedup: float = 1.05,
    remove_structure: bool = True,
    repeats: int = 7,
    inplace: bool = False,
) -> tuple[nn.Module, dict]:
    """Return ``(model, report)`` with exactly removable structure removed and
    pruned Linear layers swapped for :class:`SparseLinear` where it pays off.

    Args:
        model: baked model (pruned weights are exact zeros). Copied unless
            ``inplace=True``; the result is in eval mode.
        target_modules: regexes of the Linear layers that may become sparse
            (default: ``movprune.export.default_targets(model)``).
        min_sparsity: layers sparser than this are candidates for the sparse
            kernel (ignored with ``force``).
        benchmark: if True, a candidate becomes sparse only when its
            micro-benchmark speedup (geometric mean over ``example_shapes``)
            is at least ``min_speedup``; if False every candidate becomes
            sparse.
        force: ``"sparse"`` (every non-empty targeted layer sparse),
            ``"dense"`` (none) or None (decide as above).
        example_shapes: ``(batch, seq_len)`` pairs for the micro-benchmark;
            each gives an input of ``batch * seq_len`` tokens.
        remove_structure: run :func:`remove_structured` first.
        repeats: interleaved timing repeats per layer and shape.

    Returns the model and a report with ``structure`` (before removal, see
    :func:`structure_report`), ``removed`` (see :func:`remove_structured`),
    ``layers`` (per targeted layer: shape after removal, density, ``kernel``
    ``"sparse_csr"`` or ``"dense"``, ``reason``, ``speedup`` per shape and
    their geometric mean) and run settings (torch version, threads).
    """
    if force not in (None, "sparse", "dense"):
        raise ValueError("force must be None, 'sparse' or 'dense'")
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    report = {
        "structure": structure_report(model, target_modules),
        "removed": remove_structured(model) if remove_structure else {},
        "layers": {},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "example_shapes": [list(s) for s in example_shapes],
        "force": force,
        "min_sparsity": min_sparsity,
        "min_speedup": min_speedup,
    }
    for name, lin in find_target_linears(model, target_modules).items():
        numel = lin.weight.numel()
        density = float(torch.count_nonzero(lin.weight)) / numel if numel else 0.0
        entry = {"shape": list(lin.weight.shape), "density": density, "speedup": None}
        if numel == 0:
            kernel, reason = "dense", "empty"
        elif force is not None:
            kernel, reason = ("sparse_csr" if force == "sparse" else "dense"), "forced"
        elif 1.0 - density < min_sparsity:
            kernel, reason = "dense", "not sparse enough"
        elif not benchmark:
            kernel, reason = "sparse_csr", "sparsity"
        else:
            candidate = SparseLinear(lin)
            speedups = {
                f"{b}x{l}": benchmark_linear(lin, candidate, b * l, repeats=repeats)["speedup"]
                for b, l in example_shapes
            }
            gmean = math.exp(sum(math.log(s) for s in speedups.values()) / len(speedups))
            entry["speedup"] = speedups
            entry["speedup_gmean"] = gmean
            kernel = "sparse_csr" if gmean >= min_speedup else "dense"
            reason = "benchmark"
        if kernel == "sparse_csr":
            _set_module(model, name, SparseLinear(lin))
        entry["kernel"], entry["reason"] = kernel, reason
        report["layers"][name] = entry
    report["sparse_layers"] = sum(e["kernel"] == "sparse_csr" for e in report["layers"].values())
    return model, report
