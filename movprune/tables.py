"""Results tables from the records: table cells, the paper's Table 2 / Table 3 layout, saving.

    from movprune import records, tables
    df = records.load_records("results/minilm")
    res = tables.results_table(df, ["sst2"], distill=False)       # the paper's Table 2 layout
    tables.save_table(res.table, "results/minilm", "table2_sst2")  # -> tables/table2_sst2.csv, markdown
    print(res.markdown())                                         # ours, the paper's, and the notes

* ``remaining`` in a record is the kept fraction of the *targeted* encoder linear weights (what the
  method controls); ``remaining_paper`` is the paper's convention (biases and LayerNorm count as
  kept). Tables use ``remaining`` unless ``convention="remaining_paper"``.
* Top-k methods (magnitude, movement) hit their target exactly: table cells take those runs.
  L0 and soft movement do not: as in the paper, their cells are linear interpolations (in
  remaining weights, :func:`movprune.records.interpolate_at`) between the two neighbouring runs
  that bracket the target; never extrapolated (shown as "—"). Interpolated cells carry a "*".
* A cell carries its bracket: ``bracket_low`` / ``bracket_high``, the lowest and highest kept fraction
  of the runs its seeds were interpolated between, and ``bracket_ratio``, the widest seed's
  high / low. A seed's two runs more than ``WIDE_BRACKET`` (3x) apart in kept fraction make the cell
  ``wide_bracket``, marked "†": a straight line across such a gap says little about the target.
* A cell that includes a collapsed run (:func:`movprune.records.is_collapsed`; a run the collapse rule
  stopped is one) is marked "‡" and says how many ("3 stopped on collapse"): such runs count in n with
  their measured score. ``collapsed`` / ``stopped`` count the seeds whose value rests on such a run (an
  interpolated seed: either of its two runs).
* The paper's cells (:func:`paper_results_table`) come from :mod:`movprune.reference`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from . import reference
from .provenance import pinned_pool
from .records import (METHOD_LABELS, PAPER_COUNTERPART, PENALTY_METHODS, RECORD_COLUMNS, TABLE_METHODS, TOPK_METHODS,
                      _agg, _at, _main_metric, _metric_col, _metric_values, interpolate_at, interpolation_bracket,
                      pct_label, select, task_label)


# ---------------------------------------------------------------------------------------------
# Vocabulary of tables

# metrics shown in a table cell, joined by "/" as the paper does (default: the main metric)
TABLE_METRICS = {"squad": ("exact_match", "f1"), "qqp": ("accuracy", "f1")}
DASH = "—"
WIDE_BRACKET = 3.0  # a seed interpolated between runs more than 3x apart in kept fraction: marked
INTERP_MARK, WIDE_MARK, COLLAPSED_MARK, STACK_MARK = "*", "†", "‡", "§"
WIDE_NOTE = (f"{WIDE_MARK} = wide bracket: a seed of the cell was interpolated between two runs more than "
             f"{WIDE_BRACKET:g}x apart in kept fraction.")
COLLAPSED_NOTE = (f"{COLLAPSED_MARK} = the cell includes a collapsed run (its training loss sat at the loss of a "
                  f"constant prediction until training ended; \"stopped on collapse\": the collapse rule ended it "
                  f"early); such a run counts in n with its measured score.")


STACK_NOTE = (f"{STACK_MARK} = records of this cell trained on another software stack or training set (torch / "
              f"transformers versions, number of training features) were left out: a cell pools one stack only.")


def collapse_note(collapsed: int, stopped: int) -> str:
    """How many seeds of a cell rest on a collapsed run: "" (none), "2 collapsed", "3 stopped on collapse"
    (every collapsed one was stopped by the rule) or "2 collapsed, 1 stopped"."""
    if not collapsed:
        return ""
    if stopped == collapsed:
        return f"{collapsed} stopped on collapse"
    return f"{collapsed} collapsed" + (f", {stopped} stopped" if stopped else "")


# ---------------------------------------------------------------------------------------------
# Results table


def table_metrics(task: str, df: Optional[pd.DataFrame] = None) -> list[str]:
    """Metrics shown for ``task`` in a table cell (SQuAD: EM/F1, QQP: acc/F1, else the main metric)."""
    if task in TABLE_METRICS:
        return list(TABLE_METRICS[task])
    m = _main_metric(df if df is not None else pd.DataFrame(columns=RECORD_COLUMNS), task)
    return [m] if m else ["score"]


def run_flags(rows: pd.DataFrame) -> list[tuple[int, int]]:
    """``(collapsed, stopped)`` of each of ``rows``, 1 or 0: the run collapsed
    (:func:`movprune.records.is_collapsed`; unknown counts 0) / the collapse rule stopped it."""
    collapsed = rows["collapsed"].eq(True) if "collapsed" in rows else [False] * len(rows)
    stopped = rows["stopped_at_step"].notna() if "stopped_at_step" in rows else [False] * len(rows)
    return [(int(c), int(s)) for c, s in zip(collapsed, stopped)]


def cell_value(df: pd.DataFrame, task: str, method: str, remaining: float, distill: bool, metric: Optional[str],
               convention: str = "remaining", scope: str = "local", clip: str = "all") -> dict:
    """One table cell: ``{mean, std, n, interpolated, seed_values, bracket_low, bracket_high, bracket_ratio,
    wide_bracket, collapsed, stopped}`` (mean None when no run gives it).

    ``seed_values``: the value of each seed behind the mean. The bracket fields (interpolated cells;
    None otherwise): the lowest / highest kept fraction of the runs the seeds were interpolated
    between, the widest seed's high / low, and whether that exceeds :data:`WIDE_BRACKET`.
    ``collapsed`` / ``stopped``: how many seeds rest on a collapsed run / a run stopped on collapse.
    ``clip``: the gradient-clipping variant whose runs make the cell (the recipe's "all" by default).
    ``other_stack``: records of this cell left out because they ran on another software stack or
    training set than the cell's (:func:`one_pool`): a cell pools one stack only.
    """
    base = dict(mean=None, std=None, n=0, interpolated=False, seed_values=[], bracket_low=None, bracket_high=None,
                bracket_ratio=None, wide_bracket=False, collapsed=0, stopped=0, other_stack=0)
    col = _metric_col(metric)

    def seeds(values, flags=()):
        values = [float(v) for v in values if v is not None and not pd.isna(v)]
        mean, std, n = _agg(values)
        return {**base, "mean": mean, "std": std, "n": n, "seed_values": values,
                "collapsed": sum(c for c, _ in flags), "stopped": sum(s for _, s in flags)}

    def scored(rows):  # the runs that have the metric, one seed each
        return rows[rows[col].notna()] if col in rows.columns else rows.iloc[:0]

    if method in ("dense", "zero_encoder"):
        rows, left = one_pool(scored(select(df, task=task, method=method)))
        return {**seeds(_metric_values(rows, metric), run_flags(rows)), "other_stack": left}
    rows = select(df, task=task, method=method, distill=distill, clip=clip)
    if method in TOPK_METHODS:
        rows, left = one_pool(scored(rows[(rows.scope == scope)
                                          & np.isclose(rows.target_remaining.astype(float), remaining, rtol=1e-6)]))
        return {**seeds(_metric_values(rows, metric), run_flags(rows)), "other_stack": left}
    all_rows, (rows, _) = rows, one_pool(rows)
    # records of another pool count against the cell where they would have bracketed a seed's target
    base["other_stack"] = sum(
        interpolation_bracket(list(zip(g[convention], g[col])), remaining)
        != interpolation_bracket(list(zip(rows[rows.seed == seed][convention], rows[rows.seed == seed][col])), remaining)
        for seed, g in all_rows.groupby("seed")) if col in all_rows.columns and len(rows) < len(all_rows) else 0
    if col not in rows.columns or rows.empty:
        return base
    values, brackets, flags = [], [], []
    for _, g in rows.groupby("seed"):
        points = list(zip(g[convention], g[col]))
        v = interpolate_at(points, remaining)
        if v is None:
            continue
        low, high = interpolation_bracket(points, remaining)
        xs = pd.to_numeric(g[convention], errors="coerce")
        used = scored(g[[x == low or x == high or (low == high and _at(x, remaining)) for x in xs]])
        values.append(v)
        brackets.append((low, high))
        run = run_flags(used)  # the seed rests on a collapsed / stopped run if either of its two runs is one
        flags.append((max((c for c, _ in run), default=0), max((st for _, st in run), default=0)))
    cell = seeds(values, flags)
    if cell["mean"] is None:
        return cell
    interpolated = [(lo, hi) for lo, hi in brackets if lo != hi]
    ratio = max((hi / lo if lo > 0 else math.inf for lo, hi in interpolated), default=None)
    return {**cell, "interpolated": bool(interpolated),
            "bracket_low": min(lo for lo, _ in interpolated) if interpolated else None,
            "bracket_high": max(hi for _, hi in interpolated) if interpolated else None,
            "bracket_ratio": ratio, "wide_bracket": ratio is not None and ratio > WIDE_BRACKET}


def one_pool(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """``(rows, left_out)``: the rows of one software stack and training set (the ``pool`` column,
    :func:`movprune.provenance.pool_key`), the pinned one where they differ
    (:func:`movprune.provenance.pinned_pool`), and how many rows of other pools were left out."""
    if "pool" not in rows.columns or rows["pool"].nunique(dropna=True) <= 1:
        return rows, 0
    keep = rows["pool"] == pinned_pool(rows["pool"])
    return rows[keep], int((~keep).sum())


def cell_marks(cells: Sequence[dict]) -> str:
    """The marks of a table cell made of ``cells`` (one per metric): "*" interpolated, "†" wide bracket,
    "‡" includes a collapsed run, "§" records of another stack left out."""
    return ((INTERP_MARK if any(c.get("interpolated") for c in cells) else "")
            + (WIDE_MARK if any(c.get("wide_bracket") for c in cells) else "")
            + (COLLAPSED_MARK if any(c.get("collapsed") for c in cells) else "")
            + (STACK_MARK if any(c.get("other_stack") for c in cells) else ""))


def _fmt(mean, std, digits=1) -> str:
    if mean is None:
        return DASH
    s = f"{mean:.{digits}f}"
    if std is not None:
        s += f" ± {std:.{digits}f}"
    return s


@dataclass
class ResultsTable:
    """What :func:`results_table` returns.

    * ``table`` - formatted cells (strings), rows = methods, columns = (task, remaining %).
    * ``values`` - the same cells long-form: task, method, remaining, metric, mean, std, n, interpolated,
      the bracket (``bracket_low``, ``bracket_high``, ``bracket_ratio``, ``wide_bracket``) and the seeds
      resting on a collapsed run (``collapsed``) or a run stopped on collapse (``stopped``).
    * ``raw_points`` - every L0 / soft movement run behind the interpolated cells.
    * ``paper`` - the paper's cells for the tasks that have a counterpart (None if none).
    * ``notes`` - caveats to print under the table.
    """

    table: pd.DataFrame
    values: pd.DataFrame
    raw_points: pd.DataFrame
    paper: Optional[pd.DataFrame]
    notes: list = field(default_factory=list)

    def beside_paper(self) -> Optional[pd.DataFrame]:
        """Our cells next to the paper's, for the tasks that have a counterpart (None if none).

        Columns ``(SICK 3%, ours)``, ``(SICK 3%, paper (MNLI))``, ... one pair per task and remaining
        weights, so each of our cells (with its n) sits beside the paper's value.
        """
        if self.paper is None:
            return None
        ours = {t for t, _ in self.table.columns}  # our task labels (SST-2, SICK, ...)
        cols, data = [], []
        for ptask, pct in self.paper.columns:
            label = ptask.split(" (paper")[0]
            mine = ptask.split(", vs ")[1].rstrip(")") if ", vs " in ptask else label
            if mine not in ours:
                continue
            cols += [(f"{mine} {pct}", "ours"), (f"{mine} {pct}", "paper" if label == mine else f"paper ({label})")]
            data += [self.table[(mine, pct)], self.paper[(ptask, pct)]]
        if not cols:
            return None
        out = pd.concat(data, axis=1)
        out.columns = pd.MultiIndex.from_tuples(cols, names=["cell", "source"])
        out.index.name = "method"
        return out

    def markdown(self) -> str:
        parts = ["**This reproduction**", "", to_markdown(self.table)]
        if self.paper is not None:
            parts += ["", "**Paper (BERT-base-uncased)**", "", to_markdown(self.paper)]
        if self.notes:
            parts += [""] + [f"- {n}" for n in self.notes]
        return "\n".join(parts)


def results_table(df: pd.DataFrame, tasks: Sequence[str], sparsities: Sequence[float] = (0.10, 0.03, 0.01),
                  distill: bool = False, convention: str = "remaining", digits: int = 1) -> ResultsTable:
    """The paper's Table 2 (``distill=False``) / Table 3 (``distill=True``) layout from our runs.

    Rows: dense, magnitude, L0, movement, soft movement, and the control "encoder all pruned";
    columns: task x remaining weights. Top-k cells are the runs at exactly that target (mean ±
    std over seeds when there are several; every cell ends with its number of seeds, "(n=3)");
    L0 / soft movement cells are interpolated between
    the neighbouring runs (marked "*"; "†" when a seed's two runs are more than 3x apart in kept
    fraction), "—" when no pair of runs brackets the target. A cell including a collapsed run is
    marked "‡" and counts them ("(n=3, 3 stopped on collapse)"). SQuAD
    cells are "EM/F1" and QQP "acc/F1" as in the paper; other tasks show their main metric.
    """
    if isinstance(tasks, str):
        tasks = [t.strip() for t in tasks.split(",") if t.strip()]
    columns = pd.MultiIndex.from_tuples([(task_label(t), pct_label(s)) for t in tasks for s in sparsities],
                                        names=["task", "remaining"])
    index = [METHOD_LABELS[m] for m in TABLE_METHODS]
    table = pd.DataFrame(DASH, index=index, columns=columns)
    table.index.name = "method"
    long = []
    for t in tasks:
        metrics = table_metrics(t, df)
        for m in TABLE_METHODS:
            for s in sparsities:
                cells = []
                for metric in metrics:
                    c = cell_value(df, t, m, s, distill, metric, convention)
                    long.append({"task": t, "method": m, "remaining": s, "metric": metric,
                                 **{k: v for k, v in c.items() if k != "seed_values"}})
                    cells.append(c)
                if all(c["mean"] is None for c in cells):
                    continue
                text = "/".join(_fmt(c["mean"], c["std"], digits) for c in cells) + cell_marks(cells)
                note = collapse_note(max(c["collapsed"] for c in cells), max(c["stopped"] for c in cells))
                text += f" (n={max(c['n'] for c in cells)}" + (f", {note}" if note else "") + ")"  # seeds behind it
                table.loc[METHOD_LABELS[m], (task_label(t), pct_label(s))] = text
    values = pd.DataFrame(long)
    raw = raw_points(df, tasks, distill, convention)
    notes = [
        f"Remaining weights = kept fraction of the encoder's targeted linear weights "
        f"({'paper convention: + biases and LayerNorm' if convention == 'remaining_paper' else 'biases/LayerNorm not counted'}).",
        "Dense and the control (every targeted encoder weight zeroed and frozen) do not depend on the column; "
        "their value is repeated in each.",
        "* = linear interpolation between the two neighbouring L0 / soft movement runs (see raw_points); "
        "— = no run, or the target is not bracketed by two runs (never extrapolated).",
    ]
    if any(c["wide_bracket"] for c in long):
        notes.append(WIDE_NOTE)
    if any(c["collapsed"] for c in long):
        notes.append(COLLAPSED_NOTE)
    if any(c.get("other_stack") for c in long):
        notes.append(STACK_NOTE)
    shown = select(df, task=list(tasks), distill=bool(distill)) if not df.empty else df
    unknown = int(shown["collapsed"].isna().sum()) if "collapsed" in shown else 0
    if unknown:
        notes.append(f"{unknown} run(s) were recorded before collapse_step was kept: whether they collapsed is "
                     f"unknown (no {COLLAPSED_MARK} for them).")
    n_seeds = select(df, task=list(tasks))["seed"].nunique() if not df.empty else 0
    if n_seeds > 1:
        notes.append(f"mean ± standard deviation over {n_seeds} seeds.")
    if distill:
        notes.append("With distillation from the dense fine-tuned model of the same task (the teacher).")
    if not df.empty and "eval_split" in df:
        for t in tasks:
            splits = sorted(set(select(df, task=[t])["eval_split"].dropna()))
            if splits and splits != ["eval"]:
                notes.append(f"{task_label(t)} is scored on its {' / '.join('dev' if x == 'eval' else x for x in splits)} "
                             f"split{'s (mixed: check the records)' if len(splits) > 1 else ''}.")
    paper, paper_notes = paper_results_table(tasks, sparsities, distill)
    notes += paper_notes
    return ResultsTable(table=table, values=values, raw_points=raw, paper=paper, notes=notes)


def raw_points(df: pd.DataFrame, tasks: Sequence[str], distill: Optional[bool] = None,
               convention: str = "remaining") -> pd.DataFrame:
    """Every L0 / soft movement run: task, method, distill, seed, lambda, remaining (%), metrics, whether it
    collapsed (:func:`movprune.records.is_collapsed`, empty when unknown) and the step the collapse rule
    stopped it at (``stopped_at_step``, empty when it trained its budget)."""
    rows = select(df, task=list(tasks), method=list(PENALTY_METHODS))
    if distill is not None:
        rows = rows[rows.distill == bool(distill)]
    cols = ["task", "method", "distill", "seed", "final_lambda", "remaining_pct", "remaining_paper_pct", "score"]
    mcols = sorted(c for c in rows.columns if c.startswith("metric_") and rows[c].notna().any())
    flags = [c for c in ("collapsed", "stopped_at_step") if c in rows.columns]
    out = rows[cols + mcols + flags + ["run_id"]].rename(columns={"final_lambda": "lambda"})
    # display precision: remaining to 1e-4 % (the runs differ at 0.005 %), metrics to 0.01 points
    out = out.round({"remaining_pct": 4, "remaining_paper_pct": 4, "score": 2, **{c: 2 for c in mcols}})
    return out.sort_values(["task", "method", "distill", "seed", "remaining_pct"]).reset_index(drop=True)


def paper_results_table(tasks: Sequence[str], sparsities: Sequence[float] = (0.10, 0.03, 0.01),
                        distill: bool = False, digits: int = 1) -> tuple[Optional[pd.DataFrame], list[str]]:
    """The paper's cells for our tasks' counterparts (SICK -> MNLI acc_m, SQuAD -> SQuAD EM/F1, ...).

    Returns ``(table or None, notes)``. Cells show the printed value; where the authors' runs say
    otherwise (misprints) the runs' value follows in brackets. The paper has no 1% column.
    """
    ref = reference.paper_table()
    table_name = "kd" if distill else "no_kd"
    cols, notes = [], []
    for t in tasks:
        if t not in PAPER_COUNTERPART:
            notes.append(f"{task_label(t)} has no counterpart in the paper (it reports SQuAD, MNLI and QQP only).")
            continue
        ptask, mapping = PAPER_COUNTERPART[t]
        pmetrics = [mapping[m] for m in table_metrics(t) if m in mapping] or list(mapping.values())
        cols.append((t, ptask, pmetrics))
        if t == "sick":
            notes.append("SICK (our offline stand-in) is compared with the paper's MNLI matched accuracy: "
                         "different data, so compare trends, not values.")
    if not cols:
        return None, notes
    columns = pd.MultiIndex.from_tuples(
        [(f"{task_label(ptask)} (paper, vs {task_label(t)})" if ptask != t else f"{task_label(ptask)} (paper)",
          pct_label(s)) for t, ptask, _ in cols for s in sparsities], names=["task", "remaining"])
    index = [METHOD_LABELS[m] for m in TABLE_METHODS]
    out = pd.DataFrame(DASH, index=index, columns=columns)
    out.index.name = "method"
    misprint = False
    for (t, ptask, pmetrics), col0 in zip(cols, range(0, len(columns), len(sparsities))):
        for m in TABLE_METHODS:
            for j, s in enumerate(sparsities):
                rem = 100.0 if m == "dense" else 100.0 * s
                tname = "dense" if m == "dense" else table_name
                parts, interp = [], False
                for pm in pmetrics:
                    hit = ref[(ref.table == tname) & (ref.task == ptask) & (ref.metric == pm) & (ref.method == m)
                              & np.isclose(ref.remaining_pct.astype(float), rem)]
                    if hit.empty:
                        parts = []
                        break
                    vp, vr = float(hit.value_paper.iloc[0]), float(hit.value_runs.iloc[0])
                    txt = f"{vp:.{digits}f}"
                    if not math.isclose(vp, vr, abs_tol=1e-9):
                        txt += f" (runs: {vr:.{digits}f})"
                        misprint = True
                    parts.append(txt)
                    interp = m in PENALTY_METHODS
                if parts:
                    out.iloc[index.index(METHOD_LABELS[m]), col0 + j] = "/".join(parts) + ("*" if interp else "")
    notes.append("Paper: BERT-base-uncased, full training; its Table 2 (no distillation) / Table 3 (distillation). "
                 "The paper has no 1% column and no 'encoder all pruned' control.")
    if misprint:
        notes.append("(runs: x) = the authors' per-run sheet disagrees with the printed value (known misprint).")
    return out, notes


# ---------------------------------------------------------------------------------------------
# Saving


def to_markdown(df: pd.DataFrame, index: bool = True, floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured markdown table (``tabulate`` if installed, else a small built-in formatter)."""
    flat = flatten_columns(df)
    try:
        import tabulate  # noqa: F401

        return flat.to_markdown(index=index, floatfmt=floatfmt)
    except ImportError:
        pass

    def fmt(v):
        if isinstance(v, float):
            return DASH if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = ([str(flat.index.name or "")] if index else []) + [str(c) for c in flat.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for idx, row in flat.iterrows():
        cells = ([fmt(idx)] if index else []) + [fmt(v) for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def flatten_columns(df: pd.DataFrame) -> pd.DataFrame:
    """MultiIndex columns -> 'task remaining' strings (for CSV and markdown)."""
    if isinstance(df.columns, pd.MultiIndex):
        df = df.copy()
        df.columns = [" ".join(str(p) for p in c if str(p)) for c in df.columns]
    return df


def save_table(df: pd.DataFrame, results_dir: str | os.PathLike, name: str, index: bool = True) -> str:
    """Write ``<results_dir>/tables/<name>.csv``; return the table as markdown (for the README)."""
    out = Path(results_dir) / "tables"
    out.mkdir(parents=True, exist_ok=True)
    flat = flatten_columns(df)
    flat.to_csv(out / f"{name}.csv", index=index)
    return to_markdown(df, index=index)
