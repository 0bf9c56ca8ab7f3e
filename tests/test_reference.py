"""The paper's reference numbers shipped with the package (movprune/reference/*.csv)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from movprune import reference

XLSX = Path(__file__).resolve().parents[2] / "shared" / "reference" / "authors_runs_mvmt_pruning.xlsx"


def _cell(table, task, metric, remaining, method):
    t = reference.paper_table()
    hit = t[(t.table == table) & (t.task == task) & (t.metric == metric) & (t.remaining_pct == remaining)
            & (t.method == method)]
    assert len(hit) == 1, (table, task, metric, remaining, method)
    return hit.iloc[0]


def test_paper_table_layout():
    t = reference.paper_table()
    assert list(t.columns) == ["table", "task", "metric", "remaining_pct", "method", "value_paper", "value_runs"]
    assert set(t.table) == {"dense", "no_kd", "kd"}
    assert set(t.task) == {"squad", "mnli", "qqp"}
    # 2 tables x 3 tasks x 2 metrics x 2 sparsities x 4 methods + 6 dense cells
    assert len(t) == 2 * 3 * 2 * 2 * 4 + 6
    assert not t[["value_paper", "value_runs"]].isna().any().any()
    assert _cell("dense", "mnli", "acc_m", 100, "dense").value_paper == 84.5
    assert _cell("no_kd", "squad", "f1", 10, "movement").value_paper == 81.7


def test_paper_table_known_misprints():
    c = _cell("kd", "qqp", "f1", 10, "magnitude")
    assert c.value_paper == 65.0 and c.value_runs == 75.9
    # QQP soft movement: printed values of the two tables are swapped
    a, b = _cell("no_kd", "qqp", "acc", 10, "soft_movement"), _cell("kd", "qqp", "acc", 10, "soft_movement")
    assert (a.value_paper, a.value_runs) == (90.5, 90.2) and (b.value_paper, b.value_runs) == (90.2, 90.5)
    t = reference.paper_table()
    differs = t[t.value_paper != t.value_runs]
    assert set(zip(differs.task, differs.method)) == {("qqp", "magnitude"), ("qqp", "soft_movement")}


def test_paper_table_is_a_copy():
    t = reference.paper_table()
    t.loc[0, "value_paper"] = -1
    assert reference.paper_table().loc[0, "value_paper"] != -1


def test_authors_runs_tasks_methods_units():
    r = reference.authors_runs()
    assert set(r.task) == {"squad", "mnli", "qqp"}
    for task in ("squad", "mnli", "qqp"):
        methods = set(r[r.task == task].method)
        assert {"dense", "magnitude", "l0", "movement", "soft_movement"} <= methods, task
        for distill in (False, True):
            got = set(r[(r.task == task) & (r.distill == distill)].method)
            assert {"magnitude", "l0", "movement", "soft_movement"} <= got, (task, distill)
    assert r.distill.dtype == bool
    assert set(r.scope) == {"local", "global"}
    assert (r.remaining_pct > 0).all() and (r.remaining_pct <= 100).all()
    # metrics are in percent everywhere (the sheet has fractions for MNLI and QQP)
    for col in ("em", "f1", "acc_m", "acc_mm", "acc"):
        vals = r[col].dropna()
        assert len(vals) and (vals > 30).all() and (vals <= 100).all(), col
    dense = r[r.method == "dense"].set_index("task")
    assert dense.loc["mnli", "acc_m"] == pytest.approx(84.49, abs=0.01)
    assert dense.loc["squad", "f1"] == pytest.approx(88.07, abs=0.01)
    assert dense.loc["qqp", "acc"] == pytest.approx(91.38, abs=0.01)
    assert (dense.remaining_pct == 100).all()


def test_authors_runs_match_top_k_table_cells():
    """Top-k cells of the paper are single runs of the sheet (rounded to 0.1)."""
    r = reference.authors_runs()
    t = reference.paper_table()
    for row in t[t.method.isin(["magnitude", "movement"]) & (t.table != "dense")].itertuples():
        runs = r[(r.task == row.task) & (r.method == row.method) & (r.scope == "local")
                 & (r.distill == (row.table == "kd"))]
        near = runs[(runs.remaining_pct - row.remaining_pct).abs() < 0.2]
        assert len(near) == 1, row
        assert round(near[row.metric].iloc[0], 1) == pytest.approx(row.value_runs, abs=0.051), row


def test_interpolated_cells_reproduce_the_paper():
    """L0 / soft movement cells = linear interpolation (in remaining %) between neighbouring runs."""
    t = reference.paper_table()
    checked = 0
    for table in ("no_kd", "kd"):
        cells = reference.interpolated_paper_cells(table)
        for row in cells.itertuples():
            ref = t[(t.table == table) & (t.task == row.task) & (t.metric == row.metric)
                    & (t.remaining_pct == row.remaining_pct) & (t.method == row.method)].value_runs.iloc[0]
            if row.value is None or (isinstance(row.value, float) and math.isnan(row.value)):
                # the one cell the sheet cannot bracket: SQuAD L0 with distillation at 3% (lowest run 3.13%)
                assert (table, row.task, row.method, row.remaining_pct) == ("kd", "squad", "l0", 3.0)
                continue
            assert row.value == pytest.approx(ref, abs=0.1), row
            checked += 1
    assert checked == 46


def test_paper_points():
    p = reference.paper_points("mnli", "acc_m", distill=False)
    assert list(p.columns) == ["method", "remaining_pct", "value"]
    assert {"dense", "magnitude", "l0", "movement", "soft_movement"} == set(p.method)
    g = reference.paper_points("squad", "em", scope="global")
    assert len(g[g.method == "movement"]) == 8


@pytest.mark.skipif(not XLSX.is_file(), reason="authors' xlsx not available")
def test_extraction_matches_committed_csv():
    fresh = reference.extract_authors_runs(XLSX)
    committed = reference.authors_runs()
    assert list(fresh.columns) == list(committed.columns) == reference.AUTHORS_COLUMNS
    assert len(fresh) == len(committed)
    for col in ("remaining_pct", "em", "f1", "acc_m", "acc_mm", "acc", "final_lambda"):
        pd.testing.assert_series_equal(fresh[col].astype(float), committed[col].astype(float), check_names=False,
                                       rtol=1e-5)
    assert (fresh.method == committed.method).all() and (fresh.scope == committed.scope).all()
    assert (fresh.distill == committed.distill).all()
    # one SQuAD block is global although its EXP ID lacks "global": read from pruning_method
    sq = fresh[(fresh.task == "squad") & (fresh.method == "magnitude") & fresh.distill]
    assert set(sq.scope) == {"local", "global"}
