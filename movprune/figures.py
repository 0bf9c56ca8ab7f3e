"""Figures from the records: metric vs remaining weights, weights of one matrix, local vs global, per layer.

    from movprune import figures, records
    df = records.load_records("results/minilm")
    fig = figures.plot_metric_vs_remaining(df, "sst2", distill=False)
    figures.save_figure(fig, "results/minilm", "metric_vs_remaining_sst2")  # -> figures/*.png|pdf
    figures.show(fig, "results/minilm", "metric_vs_remaining_sst2")         # save, then display in a notebook

* Figures are plain :class:`matplotlib.figure.Figure` objects (no pyplot state, any backend);
  every method has one colour and marker across all figures (:data:`METHOD_STYLE`).
* The x axis is ``remaining`` (kept fraction of the targeted encoder linear weights) unless
  ``convention="remaining_paper"``; the paper's points come from :mod:`movprune.reference`.
* :func:`save_figure` writes byte-deterministic files: saving the same figure twice gives the same
  PNG and PDF bytes (no creation date in the PDF).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from . import reference
from .records import (CURVE_METHODS, METHOD_LABELS, PAPER_COUNTERPART, TABLE_METHODS, TOPK_METHODS, TYPE_LABELS,
                      TYPE_ORDER, _agg, _main_metric, _metric_col, _metric_values, dense_score, load_npz, metric_label,
                      pct_label, select, task_label)


# ---------------------------------------------------------------------------------------------
# Styles

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


def _no_data(ax, text: str, keep_axes: bool = False) -> None:
    """Write ``text`` in the middle of an axes that has nothing (or only reference lines) to show;
    ``keep_axes`` keeps the ticks, for a panel whose reference lines still carry information."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="#555555", wrap=True)
    if not keep_axes:
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
    elif not any_curve:  # the dense line alone: say why the curves are missing
        _no_data(ax, f"no pruned runs of {task_label(task)} {'with' if distill else 'without'} distillation "
                     "in the store", keep_axes=True)
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
# Figures 2-3: weights of one matrix (npz side files: records.load_npz, records.npz_for)


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
    elif not any(len(method_curve(df, task, m, distill, scope="global", metric=metric)) for m in TOPK_METHODS):
        _no_data(ax, f"no global top-k runs of {task_label(task)} in the store: local only", keep_axes=True)
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
# Saving and showing

# saving the same figure twice gives the same bytes: no creation date in the PDF (matplotlib writes the
# time of saving otherwise), no matplotlib version in the PNG
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None}


ADAPTIVE_METHODS = ("soft_movement", "l0")


def layer_profile_runs(df: pd.DataFrame, task: str, distill: bool = False) -> pd.DataFrame:
    """The runs whose per-layer sparsity is chosen by the method, not fixed by a local target.

    Soft movement and L0 (thresholded, their per-matrix sparsity is learned) and global top-k
    magnitude / movement; runs without per-layer counts or at 100% are left out. Sorted by method,
    then remaining weights.
    """
    rows = select(df, task=task, distill=distill)
    if rows.empty:
        return rows
    adaptive = rows.method.isin(ADAPTIVE_METHODS) | (rows.method.isin(TOPK_METHODS) & (rows.scope == "global"))
    rows = rows[adaptive & rows.per_layer.map(lambda d: bool(d)) & (rows.remaining.astype(float) < 0.999)]
    return rows.sort_values(["method", "remaining", "seed"])


def plot_layer_profile(df: pd.DataFrame, task: str, distill: bool = False, profile: Optional[str] = None):
    """Which layers the adaptive selections keep: every soft movement, L0 and global top-k run.

    Left: kept fraction of each layer (log scale), one line per run. Right: the same divided by the
    run's overall kept fraction, so runs at different sparsities share one scale: 1 is a uniform
    spread, above 1 the layer keeps more than the run's average. The paper reports that the
    first-order methods (movement, soft movement) keep more of the lower layers than magnitude does.
    """
    fig, axes = _figure(1, 2, figsize=(12, 4.6))
    runs = layer_profile_runs(df, task, distill)
    if runs.empty:
        for ax in axes[0]:
            _no_data(ax, "no soft movement, L0 or global top-k run in the store")
        fig.suptitle(_title(task, df, profile, "kept weights per layer"), fontsize=11)
        return fig
    layers = sorted({int(k) for d in runs.per_layer for k in d if str(k).lstrip("-").isdigit()})

    def kept_label(v):
        v = 100 * float(v)
        return f"{v:.0f}%" if v >= 10 else f"{v:.1f}%" if v >= 1 else f"{v:.2g}%"

    # one legend entry per method: how many runs and the range of their kept fractions (a line per run
    # would give a legend longer than the plot); each line carries its run id as its gid
    legend = {}
    for method, group in runs.groupby("method", sort=False):
        n, lo, hi = len(group), group.remaining.astype(float).min(), group.remaining.astype(float).max()
        name = METHOD_LABELS.get(method, method) + (" (global)" if method in TOPK_METHODS else "")
        legend[method] = (f"{name}: {n} run{'s' if n != 1 else ''}, "
                          + (kept_label(lo) if n == 1 or kept_label(lo) == kept_label(hi)
                             else f"{kept_label(lo)[:-1]}-{kept_label(hi)}") + " kept")
    for _, r in runs.iterrows():
        kept = np.array([float(r.per_layer.get(str(l), np.nan)) for l in layers])
        style = METHOD_STYLE.get(r.method, {})
        label = legend.pop(r.method, None)
        for ax, y in zip(axes[0], (100 * kept, kept / float(r.remaining))):
            line, = ax.plot(layers, y, color=style.get("color"), marker=style.get("marker"), markersize=4,
                            linewidth=1.2, alpha=0.85, label=label if ax is axes[0][1] else None)
            line.set_gid(r.run_id)
    ax = axes[0][0]
    ax.set_yscale("log")
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
    ax.yaxis.set_minor_formatter(NullFormatter())  # a range under a decade would label minor ticks "6x10^1"
    ax.set_ylabel("kept weights in the layer (log scale)")
    ax.set_title("kept fraction per layer", fontsize=10)
    ax = axes[0][1]
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
    ax.set_ylabel("layer's kept fraction / run's kept fraction")
    ax.set_title("relative to the run's overall density (1 = uniform)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    for ax in axes[0]:
        ax.set_xticks(layers)
        ax.set_xlabel("layer (0 = next to the embeddings)")
        ax.grid(True, alpha=0.3)
    fig.suptitle(_title(task, df, profile, "kept weights per layer" + (", with distillation" if distill else "")),
                 fontsize=11)
    return fig


def _settle_layout(fig, max_draws: int = 20) -> None:
    """Lay ``fig`` out again until its axes stop moving (at most ``max_draws`` times).

    Constrained layout starts from the current positions: the first few layouts of a figure move
    its axes by a little each (1e-5 of a point), which a PDF records, so that two saves differ.
    """
    prev = None
    for _ in range(max_draws):
        fig.draw_without_rendering()
        pos = [tuple(ax.get_position().bounds) for ax in fig.axes]
        if pos == prev:
            return
        prev = pos


def save_figure(fig, results_dir: str | os.PathLike, name: str, dpi: int = 150) -> tuple[Path, Path]:
    """Write ``<results_dir>/figures/<name>.png`` (dpi 150) and ``.pdf``; returns both paths.

    The files are byte-deterministic: saving the same figure again gives the same bytes (metadata
    without dates or versions; the layout settled, then held while both files are drawn).
    """
    out = Path(results_dir) / "figures"
    out.mkdir(parents=True, exist_ok=True)
    png, pdf = out / f"{name}.png", out / f"{name}.pdf"
    engine = fig.get_layout_engine()
    if engine is not None:
        _settle_layout(fig)
        fig.set_layout_engine("none")  # savefig would lay the figure out again, at the file's dpi
    try:
        fig.savefig(png, dpi=dpi, bbox_inches="tight", metadata=_PNG_METADATA)
        fig.savefig(pdf, bbox_inches="tight", metadata=_PDF_METADATA)
    finally:
        if engine is not None:
            fig.set_layout_engine(engine)
    return png, pdf


def show(fig, results_dir: str | os.PathLike, name: str) -> None:
    """Save ``fig`` (PNG + PDF, :func:`save_figure`) and display the PNG in a notebook."""
    png, _ = save_figure(fig, results_dir, name)
    try:
        from IPython.display import Image, display

        display(Image(filename=str(png)))
    except ImportError:  # pragma: no cover - outside IPython
        print(f"wrote {png}")
