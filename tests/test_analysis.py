"""movprune.analysis on synthetic records: loading, interpolation, tables, figures."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from movprune import analysis as A
from movprune.store import ResultStore

LAYERS = 2
TYPES = A.TYPE_ORDER


def _record(run_id, method, score, remaining, *, task="sst2", distill=False, scope="local", seed=0, lam=None,
            target=None, main_metric="accuracy", metrics=None, per_matrix=None):
    if target is None:
        if method in ("magnitude", "movement"):
            target = f"{method} v={remaining:g} {scope}"
        elif method in ("l0", "soft_movement"):
            target = f"{method} lambda={lam:g}"
        else:
            target = "dense"
    if per_matrix is None:
        per_matrix = {f"bert.encoder.layer.{l}.{t}": remaining for l in range(LAYERS) for t in TYPES}
    per_layer = {str(l): float(np.mean([v for k, v in per_matrix.items() if f".layer.{l}." in k]))
                 for l in range(LAYERS)}
    per_type = {t: float(np.mean([v for k, v in per_matrix.items() if k.endswith(t)])) for t in TYPES}
    metrics = metrics or {main_metric: score}
    return {"run_id": run_id, "task": task, "model": "tiny", "method": method, "remaining": remaining,
            "remaining_paper": remaining + 0.01, "scope": scope, "final_lambda": lam, "distill": distill,
            "seed": seed, "metrics": metrics, "main_metric": main_metric, "score": metrics[main_metric],
            "target": target, "per_layer": per_layer, "per_type": per_type, "per_matrix": per_matrix,
            "steps": 10, "train_time_s": 1.0, "device": "cpu", "finished_at": "2026-01-01T00:00:00Z"}


def _npz(store, run_id, method, v, seed=0):
    rng = np.random.default_rng(seed)
    pre = rng.normal(0, 0.04, 2000)
    fin = pre + rng.normal(0, 0.01, 2000)
    imp = np.abs(fin) if method == "magnitude" else fin * (fin - pre)
    mask = (imp >= np.quantile(imp, 1 - v)).astype(np.float16)
    arrays = {"pretrained": pre, "finetuned": fin, "mask": mask}
    if method == "movement":
        arrays["scores"] = imp * 100
    np.savez_compressed(store.side_file(run_id, ".npz"), matrix=np.array("bert.encoder.layer.1.attention.self.query"),
                        **{k: np.asarray(a, dtype=np.float16) for k, a in arrays.items()})


@pytest.fixture
def results(tmp_path):
    """A results folder with runs/ holding a small synthetic sweep of sst2 (+ one sick run)."""
    store = ResultStore(tmp_path / "runs")
    recs = [
        _record("dense", "dense", 90.0, 1.0),
        _record("zero", "zero_encoder", 55.0, 1.0),
        _record("mag10", "magnitude", 80.0, 0.10),
        _record("mag3", "magnitude", 60.0, 0.03),
        _record("mvp10", "movement", 84.0, 0.10),
        _record("mvp10s1", "movement", 86.0, 0.10, seed=1),
        _record("mvp3", "movement", 78.0, 0.03),
        _record("mag10g", "magnitude", 79.0, 0.10, scope="global",
                per_matrix={f"bert.encoder.layer.{l}.{t}": 0.05 + 0.1 * l for l in range(LAYERS) for t in TYPES}),
        _record("mvp10g", "movement", 85.0, 0.10, scope="global",
                per_matrix={f"bert.encoder.layer.{l}.{t}": 0.15 - 0.1 * l + 0.01 * i
                            for l in range(LAYERS) for i, t in enumerate(TYPES)}),
        _record("mag10kd", "magnitude", 82.0, 0.10, distill=True),
        # soft movement: 20% -> 88, 5% -> 80, 2% -> 70 ; L0: 40% -> 86, 12% -> 81 (does not reach 10%)
        _record("soft_a", "soft_movement", 88.0, 0.20, lam=10.0),
        _record("soft_b", "soft_movement", 80.0, 0.05, lam=100.0),
        _record("soft_c", "soft_movement", 70.0, 0.02, lam=400.0),
        _record("l0_a", "l0", 86.0, 0.40, lam=5.0),
        _record("l0_b", "l0", 81.0, 0.12, lam=50.0),
        _record("sick_dense", "dense", 80.0, 1.0, task="sick"),
        _record("squad_mvp", "movement", 0.0, 0.10, task="squad", main_metric="f1",
                metrics={"exact_match": 60.0, "f1": 70.0}),
    ]
    for r in recs:
        store.put(r)
    _npz(store, "mag10", "magnitude", 0.10)
    _npz(store, "mvp10", "movement", 0.10)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# interpolation


def test_interpolate_bracketing():
    pts = [(0.2, 88.0), (0.05, 80.0), (0.02, 70.0)]
    assert A.interpolate_at(pts, 0.10) == pytest.approx(80.0 + (0.10 - 0.05) / (0.20 - 0.05) * 8.0)
    assert A.interpolate_at(pts, 0.03) == pytest.approx(70.0 + (0.01 / 0.03) * 10.0)


def test_interpolate_exact_hit_and_duplicates():
    assert A.interpolate_at([(0.1, 5.0), (0.2, 9.0)], 0.1) == 5.0
    assert A.interpolate_at([(0.1, 5.0), (0.1, 7.0), (0.2, 9.0)], 0.1) == 6.0
    # neighbours that appear twice are averaged
    assert A.interpolate_at([(0.0, 0.0), (0.0, 2.0), (1.0, 3.0)], 0.5) == pytest.approx(2.0)


def test_interpolate_never_extrapolates():
    assert A.interpolate_at([(0.2, 1.0), (0.5, 2.0)], 0.1) is None
    assert A.interpolate_at([(0.2, 1.0), (0.5, 2.0)], 0.6) is None
    assert A.interpolate_at([(0.2, 1.0)], 0.2) == 1.0
    assert A.interpolate_at([], 0.1) is None
    assert A.interpolate_at([(None, 1.0), (float("nan"), 2.0), (0.05, 1.0), (0.2, 4.0)], 0.1) == pytest.approx(2.0)


# ---------------------------------------------------------------------------------------------
# loading


def test_load_records(results):
    df = A.load_records(results)  # the results folder (holding runs/) or the store itself
    assert len(df) == 17
    assert len(A.load_records(results / "runs")) == 17
    row = df[df.run_id == "mag10"].iloc[0]
    assert row.target_remaining == 0.10 and row.remaining_pct == pytest.approx(10.0) and row.score == 80.0
    assert df[df.method == "zero_encoder"].remaining.iloc[0] == 0.0
    assert df[df.run_id == "mvp10"].npz.iloc[0].endswith("mvp10.npz")
    assert pd.isna(df[df.run_id == "mag3"].npz.iloc[0])
    assert df[df.run_id == "squad_mvp"].metric_exact_match.iloc[0] == 60.0
    assert len(A.select(df, task="sst2", method=["magnitude", "movement"], scope="global")) == 2
    assert len(A.load_records(results, model="other")) == 0


def test_load_records_empty_and_corrupt(tmp_path):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "bad.json").write_text("{not json")
    df = A.load_records(tmp_path)
    assert df.empty and "score" in df.columns


def test_check_parameters(results, tmp_path):
    assert A.check_parameters("smoke", str(results), "sst2, sick") == ["sst2", "sick"]
    with pytest.raises(A.AnalysisError, match="profile"):
        A.check_parameters("huge", str(results), "sst2")
    with pytest.raises(A.AnalysisError, match="does not exist"):
        A.check_parameters("minilm", str(tmp_path / "nope"), "sst2")
    with pytest.raises(A.AnalysisError, match="runs/"):
        A.check_parameters("minilm", str(results / "runs"), "sst2")
    with pytest.raises(A.AnalysisError, match="unknown task"):
        A.check_parameters("minilm", str(results), "sst3")
    with pytest.raises(A.AnalysisError, match="empty"):
        A.check_parameters("minilm", str(results), " , ")


# ---------------------------------------------------------------------------------------------
# results table


def test_results_table_layout_and_cells(results):
    df = A.load_records(results)
    res = A.results_table(df, ["sst2"], sparsities=(0.10, 0.03, 0.01), distill=False)
    t = res.table
    assert list(t.index) == [A.METHOD_LABELS[m] for m in A.TABLE_METHODS]
    assert list(t.columns) == [("SST-2", "10%"), ("SST-2", "3%"), ("SST-2", "1%")]
    lab = A.METHOD_LABELS
    assert t.loc[lab["dense"], ("SST-2", "1%")] == "90.0 (n=1)"
    assert t.loc[lab["zero_encoder"], ("SST-2", "10%")] == "55.0 (n=1)"
    assert t.loc[lab["magnitude"], ("SST-2", "10%")] == "80.0 (n=1)"  # local only, global run ignored
    assert t.loc[lab["magnitude"], ("SST-2", "1%")] == A.DASH
    std = np.std([84.0, 86.0], ddof=1)
    assert t.loc[lab["movement"], ("SST-2", "10%")] == f"85.0 ± {std:.1f} (n=2)"  # n seeds in every cell
    # soft movement: interpolated, marked with *; at 10% between runs at 5% and 20% (4x apart): † too
    soft10 = 80.0 + (0.05 / 0.15) * 8.0
    assert t.loc[lab["soft_movement"], ("SST-2", "10%")] == f"{soft10:.1f}*† (n=1)"
    assert t.loc[lab["soft_movement"], ("SST-2", "3%")] == f"{70 + 10 / 3:.1f}* (n=1)"  # 2% and 5%: 2.5x
    assert t.loc[lab["soft_movement"], ("SST-2", "1%")] == A.DASH  # not bracketed
    assert t.loc[lab["l0"], ("SST-2", "10%")] == A.DASH          # lowest L0 run at 12%
    v = res.values
    cell = v[(v.method == "soft_movement") & (v.remaining == 0.10)].iloc[0]
    assert cell.interpolated and cell["mean"] == pytest.approx(soft10)
    assert (cell.bracket_low, cell.bracket_high, cell.bracket_ratio, cell.wide_bracket) == (0.05, 0.20, 4.0, True)
    top = v[(v.method == "movement") & (v.remaining == 0.10)].iloc[0]
    assert pd.isna(top.bracket_low) and not top.wide_bracket and top.collapsed == 0
    assert set(res.raw_points.method) == {"l0", "soft_movement"} and len(res.raw_points) == 5
    assert {"lambda", "remaining_pct", "score"} <= set(res.raw_points.columns)
    assert res.paper is None and any("SST-2 has no counterpart" in n for n in res.notes)
    md = res.markdown()
    assert "| method | SST-2 10% |" in md and "*" in md


def test_results_table_distill_and_paper_side(results):
    df = A.load_records(results)
    res = A.results_table(df, ["sst2", "sick", "squad"], sparsities=(0.10, 0.03), distill=True)
    t = res.table
    assert t.loc[A.METHOD_LABELS["magnitude"], ("SST-2", "10%")] == "82.0 (n=1)"
    assert t.loc[A.METHOD_LABELS["movement"], ("SST-2", "10%")] == A.DASH   # no distilled movement run
    assert t.loc[A.METHOD_LABELS["dense"], ("SICK", "3%")] == "80.0 (n=1)"
    assert res.paper is not None
    p = res.paper
    assert p.loc[A.METHOD_LABELS["movement"], ("MNLI (paper, vs SICK)", "3%")] == "76.5"
    assert p.loc[A.METHOD_LABELS["soft_movement"], ("SQuAD v1.1 (paper)", "10%")] == "76.6/84.9*"
    assert p.loc[A.METHOD_LABELS["dense"], ("SQuAD v1.1 (paper)", "10%")] == "80.4/88.1"


def test_results_table_squad_cells_show_em_f1(results):
    df = A.load_records(results)
    res = A.results_table(df, ["squad"], sparsities=(0.10,))
    assert res.table.loc[A.METHOD_LABELS["movement"], ("SQuAD v1.1", "10%")] == "60.0/70.0 (n=1)"


def test_paper_table_flags_misprint():
    p, notes = A.paper_results_table(["qqp"], sparsities=(0.10,), distill=True)
    assert p.loc[A.METHOD_LABELS["magnitude"], ("QQP (paper)", "10%")] == "79.8/65.0 (runs: 75.9)"
    assert any("misprint" in n for n in notes)


def test_save_table_and_markdown(results, tmp_path):
    df = A.load_records(results)
    res = A.results_table(df, ["sst2"])
    md = A.save_table(res.table, tmp_path / "out", "t")
    csv = (tmp_path / "out" / "tables" / "t.csv").read_text()
    assert csv.splitlines()[0] == "method,SST-2 10%,SST-2 3%,SST-2 1%"
    assert md.splitlines()[0] == "| method | SST-2 10% | SST-2 3% | SST-2 1% |"
    assert A.to_markdown(pd.DataFrame({"a": [1.5, float("nan")], "b": ["x|y", "z"]}), index=False).splitlines() == [
        "| a | b |", "|---|---|", "| 1.50 | x\\|y |", f"| {A.DASH} | z |"]


def test_missing_runs(results):
    df = A.load_records(results)
    miss = A.missing_runs(df, "smoke", ["sst2"])
    assert len(miss) == len(A.expected_runs("smoke", ["sst2"]))  # synthetic ids never match
    assert "missing" in A.describe_missing(df, "smoke", ["sst2"])
    assert "not a task of the smoke profile" in A.describe_missing(df, "smoke", ["squad"])


# ---------------------------------------------------------------------------------------------
# figures


def _check_saved(fig, out, name):
    png, pdf = A.save_figure(fig, out, name)
    assert png == out / "figures" / f"{name}.png" and png.stat().st_size > 1000
    assert pdf == out / "figures" / f"{name}.pdf" and pdf.read_bytes()[:4] == b"%PDF"


def test_plot_metric_vs_remaining(results, tmp_path):
    from matplotlib.figure import Figure

    df = A.load_records(results)
    fig = A.plot_metric_vs_remaining(df, "sst2", distill=False, profile="smoke")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()][:4] == ["1%", "3%", "10%", "30%"]
    _check_saved(fig, tmp_path, "mvr")
    # a task with a paper counterpart gets the "paper (BERT-base)" panel
    fig = A.plot_metric_vs_remaining(df, "sick", distill=False)
    assert len(fig.axes) == 2 and "paper (BERT-base)" in fig.axes[1].get_title()
    _check_saved(fig, tmp_path, "mvr_sick")
    # on a given axes, paper points go on a twin y axis; paper_points=False switches them off
    from matplotlib.figure import Figure as F

    ax = F().subplots()
    A.plot_metric_vs_remaining(df, "squad", ax=ax)
    assert len(ax.figure.axes) == 2
    assert len(A.plot_metric_vs_remaining(df, "sick", paper_points=False).axes) == 1
    # a dense run but no pruned runs of that kind: the panel keeps its axes and says what is missing
    notes = lambda f: " ".join(t.get_text() for t in f.axes[0].texts)  # noqa: E731
    only_dense = df[(df.task == "sst2") & (df.method == "dense")]
    fig = A.plot_metric_vs_remaining(only_dense, "sst2", distill=True)
    assert "no pruned runs of SST-2 with distillation" in notes(fig) and len(fig.axes[0].get_yticks())
    assert "no pruned runs" not in notes(A.plot_metric_vs_remaining(df, "sst2"))
    # a task without runs still draws
    _check_saved(A.plot_metric_vs_remaining(df, "qqp"), tmp_path, "empty")


def test_plot_weight_figures(results, tmp_path):
    df = A.load_records(results)
    mag, mvp = A.npz_for(df, "sst2", "magnitude", 0.10), A.npz_for(df, "sst2", "movement", 0.10)
    assert mag.endswith("mag10.npz") and mvp.endswith("mvp10.npz")
    assert A.npz_for(df, "sst2", "magnitude", 0.03) is None
    d = A.load_npz(mvp)
    assert d["run"]["run_id"] == "mvp10" and d["scores"].dtype == np.float32
    fig = A.plot_weights_pretrained_vs_finetuned(mag, mvp, profile="smoke")
    assert len(fig.axes) == 2 and "SST-2" in fig._suptitle.get_text()
    _check_saved(fig, tmp_path, "weights")
    _check_saved(A.plot_remaining_histogram(mag, mvp), tmp_path, "hist")
    _check_saved(A.plot_score_vs_weight(mvp), tmp_path, "scores")
    with pytest.raises(ValueError, match="no scores"):
        A.plot_score_vs_weight(mag)
    # missing runs: figures with a note, no crash
    _check_saved(A.plot_weights_pretrained_vs_finetuned(None, mvp), tmp_path, "weights_half")
    _check_saved(A.plot_remaining_histogram(None, None), tmp_path, "hist_none")
    _check_saved(A.plot_score_vs_weight(None), tmp_path, "scores_none")


def test_plot_local_vs_global_and_per_layer(results, tmp_path):
    df = A.load_records(results)
    fig = A.plot_local_vs_global(df, "sst2", profile="smoke")
    styles = {l.get_label(): l.get_linestyle() for l in fig.axes[0].get_lines()}
    assert styles["Magnitude pruning, local"] == "-" and styles["Magnitude pruning, global"] == "--"
    _check_saved(fig, tmp_path, "lvg")
    fig = A.plot_per_layer(df, "sst2", remaining=0.10)
    _check_saved(fig, tmp_path, "per_layer")
    grid = A.per_matrix_grid(A.select(df, method="movement", scope="global").per_matrix.iloc[0])
    assert grid.shape == (LAYERS, 6) and list(grid.columns) == list(TYPES)
    assert grid.loc[1, "attention.self.query"] == pytest.approx(0.05)
    # local runs only: the figure says that the global ones are missing (and only then)
    notes = lambda f: " ".join(t.get_text() for t in f.axes[0].texts)  # noqa: E731
    assert "no global top-k runs" in notes(A.plot_local_vs_global(df[df.scope != "global"], "sst2"))
    assert "no global" not in notes(A.plot_local_vs_global(df, "sst2"))
    # no global run at 3%: the figure says so instead of failing
    fig = A.plot_per_layer(df, "sst2", remaining=0.03)
    assert "missing" in fig._suptitle.get_text()
    _check_saved(fig, tmp_path, "per_layer_missing")


def test_layer_profile_picks_adaptive_runs_and_normalises_by_density(tmp_path):
    """Soft movement / L0 (any scope) and global top-k runs are drawn; local top-k and dense are not;
    the right panel divides each layer's kept fraction by the run's overall kept fraction."""
    lower_heavy = {f"bert.encoder.layer.{l}.{t}": (0.08 if l == 0 else 0.02) for l in range(LAYERS) for t in TYPES}
    recs = [_record("dense", "dense", 90.0, 1.0),
            _record("mag_local", "magnitude", 80.0, 0.10),
            _record("mvp_global", "movement", 82.0, 0.10, scope="global"),
            _record("soft", "soft_movement", 81.0, 0.05, lam=100.0, per_matrix=lower_heavy),
            _record("l0", "l0", 79.0, 0.20, lam=10.0)]
    store = ResultStore(tmp_path / "runs")
    for r in recs:
        store.put(r)
    df = A.load_records(tmp_path)
    runs = A.layer_profile_runs(df, "sst2")
    assert sorted(runs.run_id) == ["l0", "mvp_global", "soft"]
    fig = A.plot_layer_profile(df, "sst2", profile="smoke")
    right = {l.get_gid(): l.get_ydata() for l in fig.axes[1].get_lines() if l.get_gid()}
    assert set(right) == {"l0", "mvp_global", "soft"}  # one line per run
    assert right["soft"] == pytest.approx([0.08 / 0.05, 0.02 / 0.05])
    # one legend entry per method, with its number of runs and their kept fractions
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert sorted(labels) == ["L0 regularization: 1 run, 20% kept", "Movement pruning (global): 1 run, 10% kept",
                              "Soft movement pruning: 1 run, 5.0% kept"]
    _check_saved(fig, tmp_path, "layer_profile")
    # kept fractions of 2-8% span less than a decade: the log axis labels its major ticks only, in %
    major = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text()]
    assert major and all(t.endswith("%") for t in major)
    assert not any(t.get_text() for t in fig.axes[0].get_yticklabels(minor=True))
    store.put(_record("soft2", "soft_movement", 80.0, 0.004, lam=300.0, seed=1))
    df = A.load_records(tmp_path)
    labels = [t.get_text() for t in A.plot_layer_profile(df, "sst2").axes[1].get_legend().get_texts()]
    assert "Soft movement pruning: 2 runs, 0.4-5.0% kept" in labels
    empty = A.plot_layer_profile(df[df.run_id == "dense"], "sst2")
    assert "no soft movement" in empty.axes[0].texts[0].get_text()


def test_saved_figures_are_byte_deterministic(results, tmp_path, monkeypatch):
    """The same figure saved twice (two folders) gives identical PNG and PDF bytes: no creation date in
    the PDF, and the constrained layout settled before drawing (it moves a little on each new layout)."""
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)  # matplotlib's own way to fix the date
    df = A.load_records(results)
    fig = A.plot_metric_vs_remaining(df, "sick", distill=False)  # two panels, text, markers, paper points
    first = A.save_figure(fig, tmp_path / "first", "mvr")
    second = A.save_figure(fig, tmp_path / "second", "mvr")
    for a, b in zip(first, second):
        assert a != b and a.read_bytes() == b.read_bytes(), a.name
    assert b"CreationDate" not in first[1].read_bytes()


def test_method_styles_are_consistent():
    colors = [A.METHOD_STYLE[m]["color"] for m in A.TABLE_METHODS]
    assert len(set(colors)) == len(colors)
    assert set(A.METHOD_LABELS) == set(A.METHOD_STYLE)


def test_dedupe_keeps_runs_that_differ_in_recipe():
    """Records differing in lr / score lr / max length / threshold / frozen embeddings / recipe flags
    are different configurations; only a different budget (steps) makes an older record stale."""
    base = _record("a", "movement", 70.0, 0.1)
    variants = [dict(lr=3e-5), dict(lr=5e-5), dict(score_lr=0.1), dict(max_length=128), dict(final_threshold=0.2),
                dict(freeze_embeddings=False), dict(bf16=True), dict(group_by_length=False)]
    records = [{**base, "run_id": f"v{i}", **v} for i, v in enumerate(variants)]
    assert len(A._dedupe(A.records_frame(records))) == len(variants)
    newer = {**records[0], "run_id": "newer", "steps": 20, "finished_at": "2026-02-01T00:00:00Z"}
    kept = A._dedupe(A.records_frame([records[0], newer]))
    assert list(kept["run_id"]) == ["newer"]
    # a record written before a field existed has its legacy value: same configuration as one stating it
    legacy = {**base, "run_id": "old"}
    stated = {**base, "run_id": "new", "group_by_length": True, "finished_at": "2026-02-01T00:00:00Z"}
    assert list(A._dedupe(A.records_frame([legacy, stated]))["run_id"]) == ["new"]


def test_results_table_names_a_non_dev_eval_split():
    """SICK runs scored on its test split say so under the table; dev-scored tasks add no note."""
    recs = [_record("d", "dense", 85.0, 1.0, task="sick"), _record("m", "movement", 80.0, 0.1, task="sick"),
            _record("s", "dense", 90.0, 1.0)]
    for r in recs[:2]:
        r["eval_split"] = "test"
    df = A.records_frame(recs)
    notes = A.results_table(df, ["sst2", "sick"], sparsities=(0.10,)).notes
    assert "SICK is scored on its test split." in notes
    assert not any("SST-2 is scored" in n for n in notes)


def test_beside_paper_pairs_our_cell_with_the_papers(results):
    df = A.load_records(results)
    res = A.results_table(df, ["sst2", "sick", "squad"], sparsities=(0.10, 0.03), distill=True)
    b = res.beside_paper()
    flat = A.flatten_columns(b)
    # SST-2 has no counterpart: only SICK (vs MNLI) and SQuAD pairs, ours first, then the paper's
    assert list(flat.columns) == ["SICK 10% ours", "SICK 10% paper (MNLI)", "SICK 3% ours", "SICK 3% paper (MNLI)",
                                  "SQuAD v1.1 10% ours", "SQuAD v1.1 10% paper",
                                  "SQuAD v1.1 3% ours", "SQuAD v1.1 3% paper"]
    mv = A.METHOD_LABELS["movement"]
    assert b.loc[mv, ("SICK 3%", "paper (MNLI)")] == "76.5"
    assert b.loc[A.METHOD_LABELS["dense"], ("SICK 3%", "ours")] == "80.0 (n=1)"
    assert A.results_table(df, ["sst2"]).beside_paper() is None


def test_two_cells_at_chance_are_no_evidence_and_one_at_chance_is_marked(results):
    # the fixture's chance level: control 55 + 5% of the dense - control gap (90 - 55) = 56.75
    store = ResultStore(results / "runs")
    store.put(_record("mag1", "magnitude", 55.5, 0.01))
    store.put(_record("mvp1", "movement", 56.0, 0.01))
    df = A.load_records(results)
    assert A.chance_level(df, "sst2", "accuracy") == pytest.approx(56.75)
    claims = A.claims_table(df, ["sst2"])
    r = claims[(claims.claim == "movement > magnitude") & np.isclose(claims.remaining, 0.01)].iloc[0]
    assert r.verdict == "both at chance" and r.a_at_chance and r.b_at_chance  # 56.0 vs 55.5: not "seen"
    r = claims[(claims.claim == "movement > magnitude") & np.isclose(claims.remaining, 0.03)].iloc[0]
    assert r.verdict == "seen" and not r.a_at_chance and not r.b_at_chance  # 78 vs 60: above 56.75
    assert "1%: both at chance, 56.0 (n=1, at chance) vs 55.5 (n=1, at chance)" in A.claims_markdown(claims)
    # one side at chance: the rule still compares, the side is marked
    assert A.verdict(dict(mean=70.0, std=None, n=1), dict(mean=55.0, std=None, n=1), chance=56.75) == "seen"
    # a task without a control run has no chance level: nothing is marked
    assert A.chance_level(df, "sick", "accuracy") is None
    assert not A.claims_table(df, ["sick"]).get("a_at_chance", pd.Series(dtype=bool)).any()


def test_a_collapsed_seed_inside_a_cell_is_counted_and_shown(results):
    """A cell whose mean is above chance but holds a collapsed seed (79, 77, 30 -> 62 +- 28) says how many of
    its seeds sit at chance, so nobody reads the mean as a method's typical score."""
    store = ResultStore(results / "runs")
    for i, score in enumerate((79.0, 77.0, 30.0)):
        store.put(_record(f"mvkd3-{i}", "movement", score, 0.03, distill=True, seed=i))
    for i, score in enumerate((80.0, 81.0, 80.5)):
        store.put(_record(f"mv3-{i}", "movement", score, 0.03, seed=i + 5))
    claims = A.claims_table(A.load_records(results), ["sst2"])
    r = claims[(claims.claim == "distillation helps movement") & np.isclose(claims.remaining, 0.03)].iloc[0]
    assert (r.a_n, r.a_seeds_at_chance, bool(r.a_at_chance), r.b_seeds_at_chance) == (3, 1, False, 0)
    assert "62.0 ± 27.7 (n=3, 1 of 3 at chance) vs" in A.claims_markdown(claims)


def test_claims_table_compares_the_cells_of_the_tables(results):
    df = A.load_records(results)
    claims = A.claims_table(df, ["sst2"])
    row = lambda claim, s: claims[(claims.claim == claim) & np.isclose(claims.remaining, s)].iloc[0]  # noqa: E731
    r = row("movement > magnitude", 0.10)  # movement 84 / 86 (two seeds) vs magnitude 80
    assert (r.a_mean, r.a_n, r.b_mean, r.b_n, r.verdict) == (85.0, 2, 80.0, 1, "seen")
    assert r.difference == pytest.approx(5.0)
    r = row("soft movement > movement", 0.10)  # soft movement interpolated between 20% (88) and 5% (80)
    assert r.a_interp and r.a_mean == pytest.approx(80 + 8 * (0.05 / 0.15)) and r.verdict == "not seen"
    assert row("distillation helps magnitude", 0.10).verdict == "seen"  # 82 with vs 80 without
    r = row("movement keeps more of layer 0 than magnitude (global top-k)", 0.10)
    assert r.b_mean == pytest.approx(0.05 / 0.10) and r.a_mean > 1 and r.verdict == "seen"
    # a pair with a side missing is left out unless asked for
    assert not ((claims.claim == "distillation helps movement")).any()
    kept = A.claims_table(df, ["sst2"], keep_not_run=True)
    assert set(kept[kept.claim == "distillation helps movement"].verdict) == {"not run"}
    text = A.claims_markdown(claims)
    assert text.splitlines()[0] == "| claim | SST-2 |" and "10%: seen, 85.0 ± 1.4 (n=2) vs 80.0 (n=1)" in text
    assert A.claims_markdown(claims.iloc[:0]).startswith("no pair of runs")
    # fewer than 3 seeds a side: no test, no p-value
    assert pd.isna(row("movement > magnitude", 0.10).p_value)
    # the soft movement side at 10% is interpolated across 5% -> 20% (4x): the verdict says it rests on that
    r = row("soft movement > movement", 0.10)
    assert r.a_wide_bracket and r.rests_on_wide_bracket and (r.a_bracket_low, r.a_bracket_high) == (0.05, 0.20)
    assert "10%: not seen (rests on a wide bracket †), 82.7*† (n=1) vs 85.0 ± 1.4 (n=2)" in text
    assert not row("soft movement > movement", 0.03).rests_on_wide_bracket  # 2% -> 5%: 2.5x
    assert text.splitlines()[-1].startswith("Verdicts: Welch's two-sided t-test")


def _collapsed(rec, stopped_at=None, collapse_step=None):
    """``rec`` as train.py writes a run that collapsed: loss at the constant-prediction level from
    ``collapse_step`` on, stopped by the collapse rule at ``stopped_at`` (None: trained its budget)."""
    return {**rec, "collapse_step": collapse_step, "stopped_at": stopped_at, "steps": 3400, "max_steps": 3400}


def test_a_stopped_run_counts_in_n_with_its_score_and_marks_its_cell(tmp_path):
    """The rule for a run stopped on collapse: it is a collapsed run, its measured score enters the mean
    and n, and the table cell and claims side that include it say so (‡ and how many)."""
    store = ResultStore(tmp_path / "runs")
    for seed, score in enumerate((80.0, 81.0)):
        store.put(_collapsed(_record(f"mv{seed}", "movement", score, 0.03, seed=seed), collapse_step=None))
    store.put(_collapsed(_record("mv2", "movement", 50.0, 0.03, seed=2), stopped_at=1564, collapse_step=1360))
    for seed, score in enumerate((60.0, 61.0, 62.0)):
        store.put(_collapsed(_record(f"mg{seed}", "magnitude", score, 0.03, seed=seed)))
    df = A.load_records(tmp_path)
    cell = A.cell_value(df, "sst2", "movement", 0.03, False, "accuracy")
    assert (cell["n"], cell["mean"], cell["collapsed"], cell["stopped"]) == (3, pytest.approx(70.333333), 1, 1)
    res = A.results_table(df, ["sst2"], sparsities=(0.03,))
    std = np.std([80.0, 81.0, 50.0], ddof=1)
    cell_text = res.table.loc[A.METHOD_LABELS["movement"], ("SST-2", "3%")]
    assert cell_text == f"70.3 ± {std:.1f}‡ (n=3, 1 stopped on collapse)"
    assert res.table.loc[A.METHOD_LABELS["magnitude"], ("SST-2", "3%")] == "61.0 ± 1.0 (n=3)"
    assert any(n.startswith("‡ = the cell includes a collapsed run") for n in res.notes)
    v = res.values[res.values.method == "movement"].iloc[0]
    assert (v.collapsed, v.stopped) == (1, 1)
    claims = A.claims_table(df, ["sst2"], sparsities=(0.03,))
    r = claims[claims.claim == "movement > magnitude"].iloc[0]
    assert (r.a_collapsed, r.a_stopped, r.b_collapsed, r.b_stopped) == (1, 1, 0, 0)
    assert f"70.3 ± {std:.1f}‡ (n=3, 1 stopped on collapse) vs 61.0 ± 1.0 (n=3)" in A.claims_markdown(claims)
    # collapsed to the end of its budget without the stop rule: collapsed, not stopped
    store.put(_collapsed(_record("mv2", "movement", 50.0, 0.03, seed=2), collapse_step=2000))
    cell = A.cell_value(A.load_records(tmp_path), "sst2", "movement", 0.03, False, "accuracy")
    assert (cell["n"], cell["collapsed"], cell["stopped"]) == (3, 1, 0)
    assert A.collapse_note(1, 0) == "1 collapsed" and A.collapse_note(2, 1) == "2 collapsed, 1 stopped"


def test_an_interpolated_seed_resting_on_a_collapsed_run_is_marked_and_brackets_are_per_seed(tmp_path):
    """Seed 0 is interpolated between 5% and 20% (4x: wide), seed 1 between 8% and 12% (1.5x) and its 8% run
    was stopped on collapse: the cell's bracket spans 5%-20%, its ratio is the widest seed's, ‡ and †."""
    store = ResultStore(tmp_path / "runs")
    store.put(_record("s0a", "soft_movement", 88.0, 0.20, lam=10.0, seed=0))
    store.put(_record("s0b", "soft_movement", 80.0, 0.05, lam=100.0, seed=0))
    store.put(_record("s1a", "soft_movement", 84.0, 0.12, lam=10.0, seed=1))
    store.put(_collapsed(_record("s1b", "soft_movement", 60.0, 0.08, lam=100.0, seed=1), stopped_at=900,
                         collapse_step=700))
    store.put(_collapsed(_record("s1c", "soft_movement", 50.0, 0.01, lam=1000.0, seed=1), stopped_at=800,
                         collapse_step=600))  # outside seed 1's bracket at 10%: no part of the cell
    cell = A.cell_value(A.load_records(tmp_path), "sst2", "soft_movement", 0.10, False, "accuracy")
    assert cell["seed_values"] == pytest.approx([80.0 + 8.0 / 3, 72.0])
    assert (cell["bracket_low"], cell["bracket_high"]) == (0.05, 0.20)
    assert cell["bracket_ratio"] == pytest.approx(4.0) and cell["wide_bracket"]
    assert (cell["collapsed"], cell["stopped"]) == (1, 1)
    assert A.cell_marks([cell]) == "*†‡"
    # both seeds narrow: no †
    narrow = A.cell_value(A.load_records(tmp_path).query("seed == 1"), "sst2", "soft_movement", 0.10, False,
                          "accuracy")
    assert narrow["bracket_ratio"] == pytest.approx(1.5) and not narrow["wide_bracket"]
    # a seed with a run exactly at the target is not interpolated: no bracket, no mark
    store.put(_record("s2", "soft_movement", 83.0, 0.10, lam=50.0, seed=2))
    exact = A.cell_value(A.load_records(tmp_path).query("seed == 2"), "sst2", "soft_movement", 0.10, False,
                         "accuracy")
    assert (exact["interpolated"], exact["bracket_low"], exact["wide_bracket"], exact["mean"]) == (False, None,
                                                                                                  False, 83.0)


def test_a_bracket_exactly_3x_wide_is_not_marked():
    pts = [(0.05, 80.0), (0.15, 86.0)]
    assert A.interpolation_bracket(pts, 0.10) == (0.05, 0.15)
    assert A.interpolation_bracket(pts, 0.05) == (0.05, 0.05) and A.interpolation_bracket(pts, 0.2) is None
    recs = [_record("a", "soft_movement", 80.0, 0.05, lam=1.0), _record("b", "soft_movement", 86.0, 0.15, lam=2.0)]
    cell = A.cell_value(A.records_frame(recs), "sst2", "soft_movement", 0.10, False, "accuracy")
    assert cell["bracket_ratio"] == pytest.approx(3.0) and not cell["wide_bracket"] and cell["mean"] == 83.0


def test_claims_table_gives_welchs_test_and_the_summary_its_p_value(tmp_path):
    """The SICK soft movement > movement cell at 10% (the committed seeds' values): not settled, p = 0.086."""
    store = ResultStore(tmp_path / "runs")
    for seed, (soft, mv) in enumerate(zip((84.58, 84.95, 84.63), (83.99, 82.20, 83.21))):
        store.put(_record(f"soft{seed}", "soft_movement", soft, 0.10, lam=1000.0, seed=seed, task="sick"))
        store.put(_record(f"mv{seed}", "movement", mv, 0.10, seed=seed, task="sick"))
    claims = A.claims_table(A.load_records(tmp_path), ["sick"], sparsities=(0.10,))
    r = claims[claims.claim == "soft movement > movement"].iloc[0]
    assert (round(r.t, 2), round(r.df, 1), round(r.p_value, 3), r.verdict) == (2.99, 2.2, 0.086, "not settled")
    assert not r.a_interp and not r.rests_on_wide_bracket  # runs exactly at 10%
    assert ("10%: not settled (p = 0.086), 84.7 ± 0.2 (n=3) vs 83.1 ± 0.9 (n=3)"
            in A.claims_summary(claims).loc["soft movement > movement", "SICK"])
    assert A.p_label(0.0004) == "p < 0.001" and A.p_label(0.0123) == "p = 0.012"


def test_crossover_and_clipping_claims_at_their_own_remaining_weights():
    recs = []
    for seed, (mag, mov) in enumerate([(84.0, 80.0), (84.5, 80.5), (84.2, 80.1)]):
        recs.append(_record(f"mag50-{seed}", "magnitude", mag, 0.5, task="sick", seed=seed))
        recs.append(_record(f"mov50-{seed}", "movement", mov, 0.5, task="sick", seed=seed))
        recs.append(_record(f"mov3-{seed}", "movement", 80.0 + seed, 0.03, task="sick", seed=seed))
        recs.append({**_record(f"mov3w-{seed}", "movement", 57.0, 0.03, task="sick", seed=seed), "clip": "weights"})
    claims = A.claims_table(A.records_frame(recs), ["sick"])
    cross = claims[(claims.claim == "magnitude > movement at low sparsity") & (claims.remaining == 0.5)].iloc[0]
    assert (cross.a_n, cross.b_n, cross.verdict) == (3, 3, "holds") and cross.p_value < 0.05
    assert not ((claims.claim == "magnitude > movement at low sparsity") & (claims.remaining == 0.3)).any()
    clip = claims[claims.claim == "clipping scores with weights > weights alone"].iloc[0]
    assert (clip.remaining, clip.a_mean, clip.b_mean, clip.verdict) == (0.03, 81.0, 57.0, "holds")
    # the variant runs never enter the recipe's movement cell
    mov = claims[(claims.claim == "movement > magnitude") & (claims.remaining == 0.03)]
    cell = A.cell_value(A.records_frame(recs), "sick", "movement", 0.03, False, "accuracy")
    assert (cell["n"], cell["mean"]) == (3, 81.0)
