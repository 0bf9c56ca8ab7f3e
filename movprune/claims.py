"""The paper's claims checked against the records, by one fixed rule.

    from movprune import analysis as A
    df = A.load_records("results/minilm")
    claims = A.claims_table(df, ["sst2", "sick", "squad"])   # one row per claim, task, remaining weights
    print(A.claims_markdown(claims))                          # claims x tasks, verdicts with their numbers

Each row compares two sides, *a* (the side the paper says is ahead) and *b*, measured as the results
tables measure them (:func:`movprune.tables.cell_value`: top-k runs at their target, L0 / soft movement
interpolated per seed between the two runs that bracket it, mean and std over seeds). The verdict comes
from Welch's two-sided t-test (:func:`welch_test`: unequal variances, Welch-Satterthwaite degrees of
freedom), made for a few seeds a side where a normal threshold is not:

* ``holds`` / ``does not hold``: both sides have at least 3 seeds, a > b / a < b, and p < 0.05;
* ``not settled``: both sides have at least 3 seeds and p >= 0.05 (with 3 seeds a side the test has 2
  to 4 degrees of freedom, where a 5% result needs a - b beyond 4.30 to 2.78 standard errors of the
  difference, sqrt(s_a²/n_a + s_b²/n_b), not the normal 1.96);
* ``seen`` / ``not seen`` (a > b, or not) when a side has fewer than 3 seeds: one seed decides nothing,
  and no p-value is given;
* ``both at chance`` when both sides score at the task's chance level (below): two cells at chance say
  nothing about the methods (a single side at chance is marked in :func:`claims_summary`);
* ``not run`` when a side has no run.

Two sides whose seeds are each identical (std 0 on both sides) give t = ±inf and p = 0 when their means
differ (``holds`` / ``does not hold``), t = 0 and p = 1 when they do not; their degrees of freedom are
undefined (None).

A verdict *rests on a wide bracket* (``rests_on_wide_bracket``, "†") when a side is interpolated between
two runs more than 3x apart in kept fraction (:data:`movprune.tables.WIDE_BRACKET`); a side including a
collapsed run (:func:`movprune.records.is_collapsed`, a run stopped on collapse among them) is marked
"‡" and counts it in n with its measured score.

A cell is *at chance* when its mean lies within ``CHANCE_MARGIN`` (5%) of the dense - control gap above
the encoder-zeroed control (``zero_encoder``): the score a model reaches without using its input. A task
without a control or dense run has no chance level and no cell is marked.

The claims (Sanh et al. 2020, Sections 5-6): movement beats magnitude at high sparsity; soft movement
beats movement; distillation helps each method; movement keeps more of the lower layers than
magnitude (global top-k: the fraction layer 0 keeps, over the run's average across layers).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from .records import _agg, _main_metric, pct_label, select, task_label
from .tables import (STACK_NOTE, COLLAPSED_NOTE, INTERP_MARK, WIDE_MARK, WIDE_NOTE, cell_marks,
                     cell_value, collapse_note, run_flags, to_markdown)

MIN_SEEDS = 3  # fewer seeds on either side: "seen" / "not seen", never "holds"
ALPHA = 0.05  # Welch's two-sided test: "holds" / "does not hold" below this p-value
CHANCE_MARGIN = 0.05  # "at chance": within 5% of the dense - control gap above the control
VERDICTS = ("holds", "does not hold", "not settled", "seen", "not seen", "both at chance", "not run")

# (claim, side a, side b): a side is (label, method, distill, scope)
SCORE_CLAIMS = [
    ("movement > magnitude", ("movement", "movement", False, "local"), ("magnitude", "magnitude", False, "local")),
    ("soft movement > movement", ("soft movement", "soft_movement", False, "local"),
     ("movement", "movement", False, "local")),
] + [
    (f"distillation helps {name}", ("with distillation", m, True, "local"), ("without", m, False, "local"))
    for m, name in (("magnitude", "magnitude"), ("l0", "L0"), ("movement", "movement"),
                    ("soft_movement", "soft movement"))
]
# claims measured at their own remaining weights, beyond the tables' columns: (claim, remaining
# fractions, side a, side b), a side as above plus its gradient-clipping variant (RunConfig.clip)
EXTRA_CLAIMS = [
    # the paper's Figure 2: at low sparsity magnitude pruning is as good as (or better than) movement
    ("magnitude > movement at low sparsity", (0.5, 0.3), ("magnitude", "magnitude", False, "local", "all"),
     ("movement", "movement", False, "local", "all")),
    # a factor of the recipe, not a claim of the paper: the Trainer (and the authors' code) clips the
    # weights' and the scores' gradients as one vector; clipping the weights' alone leaves scores unclipped
    ("clipping scores with weights > weights alone", (0.1, 0.03, 0.01),
     ("weights and scores", "movement", False, "local", "all"), ("weights alone", "movement", False, "local", "weights")),
]
LAYER_CLAIM = "movement keeps more of layer 0 than magnitude (global top-k)"


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    Its continued fraction (DLMF 8.17.22), I_x(a, b) = x^a (1-x)^b / (a B(a, b)) / (1 + d1 / (1 + d2 /
    (1 + ...))) with d_2m = m (b - m) x / ((a + 2m - 1)(a + 2m)) and d_2m+1 = -(a + m)(a + b + m) x /
    ((a + 2m)(a + 2m + 1)), evaluated by the modified Lentz method; it converges fast for
    x < (a + 1) / (a + b + 2), and I_x(a, b) = 1 - I_{1-x}(b, a) covers the other side.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, 1.0 - x)
    log_front = a * math.log(x) + b * math.log1p(-x) - math.log(a) - (math.lgamma(a) + math.lgamma(b)
                                                                       - math.lgamma(a + b))
    tiny = 1e-300
    f, c, d = 1.0, 1.0, 0.0  # value of 1 + d1 / (1 + d2 / (1 + ...)), Lentz's C and D
    for j in range(1, 1000):
        m = j // 2
        if j % 2:
            term = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        else:
            term = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + term * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + term / c
        c = c if abs(c) > tiny else tiny
        f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return math.exp(log_front) / f


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t distribution with ``df`` (> 0, not necessarily whole) degrees of
    freedom: I_{df / (df + t²)}(df / 2, 1 / 2). ``t`` = ±inf gives 0."""
    if math.isinf(t):
        return 0.0
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def welch_test(a: dict, b: dict) -> dict:
    """Welch's two-sided t-test of two cells ``{mean, std, n}`` (std: the seeds' sample standard deviation):
    ``{t, df, p}``, t = (mean_a - mean_b) / sqrt(s_a²/n_a + s_b²/n_b), df by Welch-Satterthwaite, p two-sided.
    All None when a side has fewer than 2 seeds. Both stds 0 (identical seeds on each side): t = ±inf and
    p = 0 when the means differ, t = 0 and p = 1 when they do not; df None."""
    none = {"t": None, "df": None, "p": None}
    if a.get("mean") is None or b.get("mean") is None or a.get("n", 0) < 2 or b.get("n", 0) < 2:
        return none
    va, vb = (a.get("std") or 0.0) ** 2 / a["n"], (b.get("std") or 0.0) ** 2 / b["n"]
    diff = a["mean"] - b["mean"]
    if va + vb == 0.0:
        return {"t": 0.0 if diff == 0 else math.copysign(math.inf, diff), "df": None, "p": 1.0 if diff == 0 else 0.0}
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a["n"] - 1) + vb ** 2 / (b["n"] - 1))
    return {"t": t, "df": df, "p": t_two_sided_p(t, df)}


def verdict(a: dict, b: dict, min_seeds: int = MIN_SEEDS, chance: Optional[float] = None,
            alpha: float = ALPHA) -> str:
    """The verdict for "a > b" from two cells ``{mean, std, n}`` (see the module docstring): with
    ``min_seeds`` seeds a side, Welch's two-sided test (:func:`welch_test`) at level ``alpha``; ``chance``:
    the score at or below which a cell counts as at chance (:func:`chance_level`), None for no such level."""
    if a.get("mean") is None or b.get("mean") is None:
        return "not run"
    if chance is not None and a["mean"] <= chance and b["mean"] <= chance:
        return "both at chance"
    diff = a["mean"] - b["mean"]
    if a["n"] >= min_seeds and b["n"] >= min_seeds:
        if welch_test(a, b)["p"] < alpha:
            return "holds" if diff > 0 else "does not hold"
        return "not settled"
    return "seen" if diff > 0 else "not seen"


def chance_level(df: pd.DataFrame, task: str, metric: Optional[str], margin: float = CHANCE_MARGIN) -> Optional[float]:
    """The score at or below which a cell of ``task`` counts as at chance: the encoder-zeroed control's
    mean plus ``margin`` of the dense - control gap (None without a control or a dense run above it)."""
    control = cell_value(df, task, "zero_encoder", 1.0, False, metric)["mean"]
    dense = cell_value(df, task, "dense", 1.0, False, metric)["mean"]
    if control is None or dense is None or dense <= control:
        return None
    return control + margin * (dense - control)


def layer0_ratio(per_layer: dict) -> Optional[float]:
    """Fraction kept in layer 0 over the mean fraction kept across the layers (None without layers)."""
    if not isinstance(per_layer, dict) or "0" not in per_layer:
        return None
    mean = float(np.mean([float(v) for v in per_layer.values()]))
    return float(per_layer["0"]) / mean if mean > 0 else None


def _layer_cell(df: pd.DataFrame, task: str, method: str, remaining: float) -> dict:
    rows = select(df, task=task, method=method, distill=False, scope="global")
    rows = rows[np.isclose(rows.target_remaining.astype(float), remaining, rtol=1e-6)] if len(rows) else rows
    ratios = [layer0_ratio(p) for p in rows.get("per_layer", [])]
    mean, std, n = _agg(ratios)
    flags = [f for f, r in zip(run_flags(rows), ratios) if r is not None]
    return {"mean": mean, "std": std, "n": n, "collapsed": sum(c for c, _ in flags),
            "stopped": sum(s for _, s in flags)}


SIDE_FIELDS = ("mean", "std", "n", "interp", "bracket_low", "bracket_high", "bracket_ratio", "wide_bracket",
               "collapsed", "stopped", "other_stack", "at_chance", "seeds_at_chance")
COLUMNS = (["claim", "task", "remaining", "measure"]
           + ["a"] + [f"a_{k}" for k in SIDE_FIELDS] + ["b"] + [f"b_{k}" for k in SIDE_FIELDS]
           + ["difference", "t", "df", "p_value", "chance", "verdict", "rests_on_wide_bracket"])


def claims_table(df: pd.DataFrame, tasks: Sequence[str], sparsities: Sequence[float] = (0.10, 0.03, 0.01),
                 keep_not_run: bool = False) -> pd.DataFrame:
    """One row per claim, task and remaining weights: both sides, a - b, Welch's test and the verdict.

    Scores use the task's main metric (SQuAD: F1); the layer claim compares layer-0 ratios. Per side
    (``a_`` / ``b_``): ``mean``, ``std``, ``n``; ``interp`` (interpolated between two runs) and its
    bracket, ``bracket_low`` / ``bracket_high`` / ``bracket_ratio`` / ``wide_bracket``
    (:func:`movprune.tables.cell_value`); ``collapsed`` / ``stopped``, the seeds resting on a collapsed run
    / a run stopped on collapse; ``at_chance`` (the side's mean at or below ``chance``, the task's
    :func:`chance_level`, scores only) and ``seeds_at_chance``. ``t``, ``df``, ``p_value``: Welch's test,
    given where both sides have :data:`MIN_SEEDS` seeds. ``rests_on_wide_bracket``: a side has a wide
    bracket. Rows where a side has no run are left out unless ``keep_not_run`` (the profile page lists
    the missing runs).
    """
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    rows = []
    for task in tasks:
        metric = _main_metric(df, task)
        level = chance_level(df, task, metric)
        for s in sparsities:
            pairs = []
            for claim, (la, ma, da, sa), (lb, mb, db, sb) in SCORE_CLAIMS:
                a = cell_value(df, task, ma, s, da, metric, scope=sa)
                b = cell_value(df, task, mb, s, db, metric, scope=sb)
                pairs.append((claim, la, a, lb, b, metric))
            pairs.append((LAYER_CLAIM, "movement", _layer_cell(df, task, "movement", s),
                          "magnitude", _layer_cell(df, task, "magnitude", s), "layer 0 / average"))
            pairs = [(s, *p) for p in pairs]
            if s == sparsities[-1]:  # the extra claims once per task, at their own remaining weights
                for claim, fractions, (la, ma, da, sa, ca), (lb, mb, db, sb, cb) in EXTRA_CLAIMS:
                    for v in fractions:
                        pairs.append((v, claim, la, cell_value(df, task, ma, v, da, metric, scope=sa, clip=ca),
                                      lb, cell_value(df, task, mb, v, db, metric, scope=sb, clip=cb), metric))
            for s_, claim, la, a, lb, b, what in pairs:
                if not keep_not_run and (a.get("mean") is None or b.get("mean") is None):
                    continue
                diff = a["mean"] - b["mean"] if a.get("mean") is not None and b.get("mean") is not None else None
                chance = level if what == metric else None  # the layer claim is no score
                row = {"claim": claim, "task": task, "remaining": s_, "measure": what, "a": la, "b": lb}
                for k, c in (("a", a), ("b", b)):
                    row.update({
                        f"{k}_mean": c.get("mean"), f"{k}_std": c.get("std"), f"{k}_n": c.get("n", 0),
                        f"{k}_interp": bool(c.get("interpolated")),
                        f"{k}_bracket_low": c.get("bracket_low"), f"{k}_bracket_high": c.get("bracket_high"),
                        f"{k}_bracket_ratio": c.get("bracket_ratio"), f"{k}_wide_bracket": bool(c.get("wide_bracket")),
                        f"{k}_collapsed": int(c.get("collapsed", 0)), f"{k}_stopped": int(c.get("stopped", 0)),
                        f"{k}_other_stack": int(c.get("other_stack", 0)),
                        f"{k}_at_chance": chance is not None and c.get("mean") is not None and c["mean"] <= chance,
                        # seeds at chance inside a cell whose mean is not: such a seed drags a mean down
                        f"{k}_seeds_at_chance": (sum(v <= chance for v in c.get("seed_values", ()))
                                                 if chance is not None else 0)})
                both = min(a.get("n", 0), b.get("n", 0)) >= MIN_SEEDS
                test = welch_test(a, b) if both else {"t": None, "df": None, "p": None}
                row.update({"difference": diff, "t": test["t"], "df": test["df"], "p_value": test["p"],
                            "chance": chance, "verdict": verdict(a, b, chance=chance),
                            "rests_on_wide_bracket": row["a_wide_bracket"] or row["b_wide_bracket"]})
                rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def _side(mean, std, n, marks, digits, at_chance=False, seeds_at_chance=0, collapsed=0, stopped=0) -> str:
    if mean is None or pd.isna(mean):
        return "—"
    notes = [f"n={n}"]
    if at_chance:
        notes.append("at chance")
    elif seeds_at_chance:
        notes.append(f"{seeds_at_chance} of {n} at chance")
    if collapse_note(collapsed, stopped):
        notes.append(collapse_note(collapsed, stopped))
    return (f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not pd.isna(std) else "")
            + marks + " (" + ", ".join(notes) + ")")


def p_label(p) -> str:
    """A p-value as the summary prints it: "p = 0.086", "p < 0.001"."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _verdict_text(r) -> str:
    notes = []
    if r.get("p_value") is not None and not pd.isna(r.get("p_value")):
        notes.append(p_label(float(r["p_value"])))
    if bool(r.get("rests_on_wide_bracket", False)):
        notes.append(f"rests on a wide bracket {WIDE_MARK}")
    return r["verdict"] + (f" ({'; '.join(notes)})" if notes else "")


def claims_summary(claims: pd.DataFrame, sep: str = "; ") -> pd.DataFrame:
    """``claims_table``'s rows pivoted: claims down, tasks across; a cell lists, per remaining weights, the
    verdict with Welch's p-value ("holds (p = 0.012)") and "rests on a wide bracket †" where it does, then
    side a vs side b, joined by ``sep``. A side: mean ± std, its marks ("*" interpolated between two runs,
    "†" wide bracket, "‡" includes a collapsed run), n = seeds, "at chance" = at the task's
    :func:`chance_level`, "k of n at chance" = k seeds at it though the mean is not, and how many seeds
    rest on a collapsed run ("1 stopped on collapse")."""
    tasks = list(dict.fromkeys(claims.task))
    order = [c for c, _, _ in SCORE_CLAIMS] + [c for c, *_ in EXTRA_CLAIMS] + [LAYER_CLAIM]
    present = set(claims.claim)
    rows = [c for c in order if c in present] + [c for c in dict.fromkeys(claims.claim) if c not in order]
    out = pd.DataFrame("—", index=rows, columns=[task_label(t) for t in tasks])  # —: no pair of runs
    out.index.name = "claim"
    for (claim, task), g in claims.groupby(["claim", "task"], sort=False):
        parts = []
        for _, r in g.iterrows():
            digits = 2 if r.measure == "layer 0 / average" else 1
            a, b = (_side(r[f"{k}_mean"], r[f"{k}_std"], r[f"{k}_n"],
                          cell_marks([{"interpolated": bool(r.get(f"{k}_interp", False)),
                                       "wide_bracket": bool(r.get(f"{k}_wide_bracket", False)),
                                       "collapsed": int(r.get(f"{k}_collapsed", 0) or 0),
                                       "other_stack": int(r.get(f"{k}_other_stack", 0) or 0)}]),
                          digits, bool(r.get(f"{k}_at_chance", False)), int(r.get(f"{k}_seeds_at_chance", 0) or 0),
                          int(r.get(f"{k}_collapsed", 0) or 0), int(r.get(f"{k}_stopped", 0) or 0))
                    for k in ("a", "b"))
            parts.append(f"{pct_label(r.remaining)}: {_verdict_text(r)}, {a} vs {b}")
        out.loc[claim, task_label(task)] = sep.join(parts)
    return out


LEGEND = (f"Verdicts: Welch's two-sided t-test where both sides have {MIN_SEEDS} seeds or more (holds / does "
          f"not hold: p < {ALPHA:g}); \"seen\" / \"not seen\" give only the direction of fewer seeds. "
          f"{INTERP_MARK} = interpolated between two runs. " + WIDE_NOTE + " " + COLLAPSED_NOTE + " " + STACK_NOTE)


def claims_markdown(claims: pd.DataFrame) -> str:
    """:func:`claims_summary` as a markdown table, one line per remaining weights in a cell, and under it
    the :data:`LEGEND` of the verdicts and marks."""
    if claims.empty:
        return "no pair of runs bears on the paper's claims yet"
    return to_markdown(claims_summary(claims, sep="<br>")) + "\n\n" + LEGEND
