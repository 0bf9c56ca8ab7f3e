"""movprune.records: the one meaning of "collapsed", the steps a stopped run trained, and the one-time
migration of the committed records that said their budget instead."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from movprune import records as R
from movprune.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


def _rec(**kw):
    base = {"run_id": "r", "task": "sick", "model": "tiny", "method": "movement", "seed": 0, "remaining": 0.03,
            "metrics": {"accuracy": 70.0}, "main_metric": "accuracy", "steps": 3400, "max_steps": 3400,
            "finished_at": "2026-01-01T00:00:00Z"}
    return {**base, **kw}


def test_collapsed_means_the_training_loss_sat_at_the_constant_prediction_level():
    # stopped by the collapse rule, although its eval predictions use two classes (the record's old field)
    assert R.is_collapsed(_rec(collapse_step=1360, stopped_at=1564, collapsed=False)) is True
    assert R.is_collapsed(_rec(collapse_step=2000, stopped_at=None)) is True  # to the end of its budget
    assert R.is_collapsed(_rec(collapse_step=None, stopped_at=578, method="zero_encoder")) is True
    # every eval example in one class, but the loss never sat at that level: not collapsed
    assert R.is_collapsed(_rec(collapse_step=None, stopped_at=None, collapsed=True)) is False
    assert R.is_collapsed(_rec()) is None  # written before collapse_step was kept: unknown
    assert R.is_collapsed(_rec(task="stsb", collapse_step=None)) is None  # regression: no such level


def test_a_stopped_run_trained_until_its_stop_step():
    old = _rec(stopped_at=1564)  # as train.py wrote it before 2026-12-08: the budget in steps
    assert R.stopped_at_step(old) == 1564 and R.trained_steps(old) == 1564
    assert R.trained_steps({**old, "steps": 1564}) == 1564  # migrated
    assert R.stopped_at_step(_rec(stopped_at=None)) is None and R.trained_steps(_rec(stopped_at=None)) == 3400
    assert R.trained_steps({"stopped_at": 578}) == 578


def test_the_frame_normalises_steps_and_names_both_fields(tmp_path):
    store = ResultStore(tmp_path / "runs")
    store.put(_rec(run_id="stopped", stopped_at=1564, collapse_step=1360, collapsed=False))
    store.put(_rec(run_id="full", seed=1, stopped_at=None, collapse_step=None, collapsed=None))
    store.put(_rec(run_id="old", seed=2))
    df = R.load_records(tmp_path).set_index("run_id")
    assert df.loc["stopped", ["steps", "max_steps", "stopped_at_step"]].tolist() == [1564, 3400, 1564]
    assert (df.loc["stopped", "collapsed"], df.loc["stopped", "one_class"]) == (True, False)
    assert df.loc["full", "steps"] == 3400 and pd.isna(df.loc["full", "stopped_at_step"])
    assert df.loc["full", "collapsed"] is False and df.loc["old", "collapsed"] is None
    assert set(R.RECORD_COLUMNS) <= set(R.load_records(tmp_path / "nothing").columns)


def _migration():
    spec = importlib.util.spec_from_file_location("migrate_stopped_steps", REPO / "scripts" / "migrate_stopped_steps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_migration_rewrites_only_the_steps_line(tmp_path):
    migrate = _migration().migrate
    store = ResultStore(tmp_path)
    text = store.put(_rec(stopped_at=1564)).read_text()
    new = migrate(text)
    diff = [(a, b) for a, b in zip(text.splitlines(), new.splitlines()) if a != b]
    assert diff == [(' "steps": 3400,', ' "steps": 1564,')]
    assert migrate(new) is None  # once only
    assert migrate(store.put(_rec(run_id="s", stopped_at=None)).read_text()) is None
    with pytest.raises(ValueError, match="budget"):  # the budget would be lost
        migrate(json.dumps(_rec(stopped_at=1564, max_steps=None), indent=1, sort_keys=True))


def test_the_committed_example_record_is_migrated():
    """The medium profile's distilled movement 3% seed 2: stopped at step 1,564 of 3,400."""
    rec = json.loads((REPO / "results/minilm/runs/sick-minilm-movement_v0.03_local-kd-s2-ec29cfe26d.json").read_text())
    assert (rec["steps"], rec["max_steps"], rec["stopped_at"]) == (1564, 3400, 1564)
    # collapsed (its loss at the constant-prediction level), though its predictions are not one class
    assert R.is_collapsed(rec) and rec["collapsed"] is True and rec["one_class"] is False
    assert R.predicts_one_class(rec) is False and R.predicts_one_class({"collapsed": True}) is True  # older records
