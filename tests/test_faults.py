"""Fault cases not covered by test_train.py / test_batch.py: a held run lock, a corrupted record
that gets retrained, and a failing notebook turning into a non-zero batch exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from movprune.store import ResultStore
from movprune.train import RunConfig

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TINY = dict(model="tiny", max_train_examples=16, max_eval_examples=16, max_steps=1, batch_size=8, max_length=16)


def test_second_batch_process_skips_a_locked_run(tmp_path):
    """Another process holds the run's lock: this batch skips the run instead of training it too."""
    from movprune.batch import run_sweeps

    config = RunConfig(task="sst2", method="dense", **TINY)
    lock = tmp_path / "work" / "locks" / f"{config.run_id()}.lock"
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(  # a plain python process (no torch): holds the lock until stdin closes
        [sys.executable, "-c", "import fcntl, sys; f = open(sys.argv[1], 'w'); fcntl.flock(f, fcntl.LOCK_EX); "
                               "print('locked', flush=True); sys.stdin.read()", str(lock)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        logged = []
        result = run_sweeps([config], ResultStore(tmp_path / "runs"), tmp_path / "work", log=logged.append)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert result["skipped"] == [config.run_id()] and result["trained"] == 0 and not result["failed"]
    assert "another batch process" in logged[0]
    assert not (tmp_path / "work" / config.run_id()).exists()
    assert not list((tmp_path / "runs").glob("*.json"))


def test_stored_teacher_without_its_model_is_retrained_once_before_the_students(tmp_path, monkeypatch):
    """Records travel without models: a stored dense run whose model folder is missing is retrained once
    (forced), after the undistilled runs and before its distilled students, not by each student."""
    import movprune.batch as batch

    dense = RunConfig(task="sst2", method="dense", **TINY)
    students = [RunConfig(task="sst2", method="movement", remaining=v, distill=True, **TINY) for v in (0.1, 0.03)]
    plain = RunConfig(task="sst2", method="magnitude", remaining=0.1, **TINY)
    store = ResultStore(tmp_path / "runs")
    store.put({"run_id": dense.run_id(), "metrics": {}})
    calls = []

    def fake(config, store_root, work_dir, threads=0, force=False):
        calls.append((config.run_id(), force))
        if config.method == "dense":  # the teacher's model lands where the students look for it
            folder = batch.final_model_dir(config, work_dir)
            folder.mkdir(parents=True)
            (folder / "movprune_model.safetensors").write_bytes(b"")
        return "trained", config.run_id(), ""

    monkeypatch.setattr(batch, "_train_one", fake)
    result = batch.run_sweeps([dense, *students, plain], store, tmp_path / "work", log=lambda m: None)
    assert calls == [(plain.run_id(), False), (dense.run_id(), True)] + [(c.run_id(), False) for c in students]
    assert result["trained"] == 4 and result["cached"] == 1
    # the model is now there: a second sweep retrains no teacher
    calls.clear()
    batch.run_sweeps(students, store, tmp_path / "work", log=lambda m: None)
    assert calls == [(c.run_id(), False) for c in students]


def test_stored_teacher_is_retrained_in_the_first_phase_beside_the_undistilled_runs(tmp_path):
    """Parallel sweeps (a GPU running several jobs) retrain a stored teacher beside the undistilled runs
    rather than alone in a phase of its own; a dense run that is itself missing is trained in phase 1 as
    a run, not forced, and forced in phase 2 only if its model did not land."""
    import movprune.batch as batch

    dense = RunConfig(task="sst2", method="dense", **TINY)
    student = RunConfig(task="sst2", method="movement", remaining=0.1, distill=True, **TINY)
    plain = RunConfig(task="sst2", method="magnitude", remaining=0.1, **TINY)
    first, second, third = batch.sweep_phases([plain, student], tmp_path / "work")
    assert [(c.run_id(), f) for c, f in first()] == [(plain.run_id(), False), (dense.run_id(), True)]
    assert second() == []  # not retrained twice, even before its model has landed
    assert [c.run_id() for c, _ in third()] == [student.run_id()]
    # the dense run missing too: trained in phase 1 as a run, not forced
    first, second, _ = batch.sweep_phases([dense, plain, student], tmp_path / "work")
    assert [(c.run_id(), f) for c, f in first()] == [(dense.run_id(), False), (plain.run_id(), False)]
    assert [(c.run_id(), f) for c, f in second()] == [(dense.run_id(), True)]  # its model did not land


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
def test_corrupted_record_is_ignored_with_a_warning_and_rerun(tmp_path, capsys, monkeypatch):
    from movprune.train import run

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = RunConfig(task="sst2", method="magnitude", remaining=0.5, **TINY)
    store = ResultStore(tmp_path / "runs")
    store.root.mkdir()
    store.path(config.run_id()).write_text('{"run_id": "' + config.run_id() + '", "metr')  # cut short
    record = run(config, store=store, work_dir=tmp_path / "work", progress=False)
    assert "warning: ignoring corrupted record" in capsys.readouterr().out
    assert record["run_id"] == config.run_id() and "accuracy" in record["metrics"]
    assert json.loads(store.path(config.run_id()).read_text())["metrics"] == record["metrics"]


def _one_cell_notebook(folder: Path, name: str, source: str) -> Path:
    """``folder/<name>.ipynb``: a notebook with one code cell; returns the folder."""
    folder.mkdir()
    cell = {"cell_type": "code", "id": name, "metadata": {}, "execution_count": None, "outputs": [],
            "source": [source]}
    notebook = {"cells": [cell], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    (folder / f"{name}.ipynb").write_text(json.dumps(notebook))
    return folder


def test_failing_notebook_makes_the_batch_exit_non_zero(tmp_path, monkeypatch):
    from movprune.batch import run_batch

    monkeypatch.chdir(tmp_path)
    nbs = _one_cell_notebook(tmp_path / "nbs", "broken", "raise RuntimeError('deliberately broken')")
    (tmp_path / "results" / "smoke" / "runs").mkdir(parents=True)
    rc = run_batch(profile="smoke", results=str(tmp_path / "results"), work_dir=str(tmp_path / "work"),
                   only="notebooks", notebooks_dir=nbs)
    assert rc == 1
    meta = json.loads((tmp_path / "results" / "smoke" / "batch.json").read_text())
    assert "deliberately broken" in meta["notebooks"]["broken.ipynb"]
    assert "broken.ipynb" in (tmp_path / "results" / "smoke" / "README.md").read_text()


def test_batch_re_renders_the_other_committed_profiles_without_training(tmp_path, monkeypatch):
    from movprune.batch import committed_profiles, run_batch

    monkeypatch.chdir(tmp_path)
    nbs = _one_cell_notebook(tmp_path / "nbs", "ok", "print('rendered')")
    results = tmp_path / "results"
    for name in ("smoke", "minilm", "medium"):  # medium: the minilm profile's former name, no profile now
        (results / name / "runs").mkdir(parents=True)
    for name in ("minilm", "medium"):
        (results / name / "runs" / "x.json").write_text("{}")
    assert committed_profiles(results, exclude=["smoke"]) == ["minilm"]
    # a minilm run would take an hour: reaching the trainer for it fails the test
    monkeypatch.setattr("movprune.batch.run_sweeps", lambda *a, **k: pytest.fail("trained for an also-profile"))
    rc = run_batch(profile="smoke", results=str(results), work_dir=str(tmp_path / "work"), only="notebooks",
                   notebooks_dir=nbs, also=["minilm"])
    assert rc == 0
    meta = json.loads((results / "minilm" / "batch.json").read_text())
    assert meta["notebooks"] == {"ok.ipynb": None} and meta["tasks"] == ["sst2", "sick", "squad"]
    assert (results / "minilm" / "notebooks" / "ok.ipynb").is_file()
    assert "## Results — profile `minilm`" in (results / "README.md").read_text()
    with pytest.raises(ValueError, match="unknown profile"):
        run_batch(profile="smoke", results=str(results), only="notebooks", notebooks_dir=nbs, also=["nope"])
    # --only sweeps (training only, e.g. on a GPU box) renders nothing, for no profile
    monkeypatch.setattr("movprune.batch.run_sweeps", lambda *a, **k: {"trained": 0, "cached": 0, "failed": {}})
    monkeypatch.setattr("movprune.batch.run_notebooks", lambda *a, **k: pytest.fail("rendered with --only sweeps"))
    assert run_batch(profile="smoke", results=str(results), work_dir=str(tmp_path / "work"), only="sweeps",
                     notebooks_dir=nbs, also=["minilm"]) == 0


def test_results_index_shows_the_default_profile_first(tmp_path):
    """results/README.md opens on the sound replication (minilm), then the other profiles by name."""
    from movprune.batch import write_index

    for name in ("demo", "gpu", "minilm"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text(f"# Results — profile `{name}`\n\n![f](figures/f.png)\n")
    text = write_index(tmp_path).read_text()
    heads = [line for line in text.splitlines() if line.startswith("## Results")]
    assert heads == ["## Results — profile `minilm`", "## Results — profile `demo`", "## Results — profile `gpu`"]
    assert "![f](minilm/figures/f.png)" in text


def test_render_adds_the_profiles_other_tasks_that_have_stored_runs(tmp_path, monkeypatch):
    """gpu trains SST-2 by default; a stored SQuAD run is rendered too, unless --tasks names the tasks."""
    from movprune.batch import run_batch
    from movprune.store import ResultStore

    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr("movprune.batch.run_notebooks", lambda profile, rd, tasks, **k: seen.append(tasks) or {})
    store = ResultStore(tmp_path / "results" / "gpu" / "runs")
    store.put({"run_id": "squad-minilm-dense-s0-x", "task": "squad", "metrics": {}})
    for tasks in (None, "sick"):
        assert run_batch(profile="gpu", tasks=tasks, results=str(tmp_path / "results"), only="notebooks") == 0
    assert seen == ["sst2,squad", "sick"]


def test_batch_cli_adds_committed_profiles_only_without_an_explicit_profile(tmp_path, monkeypatch):
    from movprune import cli

    calls = []
    monkeypatch.setattr("movprune.batch.run_batch", lambda **kw: calls.append(kw) or 0)
    for name in ("minilm", "gpu", "demo", "small"):  # demo: a quick look, never re-rendered; small: no profile
        (tmp_path / name / "runs").mkdir(parents=True)
        (tmp_path / name / "runs" / "x.json").write_text("{}")
    for argv, profile, also in [([], "minilm", ["gpu"]), (["--profile", "demo"], "demo", []),
                                (["--also", "none"], "minilm", []), (["--profile", "smoke", "--also", "gpu,smoke"],
                                                                      "smoke", ["gpu"])]:
        calls.clear()
        assert cli.main(["batch", "--results", str(tmp_path), *argv]) == 0
        assert (calls[0]["profile"], calls[0]["also"]) == (profile, also)


def test_bf16_profile_says_where_bf16_is_emulated(tmp_path, monkeypatch, capsys):
    """The minilm profile trains in bf16 autocast; on a CPU without avx512_bf16 / AMX its runs use the
    fp32-kernel emulation (movprune.bf16) and the batch and --dry-run say so in one line."""
    import movprune.batch as B
    from movprune.cli import main

    monkeypatch.setattr(B, "bf16_native", lambda: False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    args = ["batch", "--profile", "minilm", "--tasks", "sick", "--results", str(tmp_path / "results"),
            "--work-dir", str(tmp_path / "work"), "--also", "none", "--dry-run"]
    assert main(args) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if "note:" in line]
    assert len(out) == 1 and "profile 'minilm'" in out[0] and "fp32 kernels on bf16-rounded operands" in out[0]
    assert not (tmp_path / "results").exists() and not (tmp_path / "work").exists()  # a dry run writes nothing
    # a profile that trains in fp32 (demo) is not affected; with native bf16 nothing is said either
    assert B._emulated_bf16("demo", B.get_profile("demo").all_configs(["sst2"], [0])) is None
    monkeypatch.setattr(B, "bf16_native", lambda: True)
    assert B._emulated_bf16("minilm", B.get_profile("minilm").all_configs(["sick"], [0])) is None
