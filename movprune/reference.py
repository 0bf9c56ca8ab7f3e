"""The paper's reference numbers, shipped with the package as two small CSV files.

Source: V. Sanh, T. Wolf, A. M. Rush, "Movement Pruning: Adaptive Sparsity by Fine-Tuning",
NeurIPS 2020 (arXiv:2005.07683), BERT-base-uncased on the SQuAD v1.1 / MNLI / QQP dev sets.

* ``reference/paper_tables.csv`` - every cell of the paper's two results tables (Table 2, no
  distillation, and Table 3, with distillation) plus the dense baseline: ``value_paper`` as
  printed, ``value_runs`` from the authors' per-run sheet (they differ at the two known misprints).
* ``reference/authors_runs.csv`` - one row per run of the authors' per-run sheet
  (``authors_runs_mvmt_pruning.xlsx``, published beside the paper's official code; tabs
  "Details - SQuAD/MNLI/QQP"), made with :func:`extract_authors_runs`. These are the points behind
  the paper's accuracy-vs-remaining-weights figures.

Conventions of both files: metrics in percent; ``remaining_pct`` is the paper's "remaining
weights" (encoder linear weights + biases + LayerNorm, embeddings excluded), in percent.

    from movprune import reference
    reference.paper_table()      # table, task, metric, remaining_pct, method, value_paper, value_runs
    reference.authors_runs()     # task, method, scope, distill, remaining_pct, em, f1, acc_m, ...
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path

import pandas as pd

from .records import interpolate_at

PAPER_TABLE_FILE = "paper_tables.csv"
AUTHORS_RUNS_FILE = "authors_runs.csv"

PAPER_TASKS = ("squad", "mnli", "qqp")
PAPER_METHODS = ("dense", "magnitude", "l0", "movement", "soft_movement")
#: metrics of each paper task, in the order the paper prints them ("EM/F1", "acc m/mm", "acc/F1")
PAPER_METRICS = {"squad": ("em", "f1"), "mnli": ("acc_m", "acc_mm"), "qqp": ("acc", "f1")}

AUTHORS_COLUMNS = ["task", "method", "scope", "distill", "remaining_pct", "em", "f1", "acc_m", "acc_mm", "acc",
                   "final_lambda", "final_threshold", "pruning_method", "code", "exp_id"]

_SHEETS = {"squad": "Details - SQuAD", "mnli": "Details - MNLI", "qqp": "Details - QQP"}


def reference_dir() -> Path:
    """The folder holding the reference CSV files (inside the installed package)."""
    return Path(str(resources.files("movprune") / "reference"))


def _read(name: str) -> pd.DataFrame:
    path = reference_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"reference file {path} is missing; reinstall movprune (package data)")
    return pd.read_csv(path, comment="#")


@lru_cache(maxsize=1)
def _paper_table() -> pd.DataFrame:
    df = _read(PAPER_TABLE_FILE)
    expected = ["table", "task", "metric", "remaining_pct", "method", "value_paper", "value_runs"]
    if list(df.columns) != expected:
        raise ValueError(f"{PAPER_TABLE_FILE}: expected columns {expected}, got {list(df.columns)}")
    return df


def paper_table() -> pd.DataFrame:
    """The paper's Tables 2-3 cells (and dense), one row per (table, task, metric, remaining, method).

    ``table`` is ``dense`` / ``no_kd`` (Table 2) / ``kd`` (Table 3, with distillation);
    ``remaining_pct`` is 100, 10 or 3; ``value_paper`` as printed, ``value_runs`` as in the
    authors' per-run sheet (QQP magnitude kd 10% F1: 65.0 printed, 75.9 in the runs; QQP soft
    movement: the two tables' cells are swapped in print).
    """
    return _paper_table().copy()


@lru_cache(maxsize=1)
def _authors_runs() -> pd.DataFrame:
    df = _read(AUTHORS_RUNS_FILE)
    df["distill"] = df["distill"].astype(bool)
    return df


def authors_runs() -> pd.DataFrame:
    """Every run of the authors' sheet: see :data:`AUTHORS_COLUMNS` (metrics in percent)."""
    return _authors_runs().copy()


def paper_points(task: str, metric: str, distill: bool = False, scope: str = "local") -> pd.DataFrame:
    """The authors' runs of one task as ``method, remaining_pct, value`` rows (dense included).

    ``task`` is a paper task (squad, mnli, qqp) and ``metric`` one of its columns (em, f1, acc_m,
    acc_mm, acc). Top-k methods are filtered on ``scope``; L0 and soft movement have none.
    """
    df = authors_runs()
    df = df[(df.task == task) & ((df.method == "dense") | (df.distill == bool(distill)))]
    df = df[(df.method.isin(["dense", "l0", "soft_movement"])) | (df.scope == scope)]
    out = df[["method", "remaining_pct", metric]].rename(columns={metric: "value"}).dropna(subset=["value"])
    return out.sort_values(["method", "remaining_pct"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Extraction from the authors' spreadsheet (run once; the CSV is committed)


def _method_from_exp_id(exp_id: str) -> str:
    """The pruning method named by an EXP ID prefix (magnitude / topK / l0 / l1 / the dense model)."""
    s = exp_id.strip().lower()
    if s.startswith("bert-base"):
        return "dense"
    for prefix, method in (("magnitude", "magnitude"), ("topk", "movement"), ("l0", "l0"), ("l1", "soft_movement")):
        if s.startswith(prefix):
            return method
    raise ValueError(f"cannot tell the pruning method of EXP ID {exp_id!r}")


def _num(value):
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def extract_authors_runs(xlsx_path: str | Path) -> pd.DataFrame:
    """One row per run of the authors' sheet (tabs "Details - SQuAD/MNLI/QQP").

    How each field is read:

    * ``method`` - from the EXP ID prefix: ``magnitude*`` -> magnitude, ``topK*`` -> movement,
      ``l0*`` -> l0, ``l1*`` (sigmoid-threshold with L1 on the scores) -> soft_movement, and the
      fine-tuned ``bert-base-uncased`` row -> dense (remaining 100%).
    * ``scope`` - ``global`` when ``pruning_method`` is ``threshold`` for a top-k method (the
      sheet's "Global" blocks; one SQuAD global block's EXP ID omits "global"), else ``local``.
    * ``distill`` - a teacher is set (``teacher_type``) or the EXP ID says ``with_distil``.
    * metrics - MNLI acc (dev matched, dev mismatched) and QQP acc / f1 are fractions in the
      sheet and are converted to percent; SQuAD EM / F1 already are.
    * ``final_threshold`` is copied as is: in a few distillation blocks it does not match the
      block's remaining weights (the remaining-weights column is what the paper reports).
    """
    import openpyxl

    wb = openpyxl.load_workbook(xlsx_path, read_only=True, data_only=True)
    rows = []
    for task, sheet in _SHEETS.items():
        if sheet not in wb.sheetnames:
            raise ValueError(f"{xlsx_path}: no tab {sheet!r} (tabs: {', '.join(wb.sheetnames)})")
        values = list(wb[sheet].iter_rows(values_only=True))
        header = [str(v).strip() if v is not None else "" for v in values[1]]
        group = [str(v).strip() if v is not None else "" for v in values[0]]

        def col(name, nth=0):
            hits = [i for i, h in enumerate(header) if h == name]
            if len(hits) <= nth:
                raise ValueError(f"{sheet}: no column {name!r} (#{nth + 1}) in header {header}")
            return hits[nth]

        c_exp, c_rem = col("EXP ID"), col("Effective encoder remain weights %")
        c_model = col("Model")
        c_code = 0  # the block code (B1 magnitude, C2 L0, D1 movement, E2 soft movement, ...), first column
        if task == "squad":
            metric_cols = {"em": (col("EM"), 1.0), "f1": (col("F1"), 1.0)}
        elif task == "mnli":
            # first "acc" under "dev" (matched), second under "dev-MM" (mismatched)
            first, second = col("acc", 0), col("acc", 1)
            if group[second] != "dev-MM":
                raise ValueError(f"{sheet}: expected the second acc column under 'dev-MM', got {group[second]!r}")
            metric_cols = {"acc_m": (first, 100.0), "acc_mm": (second, 100.0)}
        else:
            metric_cols = {"acc": (col("acc"), 100.0), "f1": (col("f1"), 100.0)}
        c_pm, c_teacher = col("pruning_method"), col("teacher_type")
        c_lambda, c_thr = col("final_lambda"), col("final_threshold")

        model_label = ""
        for r in values[2:]:
            r = list(r) + [None] * (len(header) - len(r))
            exp_id = r[c_exp]
            if exp_id is None or not str(exp_id).strip():
                continue
            exp_id = str(exp_id).strip()
            if r[c_model]:
                model_label = str(r[c_model])  # merged cell: only the block's first row has it
            method = _method_from_exp_id(exp_id)
            pm = str(r[c_pm]).strip() if r[c_pm] else ""
            teacher = r[c_teacher]
            distill = bool(teacher) or "with_distil" in exp_id.lower()
            scope = "global" if method in ("magnitude", "movement") and pm == "threshold" else "local"
            if "global" in exp_id.lower() and scope != "global":
                raise ValueError(f"{sheet}: EXP ID {exp_id!r} says global but pruning_method is {pm!r}")
            if method != "dense" and "global" in model_label.lower() and scope != "global":
                raise ValueError(f"{sheet}: block {model_label!r} says global but pruning_method is {pm!r}")
            remaining = 100.0 if method == "dense" else _num(r[c_rem])
            if remaining is None:
                raise ValueError(f"{sheet}: run {exp_id!r} has no remaining weights")
            row = {"task": task, "method": method, "scope": scope, "distill": distill,
                   "remaining_pct": remaining,
                   "final_lambda": _num(r[c_lambda]) if method in ("l0", "soft_movement") else None,
                   "final_threshold": _num(r[c_thr]), "pruning_method": pm or None,
                   "code": str(r[c_code]).strip() if r[c_code] else None,
                   "exp_id": exp_id}
            for name, (c, scale) in metric_cols.items():
                v = _num(r[c])
                row[name] = None if v is None else v * scale
            rows.append(row)
    wb.close()
    df = pd.DataFrame(rows)
    for c in AUTHORS_COLUMNS:
        if c not in df.columns:
            df[c] = None
    df = df[AUTHORS_COLUMNS]
    for c in ("remaining_pct", "em", "f1", "acc_m", "acc_mm", "acc", "final_lambda", "final_threshold"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    return df


AUTHORS_HEADER = """\
# Per-run results of V. Sanh, T. Wolf, A. M. Rush, "Movement Pruning: Adaptive Sparsity by Fine-Tuning",
# NeurIPS 2020 (BERT-base-uncased, dev sets), extracted with movprune.reference.extract_authors_runs()
# from the authors' sheet authors_runs_mvmt_pruning.xlsx (tabs "Details - SQuAD/MNLI/QQP").
# remaining_pct: "Effective encoder remain weights %" (encoder linear weights + biases + LayerNorm).
# Metrics in percent: SQuAD em/f1; MNLI acc_m (dev matched) / acc_mm (dev mismatched); QQP acc/f1.
# method from the EXP ID (magnitude*, topK* = movement, l0*, l1* = soft_movement); scope global where
# pruning_method = threshold; distill where a teacher is set. final_threshold copied as in the sheet.
"""


def write_authors_runs(xlsx_path: str | Path, out_path: str | Path | None = None) -> Path:
    """Extract the sheet and write ``reference/authors_runs.csv`` (with its citation header)."""
    df = extract_authors_runs(xlsx_path)
    out = Path(out_path) if out_path else reference_dir() / AUTHORS_RUNS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="") as f:
        f.write(AUTHORS_HEADER)
        df.to_csv(f, index=False, float_format="%.6g")
    _authors_runs.cache_clear()
    return out


def interpolated_paper_cells(table: str = "no_kd") -> pd.DataFrame:
    """Recompute the paper's L0 / soft-movement cells from the authors' runs (linear in remaining).

    A check of the table's construction: returns ``task, metric, remaining_pct, method, value``.
    """
    runs = authors_runs()
    distill = table == "kd"
    out = []
    for task, metrics in PAPER_METRICS.items():
        for method in ("l0", "soft_movement"):
            sub = runs[(runs.task == task) & (runs.method == method) & (runs.distill == distill)]
            for metric in metrics:
                pts = list(zip(sub.remaining_pct, sub[metric]))
                for target in (10.0, 3.0):
                    out.append({"task": task, "metric": metric, "remaining_pct": target, "method": method,
                                "value": interpolate_at(pts, target)})
    return pd.DataFrame(out)

