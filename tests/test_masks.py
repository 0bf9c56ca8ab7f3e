"""Masks: exact top-k, straight-through gradients, regularizers, L0 gates."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import movprune
from movprune.masks import HardConcreteMask, kth_largest, topk_mask, topk_mask_by_indices

# --------------------------------------------------------------------------------------------
# kth_largest / topk_mask against torch.topk


def _check_topk_mask(x: torch.Tensor, k: int, ref: torch.Tensor) -> None:
    """``ref``: all of ``x`` sorted descending by ``torch.topk``."""
    mask = topk_mask(x, k)
    assert mask.dtype == torch.bool and mask.shape == x.shape
    assert int(mask.sum()) == k
    flat, m = x.reshape(-1), mask.reshape(-1)
    if 0 < k < flat.numel():
        thr = ref[k - 1]
        # everything kept is >= the k-th largest, everything dropped is <= it
        assert bool((flat[m] >= thr).all()) and bool((flat[~m] <= thr).all())
        assert bool(m[flat > thr].all())
        # ties at the threshold: the first ones (by position) are kept
        kept_ties = m[flat == thr]
        n_kept = int(kept_ties.sum())
        assert n_kept >= 1 and bool(kept_ties[:n_kept].all()) and not bool(kept_ties[n_kept:].any())


@pytest.mark.parametrize("n", [1000, 20_000, 300_000])  # n > 16384: the sampling path runs
@pytest.mark.parametrize("kind", ["normal", "ties", "constant", "sorted"])
def test_kth_largest_and_topk_mask_exact(n, kind):
    g = torch.Generator().manual_seed(n)
    if kind == "normal":
        x = torch.randn(n, generator=g)
    elif kind == "ties":  # heavy ties: 7 distinct values
        x = torch.randint(0, 7, (n,), generator=g).float()
    elif kind == "constant":  # movement scores at init
        x = torch.zeros(n)
    else:
        x = torch.linspace(-1.0, 1.0, n)
    ref = torch.topk(x, n).values  # k = n: everything, sorted descending
    for k in sorted({1, 2, n // 100, n // 10, n // 2, round(0.03 * n), n - 1, n}):
        assert kth_largest(x, k).item() == ref[k - 1].item(), (kind, n, k)
        _check_topk_mask(x, k, ref)


def test_kth_largest_large_2d():
    x = torch.randn(1536, 768, generator=torch.Generator().manual_seed(5))  # a BERT-base FFN matrix
    ref = torch.topk(x.reshape(-1), 40_000).values
    for k in (1, 11_796, 35_389, 40_000):  # v = 1%, 3%
        assert kth_largest(x.reshape(-1), k).item() == ref[k - 1].item()
        _check_topk_mask(x, k, ref)


def test_kth_largest_ties_at_sample_boundaries():
    # a long block of equal values around the k-th position, values spread on both sides
    x = torch.cat([torch.randn(150_000), torch.full((200_000,), 0.25), torch.randn(150_000) + 3.0])
    x = x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))]
    ref = torch.topk(x, x.numel()).values
    for k in (1, 150_000, 150_001, 250_000, 349_999, 350_000, 350_001, 499_999, 500_000):
        assert kth_largest(x, k).item() == ref[k - 1].item(), k
        _check_topk_mask(x, k, ref)


def test_kth_largest_falls_back_when_the_sample_misses(monkeypatch):
    x = torch.randn(300_000, generator=torch.Generator().manual_seed(9))
    ref = torch.topk(x, x.numel()).values
    smallest = int(x.argmin())
    # a sample made only of the smallest entry: the bracket [min, min] holds almost nothing
    monkeypatch.setattr(torch, "randint", lambda n, size, generator=None: torch.full(size, smallest))
    for k in (1, 1000, 150_000, 299_999, 300_000):
        assert kth_largest(x, k).item() == ref[k - 1].item(), k
        _check_topk_mask(x, k, ref)


def test_topk_mask_breaks_ties_by_position_and_keeps_shape():
    x = torch.tensor([3.0, 1.0, 1.0, 2.0, 1.0, 1.0])
    assert topk_mask(x, 3).tolist() == [True, True, False, True, False, False]
    assert topk_mask(x, 5).tolist() == [True, True, True, True, True, False]
    x = torch.zeros(4, 5)
    mask = topk_mask(x, 7)
    assert mask.shape == (4, 5) and int(mask.sum()) == 7
    assert mask.reshape(-1)[:7].all() and not mask.reshape(-1)[7:].any()
    assert topk_mask(x, 0).sum() == 0 and topk_mask(x, 20).all()


@pytest.mark.parametrize("dtype", [torch.bool, torch.float32])
def test_topk_mask_by_indices_matches_the_cpu_selection(dtype):
    """The GPU path (no host read-back) keeps the same entries when there are no ties, and
    exactly k entries, all >= the dropped ones, when there are."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(50_000, generator=g)
    for k in (1, 1500, 5000, 49_999):
        assert torch.equal(topk_mask_by_indices(x, k, dtype), topk_mask(x, k, dtype))
    ties = torch.randint(0, 5, (50_000,), generator=g).float()
    for k in (1500, 25_000):
        m = topk_mask_by_indices(ties, k, dtype) != 0
        assert int(m.sum()) == k and ties[m].min() >= ties[~m].max()


def test_kth_largest_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be in"):
        kth_largest(torch.zeros(5), 0)
    with pytest.raises(ValueError, match="k must be in"):
        kth_largest(torch.zeros(5), 6)


# --------------------------------------------------------------------------------------------
# Straight-through estimator: compare with dL/dW' from a plain copy of the masked model


def _loss(model, batch):
    return model(**batch).loss


def _grad_of_masked_weights(model, batch):
    """dL/dW' for every target: run a baked (plain) copy whose weights are W' = W * M."""
    plain = movprune.bake(copy.deepcopy(model))
    plain.zero_grad()
    _loss(plain, batch).backward()
    modules = dict(plain.named_modules())
    return {name: modules[name].weight.grad.clone() for name in movprune.get_pruner(model).masks}


@pytest.mark.parametrize("scope", ["local", "global"])
def test_movement_straight_through_gradients(bert, batch, scope):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="movement", remaining=0.3, scope=scope))
    torch.manual_seed(0)
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.normal_()
    pruner.update(50, 100)  # mid-ramp: 0.3 < v < 1
    grad_wprime = _grad_of_masked_weights(bert, batch)
    bert.zero_grad()
    _loss(bert, batch).backward()
    modules = dict(bert.named_modules())
    for name, mask in pruner.masks.items():
        plist = modules[name].parametrizations.weight
        w, m = plist.original, mask.current_mask()
        assert 0 < int(m.sum()) < m.numel()
        torch.testing.assert_close(mask.scores.grad, grad_wprime[name] * w.detach(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(w.grad, grad_wprime[name] * m, rtol=1e-5, atol=1e-7)
        assert bool((w.grad[m == 0] == 0).all())


def test_soft_movement_straight_through_gradients(bert, batch):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="soft_movement", final_lambda=1.0))
    torch.manual_seed(0)
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.normal_(0.0, 2.0)
    pruner.update(100, 100)  # tau = 0.1
    grad_wprime = _grad_of_masked_weights(bert, batch)
    bert.zero_grad()
    _loss(bert, batch).backward()  # task loss only: the scores' gradient is the STE one
    modules = dict(bert.named_modules())
    for name, mask in pruner.masks.items():
        w = modules[name].parametrizations.weight.original
        m = mask.current_mask()
        torch.testing.assert_close(m, (torch.sigmoid(mask.scores) > 0.1).float())
        assert 0 < int(m.sum()) < m.numel()
        torch.testing.assert_close(mask.scores.grad, grad_wprime[name] * w.detach(), rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(w.grad, grad_wprime[name] * m, rtol=1e-5, atol=1e-7)


def test_magnitude_has_no_scores_and_pruned_weights_get_zero_gradient(bert, batch):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="magnitude", remaining=0.2))
    pruner.update(100, 100)
    assert pruner.score_parameters() == []
    assert not any("scores" in n for n, _ in bert.named_parameters())
    grad_wprime = _grad_of_masked_weights(bert, batch)
    bert.zero_grad()
    _loss(bert, batch).backward()
    modules = dict(bert.named_modules())
    for name, mask in pruner.masks.items():
        w = modules[name].parametrizations.weight.original
        m = mask.current_mask()
        assert int(m.sum()) == round(0.2 * m.numel())
        # the kept entries are the largest |W|
        assert w.detach().abs()[m == 1].min() >= w.detach().abs()[m == 0].max()
        assert bool((w.grad[m == 0] == 0).all())
        torch.testing.assert_close(w.grad, grad_wprime[name] * m, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------------------------
# Regularizers


def test_soft_movement_regularizer_value_and_gradient(bert):
    lam = 3.0
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="soft_movement", final_lambda=lam))
    torch.manual_seed(1)
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.normal_(0.0, 2.0)
    assert float(pruner.regularization().detach()) == 0.0  # lambda = 0 before the schedule starts
    pruner.update(100, 100)
    scores = pruner.score_parameters()
    n = len(scores)
    assert n == 12
    expected = lam * sum(torch.sigmoid(s.detach().double()).mean() for s in scores) / n
    reg = pruner.regularization()
    assert reg.dim() == 0
    torch.testing.assert_close(reg.double(), expected, rtol=1e-6, atol=0)
    reg.backward()
    for s in scores:
        sig = torch.sigmoid(s.detach())
        torch.testing.assert_close(s.grad, lam * sig * (1 - sig) / (s.numel() * n), rtol=1e-5, atol=1e-12)


def test_l0_regularizer_value_and_gradient(bert):
    lam = 2.5
    cfg = movprune.PruningConfig(method="l0", final_lambda=lam)
    pruner = movprune.sparsify(bert, cfg)
    torch.manual_seed(2)
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.normal_(0.0, 3.0)
    pruner.update(100, 100)
    scores = pruner.score_parameters()
    n = len(scores)
    shift = cfg.l0_beta * math.log(-cfg.l0_left / cfg.l0_right)
    expected = lam * sum(torch.sigmoid(s.detach().double() - shift).mean() for s in scores) / n
    reg = pruner.regularization()
    torch.testing.assert_close(reg.double(), expected, rtol=1e-6, atol=0)
    reg.backward()
    for s in scores:
        sig = torch.sigmoid(s.detach() - shift)
        torch.testing.assert_close(s.grad, lam * sig * (1 - sig) / (s.numel() * n), rtol=1e-5, atol=1e-12)


def test_topk_and_dense_regularization_is_zero(bert):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="movement", remaining=0.1))
    pruner.update(50, 100)
    assert float(pruner.regularization()) == 0.0


# --------------------------------------------------------------------------------------------
# L0 gates


def test_l0_eval_deterministic_train_stochastic(bert, batch, get_logits):
    movprune.sparsify(bert, movprune.PruningConfig(method="l0", final_lambda=1.0))
    bert.eval()
    torch.testing.assert_close(get_logits(bert, batch), get_logits(bert, batch), rtol=0, atol=0)
    bert.train()  # dropout is 0 in the tiny config: only the gates are random
    assert not torch.equal(get_logits(bert, batch), get_logits(bert, batch))


def test_l0_eval_gates_exact_zero_below_threshold():
    w = torch.randn(64, 48)
    mask = HardConcreteMask(w)
    torch.manual_seed(3)
    with torch.no_grad():
        mask.scores.normal_(0.0, 3.0)
        mask.scores[0, :5] = math.log(1 / 11)  # sigmoid = 1/12 -> stretched value exactly 0
    mask.eval()
    z = mask.current_mask()
    stretched = torch.sigmoid(mask.scores.detach()) * (mask.right - mask.left) + mask.left
    assert bool((z[stretched <= 0] == 0).all())
    assert bool((z[stretched > 0] > 0).all())
    assert bool(((stretched <= 0).sum() > 0) and ((stretched > 0).sum() > 0))
    torch.testing.assert_close(z, stretched.clamp(0, 1))
    torch.testing.assert_close(mask(w), w * z)
    # eval gates are the same on every call; train gates are drawn fresh and stay in [0, 1]
    assert torch.equal(mask.current_mask(), z)
    mask.train()
    z1, z2 = mask.current_mask(), mask.current_mask()
    assert not torch.equal(z1, z2)
    assert bool(((z1 >= 0) & (z1 <= 1)).all())


def test_l0_gate_gradient_flows_to_log_alpha(bert, batch):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="l0", final_lambda=1.0))
    bert.train()
    _loss(bert, batch).backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in pruner.score_parameters())
