"""movprune.claims: Welch's t-test behind the verdicts, checked against closed forms, tabulated critical
values and a numerical integral of the t density; the verdict rule and what the claims table shows."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from movprune import analysis as A


def _cell(values):
    return {"mean": statistics.mean(values), "std": statistics.stdev(values), "n": len(values)}


def _p_by_integral(t, df, steps=200_000):
    """Two-sided p of Student's t, independently of the continued fraction: 1 - 2 * integral of the t
    density from 0 to |t| (Simpson's rule)."""
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    x = np.linspace(0.0, abs(t), steps + 1)
    f = c * (1 + x * x / df) ** (-(df + 1) / 2)
    h = abs(t) / steps
    integral = h / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
    return 1 - 2 * integral


@pytest.mark.parametrize("t", [0.3, 1.0, 2.5, 4.303, 9.0])
def test_t_p_value_matches_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    # df = 1 (Cauchy): p = 1 - 2/pi atan|t|; df = 2: p = 1 - |t| / sqrt(2 + t^2)
    assert A.t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
    assert A.t_two_sided_p(-t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)


@pytest.mark.parametrize("t, df", [(12.706, 1), (4.303, 2), (3.182, 3), (2.776, 4), (2.571, 5), (2.228, 10)])
def test_tabulated_two_sided_5_percent_critical_values_give_p_005(t, df):
    assert A.t_two_sided_p(t, df) == pytest.approx(0.05, abs=1e-4)  # the table's 3 decimals of t


@pytest.mark.parametrize("t, df", [(2.99, 2.2), (1.3, 3.7), (6.8, 2.11), (0.05, 2.0001), (3.0, 30.5)])
def test_t_p_value_at_fractional_degrees_of_freedom_matches_the_integral_of_the_density(t, df):
    assert A.t_two_sided_p(t, df) == pytest.approx(_p_by_integral(t, df), abs=1e-7)


def test_t_p_value_ends():
    assert A.t_two_sided_p(0.0, 3) == 1.0 and A.t_two_sided_p(math.inf, 3) == 0.0
    assert A.t_two_sided_p(1.959964, 1e7) == pytest.approx(0.05, abs=1e-5)  # the normal limit


def test_welch_test_on_the_sick_soft_movement_cell_at_10_percent():
    """SICK soft movement vs movement at 10% (three seeds each): a gap of 3 standard errors is no 5%
    result at 2.2 degrees of freedom."""
    soft, movement = [84.58, 84.95, 84.63], [83.99, 82.20, 83.21]
    w = A.welch_test(_cell(soft), _cell(movement))
    va, vb = statistics.variance(soft) / 3, statistics.variance(movement) / 3
    assert w["t"] == pytest.approx((statistics.mean(soft) - statistics.mean(movement)) / math.sqrt(va + vb))
    assert w["df"] == pytest.approx((va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2))
    assert (round(w["t"], 2), round(w["df"], 1), round(w["p"], 3)) == (2.99, 2.2, 0.086)
    assert A.verdict(_cell(soft), _cell(movement)) == "not settled"


def test_welch_degrees_of_freedom_with_one_side_without_spread_are_the_other_sides_n_minus_1():
    a, b = {"mean": 65.0, "std": 0.36, "n": 3}, {"mean": 56.69, "std": 0.0, "n": 3}
    w = A.welch_test(a, b)
    assert w["df"] == pytest.approx(2.0) and w["t"] == pytest.approx(8.31 / (0.36 / math.sqrt(3)))
    assert w["p"] == pytest.approx(1 - w["t"] / math.sqrt(2 + w["t"] ** 2))  # the df = 2 closed form


def test_identical_seeds_on_both_sides():
    same = {"mean": 56.69, "std": 0.0, "n": 3}
    assert A.welch_test(same, dict(same)) == {"t": 0.0, "df": None, "p": 1.0}
    assert A.verdict(same, dict(same)) == "not settled"
    assert A.welch_test({**same, "mean": 60.0}, same) == {"t": math.inf, "df": None, "p": 0.0}
    assert A.verdict({**same, "mean": 60.0}, same) == "holds"
    assert A.verdict(same, {**same, "mean": 60.0}) == "does not hold"


def test_welch_test_needs_two_seeds_a_side():
    assert A.welch_test({"mean": 80.0, "std": None, "n": 1}, _cell([1.0, 2.0, 3.0])) == {"t": None, "df": None,
                                                                                        "p": None}


@pytest.mark.parametrize("a, b, expected", [
    # t = 4.5 at df = 4 (equal spreads, 3 seeds a side): p = 0.011
    (dict(mean=81.0, std=0.2722, n=3), dict(mean=80.0, std=0.2722, n=3), "holds"),
    # t = 2.5 at df = 4: p = 0.067 -- beyond two standard errors, which the old rule called "holds"
    (dict(mean=81.0, std=0.4899, n=3), dict(mean=80.0, std=0.4899, n=3), "not settled"),
    (dict(mean=79.0, std=0.2722, n=3), dict(mean=80.0, std=0.2722, n=3), "does not hold"),
    (dict(mean=90.0, std=None, n=1), dict(mean=60.0, std=0.1, n=3), "seen"),
    (dict(mean=90.0, std=0.1, n=2), dict(mean=60.0, std=0.1, n=3), "seen"),  # p tiny, but 2 seeds decide nothing
    (dict(mean=59.0, std=0.5, n=2), dict(mean=60.0, std=0.1, n=3), "not seen"),
    (dict(mean=None, std=None, n=0), dict(mean=60.0, std=0.1, n=3), "not run"),
])
def test_verdict_is_welchs_test_at_5_percent_with_three_seeds_a_side(a, b, expected):
    assert A.verdict(a, b) == expected


def test_the_verdict_changes_side_at_p_005():
    """t = 2.776 at df = 4 is the 5% critical value: a gap a little above it holds, a little below does not."""
    for t, expected in ((2.80, "holds"), (2.75, "not settled")):
        s = math.sqrt(3 / 2)  # equal spreads, 3 seeds a side: standard error of the difference = 1
        assert A.verdict(dict(mean=80.0 + t, std=s, n=3), dict(mean=80.0, std=s, n=3)) == expected
