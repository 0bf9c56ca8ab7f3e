"""The pruner: exact kept counts, targets per family, bake, save / load, bad inputs."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import parametrize

import movprune
from movprune import PruningConfig

TOTAL = 100
V_VALUES = [0.5, 0.1, 0.03, 0.01, 1.0]


def _final(pruner):
    pruner.update(TOTAL, TOTAL)


def _randomize_scores(pruner, seed=0, std=1.0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for s in pruner.score_parameters():
            s.copy_(torch.randn(s.shape, generator=g) * std)


def _kept(pruner):
    return {name: int((m.current_mask() != 0).sum()) for name, m in pruner.masks.items()}


def _numel(pruner):
    return {name: m.current_mask().numel() for name, m in pruner.masks.items()}


# --------------------------------------------------------------------------------------------
# Exact kept fraction at the end of the schedule


@pytest.mark.parametrize("v", V_VALUES)
@pytest.mark.parametrize("method", ["magnitude", "movement"])
@pytest.mark.parametrize("ties", [False, True])
def test_local_exact_count_per_matrix(bert, method, v, ties):
    pruner = movprune.sparsify(bert, PruningConfig(method=method, remaining=v, scope="local"))
    if ties:  # magnitude: every |W| equal; movement: scores at their init value (all 0)
        if method == "magnitude":
            with torch.no_grad():
                for m in bert.modules():
                    if parametrize.is_parametrized(m, "weight"):
                        m.parametrizations.weight.original.fill_(-0.02)
    else:
        _randomize_scores(pruner)
    _final(pruner)
    numel = _numel(pruner)
    assert _kept(pruner) == {name: round(v * n) for name, n in numel.items()}
    assert len(numel) == 12


@pytest.mark.parametrize("v", V_VALUES)
@pytest.mark.parametrize("method", ["magnitude", "movement"])
@pytest.mark.parametrize("ties", [False, True])
def test_global_exact_count_overall(bert, method, v, ties):
    pruner = movprune.sparsify(bert, PruningConfig(method=method, remaining=v, scope="global"))
    if not ties:
        _randomize_scores(pruner)
        if method == "movement":  # give the FFN matrices larger scores: the split is uneven
            with torch.no_grad():
                for name, m in pruner.masks.items():
                    if "intermediate" in name:
                        m.scores.add_(1.0)
    _final(pruner)
    kept, numel = _kept(pruner), _numel(pruner)
    total = sum(numel.values())
    assert total == 16384
    assert sum(kept.values()) == round(v * total)
    if method == "movement" and not ties and v < 1.0:  # one global threshold, not v per matrix
        assert len({kept[n] / numel[n] for n in kept}) > 1
        scores = torch.cat([m.scores.detach().reshape(-1) for m in pruner.masks.values()])
        keep = torch.cat([m.current_mask().reshape(-1) for m in pruner.masks.values()]) != 0
        assert scores[keep].min() >= scores[~keep].max()


def test_global_magnitude_keeps_largest_weights_overall(bert):
    pruner = movprune.sparsify(bert, PruningConfig(method="magnitude", remaining=0.05, scope="global"))
    _final(pruner)
    modules = dict(bert.named_modules())
    w = torch.cat([modules[n].parametrizations.weight.original.detach().abs().reshape(-1) for n in pruner.masks])
    keep = torch.cat([m.current_mask().reshape(-1) for m in pruner.masks.values()]) != 0
    assert int(keep.sum()) == round(0.05 * w.numel())
    assert w[keep].min() >= w[~keep].max()


@pytest.mark.parametrize("scope", ["local", "global"])
@pytest.mark.parametrize("optim_kwargs", [{"foreach": False}, {"foreach": True}, {"fused": True}])
def test_masks_follow_optimizer_steps(bert, batch, scope, optim_kwargs):
    """Scores change in every optimizer step: the cached masks must be recomputed."""
    pruner = movprune.sparsify(bert, PruningConfig(method="movement", remaining=0.1, scope=scope))
    pruner.update(50, TOTAL)
    opt = torch.optim.AdamW(pruner.score_parameters(), lr=0.05, **optim_kwargs)
    bert.train()
    before = {n: m.current_mask().clone() for n, m in pruner.masks.items()}
    for _ in range(2):
        bert(**batch).loss.backward()
        opt.step()
        opt.zero_grad()
    scores = [m.scores.detach() for m in pruner.masks.values()]
    after = {n: m.current_mask() for n, m in pruner.masks.items()}
    assert any(not torch.equal(before[n], after[n]) for n in before)
    k_frac = float(next(iter(pruner.masks.values())).remaining)
    if scope == "local":
        for s, m in zip(scores, after.values()):
            assert int(m.sum()) == round(k_frac * s.numel())
            assert s[m != 0].min() >= s[m == 0].max()
    else:
        flat = torch.cat([s.reshape(-1) for s in scores])
        keep = torch.cat([m.reshape(-1) for m in after.values()]) != 0
        assert int(keep.sum()) == round(k_frac * flat.numel())
        assert flat[keep].min() >= flat[~keep].max()


def test_remaining_read_without_device_sync_and_after_load(bert):
    """The schedule's v is kept on the host (no read-back from a GPU in every forward), and a v
    loaded with ``load_state_dict`` is still picked up by the next selection."""
    pruner = movprune.sparsify(bert, PruningConfig(method="movement", remaining=0.1))
    pruner.update(TOTAL, TOTAL)
    mask = next(iter(pruner.masks.values()))
    assert mask.remaining_value() == pytest.approx(0.1)
    assert mask.remaining_value() == float(mask.remaining)  # the buffer's float32 value, exactly
    state = {k: v.clone() for k, v in bert.state_dict().items()}
    pruner.update(0, TOTAL)  # v = 1 again
    assert _kept(pruner) == _numel(pruner)
    bert.load_state_dict(state)  # copies v = 0.1 back into the buffers in place
    assert mask.remaining_value() == pytest.approx(0.1)
    assert _kept(pruner) == {name: round(0.1 * n) for name, n in _numel(pruner).items()}


def test_remaining_survives_low_precision_cast(bert):
    """v is a buffer: casting the model to bf16 / fp16 must not change the kept count."""
    pruner = movprune.sparsify(bert, PruningConfig(method="movement", remaining=0.03))
    _final(pruner)
    expected = {name: round(0.03 * n) for name, n in _numel(pruner).items()}
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        bert.to(dtype)
        assert _kept(pruner) == expected, dtype


# --------------------------------------------------------------------------------------------
# Families and targets

FAMILY_TYPES = {
    "bert": ("attention.self.query", "attention.self.key", "attention.self.value",
             "attention.output.dense", "intermediate.dense", "output.dense"),
    "roberta": ("attention.self.query", "attention.self.key", "attention.self.value",
                "attention.output.dense", "intermediate.dense", "output.dense"),
    "distilbert": ("attention.q_lin", "attention.k_lin", "attention.v_lin", "attention.out_lin",
                   "ffn.lin1", "ffn.lin2"),
    "mpnet": ("attention.attn.q", "attention.attn.k", "attention.attn.v", "attention.attn.o",
              "intermediate.dense", "output.dense"),
}


@pytest.mark.parametrize("family", list(FAMILY_TYPES))
def test_default_targets_per_family(make_model, batch, family):
    model = make_model(family)
    targets = movprune.find_targets(model)
    assert len(targets) == 6 * 2
    for layer in range(2):
        names = sorted(n.split(f".{layer}.", 1)[1] for n in targets if f".{layer}." in n)
        assert names == sorted(FAMILY_TYPES[family])
    pruner = movprune.sparsify(model, PruningConfig(method="movement", remaining=0.1))
    assert sorted(pruner.masks) == sorted(targets)
    assert len(pruner.score_parameters()) == 12
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            assert parametrize.is_parametrized(module) == (name in targets), name
    for name, module in model.named_modules():  # embeddings, pooler and classifier untouched
        if any(key in name for key in ("embeddings", "pooler", "classifier")):
            assert not parametrize.is_parametrized(module), name
    assert not any(k in n for n, _ in model.named_parameters() for k in ("embeddings.scores", "classifier.scores"))
    # it trains: a forward / backward gives every score a gradient
    pruner.update(50, TOTAL)
    model.train()
    model(**batch).loss.backward()
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in pruner.score_parameters())
    assert movprune.sparsity_report(model)["remaining"] < 1.0


def test_custom_target_modules(bert):
    pruner = movprune.sparsify(bert, PruningConfig(method="magnitude", remaining=0.5,
                                                   target_modules=r"layer\.0\..*(query|key)$"))
    assert sorted(pruner.masks) == ["bert.encoder.layer.0.attention.self.key", "bert.encoder.layer.0.attention.self.query"]


# --------------------------------------------------------------------------------------------
# Bake

ALL_CONFIGS = {
    "magnitude": dict(method="magnitude", remaining=0.1),
    "movement": dict(method="movement", remaining=0.1),
    "movement_global": dict(method="movement", remaining=0.1, scope="global"),
    "magnitude_global": dict(method="magnitude", remaining=0.1, scope="global"),
    "soft_movement": dict(method="soft_movement", final_lambda=10.0),
    "l0": dict(method="l0", final_lambda=1.0),
    "dense": dict(method="dense"),
}


def _prepare(model, name, step=TOTAL):
    """Sparsify ``model`` with config ``name``, random scores (some L0 gates closed), at ``step``."""
    pruner = movprune.sparsify(model, PruningConfig(**ALL_CONFIGS[name]))
    if name == "l0":
        _randomize_scores(pruner, std=3.0)
    elif name == "soft_movement":
        _randomize_scores(pruner, std=2.0)
    else:
        _randomize_scores(pruner)
    pruner.update(step, TOTAL)
    return pruner


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_bake(make_model, batch, get_logits, name):
    model = make_model("bert")
    plain_keys = set(make_model("bert").state_dict())
    pruner = _prepare(model, name)
    model.eval()
    before = get_logits(model, batch)
    masks = {n: m.current_mask().clone() for n, m in pruner.masks.items()}
    report = movprune.sparsity_report(model)
    assert movprune.bake(model) is model
    torch.testing.assert_close(get_logits(model, batch), before, atol=1e-5, rtol=0)
    assert not any(parametrize.is_parametrized(m) for m in model.modules())
    assert set(model.state_dict()) == plain_keys
    assert not movprune.is_sparsified(model)
    modules = dict(model.named_modules())
    for n, mask in masks.items():
        w = modules[n].weight
        assert type(modules[n]) is torch.nn.Linear
        assert int((w == 0).sum()) == int((mask == 0).sum()), n
        assert bool((w[mask == 0] == 0).all())
    if name != "dense":
        assert any(int((mask == 0).sum()) > 0 for mask in masks.values())
    after = movprune.sparsity_report(model)
    assert after["remaining"] == report["remaining"]
    assert after["remaining_paper"] == report["remaining_paper"]
    # the model keeps training as a plain model
    model.train()
    model(**batch).loss.backward()


def test_bake_a_copy_leaves_the_original_working(bert, batch, get_logits):
    pruner = _prepare(bert, "movement", step=50)
    before = get_logits(bert, batch)
    baked = movprune.bake(copy.deepcopy(bert))
    torch.testing.assert_close(get_logits(baked, batch), before, atol=1e-5, rtol=0)
    torch.testing.assert_close(get_logits(bert, batch), before, atol=0, rtol=0)  # still masked, still works
    assert movprune.is_sparsified(bert) and len(pruner.masks) == 12
    movprune.bake(bert)
    torch.testing.assert_close(get_logits(bert, batch), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["magnitude_global", "movement_global", "magnitude"])
def test_deepcopy_is_independent(bert, name):
    """A copy's masks follow the copy's weights / scores, not the original's (shared selectors)."""
    pruner = _prepare(bert, name)
    before = {n: m.current_mask().clone() for n, m in pruner.masks.items()}
    twin = copy.deepcopy(bert)
    twin_pruner = movprune.get_pruner(twin)
    assert twin_pruner is not pruner and twin_pruner.model is twin
    first = next(iter(twin_pruner.masks))
    with torch.no_grad():  # make the copy's first matrix the most important one
        if "magnitude" in name:
            dict(twin.named_modules())[first].parametrizations.weight.original.mul_(1000.0)
        else:
            twin_pruner.masks[first].scores.add_(1000.0)
    assert int(twin_pruner.masks[first].current_mask().sum()) == (
        before[first].numel() if "global" in name else int(before[first].sum()))
    for n, m in pruner.masks.items():
        assert torch.equal(m.current_mask(), before[n]), n


# --------------------------------------------------------------------------------------------
# Save / load


@pytest.mark.parametrize("name", list(ALL_CONFIGS))
def test_save_load_round_trip(make_model, batch, get_logits, tmp_path, name):
    model = make_model("bert")
    # soft movement mid-schedule: tau is not at its final value
    pruner = _prepare(model, name, step=40 if name == "soft_movement" else TOTAL)
    model.eval()
    before = get_logits(model, batch)
    kept = _kept(pruner)
    movprune.save_pretrained(model, str(tmp_path))
    loaded = movprune.from_pretrained(str(tmp_path))
    assert type(loaded) is type(model) and not loaded.training
    torch.testing.assert_close(get_logits(loaded, batch), before, atol=0, rtol=0)
    if name != "dense":
        lp = movprune.get_pruner(loaded)
        assert lp.config == pruner.config
        assert _kept(lp) == kept
        if name == "soft_movement":
            tau = [float(m.threshold) for m in lp.masks.values()]
            assert all(t == pytest.approx(0.1 * movprune.CubicSchedule().progress(40, TOTAL), rel=1e-6) for t in tau)
            assert 0 < tau[0] < 0.1
    # a baked model round-trips as a plain model
    movprune.bake(loaded)
    movprune.save_pretrained(loaded, str(tmp_path / "baked"))
    plain = movprune.from_pretrained(str(tmp_path / "baked"))
    assert not movprune.is_sparsified(plain)
    torch.testing.assert_close(get_logits(plain, batch), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["distilbert", "roberta"])
def test_save_load_other_family(make_model, batch, get_logits, tmp_path, family):
    model = make_model(family)
    _prepare(model, "movement_global", step=50)
    before = get_logits(model, batch)
    movprune.save_pretrained(model, str(tmp_path))
    loaded = movprune.from_pretrained(str(tmp_path))
    torch.testing.assert_close(get_logits(loaded, batch), before, atol=0, rtol=0)


def test_save_load_rebuilds_the_task_class(make_model, batch, get_logits, tmp_path):
    """A checkpoint whose config names the base model (MiniLM: architectures=['BertModel'])."""
    model = make_model("bert")
    model.config.architectures = ["BertModel"]
    _prepare(model, "movement", step=50)
    before = get_logits(model, batch)
    movprune.save_pretrained(model, str(tmp_path))
    loaded = movprune.from_pretrained(str(tmp_path))
    assert type(loaded).__name__ == "BertForSequenceClassification"
    torch.testing.assert_close(get_logits(loaded, batch), before, atol=0, rtol=0)


def test_save_load_keeps_a_float64_model_in_float64(make_model, batch, get_logits, tmp_path):
    """A model cast with .double() (the quickstart notebook's, for the same numbers on every CPU) comes back
    in float64 with the very same logits, not rounded through float32."""
    model = make_model("bert").double()
    _prepare(model, "movement", step=50)
    model.eval()
    before = get_logits(model, batch)
    movprune.save_pretrained(model, str(tmp_path))
    loaded = movprune.from_pretrained(str(tmp_path))
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    torch.testing.assert_close(get_logits(loaded, batch), before, atol=0, rtol=0)


def test_from_pretrained_rejects_foreign_dir(tmp_path):
    with pytest.raises(ValueError, match="not written by movprune"):
        movprune.from_pretrained(str(tmp_path))


# --------------------------------------------------------------------------------------------
# Dense


def test_dense_changes_nothing(bert, batch, get_logits):
    before = get_logits(bert, batch)
    pruner = movprune.sparsify(bert, PruningConfig(method="dense"))
    assert pruner.masks == {} and pruner.score_parameters() == []
    pruner.update(50, TOTAL)
    assert float(pruner.regularization()) == 0.0
    assert movprune.is_sparsified(bert)
    torch.testing.assert_close(get_logits(bert, batch), before, atol=0, rtol=0)
    assert movprune.remaining_weights(bert) == 1.0


# --------------------------------------------------------------------------------------------
# Bad inputs


@pytest.mark.parametrize("kwargs,match", [
    (dict(method="pruney", remaining=0.1), "unknown pruning method 'pruney'"),
    (dict(method="movement", remaining=0.0), r"remaining must be in \(0, 1\], got 0"),
    (dict(method="movement", remaining=-0.1), r"remaining must be in \(0, 1\], got -0.1"),
    (dict(method="magnitude", remaining=1.5), r"remaining must be in \(0, 1\], got 1.5"),
    (dict(method="magnitude", remaining=float("nan")), r"remaining must be in \(0, 1\], got nan"),
    (dict(method="movement", remaining="0.1"), r"remaining must be in \(0, 1\], got '0.1'"),
    (dict(method="movement"), "needs remaining"),
    (dict(method="magnitude"), "needs remaining"),
    (dict(method="soft_movement"), "needs final_lambda"),
    (dict(method="l0"), "needs final_lambda"),
    (dict(method="soft_movement", final_lambda=-1.0), "final_lambda must be a number >= 0"),
    (dict(method="l0", final_lambda=-0.5), "final_lambda must be a number >= 0"),
    (dict(method="movement", remaining=0.1, scope="regional"), "unknown scope 'regional'"),
    (dict(method="soft_movement", final_lambda=1.0, scope="global"), "scope applies to top-k methods only"),
    (dict(method="movement", remaining=0.1, final_lambda=1.0), "not final_lambda"),
    (dict(method="l0", final_lambda=1.0, remaining=0.1), "takes final_lambda"),
    (dict(method="dense", remaining=0.5), "dense"),
    (dict(method="soft_movement", final_lambda=1.0, final_threshold=1.0), "final_threshold"),
    (dict(method="movement", remaining=0.1, target_modules=["("]), "not a valid regex"),
])
def test_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruningConfig(**kwargs)


def test_targets_matching_nothing(bert):
    with pytest.raises(ValueError, match="match no nn.Linear module"):
        movprune.sparsify(bert, PruningConfig(method="movement", remaining=0.1, target_modules=[r"no_such_module$"]))
    assert not movprune.is_sparsified(bert)


def test_unknown_model_type_needs_targets():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(ValueError, match="no default target modules"):
        movprune.sparsify(model, PruningConfig(method="magnitude", remaining=0.5))
    pruner = movprune.sparsify(model, PruningConfig(method="magnitude", remaining=0.5, target_modules=[r"^0$"]))
    _final(pruner)
    assert int(model[0].weight.ne(0).sum()) == 8


@pytest.mark.parametrize("second", ["movement", "dense"])
def test_sparsify_twice(bert, second):
    movprune.sparsify(bert, PruningConfig(method=second, **({"remaining": 0.1} if second != "dense" else {})))
    with pytest.raises(ValueError, match="already sparsified"):
        movprune.sparsify(bert, PruningConfig(method="magnitude", remaining=0.1))


def test_sparsify_needs_a_config(bert):
    with pytest.raises(ValueError, match="config must be a PruningConfig"):
        movprune.sparsify(bert, {"method": "movement", "remaining": 0.1})


def test_bake_unsparsified(bert):
    with pytest.raises(ValueError, match="no movprune masks to bake"):
        movprune.bake(bert)


def test_get_pruner_unsparsified(bert):
    with pytest.raises(ValueError, match="no movprune pruner"):
        movprune.get_pruner(bert)


def test_config_round_trips_as_dict():
    cfg = PruningConfig(method="movement", remaining=0.05, scope="global", target_modules=r"query$")
    assert PruningConfig(**cfg.to_dict()) == cfg
    assert cfg.target_modules == ["query$"]
    assert cfg.target_summary == "movement v=0.05 global"
