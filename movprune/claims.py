"""The paper's claims checked against the records, by one fixed rule.

    from movprune import analysis as A
    df = A.load_records("results/medium")
    claims = A.claims_table(df, ["sst2", "sick", "squad"])   # one row per claim, task, remaining weights
    print(A.claims_markdown(claims))                          # claims x tasks, verdicts with their numbers

Each row compares two sides, *a* (the side the paper says is ahead) and *b*, measured as the results
tables measure them (:func:`movprune.tables.cell_value`: top-k runs at their target, L0 / soft movement
interpolated per seed between the two runs that bracket it, mean and std over seeds). The verdict:

* ``holds`` / ``does not hold``: both sides have at least 3 seeds and a - b lies beyond two standard
  errors of the difference, sqrt(s_a²/n_a + s_b²/n_b), above / below zero;
* ``not settled``: both sides have at least 3 seeds and a - b lies within two standard errors;
* ``seen`` / ``not seen`` (a > b, or not) when a side has fewer than 3 seeds: one seed decides nothing;
* ``both at chance`` when both sides score at the task's chance level (below): two collapsed cells say
  nothing about the methods (a single side at chance is marked in :func:`claims_summary`);
* ``not run`` when a side has no run.

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
from .tables import cell_value, to_markdown

MIN_SEEDS = 3  # fewer seeds on either side: "seen" / "not seen", never "holds"
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
LAYER_CLAIM = "movement keeps more of layer 0 than magnitude (global top-k)"


def verdict(a: dict, b: dict, min_seeds: int = MIN_SEEDS, chance: Optional[float] = None) -> str:
    """The verdict for "a > b" from two cells ``{mean, std, n}`` (see the module docstring); ``chance``:
    the score at or below which a cell counts as collapsed (:func:`chance_level`), None for no such level."""
    if a.get("mean") is None or b.get("mean") is None:
        return "not run"
    if chance is not None and a["mean"] <= chance and b["mean"] <= chance:
        return "both at chance"
    diff = a["mean"] - b["mean"]
    if a["n"] >= min_seeds and b["n"] >= min_seeds:
        se = math.sqrt((a["std"] or 0.0) ** 2 / a["n"] + (b["std"] or 0.0) ** 2 / b["n"])
        if diff > 2 * se:
            return "holds"
        if diff < -2 * se:
            return "does not hold"
        return "not settled"
    return "seen" if diff > 0 else "not seen"


def chance_level(df: pd.DataFrame, task: str, metric: Optional[str], margin: float = CHANCE_MARGIN) -> Optional[float]:
    """The score at or below which a cell of ``task`` counts as collapsed: the encoder-zeroed control's
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
    mean, std, n = _agg([layer0_ratio(p) for p in rows.get("per_layer", [])])
    return {"mean": mean, "std": std, "n": n}


def claims_table(df: pd.DataFrame, tasks: Sequence[str], sparsities: Sequence[float] = (0.10, 0.03, 0.01),
                 keep_not_run: bool = False) -> pd.DataFrame:
    """One row per claim, task and remaining weights: both sides (mean, std, n), a - b and the verdict.

    Scores use the task's main metric (SQuAD: F1); the layer claim compares layer-0 ratios; ``a_interp``
    / ``b_interp`` mark sides interpolated between two runs. Rows where a side has no run are left out
    unless ``keep_not_run`` (the profile page lists the missing runs). ``chance`` is the task's
    :func:`chance_level` (scores only); ``a_at_chance`` / ``b_at_chance`` mark sides at or below it.
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
            for claim, la, a, lb, b, what in pairs:
                if not keep_not_run and (a.get("mean") is None or b.get("mean") is None):
                    continue
                diff = a["mean"] - b["mean"] if a.get("mean") is not None and b.get("mean") is not None else None
                chance = level if what == metric else None  # the layer claim is no score
                low = {k: chance is not None and c.get("mean") is not None and c["mean"] <= chance
                       for k, c in (("a", a), ("b", b))}
                # seeds at chance inside a cell whose mean is not: a collapsed seed drags a mean down
                seeds_low = {k: sum(v <= chance for v in c.get("seed_values", ())) if chance is not None else 0
                             for k, c in (("a", a), ("b", b))}
                rows.append({"claim": claim, "task": task, "remaining": s, "measure": what,
                             "a": la, "a_mean": a.get("mean"), "a_std": a.get("std"), "a_n": a.get("n", 0),
                             "a_interp": bool(a.get("interpolated")), "a_at_chance": low["a"],
                             "a_seeds_at_chance": seeds_low["a"],
                             "b": lb, "b_mean": b.get("mean"), "b_std": b.get("std"), "b_n": b.get("n", 0),
                             "b_interp": bool(b.get("interpolated")), "b_at_chance": low["b"],
                             "b_seeds_at_chance": seeds_low["b"],
                             "difference": diff, "chance": chance, "verdict": verdict(a, b, chance=chance)})
    return pd.DataFrame(rows, columns=["claim", "task", "remaining", "measure", "a", "a_mean", "a_std", "a_n",
                                       "a_interp", "a_at_chance", "a_seeds_at_chance", "b", "b_mean", "b_std",
                                       "b_n", "b_interp", "b_at_chance", "b_seeds_at_chance", "difference",
                                       "chance", "verdict"])


def _side(mean, std, n, interp, digits, at_chance=False, seeds_at_chance=0) -> str:
    if mean is None or pd.isna(mean):
        return "—"
    low = ", at chance" if at_chance else (f", {seeds_at_chance} of {n} at chance" if seeds_at_chance else "")
    return (f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and not pd.isna(std) else "")
            + ("*" if interp else "") + f" (n={n}" + low + ")")


def claims_summary(claims: pd.DataFrame, sep: str = "; ") -> pd.DataFrame:
    """``claims_table``'s rows pivoted: claims down, tasks across; a cell lists, per remaining weights, the
    verdict, then side a vs side b ("*" = interpolated between two runs, n = seeds, "at chance" = at the
    task's :func:`chance_level`, "k of n at chance" = k seeds at it though the mean is not), joined by ``sep``."""
    tasks = list(dict.fromkeys(claims.task))
    order = [c for c, _, _ in SCORE_CLAIMS] + [LAYER_CLAIM]
    present = set(claims.claim)
    rows = [c for c in order if c in present] + [c for c in dict.fromkeys(claims.claim) if c not in order]
    out = pd.DataFrame("—", index=rows, columns=[task_label(t) for t in tasks])  # —: no pair of runs
    out.index.name = "claim"
    for (claim, task), g in claims.groupby(["claim", "task"], sort=False):
        parts = []
        for _, r in g.iterrows():
            digits = 2 if r.measure == "layer 0 / average" else 1
            a = _side(r.a_mean, r.a_std, r.a_n, r.a_interp, digits, bool(r.get("a_at_chance", False)),
                      int(r.get("a_seeds_at_chance", 0) or 0))
            b = _side(r.b_mean, r.b_std, r.b_n, r.b_interp, digits, bool(r.get("b_at_chance", False)),
                      int(r.get("b_seeds_at_chance", 0) or 0))
            parts.append(f"{pct_label(r.remaining)}: {r.verdict}, {a} vs {b}")
        out.loc[claim, task_label(task)] = sep.join(parts)
    return out


def claims_markdown(claims: pd.DataFrame) -> str:
    """:func:`claims_summary` as a markdown table, one line per remaining weights in a cell."""
    if claims.empty:
        return "no pair of runs bears on the paper's claims yet"
    return to_markdown(claims_summary(claims, sep="<br>"))
