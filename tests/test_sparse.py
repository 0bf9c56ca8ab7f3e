"""Tests for movprune.sparse: exact structural removal and sparse kernels."""

import pytest
import torch
from torch import nn

from movprune.export import find_target_linears
from movprune.sparse import (
    SparseLinear,
    remove_structured,
    sparsify_for_inference,
    structure_report,
)
from pruned_helpers import inputs, random_prune_
from pruned_helpers import tiny_bert as _tiny_bert


def tiny_bert(seed=0):
    return _tiny_bert(seed, random_biases=True)


@torch.no_grad()
def logits(model):
    return model(**inputs()).logits


@torch.no_grad()
def structured_model():
    """Pruned model with hand-made removable (and one non-removable) structure."""
    model = random_prune_(tiny_bert(), 0.3)
    d = 16
    l0, l1 = model.bert.encoder.layer
    l0.attention.output.dense.weight[:, 1 * d:2 * d] = 0        # head 1: output zero
    l0.attention.self.value.weight[2 * d:3 * d] = 0              # head 2: value zero -> fold
    l0.attention.self.query.weight[3 * d:4 * d] = 0              # head 3: uniform attention,
    l0.attention.self.key.weight[3 * d:4 * d] = 0                #   NOT removable
    l0.output.dense.weight[:, :10] = 0                           # neurons 0-9: output zero
    l0.intermediate.dense.weight[10:20] = 0                      # neurons 10-19: fold GELU(b)
    l1.attention.self.value.weight.zero_()                       # every head removable
    l1.output.dense.weight.zero_()                               # every neuron removable
    return model


def test_sparse_linear_matches_dense():
    torch.manual_seed(0)
    for bias in (True, False):
        lin = nn.Linear(48, 40, bias=bias)
        with torch.no_grad():
            lin.weight.mul_(torch.rand_like(lin.weight) < 0.1)
        sp = SparseLinear(lin)
        x = torch.randn(2, 7, 48)
        assert torch.allclose(sp(x), lin(x), atol=1e-5)
        assert sp.nnz == int(torch.count_nonzero(lin.weight))
        assert torch.equal(sp.to_dense_linear().weight, lin.weight)


def test_structure_report():
    rep = structure_report(structured_model())
    l0 = rep["layers"]["bert.encoder.layer.0"]
    assert l0["heads"]["output_zero"] == [1]
    assert l0["heads"]["value_zero"] == [2]
    assert l0["heads"]["query_key_zero"] == [3]
    assert l0["heads_removable"] == [1, 2]
    assert l0["ffn_out_col_zero"] >= 10 and l0["ffn_in_row_zero"] >= 10
    m = rep["matrices"]["bert.encoder.layer.0.intermediate.dense"]
    assert m["zero_rows"] >= 10 and m["shape"] == [128, 64]
    assert rep["layers"]["bert.encoder.layer.1"]["ffn_removable"] == 128


def test_remove_structured_is_exact():
    model = structured_model()
    ref = logits(model)
    removed = remove_structured(model)
    l0, l1 = model.bert.encoder.layer
    assert removed["bert.encoder.layer.0"]["heads"]["removed"] == [1, 2]
    assert removed["bert.encoder.layer.0"]["heads"]["folded"] == [2]
    assert removed["bert.encoder.layer.0"]["ffn"]["folded"] >= 10
    assert l0.attention.self.query.out_features == 32  # heads 0 and 3 remain
    assert l0.attention.output.dense.in_features == 32
    assert l0.intermediate.dense.out_features <= 108
    assert l1.attention.self.query.out_features == 16  # one dead head kept
    assert l1.intermediate.dense.out_features == 0
    assert torch.allclose(logits(model), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("remaining", [0.10, 0.03])
def test_forced_sparse_matches_dense(remaining):
    model = random_prune_(tiny_bert(), remaining)
    ref = logits(model)
    sparse_model, report = sparsify_for_inference(model, force="sparse")
    n_targets = len(find_target_linears(model))
    assert report["sparse_layers"] == n_targets
    assert all(e["kernel"] == "sparse_csr" and e["reason"] == "forced" for e in report["layers"].values())
    assert sum(isinstance(m, SparseLinear) for m in sparse_model.modules()) == n_targets
    assert torch.allclose(logits(sparse_model), ref, atol=1e-4, rtol=0)
    # the input model is untouched (inplace=False)
    assert not any(isinstance(m, SparseLinear) for m in model.modules())


def test_forced_dense_and_structure():
    model = structured_model()
    ref = logits(model)
    out, report = sparsify_for_inference(model, force="dense")
    assert report["sparse_layers"] == 0
    assert not any(isinstance(m, SparseLinear) for m in out.modules())
    assert report["removed"]["bert.encoder.layer.0"]["heads"]["removed"] == [1, 2]
    assert torch.allclose(logits(out), ref, atol=1e-5, rtol=0)

    out, report = sparsify_for_inference(model, force="sparse")
    assert torch.allclose(logits(out), ref, atol=1e-4, rtol=0)


def test_benchmark_choice_and_thresholds():
    model = random_prune_(tiny_bert(), 0.03)
    ref = logits(model)
    out, report = sparsify_for_inference(model, example_shapes=[(1, 16)], repeats=1)
    for e in report["layers"].values():
        assert e["reason"] == "benchmark" and e["kernel"] in ("sparse_csr", "dense")
        assert set(e["speedup"]) == {"1x16"} and e["speedup"]["1x16"] > 0
    assert torch.allclose(logits(out), ref, atol=1e-4, rtol=0)

    dense_model = random_prune_(tiny_bert(), 0.9)
    _, report = sparsify_for_inference(dense_model, min_sparsity=0.5, benchmark=False)
    assert report["sparse_layers"] == 0
    _, report = sparsify_for_inference(model, min_sparsity=0.5, benchmark=False)
    assert report["sparse_layers"] == len(report["layers"])
    with pytest.raises(ValueError):
        sparsify_for_inference(model, force="bsr")


@pytest.mark.parametrize("family", ["bert", "distilbert", "mpnet"])
def test_core_pipeline_families(make_model, batch, get_logits, family):
    import movprune

    model = make_model(family)
    pruner = movprune.sparsify(model, movprune.PruningConfig(method="magnitude", remaining=0.05))
    pruner.update(100, 100)
    movprune.bake(model).eval()
    ref = get_logits(model, batch)
    out, report = sparsify_for_inference(model, force="sparse")
    assert report["sparse_layers"] == 12
    torch.testing.assert_close(get_logits(out, batch), ref, atol=1e-4, rtol=0)
