"""The dry run's hours: steps from the training set's size, seconds per step from records or a measurement."""

from __future__ import annotations

import json

import pytest

from movprune import estimate as E
from movprune.config import RunConfig


def test_paper_steps_come_from_the_published_sizes_of_the_full_sets():
    from movprune.profiles import get_profile

    configs = get_profile("paper").all_configs(["mnli", "qqp", "squad"])
    steps = {c.task: E.planned_steps(c)[0] for c in configs}
    # MNLI: ceil(392,702 / 32) x 6 epochs; QQP: ceil(363,846 / 32) x 10; SQuAD: ceil(88,641 / 16) x 10
    assert steps == {"mnli": 12_272 * 6, "qqp": 11_371 * 10, "squad": 5_541 * 10}
    assert "published size" in E.planned_steps(configs[0])[1]
    assert E.planned_steps(RunConfig(task="qqp", max_steps=7)) == (7, "max_steps")


def test_wall_time_places_longest_runs_first_and_students_after_teachers():
    assert E.wall_hours([[3, 2, 2, 1]], 2) == 4  # 3+1 and 2+2
    assert E.wall_hours([[3, 2, 2, 1]], 8) == 3
    assert E.wall_hours([[1, 1], [5]], 8) == 6  # a distilled run waits for its teacher's phase


def test_hours_per_device_from_records_first_then_measured_step_times():
    dense = RunConfig(task="qqp", method="dense", max_steps=1000)
    moved = RunConfig(task="qqp", method="movement", remaining=0.1, max_steps=2000)
    student = RunConfig(task="qqp", method="movement", remaining=0.1, distill=True, max_steps=2000)
    record = {"run_id": "x", "task": "qqp", "model": "minilm", "method": "movement", "batch_size": 32,
              "max_length": 128, "steps": 100, "train_time_s": 50.0, "device": "cuda:A"}  # 0.5 s per step
    shape = lambda c: E._shape(c)  # noqa: E731
    measured = {("cuda:A", shape(moved)): 9.0, ("cuda:B", shape(dense)): 0.1, ("cuda:B", shape(moved)): 0.2}
    est = E.estimate([dense, moved, student], [record], measured)
    a, b = est["devices"]["cuda:A"], est["devices"]["cuda:B"]
    assert a["hours"] == {moved.run_id(): pytest.approx(2000 * 0.5 / 3600)}  # the record wins over the measurement
    assert b["hours"] == {dense.run_id(): pytest.approx(1000 * 0.1 / 3600), moved.run_id(): pytest.approx(2000 * 0.2 / 3600)}
    lines = E.estimate_lines([dense, moved, student], [record], measured)
    assert any(line.startswith("estimate on cuda:B: 0.1 GPU-hours") and "1 not timed on it" in line for line in lines)


def test_paper_dry_run_prints_gpu_hours_and_wall_time_on_n_gpus(tmp_path, monkeypatch, capsys):
    from movprune.batch import run_batch
    from movprune.profiles import get_profile

    configs = get_profile("paper").all_configs(["mnli", "qqp", "squad"])
    entries = [dict(zip(("model", "batch_size", "max_length", "bf16", "qa", "variant"), s), device="cuda:Fake GPU",
                    s_per_step=0.1) for s in {E._shape(c) for c in configs}]
    (tmp_path / "step_times.json").write_text(json.dumps({"entries": entries}))
    monkeypatch.setattr(E, "STEP_TIMES", tmp_path / "step_times.json")
    assert run_batch("paper", tasks="all", results=str(tmp_path / "results"), work_dir=str(tmp_path / "work"),
                     dry_run=True) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "estimate on cuda:Fake GPU" in line)
    # 42 runs per task of 73,632 + 113,710 + 55,410 steps at 0.1 s: 283.2 GPU-hours
    assert "283.2 GPU-hours" in line and "126 run(s)" in line and " on 8 / " in line
    assert not (tmp_path / "results").exists()
