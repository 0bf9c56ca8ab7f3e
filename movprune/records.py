"""The results store as a DataFrame: vocabulary, loading, selecting, and what runs are missing.

    from movprune import records as R
    df = R.load_records("results/minilm")                 # one row per run (newest of each configuration)
    R.select(df, task="sst2", method="movement")          # filter rows
    R.dense_score(df, "sst2")                             # (mean, std, n) of the dense runs
    print(R.describe_missing(df, "minilm", ["sst2", "sick", "squad"]))      # which of the profile's runs have no record

Also here, because :mod:`movprune.tables`, :mod:`movprune.figures` and :mod:`movprune.reference`
all use them and this module imports none of those:

* the shared vocabulary (method, task and metric labels, :data:`TYPE_ORDER`, the paper counterpart
  of each task);
* :func:`interpolate_at`, the linear interpolation between the two runs that bracket a target
  (table cells of L0 / soft movement, and the paper's cells recomputed from the authors' runs);
* :func:`load_npz` / :func:`npz_for`, a run's side file (a weight sample of one matrix);
* :func:`notebook_setup`, what every notebook starts from.

``remaining`` in a record is the kept fraction of the *targeted* encoder linear weights;
``remaining_paper`` is the paper's convention (biases and LayerNorm count as kept).

**Collapsed** has one meaning here, the one :mod:`movprune.train` stops on and docs/findings.md
uses: a run *collapsed* when its training loss sat at the loss of a constant prediction (within 3%
of it, ``train.COLLAPSE_FRACTION``; classification: the training labels' entropy, about ln K for K
balanced classes; extractive QA: ln of the window length) after pruning began, and stayed there to
the end of its training. :func:`is_collapsed` reads it from the record: ``collapse_step`` (the first
logged step of that stretch) or ``stopped_at`` (the collapse rule ended the run there). It is None
(unknown) for records written before ``collapse_step`` was kept, and for tasks without such a level
(regression). Dense runs and the encoder-zeroed control get no ``collapse_step`` (nothing is pruned):
only the stop rule marks them. The record field ``collapsed`` that :mod:`movprune.train` writes means
something narrower, every eval example predicted as one class; the DataFrame calls it ``one_class`` and
its ``collapsed`` column is :func:`is_collapsed`.

**Stopped runs.** With ``--stop-on-collapse`` a run whose loss sat at that level for 200 steps ends
there: it is pruned to its final sparsity, evaluated, and recorded with ``stopped_at`` (the step).
``steps`` is the number of steps a run trained (:func:`trained_steps`; a stopped run's record that says
its budget there, as :mod:`movprune.train` wrote it, is corrected on loading, and the committed ones were
rewritten by ``scripts/migrate_stopped_steps.py``), ``max_steps`` its budget. A stopped run is a
collapsed run: it counts in a table cell's n with its measured score (not at a
chance level), and every cell that includes a collapsed run is marked (:mod:`movprune.tables`).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from .provenance import pool_key


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

TASK_LABELS = {"sst2": "SST-2", "sick": "SICK", "squad": "SQuAD v1.1", "mnli": "MNLI", "qqp": "QQP",
               "cola": "CoLA", "mrpc": "MRPC", "stsb": "STS-B", "qnli": "QNLI", "rte": "RTE"}
METRIC_LABELS = {"accuracy": "accuracy", "exact_match": "EM", "f1": "F1", "mcc": "MCC",
                 "pearson": "Pearson", "spearmanr": "Spearman", "em": "EM", "acc": "acc",
                 "acc_m": "acc (matched)", "acc_mm": "acc (mismatched)"}

#: our task -> (paper task, {our metric: paper metric}); SST-2 has no counterpart in the paper.
PAPER_COUNTERPART = {
    "sick": ("mnli", {"accuracy": "acc_m"}),   # SICK is the offline stand-in for MNLI
    "mnli": ("mnli", {"accuracy": "acc_m"}),
    "squad": ("squad", {"exact_match": "em", "f1": "f1"}),
    "qqp": ("qqp", {"accuracy": "acc", "f1": "f1"}),
}
PROFILES = ("minilm", "smoke", "demo", "gpu", "paper")  # movprune.profiles.PROFILES
TYPE_ORDER = ("attention.self.query", "attention.self.key", "attention.self.value",
              "attention.output.dense", "intermediate.dense", "output.dense")
TYPE_LABELS = {"attention.self.query": "query", "attention.self.key": "key", "attention.self.value": "value",
               "attention.output.dense": "attn. output", "intermediate.dense": "intermediate",
               "output.dense": "output"}


def task_label(task: str) -> str:
    """Display name of a task (``"sick"`` -> ``"SICK"``); unknown tasks keep their name."""
    return TASK_LABELS.get(task, task)


def metric_label(metric: str) -> str:
    """Display name of a metric (``"f1"`` -> ``"F1"``); unknown metrics keep their name."""
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

    ``profile`` must be one of :data:`PROFILES`, ``results_dir`` an existing folder holding a
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
                 "constant_lambda", "sparsity_warmup_steps", "sparsity_cooldown_steps", "stop_on_collapse", "eval_split",
                 "teacher_lr", "clip")
RECORD_COLUMNS = ["run_id", "task", "model", "method", "scope", "distill", "seed", "final_lambda", "target_remaining",
                  *RECIPE_FIELDS,
                  "remaining", "remaining_paper", "remaining_pct", "remaining_paper_pct", "main_metric", "score",
                  "steps", "max_steps", "stopped_at_step", "collapsed", "one_class", "train_time_s", "device",
                  "finished_at", "pool", "metrics", "per_layer", "per_type", "per_matrix", "npz"]


def stopped_at_step(record: dict) -> Optional[int]:
    """The step at which the collapse rule (``--stop-on-collapse``) ended ``record``'s training, None
    when the run trained its whole budget (or predates the rule). Read from ``stopped_at``."""
    step = record.get("stopped_at")
    return None if step is None else int(step)


def trained_steps(record: dict) -> Optional[int]:
    """The steps ``record``'s run trained: its stop step when the collapse rule ended it, else ``steps``
    (:mod:`movprune.train` wrote the budget in ``steps`` even for a stopped run)."""
    steps, stopped = record.get("steps"), stopped_at_step(record)
    if stopped is None:
        return None if steps is None else int(steps)
    return stopped if steps is None else min(int(steps), stopped)


def predicts_one_class(record: dict) -> Optional[bool]:
    """Did ``record``'s model put every eval example in one class (``one_class``; records written before
    that field kept it as ``collapsed``)? None for tasks without classes."""
    return record["one_class"] if "one_class" in record else record.get("collapsed")


def is_collapsed(record: dict) -> Optional[bool]:
    """Did ``record``'s run collapse (module docstring): its training loss sat at the constant-prediction
    level after pruning began until training ended, at the end of its budget (``collapse_step`` set) or
    at the collapse rule's stop (``stopped_at`` set). None when the record cannot tell: written before
    ``collapse_step`` was kept, or a task without such a level (regression)."""
    if stopped_at_step(record) is not None or record.get("collapse_step") is not None:
        return True
    if "collapse_step" not in record:
        return None
    from .data import get_task

    try:
        kind = get_task(record.get("task")).kind
    except Exception:  # noqa: BLE001 - an unknown task: no level known
        return None
    return None if kind == "regression" else False


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
            "steps": trained_steps(rec), "max_steps": rec.get("budget_steps") or rec.get("max_steps") or rec.get("steps"),
            "stopped_at_step": stopped_at_step(rec), "collapsed": is_collapsed(rec), "one_class": predicts_one_class(rec),
            "train_time_s": rec.get("train_time_s"), "device": rec.get("device"),
            "finished_at": rec.get("finished_at"), "pool": pool_key(rec),
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
    for c in ("steps", "max_steps", "stopped_at_step"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("Int64")
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


def select(df: pd.DataFrame, task=None, method=None, distill=None, scope=None, model=None, seed=None,
           clip="all") -> pd.DataFrame:
    """Rows matching every given filter (a value or a list of values). ``clip``: the gradient-clipping
    variant (default the recipe's, "all"; None for every variant), so a variant run never joins a cell
    of the recipe."""
    out = df
    for col, val in (("task", task), ("method", method), ("distill", distill), ("scope", scope),
                     ("model", model), ("seed", seed), ("clip", clip)):
        if col not in out.columns:
            continue
        if val is None:
            continue
        vals = list(val) if isinstance(val, (list, tuple, set)) else [val]
        out = out[out[col].isin(vals)]
    return out


# ---------------------------------------------------------------------------------------------
# Metric values of runs


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
# Side files: a weight sample of one matrix per run (npz)


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


# ---------------------------------------------------------------------------------------------
# Interpolation (here rather than in tables: reference uses it, and tables imports reference)


def _finite_points(points) -> list[tuple[float, float]]:
    pts = []
    for p in points:
        try:
            x, y = float(p[0]), float(p[1])
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            pts.append((x, y))
    return pts


def _at(x: float, target: float) -> bool:
    return math.isclose(x, target, rel_tol=1e-9, abs_tol=1e-12)


def interpolation_bracket(points, target: float) -> Optional[tuple[float, float]]:
    """The kept fractions ``(low, high)`` of the two runs :func:`interpolate_at` uses at ``target``: the
    nearest run below and the nearest above; ``(target, target)`` when a run sits exactly at ``target``;
    None when ``target`` is not bracketed. ``points`` as for :func:`interpolate_at`."""
    pts, target = _finite_points(points), float(target)
    if any(_at(x, target) for x, _ in pts):
        return target, target
    below = [x for x, _ in pts if x < target]
    above = [x for x, _ in pts if x > target]
    if not below or not above:
        return None
    return max(below), min(above)


def interpolate_at(points, target: float) -> Optional[float]:
    """Linear interpolation (in remaining weights) of ``[(remaining, score), ...]`` at ``target``.

    Uses the two neighbouring runs that bracket ``target`` (the nearest below and above,
    :func:`interpolation_bracket`). A run exactly at ``target`` is returned as is (several: their
    mean). Returns None when ``target`` is not bracketed: never extrapolates. Points with a missing or
    non-finite coordinate are ignored.
    """
    pts, target = _finite_points(points), float(target)
    bracket = interpolation_bracket(pts, target)
    if bracket is None:
        return None
    x0, x1 = bracket
    if x0 == x1:
        return float(np.mean([y for x, y in pts if _at(x, target)]))
    y0 = float(np.mean([y for x, y in pts if x == x0]))
    y1 = float(np.mean([y for x, y in pts if x == x1]))
    return y0 + (target - x0) * (y1 - y0) / (x1 - x0)


# ---------------------------------------------------------------------------------------------
# Notebook set-up


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
