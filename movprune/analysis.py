"""Tables and figures from the results store: the logic behind the notebooks.

    from movprune import analysis as A
    df = A.load_records("results/small")                   # one row per run
    res = A.results_table(df, ["sst2"], distill=False)       # the paper's Table 2 layout
    A.save_table(res.table, "results/small", "table2_sst2")  # -> tables/table2_sst2.csv, markdown
    fig = A.plot_metric_vs_remaining(df, "sst2", distill=False)
    A.save_figure(fig, "results/small", "metric_vs_remaining_sst2")  # -> figures/*.png|pdf

Conventions:

* ``remaining`` in a record is the kept fraction of the *targeted* encoder linear weights (what the
  method controls); ``remaining_paper`` is the paper's convention (biases and LayerNorm count as
  kept). Tables and figures use ``remaining`` unless ``convention="remaining_paper"``.
* Top-k methods (magnitude, movement) hit their target exactly: table cells take those runs.
  L0 and soft movement do not: as in the paper, their cells are linear interpolations (in
  remaining weights) between the two neighbouring runs that bracket the target; never
  extrapolated (shown as "—"). Interpolated cells carry a "*".
* Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, any backend);
  every method has one colour and marker across all figures (:data:`METHOD_STYLE`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from . import reference

# ---------------------------------------------------------------------------------------------
# Vocabulary

TABLE_METHODS = ("dense", "magnitude", "l0", "movement", "soft_movement", "zero_encoder")
CURVE_METHODS = ("magnitude", "l0", "movement", "soft_movement")
TOPK_METHODS = ("magnitude", "movement")
PENALTY_METHODS = ("l0", "soft_movement")

METHOD_LABELS = {
    "dense": "Dense fine-tuned (100%)",
    "magnitude": "Magnitude pruning",
    "l0": "L0 regularization",
    "movement": "Movement pruning",
    "soft_movement": "Soft movement pruning",
    "zero_encoder": "Encoder all pruned (0%, control)",
}
# Okabe-Ito colours (colour-blind safe); one style per method everywhere.
METHOD_STYLE = {
    "dense": dict(color="#000000", marker=None),
    "magnitude": dict(color="#0072B2", marker="o"),
    "l0": dict(color="#009E73", marker="s"),
    "movement": dict(color="#D55E00", marker="^"),
    "soft_movement": dict(color="#CC79A7", marker="D"),
    "zero_encoder": dict(color="#7F7F7F", marker="x"),
}
PRUNED_COLOR = "#BBBBBB"

TASK_LABELS = {"sst2": "SST-2", "sick": "SICK", "squad": "SQuAD v1.1", "mnli": "MNLI", "qqp": "QQP",
               "cola": "CoLA", "mrpc": "MRPC", "stsb": "STS-B", "qnli": "QNLI", "rte": "RTE"}
METRIC_LABELS = {"accuracy": "accuracy", "exact_match": "EM", "f1": "F1", "mcc": "MCC",
                 "pearson": "Pearson", "spearmanr": "Spearman", "em": "EM", "acc": "acc",
                 "acc_m": "acc (matched)", "acc_mm": "acc (mismatched)"}
# metrics shown in a table cell, joined by "/" as the paper does (default: the main metric)
TABLE_METRICS = {"squad": ("exact_match", "f1"), "qqp": ("accuracy", "f1")}

#: our task -> (paper task, {our metric: paper metric}); SST-2 has no counterpart in the paper.
PAPER_COUNTERPART = {
    "sick": ("mnli", {"accuracy": "acc_m"}),   # SICK is the offline stand-in for MNLI
    "mnli": ("mnli", {"accuracy": "acc_m"}),
    "squad": ("squad", {"exact_match": "em", "f1": "f1"}),
    "qqp": ("qqp", {"accuracy": "acc", "f1": "f1"}),
}
PROFILES = ("smoke", "small", "gpu", "paper")
TYPE_ORDER = ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "intermediate.dense", "output.dense")
TYPE_LABELS = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
               "attention.output.dense": "attn. output", "intermediate.dense": "intermediate",
               "output.dense": "output"}
DASH = "—"


def task_label(task: str) -> str:
    return TASK_LABELS.get(task, task)


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric, metric)


def pct_label(fraction: float) -> str:
    """0.1 -> '10%', 0.03 -> '3%', 0.005 -> '0.5%'."""
    return f"{100 * fraction:g}%"


# ---------------------------------------------------------------------------------------------
# Parameters and loading


class AnalysisError(ValueError):
    """Bad notebook parameters or an unusable results folder; the message says what to fix."""


def runs_dir(results_dir: str | os.PathLike) -> Path:
    """The store folder of ``results_dir``: ``results_dir/runs`` (or ``results_dir`` itself if it holds records)."""
    p = Path(results_dir)
    if (p / "runs").is_dir():
        return p / "runs"
    if p.is_dir() and any(p.glob("*.json")):
        return p
    return p / "runs"


def check_parameters(profile, results_dir, tasks) -> list[str]:
    """Validate the notebook parameters; returns the task list. Raises :class:`AnalysisError`.

    ``profile`` must be one of smoke/small/paper, ``results_dir`` an existing folder holding a
    ``runs/`` store, ``tasks`` a comma-separated string (or a list) of task names.
    """
    if not isinstance(profile, str) or profile not in PROFILES:
        raise AnalysisError(f"parameter profile must be one of {', '.join(PROFILES)} (a string), got {profile!r}")
    if not isinstance(results_dir, (str, os.PathLike)) or not str(results_dir):
        raise AnalysisError(f"parameter results_dir must be a folder path (string), got {results_dir!r}")
    p = Path(results_dir)
    if not p.is_dir():
        raise AnalysisError(f"results_dir {str(p)!r} does not exist (cwd {os.getcwd()}); run the batch first "
                            f"or pass -p results_dir <folder holding runs/>")
    if not (p / "runs").is_dir():
        raise AnalysisError(f"results_dir {str(p)!r} has no runs/ folder (the results store); "
                            f"pass the folder that contains runs/")
    if isinstance(tasks, str):
        task_list = [t.strip().lower() for t in tasks.split(",") if t.strip()]
    elif isinstance(tasks, (list, tuple)):
        task_list = [str(t).strip().lower() for t in tasks if str(t).strip()]
    else:
        raise AnalysisError(f"parameter tasks must be a comma-separated string such as 'sst2,sick', got {tasks!r}")
    if not task_list:
        raise AnalysisError("parameter tasks is empty; give at least one task, e.g. 'sst2'")
    from .data import TASKS

    unknown = [t for t in task_list if t not in TASKS]
    if unknown:
        raise AnalysisError(f"unknown task(s) {', '.join(unknown)}; known: {', '.join(sorted(TASKS))}")
    return task_list


_TARGET_V = re.compile(r"v=([0-9.eE+-]+)")


def _target_remaining(rec: dict) -> Optional[float]:
    """The configured v of a top-k run (the record's ``remaining`` is the measured fraction)."""
    if rec.get("target_remaining") is not None:
        return float(rec["target_remaining"])
    m = _TARGET_V.search(str(rec.get("target") or ""))
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return None
    return None


# recipe fields that change a run's result besides its budget: records differing there are different
# configurations (none may hide another); a record without the field had the legacy value
RECIPE_FIELDS = ("lr", "score_lr", "max_length", "final_threshold", "freeze_embeddings", "bf16", "group_by_length",
                 "constant_lambda", "sparsity_warmup_steps", "sparsity_cooldown_steps", "stop_on_collapse")
RECORD_COLUMNS = ["run_id", "task", "model", "method", "scope", "distill", "seed", "final_lambda", "target_remaining",
                  *RECIPE_FIELDS,
                  "remaining", "remaining_paper", "remaining_pct", "remaining_paper_pct", "main_metric", "score",
                  "steps", "train_time_s", "device", "finished_at", "metrics", "per_layer", "per_type", "per_matrix",
                  "npz"]


def records_frame(records: Iterable[dict], store_root: Optional[Path] = None) -> pd.DataFrame:
    """Records (dicts) -> one row each: main fields, ``metric_<name>`` columns, dict columns kept."""
    rows = []
    for rec in records:
        metrics = dict(rec.get("metrics") or {})
        method = rec.get("method")
        target = _target_remaining(rec) if method in TOPK_METHODS else None
        if target is None and method in TOPK_METHODS:
            target = rec.get("remaining")
        remaining = rec.get("remaining")
        remaining_paper = rec.get("remaining_paper")
        if method == "zero_encoder":  # every targeted weight is zero, though no mask counts it
            remaining = 0.0
        npz = None
        if store_root is not None and rec.get("run_id"):
            p = store_root / f"{rec['run_id']}.npz"
            npz = str(p) if p.is_file() else None
        row = {
            "run_id": rec.get("run_id"), "task": rec.get("task"), "model": rec.get("model"), "method": method,
            "scope": rec.get("scope") or "local", "distill": bool(rec.get("distill", False)),
            "seed": rec.get("seed", 0), "final_lambda": rec.get("final_lambda"), "target_remaining": target,
            "remaining": remaining, "remaining_paper": remaining_paper,
            "remaining_pct": None if remaining is None else 100.0 * remaining,
            "remaining_paper_pct": None if remaining_paper is None else 100.0 * remaining_paper,
            "main_metric": rec.get("main_metric"),
            "score": rec.get("score", metrics.get(rec.get("main_metric"))),
            "steps": rec.get("steps"), "train_time_s": rec.get("train_time_s"), "device": rec.get("device"),
            "finished_at": rec.get("finished_at"),
            "metrics": metrics, "per_layer": rec.get("per_layer") or {}, "per_type": rec.get("per_type") or {},
            "per_matrix": rec.get("per_matrix") or {}, "npz": npz,
        }
        from .train import LEGACY_VALUES

        for k in RECIPE_FIELDS:
            row[k] = rec.get(k, LEGACY_VALUES.get(k))
        for k, v in metrics.items():
            row[f"metric_{k}"] = v
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=RECORD_COLUMNS)
    for c in ("remaining", "remaining_paper", "remaining_pct", "remaining_paper_pct", "score", "final_lambda",
              "target_remaining"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["distill"] = df["distill"].astype(bool)
    return df


def _dedupe(df: pd.DataFrame) -> pd.DataFrame:
    """Keep the newest record of each configuration (task, model, method, target, distill, seed and the
    recipe fields); records that differ only in budget (steps, examples) are the same configuration."""
    if df.empty:
        return df
    key = ["task", "model", "method", "scope", "distill", "seed", "target_remaining", "final_lambda", *RECIPE_FIELDS]
    k = ["|".join(repr(v) for v in row) for row in df[key].itertuples(index=False, name=None)]
    order = [str(v) if isinstance(v, str) else "" for v in df["finished_at"]]
    keep = df.assign(_k=k, _o=order).sort_values("_o").drop_duplicates("_k", keep="last").index
    dropped = len(df) - len(keep)
    if dropped:
        print(f"note: {dropped} older record(s) of the same configuration (other budget) ignored; newest kept")
    return df.loc[sorted(keep)]


def load_records(store_dir: str | os.PathLike, model: Optional[str] = None, dedupe: bool = True) -> pd.DataFrame:
    """Every readable record of the store as a DataFrame (one row per run).

    ``store_dir`` is the store folder or a results folder holding ``runs/``. ``model`` keeps only
    that model's runs. Columns: see :data:`RECORD_COLUMNS`, plus ``metric_<name>`` per metric.
    ``remaining`` of the control run (``zero_encoder``) is 0.
    """
    from .store import ResultStore

    root = runs_dir(store_dir)
    df = records_frame(ResultStore(root).records(), root)
    if model is not None and not df.empty:
        df = df[df.model == model]
    if dedupe:
        df = _dedupe(df)
    return df.reset_index(drop=True)


def select(df: pd.DataFrame, task=None, method=None, distill=None, scope=None, model=None, seed=None) -> pd.DataFrame:
    """Rows matching every given filter (a value or a list of values)."""
    out = df
    for col, val in (("task", task), ("method", method), ("distill", distill), ("scope", scope),
                     ("model", model), ("seed", seed)):
        if val is None:
            continue
        vals = list(val) if isinstance(val, (list, tuple, set)) else [val]
        out = out[out[col].isin(vals)]
    return out


def dense_score(df: pd.DataFrame, task: str, metric: Optional[str] = None) -> tuple[Optional[float], Optional[float], int]:
    """``(mean, std, n)`` of the dense runs of ``task`` (None when absent)."""
    return _agg(_metric_values(select(df, task=task, method="dense"), metric))


def expected_runs(profile: str, tasks: Sequence[str]) -> pd.DataFrame:
    """The runs a profile makes for ``tasks``: ``run_id, group, task, method, target, distill, seed``."""
    from .profiles import get_profile

    prof = get_profile(profile)
    valid = [t for t in tasks if t in prof.budgets]
    rows = []
    for group, configs in prof.configs(tasks=valid).items():
        for c in configs:
            target = "encoder all pruned (control)" if c.method == "zero_encoder" else c.pruning_config().target_summary
            rows.append({"run_id": c.run_id(), "group": group, "task": c.task, "method": c.method,
                         "target": target, "distill": c.distill, "seed": c.seed})
    return pd.DataFrame(rows).drop_duplicates("run_id").reset_index(drop=True)


def missing_runs(df: pd.DataFrame, profile: str, tasks: Sequence[str]) -> pd.DataFrame:
    """The profile's runs for ``tasks`` that have no record in ``df`` (empty when complete)."""
    exp = expected_runs(profile, tasks)
    if exp.empty:
        return exp
    have = set(df["run_id"]) if not df.empty else set()
    return exp[~exp.run_id.isin(have)].reset_index(drop=True)


def describe_missing(df: pd.DataFrame, profile: str, tasks: Sequence[str]) -> str:
    """A short human summary of :func:`missing_runs` (one line per task)."""
    from .profiles import get_profile

    prof = get_profile(profile)
    lines = []
    for t in tasks:
        if t not in prof.budgets:
            lines.append(f"{t}: not a task of the {profile} profile (tasks: {', '.join(prof.budgets)})")
    miss = missing_runs(df, profile, tasks)
    exp = expected_runs(profile, tasks)
    for t in tasks:
        m, e = miss[miss.task == t], exp[exp.task == t]
        if e.empty:
            continue
        if m.empty:
            lines.append(f"{t}: all {len(e)} runs of the {profile} profile are in the store")
        else:
            what = ", ".join(f"{r.target}{' +KD' if r.distill else ''}" for r in m.head(8).itertuples())
            more = f" and {len(m) - 8} more" if len(m) > 8 else ""
            lines.append(f"{t}: {len(m)} of {len(e)} runs missing ({what}{more}); figures and tables show what exists")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Interpolation


def interpolate_at(points, target: float) -> Optional[float]:
    """Linear interpolation (in remaining weights) of ``[(remaining, score), ...]`` at ``target``.

    Uses the two neighbouring runs that bracket ``target`` (the nearest below and above). A run
    exactly at ``target`` is returned as is (several: their mean). Returns None when ``target`` is
    not bracketed: never extrapolates. Points with a missing or non-finite coordinate are ignored.
    """
    pts = []
    for p in points:
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            pts.append((x, y))
    target = float(target)
    exact = [y for x, y in pts if math.isclose(x, target, rel_tol=1e-9, abs_tol=1e-12)]
    if exact:
        return float(np.mean(exact))
    below = [x for x, _ in pts if x < target]
    above = [x for x, _ in pts if x > target]
    if not below or not above:
        return None
    x0, x1 = max(below), min(above)
    y0 = float(np.mean([y for x, y in pts if x == x0]))
    y1 = float(np.mean([y for x, y in pts if x == x1]))
    return y0 + (target - x0) * (y1 - y0) / (x1 - x0)


# ---------------------------------------------------------------------------------------------
# Results table


def _metric_col(metric: Optional[str]) -> str:
    return "score" if metric in (None, "score") else f"metric_{metric}"


def _metric_values(rows: pd.DataFrame, metric: Optional[str]) -> list[float]:
    col = _metric_col(metric)
    if col not in rows.columns:
        return []
    return [float(v) for v in rows[col] if v is not None and not pd.isna(v)]


def _agg(values: Sequence[float]) -> tuple[Optional[float], Optional[float], int]:
    vals = [v for v in values if v is not None and not pd.isna(v)]
    if not vals:
        return None, None, 0
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
    return float(np.mean(vals)), std, len(vals)


def _main_metric(df: pd.DataFrame, task: str) -> Optional[str]:
    """The main metric of ``task``: from its records, else from the task registry."""
    mm = select(df, task=task)["main_metric"].dropna() if not df.empty else []
    if len(mm):
        return str(mm.iloc[0])
    from .data import main_metric

    try:
        return main_metric(task)
    except Exception:  # noqa: BLE001 - unknown task: no label
        return None


def table_metrics(task: str, df: Optional[pd.DataFrame] = None) -> list[str]:
    """Metrics shown for ``task`` in a table cell (SQuAD: EM/F1, QQP: acc/F1, else the main metric)."""
    if task in TABLE_METRICS:
        return list(TABLE_METRICS[task])
    m = _main_metric(df if df is not None else pd.DataFrame(columns=RECORD_COLUMNS), task)
    return [m] if m else ["score"]


def cell_value(df: pd.DataFrame, task: str, method: str, remaining: float, distill: bool, metric: Optional[str],
               convention: str = "remaining", scope: str = "local") -> dict:
    """One table cell: ``{mean, std, n, interpolated}`` (mean None when no run gives it)."""
    base = dict(mean=None, std=None, n=0, interpolated=False)
    if method in ("dense", "zero_encoder"):
        rows = select(df, task=task, method=method)
        mean, std, n = _agg(_metric_values(rows, metric))
        return {**base, "mean": mean, "std": std, "n": n}
    rows = select(df, task=task, method=method, distill=distill)
    if method in TOPK_METHODS:
        rows = rows[(rows.scope == scope) & np.isclose(rows.target_remaining.astype(float), remaining, rtol=1e-6)]
        mean, std, n = _agg(_metric_values(rows, metric))
        return {**base, "mean": mean, "std": std, "n": n}
    col = _metric_col(metric)
    if col not in rows.columns or rows.empty:
        return base
    values = []
    for _, g in rows.groupby("seed"):
        v = interpolate_at(list(zip(g[convention], g[col])), remaining)
        if v is not None:
            values.append(v)
    mean, std, n = _agg(values)
    exact = any(math.isclose(x, remaining, rel_tol=1e-9) for x in rows[convention].dropna())
    return {**base, "mean": mean, "std": std, "n": n, "interpolated": mean is not None and not exact}


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
    * ``values`` - the same cells long-form: task, method, remaining, metric, mean, std, n, interpolated.
    * ``raw_points`` - every L0 / soft movement run behind the interpolated cells.
    * ``paper`` - the paper's cells for the tasks that have a counterpart (None if none).
    * ``notes`` - caveats to print under the table.
    """

    table: pd.DataFrame
    values: pd.DataFrame
    raw_points: pd.DataFrame
    paper: Optional[pd.DataFrame]
    notes: list = field(default_factory=list)

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
    std over seeds when there are several); L0 / soft movement cells are interpolated between
    the neighbouring runs (marked "*"), "—" when no pair of runs brackets the target. SQuAD
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
                    long.append({"task": t, "method": m, "remaining": s, "metric": metric, **c})
                    cells.append(c)
                if all(c["mean"] is None for c in cells):
                    continue
                text = "/".join(_fmt(c["mean"], c["std"], digits) for c in cells)
                if any(c["interpolated"] for c in cells):
                    text += "*"
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
    n_seeds = select(df, task=list(tasks))["seed"].nunique() if not df.empty else 0
    if n_seeds > 1:
        notes.append(f"mean ± standard deviation over {n_seeds} seeds.")
    if distill:
        notes.append("With distillation from the dense fine-tuned model of the same task (the teacher).")
    paper, paper_notes = paper_results_table(tasks, sparsities, distill)
    notes += paper_notes
    return ResultsTable(table=table, values=values, raw_points=raw, paper=paper, notes=notes)


def raw_points(df: pd.DataFrame, tasks: Sequence[str], distill: Optional[bool] = None,
               convention: str = "remaining") -> pd.DataFrame:
    """Every L0 / soft movement run: task, method, distill, seed, lambda, remaining (%), metrics."""
    rows = select(df, task=list(tasks), method=list(PENALTY_METHODS))
    if distill is not None:
        rows = rows[rows.distill == bool(distill)]
    cols = ["task", "method", "distill", "seed", "final_lambda", "remaining_pct", "remaining_paper_pct", "score"]
    mcols = sorted(c for c in rows.columns if c.startswith("metric_") and rows[c].notna().any())
    out = rows[cols + mcols + ["run_id"]].rename(columns={"final_lambda": "lambda"})
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


def save_figure(fig, results_dir: str | os.PathLike, name: str, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``<results_dir>/figures/<name>.png`` (dpi 150) and ``.pdf``; returns both paths."""
    out = Path(results_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    fig.savefig(png, dpi=dpi, bbox_inches="tight")
    fig.savefig(pdf, bbox_inches="tight")
    return png, pdf


# ---------------------------------------------------------------------------------------------
# Figures: helpers


def _figure(nrows=1, ncols=1, figsize=(7, 4.5), **kw):
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _style_log_remaining(ax, xmin_pct: float = 0.8, xmax_pct: float = 100.0, label: Optional[str] = None) -> None:
    """Log x axis in percent with ticks at 1%, 3%, 10%, 30%, 100%."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    lo = min(0.8, xmin_pct * 0.8)
    hi = max(110.0, xmax_pct * 1.1)
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.1, 0.3, 1, 3, 10, 30, 100) if lo <= t <= hi]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.grid(True, which="major", alpha=0.35)
    ax.set_xlabel(label or "remaining weights (log scale)")


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#555555", wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def _title(task: str, df: pd.DataFrame, profile: Optional[str], extra: str = "") -> str:
    models = select(df, task=task)["model"].dropna().unique()
    who = ", ".join(map(str, models)) if len(models) else "no runs in the store"
    if profile:
        who += f" ({profile} profile)"
    return f"{task_label(task)} — {who}" + (f" — {extra}" if extra else "")


def method_curve(df: pd.DataFrame, task: str, method: str, distill: bool = False, scope: str = "local",
                 metric: Optional[str] = None, convention: str = "remaining") -> pd.DataFrame:
    """Points of one method's curve: ``x`` (remaining %), ``y`` mean, ``yerr`` std, ``n`` seeds.

    Runs of one configuration (same target v, or same lambda) are averaged over seeds.
    """
    rows = select(df, task=task, method=method, distill=distill)
    if method in TOPK_METHODS:
        rows = rows[rows.scope == scope]
    col = _metric_col(metric)
    if rows.empty or col not in rows.columns:
        return pd.DataFrame(columns=["x", "y", "yerr", "n"])
    key = "target_remaining" if method in TOPK_METHODS else "final_lambda"
    out = []
    for _, g in rows.groupby(rows[key].astype(str)):
        ys = [v for v in g[col] if not pd.isna(v)]
        if not ys:
            continue
        out.append({"x": 100.0 * float(np.mean(g[convention])), "y": float(np.mean(ys)),
                    "yerr": float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0, "n": len(ys)})
    return pd.DataFrame(out).sort_values("x").reset_index(drop=True) if out else pd.DataFrame(columns=["x", "y", "yerr", "n"])


def _plot_curve(ax, pts: pd.DataFrame, method: str, label: Optional[str] = None, linestyle="-", hollow=False,
                alpha=1.0) -> bool:
    if pts.empty:
        return False
    st = METHOD_STYLE[method]
    kw = dict(color=st["color"], marker=st["marker"], linestyle=linestyle, label=label, alpha=alpha,
              markersize=6, linewidth=1.6)
    if hollow:
        kw.update(markerfacecolor="white", markeredgewidth=1.4)
    if (pts.get("n", pd.Series([1])) > 1).any():
        ax.errorbar(pts.x, pts.y, yerr=pts.yerr, capsize=3, **kw)
    else:
        ax.plot(pts.x, pts.y, **kw)
    return True


def _paper_series(task: str, metric: Optional[str], distill: bool, main_metric: Optional[str]):
    """(paper task, paper metric) for our task and metric, or None."""
    if task not in PAPER_COUNTERPART:
        return None
    ptask, mapping = PAPER_COUNTERPART[task]
    m = metric or main_metric
    if m in mapping:
        return ptask, mapping[m]
    return ptask, next(iter(mapping.values()))


def _legend_entries(axes):
    """Unique legend entries of ``axes``: method curves first (in method order), then reference lines."""
    handles, labels = [], []
    for a in axes:
        h, l = a.get_legend_handles_labels()
        for hh, ll in zip(h, l):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    order = {lab: i for i, lab in enumerate(METHOD_LABELS[m] for m in TABLE_METHODS)}

    def key(item):
        lab = item[1]
        base = lab[len("paper: "):] if lab.startswith("paper: ") else lab
        base = base.split(",")[0]
        return (0, lab.startswith("paper: "), order[base]) if base in order else (1, 0, 0)

    pairs = sorted(zip(handles, labels), key=key)
    return [p[0] for p in pairs], [p[1] for p in pairs]


# ---------------------------------------------------------------------------------------------
# Figure 1: metric vs remaining weights


def plot_metric_vs_remaining(df: pd.DataFrame, task: str, distill: bool = False, ax=None, paper_points=None,
                             metric: Optional[str] = None, profile: Optional[str] = None,
                             convention: str = "remaining", methods: Sequence[str] = CURVE_METHODS):
    """Metric vs remaining weights (log x) for the four methods, with dense and 95%-of-dense lines.

    ``paper_points``: None = the authors' runs of the matching paper task when there is one
    (SICK -> MNLI acc_m, SQuAD -> SQuAD), False = none, or a DataFrame with ``method,
    remaining_pct, value``. Without ``ax`` the paper's points get their own panel, labelled
    "paper (BERT-base)" (its dense model and scale differ); with ``ax`` they go on a second y axis.
    Error bars show the std over seeds when a configuration has several. Returns the figure.
    """
    main_metric = _main_metric(df, task)
    ylabel = f"{task_label(task)} {metric_label(metric or main_metric or 'score')} (%)"
    pseries = None
    if paper_points is None:
        ps = _paper_series(task, metric, distill, main_metric)
        if ps is not None:
            pseries = ps
            paper_points = reference.paper_points(ps[0], ps[1], distill=distill)
    elif paper_points is False:
        paper_points = None
    two_panels = ax is None and paper_points is not None and len(paper_points)
    if ax is None:
        fig, axes = _figure(1, 2 if two_panels else 1, figsize=(11.5, 4.6) if two_panels else (7, 4.6))
        ax = axes[0][0]
        pax = axes[0][1] if two_panels else None
    else:
        fig, pax = ax.figure, None

    xs = []
    any_curve = False
    for m in methods:
        pts = method_curve(df, task, m, distill, metric=metric, convention=convention)
        any_curve |= _plot_curve(ax, pts, m, METHOD_LABELS[m])
        xs += list(pts.x)
    dmean, _, dn = dense_score(df, task, metric)
    if dmean is not None:
        ax.axhline(dmean, color="black", linewidth=1.2, label=f"dense ({dmean:.1f})")
        ax.axhline(0.95 * dmean, color="black", linewidth=1.0, linestyle="--", label="95% of dense")
    zmean, _, _ = _agg(_metric_values(select(df, task=task, method="zero_encoder"), metric))
    if zmean is not None:
        ax.axhline(zmean, color=METHOD_STYLE["zero_encoder"]["color"], linewidth=1.0, linestyle=":",
                   label=f"encoder all pruned ({zmean:.1f})")
    _style_log_remaining(ax, min(xs) if xs else 1.0, label="remaining weights (% of encoder linear weights, log)")
    ax.set_ylabel(ylabel)
    if not any_curve and dmean is None:
        _no_data(ax, f"no runs of {task_label(task)} in the store")
    ax.set_title(_title(task, df, profile, "with distillation" if distill else "no distillation"), fontsize=10)

    if paper_points is not None and len(paper_points):
        pp = paper_points
        ptask, pmetric = pseries if pseries else ("paper", "")
        target_ax = pax if pax is not None else ax.twinx()
        pd_dense = pp[pp.method == "dense"]["value"]
        pxs = []
        for m in methods:
            sub = pp[pp.method == m].sort_values("remaining_pct")
            if sub.empty:
                continue
            pts = pd.DataFrame({"x": sub.remaining_pct, "y": sub.value, "yerr": 0.0, "n": 1})
            lab = f"paper: {METHOD_LABELS[m]}" if pax is None else METHOD_LABELS[m]
            _plot_curve(target_ax, pts, m, None if pax is not None and any_curve else lab,
                        linestyle=":" if pax is None else "-", hollow=True, alpha=0.9)
            pxs += list(sub.remaining_pct)
        if len(pd_dense):
            dv = float(pd_dense.iloc[0])
            target_ax.axhline(dv, color="black", linewidth=1.2, alpha=0.6 if pax is None else 1.0,
                              label=None if pax is not None and dmean is not None else f"paper dense ({dv:.1f})")
            target_ax.axhline(0.95 * dv, color="black", linewidth=1.0, linestyle="--", alpha=0.6 if pax is None else 1.0,
                              label="95% of dense")
        plabel = f"paper (BERT-base): {task_label(ptask)} {metric_label(pmetric)} (%)"
        if pax is not None:
            _style_log_remaining(pax, min(pxs) if pxs else 1.0,
                                 label="remaining weights (% incl. biases/LayerNorm, log)")
            pax.set_ylabel(plabel)
            pax.set_title(f"paper (BERT-base) — {task_label(ptask)}, "
                          f"{'with' if distill else 'no'} distillation; hollow markers", fontsize=10)
        else:
            target_ax.set_ylabel(plabel)

    handles, labels = _legend_entries(fig.axes)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# Figures 2-3: weights of one matrix (npz side files)


def load_npz(path_or_arrays) -> dict:
    """The side file of a run as ``{matrix, pretrained, finetuned, mask, [scores]}`` (float32 arrays).

    Also ``run`` - the run's record next to the side file (``<run_id>.json``), or {} - which the
    figures use for their titles (task, model, method, target).
    """
    if isinstance(path_or_arrays, dict):
        d = dict(path_or_arrays)
        path = None
    else:
        path = Path(path_or_arrays)
        with np.load(path) as z:
            d = {k: z[k] for k in z.files}
    run = d.get("run") if isinstance(d.get("run"), dict) else {}
    if path is not None:
        rec = path.with_suffix(".json")
        if rec.is_file():
            try:
                import json

                run = json.loads(rec.read_text(encoding="utf-8"))
            except ValueError:
                run = {}
    out = {"matrix": str(d.get("matrix", "")), "path": None if path is None else str(path), "run": run}
    for k in ("pretrained", "finetuned", "mask", "scores"):
        if k in d:
            out[k] = np.asarray(d[k], dtype=np.float32).reshape(-1)
    for k in ("pretrained", "finetuned", "mask"):
        if k not in out:
            raise ValueError(f"side file {out['path'] or '<arrays>'} has no {k!r} array")
    return out


def _run_context(d: dict, profile: Optional[str] = None, with_target: bool = False) -> str:
    """'SST-2 — tiny (smoke profile)' (+ ' — movement v=0.1 local') from a side file's record."""
    run = d.get("run") or {}
    bits = []
    if run.get("task"):
        who = str(run.get("model", ""))
        if profile:
            who += f" ({profile} profile)"
        bits.append(f"{task_label(run['task'])} — {who}".rstrip(" —"))
    elif profile:
        bits.append(f"{profile} profile")
    if with_target and run.get("target"):
        bits.append(str(run["target"]) + (" +KD" if run.get("distill") else ""))
    return " — ".join(bits)


def npz_for(df: pd.DataFrame, task: str, method: str, remaining: Optional[float] = None, distill: bool = False,
            scope: str = "local", final_lambda: Optional[float] = None, seed: Optional[int] = None) -> Optional[str]:
    """Path of the side file of a matching run (top-k: target ``remaining``; L0/soft: ``final_lambda``,
    or the run closest to ``remaining``). None when no such run (or it has no side file)."""
    rows = select(df, task=task, method=method, distill=distill, seed=seed)
    if method in TOPK_METHODS:
        rows = rows[rows.scope == scope]
        if remaining is not None:
            rows = rows[np.isclose(rows.target_remaining.astype(float), remaining, rtol=1e-6)]
    elif final_lambda is not None:
        rows = rows[np.isclose(rows.final_lambda.astype(float), final_lambda)]
    elif remaining is not None and not rows.empty:
        rows = rows.iloc[[int(np.argmin(np.abs(np.log(rows.remaining.clip(lower=1e-6)) - math.log(remaining))))]]
    rows = rows[rows.npz.notna()]
    if rows.empty:
        return None
    return str(rows.sort_values("seed").npz.iloc[0])


def _kept(d: dict) -> np.ndarray:
    return d["mask"] > 0.5


def plot_weights_pretrained_vs_finetuned(npz_magnitude, npz_movement, titles: Sequence[str] = ("Magnitude pruning",
                                         "Movement pruning"), suptitle: Optional[str] = None,
                                         profile: Optional[str] = None):
    """Fine-tuned vs pre-trained value of each sampled weight, one panel per method.

    Pruned weights in grey, kept weights in the method's colour (after the paper's Figure 4):
    magnitude keeps weights far from zero; movement keeps those that moved away from zero
    during fine-tuning, whatever their pre-trained value.
    """
    fig, axes = _figure(1, 2, figsize=(11, 5), sharex=True, sharey=True)
    for ax, src, method, title in zip(axes[0], (npz_magnitude, npz_movement), ("magnitude", "movement"), titles):
        if src is None:
            _no_data(ax, f"no {METHOD_LABELS[method].lower()} run with a weight sample in the store")
            ax.set_title(title, fontsize=10)
            continue
        d = load_npz(src)
        kept = _kept(d)
        ax.scatter(d["pretrained"][~kept], d["finetuned"][~kept], s=2, color=PRUNED_COLOR, alpha=0.5,
                   label=f"pruned ({(~kept).sum():,})", rasterized=True, linewidths=0)
        ax.scatter(d["pretrained"][kept], d["finetuned"][kept], s=3, color=METHOD_STYLE[method]["color"],
                   alpha=0.7, label=f"kept ({kept.sum():,})", rasterized=True, linewidths=0)
        lim = float(np.nanmax(np.abs(np.concatenate([d["pretrained"], d["finetuned"]])))) * 1.05 or 1.0
        ax.plot([-lim, lim], [-lim, lim], color="black", linewidth=0.7, linestyle="--", label="unchanged (y = x)")
        ax.axhline(0, color="black", linewidth=0.4)
        ax.axvline(0, color="black", linewidth=0.4)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal", adjustable="box")
        ax.grid(True, alpha=0.3)
        ax.set_title(f"{title}: {100 * kept.mean():.1f}% kept", fontsize=10)
        ax.set_xlabel("pre-trained value")
        ax.legend(loc="upper left", fontsize=8, markerscale=3, framealpha=0.9)
    axes[0][0].set_ylabel("fine-tuned value")
    fig.suptitle(suptitle or _npz_suptitle(profile, npz_magnitude, npz_movement), fontsize=10)
    return fig


def _npz_suptitle(profile, *srcs) -> str:
    for s in srcs:
        if s is not None:
            d = load_npz(s)
            ctx = _run_context(d, profile)
            return (f"{ctx} — " if ctx else "") + f"{d['matrix']} ({d['pretrained'].size:,} sampled weights)"
    return "no weight samples"


def plot_remaining_histogram(npz_mag, npz_mvmt, bins: int = 80, title: Optional[str] = None,
                             profile: Optional[str] = None):
    """Distribution of the kept (fine-tuned) weight values of one matrix, magnitude vs movement.

    At equal sparsity magnitude pruning leaves a bimodal distribution with no weight near zero;
    movement pruning keeps small weights too (the paper's Figure 5).
    """
    fig, axes = _figure(1, 1, figsize=(7.5, 4.5))
    ax = axes[0][0]
    datas = [(load_npz(s), m) for s, m in ((npz_mag, "magnitude"), (npz_mvmt, "movement")) if s is not None]
    if not datas:
        _no_data(ax, "no magnitude or movement run with a weight sample in the store")
        return fig
    allv = np.concatenate([d["finetuned"][_kept(d)] for d, _ in datas if _kept(d).any()] or [np.zeros(1)])
    lim = float(np.nanmax(np.abs(allv))) or 1.0
    edges = np.linspace(-lim, lim, bins + 1)
    for d, m in datas:
        kept = _kept(d)
        ax.hist(d["finetuned"][kept], bins=edges, histtype="stepfilled", alpha=0.35, color=METHOD_STYLE[m]["color"])
        ax.hist(d["finetuned"][kept], bins=edges, histtype="step", linewidth=1.5, color=METHOD_STYLE[m]["color"],
                label=f"{METHOD_LABELS[m]} ({100 * kept.mean():.1f}% kept, n={kept.sum():,})")
    ax.axvline(0, color="black", linewidth=0.6)
    ax.set_xlabel("fine-tuned weight value (kept weights only)")
    ax.set_ylabel("count (sampled weights)")
    ax.grid(True, alpha=0.3)
    ctx = _run_context(datas[0][0], profile)
    ax.set_title(title or (f"{ctx}\n" if ctx else "") + f"kept weights of {datas[0][0]['matrix']} at equal sparsity",
                 fontsize=10)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def plot_score_vs_weight(npz_mvmt, title: Optional[str] = None, profile: Optional[str] = None):
    """Learned movement scores vs fine-tuned weight values of one matrix; kept vs pruned coloured."""
    fig, axes = _figure(1, 1, figsize=(7, 5))
    ax = axes[0][0]
    if npz_mvmt is None:
        _no_data(ax, "no movement run with a weight sample in the store")
        return fig
    d = load_npz(npz_mvmt)
    if "scores" not in d:
        raise ValueError(f"side file {d['path'] or '<arrays>'} has no scores (not a movement / L0 / soft movement run)")
    kept = _kept(d)
    ax.scatter(d["finetuned"][~kept], d["scores"][~kept], s=2, color=PRUNED_COLOR, alpha=0.5,
               label=f"pruned ({(~kept).sum():,})", rasterized=True, linewidths=0)
    ax.scatter(d["finetuned"][kept], d["scores"][kept], s=3, color=METHOD_STYLE["movement"]["color"], alpha=0.7,
               label=f"kept ({kept.sum():,})", rasterized=True, linewidths=0)
    ax.axvline(0, color="black", linewidth=0.4)
    ax.axhline(0, color="black", linewidth=0.4)
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("fine-tuned weight value")
    ax.set_ylabel("movement score S")
    ctx = _run_context(d, profile, with_target=True)
    ax.set_title(title or (f"{ctx}\n" if ctx else "")
                 + f"movement scores vs weights of {d['matrix']} ({100 * kept.mean():.1f}% kept)", fontsize=10)
    ax.legend(loc="upper left", fontsize=8, markerscale=3, framealpha=0.9)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 4: local vs global


def plot_local_vs_global(df: pd.DataFrame, task: str, distill: bool = False, metric: Optional[str] = None,
                         profile: Optional[str] = None, convention: str = "remaining"):
    """Metric vs remaining weights for magnitude and movement: local (solid) vs global (dashed, hollow markers)."""
    fig, axes = _figure(1, 1, figsize=(7.5, 4.8))
    ax = axes[0][0]
    xs, any_curve = [], False
    for m in TOPK_METHODS:
        for scope, ls in (("local", "-"), ("global", "--")):
            pts = method_curve(df, task, m, distill, scope=scope, metric=metric, convention=convention)
            any_curve |= _plot_curve(ax, pts, m, f"{METHOD_LABELS[m]}, {scope}", linestyle=ls, hollow=scope == "global")
            xs += list(pts.x)
    dmean, _, _ = dense_score(df, task, metric)
    if dmean is not None:
        ax.axhline(dmean, color="black", linewidth=1.2, label=f"dense ({dmean:.1f})")
        ax.axhline(0.95 * dmean, color="black", linewidth=1.0, linestyle=":", label="95% of dense")
    _style_log_remaining(ax, min(xs) if xs else 1.0, label="remaining weights (% of encoder linear weights, log)")
    ax.set_ylabel(f"{task_label(task)} {metric_label(metric or _main_metric(df, task) or 'score')} (%)")
    if not any_curve:
        _no_data(ax, f"no magnitude / movement runs of {task_label(task)} in the store")
    ax.set_title(_title(task, df, profile, "local vs global top-k"), fontsize=10)
    h, l = _legend_entries([ax])
    if h:
        fig.legend(h, l, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# Figure 5: per layer / per matrix type


def _layer_index(name: str) -> Optional[int]:
    m = re.search(r"\.(\d+)\.", name + ".")
    return int(m.group(1)) if m else None


def _type_of(name: str) -> str:
    m = re.search(r"\.(\d+)\.", name + ".")
    return (name + ".")[m.end():].rstrip(".") if m else name


def per_matrix_grid(per_matrix: dict) -> pd.DataFrame:
    """``{module name: kept fraction}`` -> DataFrame layer x matrix type (kept fraction)."""
    rows = [{"layer": _layer_index(n), "type": _type_of(n), "kept": v} for n, v in per_matrix.items()]
    if not rows:
        return pd.DataFrame()
    g = pd.DataFrame(rows).dropna(subset=["layer"]).pivot_table(index="layer", columns="type", values="kept")
    order = [t for t in TYPE_ORDER if t in g.columns] + [t for t in g.columns if t not in TYPE_ORDER]
    return g[order].sort_index()


def _pick_run(df, task, method, scope, remaining, distill=False):
    rows = select(df, task=task, method=method, distill=distill)
    rows = rows[(rows.scope == scope) & np.isclose(rows.target_remaining.astype(float), remaining, rtol=1e-6)]
    return None if rows.empty else rows.sort_values("seed").iloc[0]


def plot_per_layer(df: pd.DataFrame, task: str, remaining: float = 0.10, distill: bool = False,
                   scope: str = "global", profile: Optional[str] = None):
    """Where the kept weights are, for magnitude and movement (global top-k) at ``remaining``.

    Top: kept fraction per layer (bars) and per matrix type (grouped bars). Bottom: layer x type
    heat maps (from ``per_matrix``). Local top-k keeps exactly v in every matrix, so global runs
    are the informative ones; missing runs leave their bars out and are named in the panel.
    """
    fig, axes = _figure(2, 2, figsize=(12, 8.5))
    runs = {m: _pick_run(df, task, m, scope, remaining, distill) for m in TOPK_METHODS}
    present = {m: r for m, r in runs.items() if r is not None}
    width = 0.8 / max(1, len(TOPK_METHODS))
    # per layer
    ax = axes[0][0]
    if present:
        layers = sorted({int(k) for r in present.values() for k in r.per_layer if str(k).lstrip("-").isdigit()})
        for i, m in enumerate(TOPK_METHODS):
            r = runs[m]
            if r is None:
                continue
            vals = [100 * float(r.per_layer.get(str(l), r.per_layer.get(l, np.nan))) for l in layers]
            ax.bar(np.arange(len(layers)) + (i - (len(TOPK_METHODS) - 1) / 2) * width, vals, width,
                   color=METHOD_STYLE[m]["color"], label=f"{METHOD_LABELS[m]} ({scope})")
        ax.set_xticks(np.arange(len(layers)))
        ax.set_xticklabels([str(l) for l in layers])
        ax.axhline(100 * remaining, color="black", linestyle="--", linewidth=1, label=f"target {pct_label(remaining)}")
        ax.set_xlabel("layer")
        ax.set_ylabel("kept weights in the layer (%)")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _no_data(ax, f"no {scope} magnitude / movement run at {pct_label(remaining)}")
    ax.set_title("per layer", fontsize=10)
    # per type
    ax = axes[0][1]
    if present:
        types = [t for t in TYPE_ORDER if any(t in r.per_type for r in present.values())]
        types += sorted({t for r in present.values() for t in r.per_type} - set(types))
        for i, m in enumerate(TOPK_METHODS):
            r = runs[m]
            if r is None:
                continue
            vals = [100 * float(r.per_type.get(t, np.nan)) for t in types]
            ax.bar(np.arange(len(types)) + (i - (len(TOPK_METHODS) - 1) / 2) * width, vals, width,
                   color=METHOD_STYLE[m]["color"])
        ax.set_xticks(np.arange(len(types)))
        ax.set_xticklabels([TYPE_LABELS.get(t, t) for t in types], rotation=20, ha="right")
        ax.axhline(100 * remaining, color="black", linestyle="--", linewidth=1)
        ax.set_ylabel("kept weights of the type (%)")
        ax.grid(True, axis="y", alpha=0.3)
    else:
        _no_data(ax, f"no {scope} magnitude / movement run at {pct_label(remaining)}")
    ax.set_title("per matrix type", fontsize=10)
    # heat maps
    vmax = max([100 * max(r.per_matrix.values()) for r in present.values() if r.per_matrix] or [100 * remaining])
    im = None
    for ax, m in zip(axes[1], TOPK_METHODS):
        r = runs[m]
        grid = per_matrix_grid(r.per_matrix) if r is not None else pd.DataFrame()
        if grid.empty:
            _no_data(ax, f"no {METHOD_LABELS[m].lower()} ({scope}) run at {pct_label(remaining)} in the store")
            ax.set_title(f"{METHOD_LABELS[m]} ({scope}): layer x type", fontsize=10)
            continue
        im = ax.imshow(100 * grid.values, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, origin="upper")
        ax.set_xticks(range(grid.shape[1]))
        ax.set_xticklabels([TYPE_LABELS.get(t, t) for t in grid.columns], rotation=20, ha="right")
        ax.set_yticks(range(grid.shape[0]))
        ax.set_yticklabels([str(l) for l in grid.index])
        ax.set_ylabel("layer")
        for (i, j), v in np.ndenumerate(100 * grid.values):
            if grid.size <= 96 and not np.isnan(v):
                ax.text(j, i, f"{v:.0f}" if v >= 10 else f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.6 * vmax else "black")
        ax.set_title(f"{METHOD_LABELS[m]} ({scope}): kept % per layer x type", fontsize=10)
    if im is not None:
        fig.colorbar(im, ax=list(axes[1]), shrink=0.9, label="kept weights (%)")
    missing = [METHOD_LABELS[m] for m in TOPK_METHODS if runs[m] is None]
    extra = f"{scope} top-k at {pct_label(remaining)}" + (", with distillation" if distill else "")
    if missing:
        extra += f" (missing: {', '.join(missing)})"
    fig.suptitle(_title(task, df, profile, extra), fontsize=11)
    h, l = axes[0][0].get_legend_handles_labels()
    if h:
        fig.legend(h, l, loc="outside lower center", ncol=len(l), fontsize=8, frameon=False)
    return fig


# ---------------------------------------------------------------------------------------------
# Notebook helpers


@dataclass
class NotebookContext:
    """What every notebook starts from (see :func:`notebook_setup`)."""

    profile: str
    results_dir: Path
    tasks: list
    df: pd.DataFrame
    sparsities: tuple
    model: Optional[str]


def notebook_setup(profile, results_dir, tasks, quiet: bool = False) -> NotebookContext:
    """Validate the notebook parameters, load the store, say which of the profile's runs are missing.

    Records of other models than the profile's are set aside (with a note) when both are present.
    """
    task_list = check_parameters(profile, results_dir, tasks)
    from .profiles import get_profile

    prof = get_profile(profile)
    df = load_records(results_dir)
    models = sorted(df.model.dropna().unique()) if not df.empty else []
    if len(models) > 1 and prof.model in models:
        if not quiet:
            print(f"note: the store holds runs of {', '.join(models)}; showing the {profile} profile's model {prof.model}")
        df = df[df.model == prof.model].reset_index(drop=True)
    if not quiet:
        print(f"{len(df)} run(s) in {runs_dir(results_dir)}")
        print(describe_missing(df, profile, task_list))
    return NotebookContext(profile=profile, results_dir=Path(results_dir), tasks=task_list, df=df,
                           sparsities=tuple(prof.sparsities), model=prof.model)


def show(fig, results_dir: str | os.PathLike, name: str) -> None:
    """Save ``fig`` (PNG + PDF, :func:`save_figure`) and display the PNG in a notebook."""
    png, _ = save_figure(fig, results_dir, name)
    try:
        from IPython.display import Image, display

        display(Image(filename=str(png)))
    except ImportError:  # pragma: no cover - outside IPython
        print(f"wrote {png}")
