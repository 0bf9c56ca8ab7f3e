"""Tables and figures from the results store: the logic behind the notebooks, under one name.

    from movprune import analysis as A
    df = A.load_records("results/minilm")                   # one row per run
    res = A.results_table(df, ["sst2"], distill=False)       # the paper's Table 2 layout
    A.save_table(res.table, "results/minilm", "table2_sst2")  # -> tables/table2_sst2.csv, markdown
    fig = A.plot_metric_vs_remaining(df, "sst2", distill=False)
    A.save_figure(fig, "results/minilm", "metric_vs_remaining_sst2")  # -> figures/*.png|pdf

This module only re-exports; the code lives in four modules, each importing only those above it:

* :mod:`movprune.records` - the shared vocabulary (method, task and metric labels, ``TYPE_ORDER``,
  the paper counterpart of each task), checking the notebook parameters, loading and selecting
  records, what "collapsed" and "stopped" mean (``is_collapsed``, ``stopped_at_step``,
  ``trained_steps``), the runs a profile still misses, a run's side file (``load_npz``, ``npz_for``),
  the interpolation between runs (``interpolate_at``, ``interpolation_bracket``) and ``notebook_setup``.
* :mod:`movprune.tables` - table cells, the results tables (ours and the paper's), markdown and CSV.
* :mod:`movprune.figures` - every plot, the method styles (``METHOD_STYLE``), ``save_figure`` and ``show``.
* :mod:`movprune.claims` - the paper's claims checked against the records by one fixed rule, Welch's
  t-test (``claims_table``, ``welch_test``).

:mod:`movprune.reference` (the paper's numbers) imports ``interpolate_at`` from records; tables and
figures import reference.
"""

from .claims import (  # noqa: F401
    ALPHA, LEGEND, MIN_SEEDS, VERDICTS, chance_level, claims_markdown, claims_summary, claims_table, layer0_ratio,
    p_label, t_two_sided_p, verdict, welch_test,
)
from .figures import (  # noqa: F401
    ADAPTIVE_METHODS, METHOD_STYLE, PRUNED_COLOR, layer_profile_runs, method_curve, per_matrix_grid,
    plot_layer_profile, plot_local_vs_global, plot_metric_vs_remaining, plot_per_layer, plot_remaining_histogram,
    plot_score_vs_weight, plot_weights_pretrained_vs_finetuned, save_figure, show,
)
from .records import (  # noqa: F401
    CURVE_METHODS, METHOD_LABELS, METRIC_LABELS, PAPER_COUNTERPART, PENALTY_METHODS, PROFILES, RECIPE_FIELDS,
    RECORD_COLUMNS, TABLE_METHODS, TASK_LABELS, TOPK_METHODS, TYPE_LABELS, TYPE_ORDER, AnalysisError, NotebookContext,
    _dedupe, check_parameters, dense_score, describe_missing, expected_runs, interpolate_at, interpolation_bracket,
    is_collapsed, load_npz, load_records, metric_label, missing_runs, notebook_setup, npz_for, pct_label, records_frame,
    runs_dir, select, stopped_at_step, task_label, trained_steps,
)
from .tables import (  # noqa: F401
    COLLAPSED_MARK, DASH, INTERP_MARK, TABLE_METRICS, WIDE_BRACKET, WIDE_MARK, ResultsTable, cell_marks, cell_value,
    collapse_note, flatten_columns, paper_results_table, raw_points, results_table, save_table, table_metrics,
    to_markdown,
)
