"""Accounting: remaining weights in the method's and the paper's conventions, by hand."""

from __future__ import annotations

import pytest
import torch

import movprune
from movprune import PruningConfig

H, F, L = 32, 64, 2  # the tiny models of conftest.py
TARGETED = L * (4 * H * H + 2 * H * F)  # 16384 targeted weights
# paper convention: encoder linear weights + biases + LayerNorm (2 per layer), no embeddings
ENCODER = L * (4 * (H * H + H) + (H * F + F) + (F * H + H) + 2 * 2 * H)  # 17088


def _kept_by_hand(v):
    small, big = round(v * H * H), round(v * H * F)
    return L * (4 * small + 2 * big), (small / (H * H)), (big / (H * F))


@pytest.mark.parametrize("family", ["bert", "distilbert", "mpnet"])
@pytest.mark.parametrize("v", [0.03, 0.5])
def test_report_by_hand(make_model, family, v):
    model = make_model(family)
    pruner = movprune.sparsify(model, PruningConfig(method="movement", remaining=v))
    pruner.update(100, 100)
    kept, frac_small, frac_big = _kept_by_hand(v)
    report = movprune.sparsity_report(model)
    assert report["kept"] == kept and report["total"] == TARGETED
    assert report["remaining"] == kept / TARGETED
    assert movprune.remaining_weights(model) == kept / TARGETED
    assert report["encoder_params"] == ENCODER
    assert report["remaining_paper"] == pytest.approx((ENCODER - (TARGETED - kept)) / ENCODER, abs=1e-12)
    assert report["remaining_paper"] > report["remaining"]
    assert len(report["per_matrix"]) == 12
    assert report["per_layer"] == {0: pytest.approx(kept / TARGETED), 1: pytest.approx(kept / TARGETED)}
    assert len(report["per_type"]) == 6
    ffn_in = [t for t in report["per_type"] if t in ("intermediate.dense", "ffn.lin1")]
    assert len(ffn_in) == 1 and report["per_type"][ffn_in[0]] == frac_big
    assert sorted(set(report["per_matrix"].values())) == sorted({frac_small, frac_big})


def test_report_global_per_layer(bert):
    pruner = movprune.sparsify(bert, PruningConfig(method="movement", remaining=0.2, scope="global"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, m in pruner.masks.items():  # layer 1 scores larger: it keeps more
            m.scores.copy_(torch.randn(m.scores.shape, generator=g) + (1.0 if ".1." in name else 0.0))
    pruner.update(100, 100)
    report = movprune.sparsity_report(bert)
    assert report["kept"] == round(0.2 * TARGETED)
    assert report["per_layer"][1] > 0.2 > report["per_layer"][0]
    per_layer_kept = sum(report["per_layer"][i] * TARGETED / L for i in range(L))
    assert per_layer_kept == pytest.approx(report["kept"])


@pytest.mark.parametrize("method,kwargs", [
    ("magnitude", dict(remaining=0.1)),
    ("movement", dict(remaining=0.1, scope="global")),
    ("soft_movement", dict(final_lambda=1.0)),
    ("l0", dict(final_lambda=1.0)),
])
def test_baked_model_reports_the_same(bert, method, kwargs):
    pruner = movprune.sparsify(bert, PruningConfig(method=method, **kwargs))
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.copy_(torch.randn(s.shape, generator=g) * 3.0)
    pruner.update(100, 100)
    bert.train()
    before = movprune.sparsity_report(bert)
    assert bert.training  # the report evaluates masks in eval mode, then restores the mode
    assert before["remaining"] < 1.0
    movprune.bake(bert)
    after = movprune.sparsity_report(bert)
    for key in ("remaining", "remaining_paper", "kept", "total", "encoder_params", "per_matrix", "per_layer", "per_type"):
        assert after[key] == before[key], key
    assert movprune.remaining_weights(bert) == before["remaining"]


def test_soft_movement_and_l0_counts(bert):
    pruner = movprune.sparsify(bert, PruningConfig(method="soft_movement", final_lambda=1.0))
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.fill_(-3.0)  # sigmoid = 0.047 < tau = 0.1: pruned
            s[0, :4] = 0.0  # sigmoid = 0.5: kept
    assert movprune.remaining_weights(bert) == 1.0  # tau = 0 before the schedule starts
    pruner.update(100, 100)
    assert movprune.sparsity_report(bert)["kept"] == 4 * 12


def test_plain_and_dense_models(bert):
    assert movprune.remaining_weights(bert) == 1.0
    report = movprune.sparsity_report(bert)
    assert report["remaining"] == report["remaining_paper"] == 1.0
    assert report["total"] == TARGETED and report["encoder_params"] == ENCODER
    with torch.no_grad():
        bert.bert.encoder.layer[0].attention.self.query.weight[:2] = 0.0
    report = movprune.sparsity_report(bert)
    assert report["kept"] == TARGETED - 2 * H
    assert report["remaining_paper"] == pytest.approx((ENCODER - 2 * H) / ENCODER)


def test_custom_targets_bake_and_paper_convention(bert):
    """Only layer 0's attention pruned: the paper's denominator is still the whole encoder, and a
    baked model (no masks left) is counted over the same custom targets, read from its config."""
    targets = [r"layer\.0\.attention\.self\.(query|key|value)$"]
    pruner = movprune.sparsify(bert, PruningConfig(method="magnitude", remaining=0.25, target_modules=targets))
    pruner.update(100, 100)
    before = movprune.sparsity_report(bert)
    assert before["total"] == 3 * H * H and before["kept"] == 3 * H * H // 4
    assert before["encoder_params"] == ENCODER
    assert before["remaining_paper"] == pytest.approx((ENCODER - 3 * H * H * 3 / 4) / ENCODER)
    movprune.bake(bert)
    after = movprune.sparsity_report(bert)
    for key in ("remaining", "remaining_paper", "kept", "total", "encoder_params", "per_matrix"):
        assert after[key] == before[key], key
    assert movprune.remaining_weights(bert) == 0.25
