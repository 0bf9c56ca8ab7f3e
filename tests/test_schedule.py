"""The cubic schedule and the values the pruner sets from it (v, tau, lambda)."""

from __future__ import annotations

import pytest

import movprune
from movprune import CubicSchedule

TOTAL = 100  # warmup 0.1 -> ramp starts at step 10; cooldown 0.2 -> ramp ends at step 80


def test_progress_boundaries_and_monotone():
    s = CubicSchedule(warmup=0.1, cooldown=0.2)
    for step in (0, 1, 5, 10):
        assert s.progress(step, TOTAL) == 0.0
    for step in (80, 81, 99, 100, 150):
        assert s.progress(step, TOTAL) == 1.0
    values = [s.progress(step, TOTAL) for step in range(TOTAL + 1)]
    assert all(a <= b for a, b in zip(values, values[1:]))
    assert all(0.0 < p < 1.0 for p in values[11:80])
    # strictly increasing inside the ramp
    assert all(a < b for a, b in zip(values[10:81], values[11:81]))


def test_cubic_shape_by_hand():
    s = CubicSchedule(warmup=0.1, cooldown=0.2)
    # midpoint of the ramp: x = (45 - 10) / (80 - 10) = 0.5 -> 1 - 0.5**3 = 0.875
    assert s.progress(45, TOTAL) == pytest.approx(0.875, abs=1e-12)
    # step 24: x = (24 - 10) / 70 = 0.2 -> 1 - 0.8**3 = 0.488
    assert s.progress(24, TOTAL) == pytest.approx(0.488, abs=1e-12)
    # the remaining fraction at the midpoint for v_final = 0.1: 1 - 0.9 * 0.875 = 0.2125
    assert s.value(45, TOTAL, 1.0, 0.1) == pytest.approx(0.2125, abs=1e-12)
    assert s.value(0, TOTAL, 1.0, 0.1) == 1.0
    assert s.value(TOTAL, TOTAL, 1.0, 0.1) == pytest.approx(0.1, abs=1e-15)


def test_no_warmup_no_cooldown():
    s = CubicSchedule(warmup=0.0, cooldown=0.0)
    assert s.progress(0, 10) == 0.0
    assert s.progress(5, 10) == pytest.approx(0.875)
    assert s.progress(10, 10) == 1.0


@pytest.mark.parametrize("warmup,cooldown", [(-0.1, 0.2), (0.1, 1.0), (0.6, 0.4), (1.0, 0.0)])
def test_bad_schedule(warmup, cooldown):
    with pytest.raises(ValueError, match="warmup"):
        CubicSchedule(warmup, cooldown)
    with pytest.raises(ValueError, match="warmup"):
        movprune.PruningConfig(method="movement", remaining=0.1, warmup=warmup, cooldown=cooldown)


def test_bad_total_steps():
    with pytest.raises(ValueError, match="total_steps"):
        CubicSchedule().progress(0, 0)


@pytest.mark.parametrize("v", [0.03, 0.1, 1.0])
def test_pruner_update_remaining(bert, v):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="movement", remaining=v))
    masks = list(pruner.masks.values())
    for step in (0, 5, 10):
        assert pruner.update(step, TOTAL)["remaining"] == 1.0
        assert all(float(m.remaining) == 1.0 for m in masks)
    mid = pruner.update(45, TOTAL)["remaining"]
    assert mid == pytest.approx(1.0 - (1.0 - v) * 0.875)
    prev = 1.0
    for step in range(TOTAL + 1):
        cur = pruner.update(step, TOTAL)["remaining"]
        assert cur <= prev
        prev = cur
    for step in (80, 90, TOTAL):
        assert pruner.update(step, TOTAL)["remaining"] == pytest.approx(v, abs=1e-15)
        assert all(float(m.remaining) == pytest.approx(v, rel=1e-7) for m in masks)


def test_pruner_update_soft_movement_threshold_and_lambda(bert):
    cfg = movprune.PruningConfig(method="soft_movement", final_lambda=200.0, final_threshold=0.1)
    pruner = movprune.sparsify(bert, cfg)
    masks = list(pruner.masks.values())
    out = pruner.update(10, TOTAL)
    assert out["threshold"] == 0.0 and out["lambda"] == 0.0 and pruner.lambda_ == 0.0
    out = pruner.update(45, TOTAL)
    assert out["threshold"] == pytest.approx(0.1 * 0.875) and out["lambda"] == pytest.approx(200 * 0.875)
    assert all(float(m.threshold) == pytest.approx(0.0875, rel=1e-6) for m in masks)
    out = pruner.update(TOTAL, TOTAL)
    assert out["threshold"] == 0.1 and out["lambda"] == 200.0 and pruner.lambda_ == 200.0
    assert all(float(m.threshold) == pytest.approx(0.1, rel=1e-7) for m in masks)


def test_pruner_update_l0_lambda_constant_by_default(bert):
    """The authors' L0 runs keep lambda constant from step 0 (their threshold stays 1)."""
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="l0", final_lambda=5.0))
    assert pruner.config.constant_lambda is True
    for step in (0, 5, 45, TOTAL):
        assert pruner.update(step, TOTAL)["lambda"] == 5.0
    soft = movprune.PruningConfig(method="soft_movement", final_lambda=5.0)
    assert soft.constant_lambda is False


def test_pruner_update_l0_lambda_ramped_on_request(bert):
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="l0", final_lambda=5.0, constant_lambda=False))
    assert pruner.update(0, TOTAL)["lambda"] == 0.0
    assert pruner.update(45, TOTAL)["lambda"] == pytest.approx(5.0 * 0.875)
    assert pruner.update(TOTAL, TOTAL)["lambda"] == 5.0
    assert pruner.lambda_ == 5.0


def test_update_recomputes_masks(bert):
    """Changing v changes the kept count on the next access (the selector's cache is keyed on v)."""
    pruner = movprune.sparsify(bert, movprune.PruningConfig(method="magnitude", remaining=0.1))
    mask = next(iter(pruner.masks.values()))
    n = mask.mask.numel()
    counts = []
    for step in (0, 30, 45, 60, 100):
        v = pruner.update(step, TOTAL)["remaining"]
        counts.append(int(mask.current_mask().sum()))
        assert counts[-1] == round(v * n)
    assert counts[0] == n and counts[-1] == round(0.1 * n)
    assert all(a > b for a, b in zip(counts, counts[1:]))


def test_absolute_warmup_and_cooldown_steps():
    """warmup_steps / cooldown_steps fix the ramp in optimizer steps whatever the total."""
    s = CubicSchedule(warmup=0.1, cooldown=0.2, warmup_steps=1000, cooldown_steps=400)
    assert s.bounds(2400) == (1000, 2000)
    assert s.progress(1000, 2400) == 0.0 and s.progress(1001, 2400) > 0.0
    assert s.progress(1500, 2400) == pytest.approx(0.875)
    assert s.progress(2000, 2400) == 1.0
    # the ramp keeps its length when the warm-up moves: 180 steps of warm-up, same 1,000-step ramp
    assert CubicSchedule(warmup_steps=180, cooldown_steps=400).bounds(1580) == (180, 1180)
    with pytest.raises(ValueError, match="leave room"):
        CubicSchedule(warmup_steps=1000, cooldown_steps=400).progress(0, 1400)
    with pytest.raises(ValueError, match="integer >= 0"):
        CubicSchedule(warmup_steps=-1)
    cfg = movprune.PruningConfig(method="movement", remaining=0.1, warmup_steps=1000, cooldown_steps=400)
    assert cfg.schedule.bounds(2400) == (1000, 2000)
