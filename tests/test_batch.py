"""The papermill batch, end to end at smoke size (the issue's CI requirement), and its failure handling."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MOVPRUNE_DATA_DIR") or REPO.parent / "shared" / "data")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data or $MOVPRUNE_DATA_DIR")]


def _batch(*args, timeout=900):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "movprune", "batch", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    t0 = time.time()
    out = _batch("--profile", "smoke", "--results", str(root / "results"), "--work-dir", str(root / "work"))
    return root, out, time.time() - t0


def test_smoke_batch_end_to_end(smoke):
    root, out, seconds = smoke
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    res = root / "results" / "smoke"
    meta = json.loads((res / "batch.json").read_text())
    assert meta["sweeps"]["failed"] == {} and all(v is None for v in meta["notebooks"].values())
    assert len(list((res / "runs").glob("*.json"))) == meta["sweeps"]["trained"] > 10
    notebooks = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in (res / "notebooks").glob("*.ipynb")) == notebooks
    pngs = list((res / "figures").glob("*.png"))
    assert len(pngs) >= 6 and all(p.with_suffix(".pdf").is_file() for p in pngs)
    assert list((res / "tables").glob("*.csv"))
    readme = (res / "README.md").read_text()
    assert "profile `smoke`" in readme and "![" in readme and "Wall time" in readme


def test_smoke_batch_rerun_is_cached(smoke):
    """Every run stored: the sweep is a lookup that says so in one line (no empty progress bar) and leaves
    batch.json as it was, so the main command on a complete store writes what a notebooks-only one does."""
    root, first, _ = smoke
    assert first.returncode == 0
    meta_path = root / "results" / "smoke" / "batch.json"
    before = meta_path.read_bytes()
    t0 = time.time()
    out = _batch("--profile", "smoke", "--results", str(root / "results"), "--work-dir", str(root / "work"),
                 "--only", "sweeps")
    assert out.returncode == 0
    assert time.time() - t0 < 60
    n = len(list((root / "results" / "smoke" / "runs").glob("*.json")))
    assert f"[batch] all {n} runs are stored; nothing to train" in out.stdout
    assert "0run" not in out.stdout + out.stderr and "runs:" not in out.stderr
    assert meta_path.read_bytes() == before


def test_dry_run_lists_the_missing_runs_and_their_cost_and_writes_nothing(smoke, tmp_path):
    root, first, _ = smoke
    assert first.returncode == 0
    shutil.copytree(root / "results" / "smoke", tmp_path / "smoke")
    runs = sorted((tmp_path / "smoke" / "runs").glob("*.json"))
    gone = [r.stem for r in runs[:2]]
    for r in runs[:2]:
        r.unlink()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    out = _batch("--profile", "smoke", "--results", str(tmp_path), "--work-dir", str(root / "work"), "--dry-run")
    assert out.returncode == 0, out.stderr[-2000:]
    listed = [line.strip() for line in out.stdout.splitlines() if line.startswith("  ")]
    assert sorted(listed) == sorted(gone)
    assert f"{len(runs)} runs, {len(runs) - 2} stored, 2 to train" in out.stdout
    assert "the 2 runs still missing" in out.stdout and "h on cpu" in out.stdout
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before  # nothing trained or written


def test_failing_notebook_does_not_stop_the_others(smoke, tmp_path):
    root, first, _ = smoke
    assert first.returncode == 0
    from movprune.batch import run_notebooks

    nbs = tmp_path / "nbs"
    nbs.mkdir()
    good = sorted((REPO / "notebooks").glob("*.ipynb"))[0]
    shutil.copy(good, nbs / "b_good.ipynb")
    broken = json.loads(good.read_text())
    broken["cells"].append({"cell_type": "code", "id": "deliberately-broken", "metadata": {},
                            "execution_count": None, "outputs": [],
                            "source": ["raise RuntimeError('deliberately broken')"]})
    (nbs / "a_broken.ipynb").write_text(json.dumps(broken))
    res = tmp_path / "smoke"
    shutil.copytree(root / "results" / "smoke", res)
    status = run_notebooks("smoke", res, "sst2", notebooks_dir=nbs)
    assert status["b_good.ipynb"] is None
    assert "deliberately broken" in status["a_broken.ipynb"]


def test_results_readme_names_the_devices_that_trained_the_runs(tmp_path):
    """Records may come from another machine (a GPU lease): the profile page says which."""
    from movprune.batch import write_readme
    from movprune.store import ResultStore

    store = ResultStore(tmp_path / "runs")
    for i, device in enumerate(["cuda:NVIDIA H200", "cuda:NVIDIA H200", "cpu x1"]):
        store.put({"run_id": f"r{i}", "metrics": {"accuracy": 50.0}, "device": device})
    meta = {"profile": "gpu", "command": "python -m movprune batch --profile gpu", "machine": "x86_64, 2 CPU cores",
            "torch": "2", "threads": 2, "finished_at": "now", "sweeps_s": 0, "sweeps": {}, "notebooks_s": 0}
    text = write_readme(tmp_path, meta).read_text()
    assert "by the device that trained them: cpu x1 (1), cuda:NVIDIA H200 (2)." in text
    # what the store holds, the same whether the last invocation trained or only rendered
    assert "Runs in the store: 3.\n" in text and "invocation only" not in text
    assert write_readme(tmp_path, dict(meta, sweeps={"trained": 1, "cached": 2})).read_text() == text
    # a failure of the last training invocation is listed until its run is stored
    failed = dict(meta, sweeps={"failed": {"r9": "OSError: disk full", "r1": "RuntimeError: x"}})
    text = write_readme(tmp_path, failed).read_text()
    assert "- run `r9`: OSError: disk full" in text and "`r1`" not in text


def test_every_notebook_defaults_to_the_minilm_profile_and_all_its_tasks():
    """`jupyter lab notebooks/` opens on the sound results: each parameters cell names the minilm profile,
    its committed folder and its three tasks, and its comment lists the profiles that exist."""
    from movprune.profiles import DEFAULT_PROFILE, PROFILES, get_profile

    assert DEFAULT_PROFILE == "minilm" and get_profile("minilm").tasks == ("sst2", "sick", "squad")
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = [c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", [])]
        assert len(cells) == 1, path.name
        params = {}
        exec("".join(cells[0]["source"]), params)
        assert (params["profile"], params["results_dir"], params["tasks"]) == \
            ("minilm", "../results/minilm", "sst2,sick,squad"), path.name
        comment = "".join(cells[0]["source"]).split("profile = ")[1].splitlines()[0]
        assert all(name in comment for name in PROFILES) and "small" not in comment and "medium" not in comment
    assert (REPO / "results" / "minilm" / "runs").is_dir()


def test_notebook_runs_from_the_notebooks_folder_with_its_defaults(tmp_path):
    """As a person in jupyter lab would: open a notebook in notebooks/ and run it top to bottom with the
    parameters cell as it is (results_dir = "../results/minilm", relative to the notebook's folder)."""
    import nbformat
    from nbclient import NotebookClient

    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    shutil.copytree(REPO / "results" / "minilm" / "runs", tmp_path / "results" / "minilm" / "runs")
    nb = nbformat.read(tmp_path / "notebooks" / "01_results_table.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path / "notebooks")}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    header = (tmp_path / "results" / "minilm" / "tables" / "01_results_no_distillation.csv").read_text().splitlines()[0]
    assert all(f"{task} 10%" in header for task in ("SST-2", "SICK", "SQuAD v1.1")), header  # all three tasks


def test_rendering_twice_writes_identical_files(tmp_path):
    """The main command on unchanged records leaves `git status` clean: no dates, timings or absolute
    paths in what the notebooks write."""
    from movprune.batch import run_notebooks

    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    for name in ("01_results_table.ipynb", "05_local_vs_global.ipynb"):
        shutil.copy(REPO / "notebooks" / name, nbs / name)
    res = tmp_path / "results" / "minilm"
    shutil.copytree(REPO / "results" / "minilm" / "runs", res / "runs")

    def snapshot():
        return {p.relative_to(res): p.read_bytes() for p in res.rglob("*") if p.is_file()}

    assert all(v is None for v in run_notebooks("minilm", res, "sst2,sick", notebooks_dir=nbs).values())
    first = snapshot()
    stale = [res / "figures" / "03_weights_sst2_v10.png", res / "tables" / "01_gone.csv"]
    for f in stale:  # outputs of records that have since left the store, written by an earlier rendering
        f.write_bytes(b"old")
        os.utime(f, (time.time() - 60, time.time() - 60))
    assert all(v is None for v in run_notebooks("minilm", res, "sst2,sick", notebooks_dir=nbs).values())
    assert not any(f.exists() for f in stale)
    second = snapshot()
    assert sorted(first) == sorted(second) and any(str(p).endswith(".pdf") for p in first)
    changed = [str(p) for p in first if first[p] != second[p]]
    assert not changed
    executed = json.loads((res / "notebooks" / "01_results_table.ipynb").read_text())
    injected = [c for c in executed["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert 'results_dir = "../results/minilm"' in "".join(injected[0]["source"])


def test_scrub_merges_stream_chunks(tmp_path):
    """Printed text comes back as one output whatever the kernel's flush timing."""
    from movprune.batch import scrub_notebook

    def nb(outputs):
        return {"cells": [{"cell_type": "code", "metadata": {}, "source": [], "outputs": outputs}],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

    split = nb([{"name": "stdout", "output_type": "stream", "text": ["a\n", "b"]},
                {"name": "stdout", "output_type": "stream", "text": ["c\n"]},
                {"name": "stderr", "output_type": "stream", "text": "warn\n"},
                {"output_type": "execute_result", "data": {"text/plain": ["1"]}, "metadata": {}, "execution_count": 1}])
    whole = nb([{"name": "stdout", "output_type": "stream", "text": ["a\n", "bc\n"]},
                {"name": "stderr", "output_type": "stream", "text": "warn\n"},
                {"output_type": "execute_result", "data": {"text/plain": ["1"]}, "metadata": {}, "execution_count": 1}])
    for name, content in (("split", split), ("whole", whole)):
        (tmp_path / f"{name}.ipynb").write_text(json.dumps(content))
        scrub_notebook(tmp_path / f"{name}.ipynb")
    assert (tmp_path / "split.ipynb").read_bytes() == (tmp_path / "whole.ipynb").read_bytes()
    outs = json.loads((tmp_path / "split.ipynb").read_text())["cells"][0]["outputs"]
    assert [o.get("name") for o in outs] == ["stdout", "stderr", None] and outs[0]["text"] == ["a\n", "bc\n"]


def test_scrub_replaces_the_folders_of_this_machine_in_outputs(tmp_path):
    """An executed notebook names no folder of the machine that ran it: a warning raised in the venv
    (tqdm's "IProgress not found" named its site-packages path), a traceback through the checkout, a
    printed interpreter path; a longer name that merely starts like a folder is left alone."""
    import site

    from movprune.batch import REPO as CHECKOUT, scrub_notebook, scrub_paths

    packages = site.getsitepackages()[0]
    outputs = [{"name": "stderr", "output_type": "stream",
                "text": [f"{packages}/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"]},
               {"output_type": "error", "ename": "OSError", "evalue": f"no such file: {CHECKOUT}/results/x",
                "traceback": [f"File {CHECKOUT}/movprune/records.py:1"]},
               {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                "data": {"text/plain": [f"'{sys.prefix}/bin/python'"], "image/png": "iVBORw0KGgo="}}]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "source": [], "outputs": outputs}],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    scrub_notebook(path)
    text = path.read_text()
    for folder in (str(CHECKOUT), sys.prefix, packages):
        assert folder not in text
    outs = json.loads(text)["cells"][0]["outputs"]
    assert outs[0]["text"] == ["<site-packages>/tqdm/auto.py:21: TqdmWarning: IProgress not found.\n"]
    assert outs[1]["evalue"] == "no such file: <repo>/results/x" and outs[1]["traceback"] == [
        "File <repo>/movprune/records.py:1"]
    assert outs[2]["data"] == {"text/plain": ["'<python>/bin/python'"], "image/png": "iVBORw0KGgo="}
    assert scrub_paths("/home/u/x and /home/user", [("/home/u", "<home>")]) == "<home>/x and /home/user"


def test_a_fresh_clone_re_renders_the_default_profile_with_git_status_clean(tmp_path):
    """The committed results re-render anywhere: `git clone` of this repository into another folder,
    then the main command's rendering of the default profile (every notebook of minilm executed over its
    committed records; --only notebooks: a complete store makes the sweep a lookup, and the runs still
    being trained would take hours; --also none: the gpu profile's pages are the same code). Nothing may
    change: no absolute path, timestamp, timing or CPU-dependent number in any output. One thread: the
    committed render used two, so a number that depends on the summation order shows up here too."""
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "elsewhere" / "movprune"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=300)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MOVPRUNE_DATA_DIR": str(DATA), "PYTHONPATH": str(clone),
           "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    out = subprocess.run([sys.executable, "-m", "movprune", "batch", "--only", "notebooks", "--also", "none"],
                         capture_output=True, text=True, env=env, timeout=1200, cwd=clone)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    executed = sorted(line.split()[1] for line in out.stdout.splitlines() if line.startswith("notebook "))
    assert executed == sorted(p.name + ":" for p in (REPO / "notebooks").glob("*.ipynb"))
    status = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=clone).stdout
    diff = subprocess.run(["git", "diff", "--stat"], capture_output=True, text=True, cwd=clone).stdout
    assert status == "", f"the re-render changed the clone ({time.time() - t0:.0f}s):\n{status}{diff[-3000:]}"


def test_training_cost_sums_the_records_and_estimates_the_missing_runs_per_task(tmp_path):
    from types import SimpleNamespace

    from movprune.batch import training_cost
    from movprune.store import ResultStore

    store = ResultStore(tmp_path)
    for i, (task, t) in enumerate([("sst2", 3000.0), ("sst2", 4200.0), ("sick", 1800.0)]):
        store.put({"run_id": f"r{i}", "task": task, "metrics": {"accuracy": 50.0}, "device": "cpu x1",
                   "train_time_s": t})
    store.put({"run_id": "old", "task": "sst2", "metrics": {"accuracy": 50.0}, "device": "cpu x1"})  # untimed
    missing = [SimpleNamespace(task="sst2"), SimpleNamespace(task="sick"), SimpleNamespace(task="squad")]
    lines = training_cost(tmp_path, missing)
    assert lines[0] == "cpu x1: 3 runs, 2.5 h of training"                       # 9,000 s
    # sst2 at its mean 3,600 s + sick 1,800 s = 1.5 h; squad has no stored run: counted, not timed
    assert lines[1].startswith("the 3 runs still missing") and "~1.5 h on cpu x1" in lines[1]
    assert "(1 of them on tasks with no stored run, not counted)" in lines[1]
    assert training_cost(tmp_path / "empty") == []
    one = training_cost(tmp_path, missing[1:2])[1]
    assert one.startswith("the run still missing, at the mean time") and "~0.5 h on cpu x1" in one
    # a distilled run (it also runs its teacher) is estimated from the task's distilled runs once one is stored
    store.put({"run_id": "kd", "task": "sick", "distill": True, "metrics": {"accuracy": 50.0}, "device": "cpu x1",
               "train_time_s": 5400.0})
    missing = [SimpleNamespace(task="sick", distill=True), SimpleNamespace(task="sick", distill=False)]
    assert "~2.0 h on cpu x1" in training_cost(tmp_path, missing)[1]  # 5,400 s + 1,800 s
    # a device with no stored run of the missing runs' tasks gives no estimate (not "~0.0 h")
    store.put({"run_id": "g", "task": "sst2", "metrics": {"accuracy": 50.0}, "device": "cuda:X", "train_time_s": 60.0})
    lines = training_cost(tmp_path, missing)
    assert lines[0].startswith("cpu x1") and lines[1].startswith("cuda:X: 1 run")
    assert [line for line in lines if "still missing" in line and "cuda:X" in line] == []


def test_a_resumed_run_counts_its_whole_training_time(tmp_path):
    """A resumed record with the time before its resume counts as it is; one resumed from a checkpoint
    saved without it (older runs) is scaled from its last part to all its steps, and says so."""
    from movprune.batch import run_train_time, training_cost
    from movprune.store import ResultStore

    whole = {"train_time_s": 3000.0, "steps": 3400, "resumed_from": "ck/run/checkpoint-2000",
             "train_time_before_resume_s": 1800.0}
    assert run_train_time(whole) == 3000.0
    assert run_train_time({**whole, "train_time_before_resume_s": None, "train_time_s": 1400.0}) == 3400.0
    assert run_train_time({"train_time_s": 1400.0, "steps": 3400, "resumed_from": None}) == 1400.0
    assert run_train_time({"train_time_s": 10.0, "steps": 3400, "resumed_from": "odd-name"}) == 10.0
    store = ResultStore(tmp_path)
    store.put({"run_id": "a", "task": "sick", "metrics": {}, "device": "cpu x1", "train_time_s": 1800.0})
    store.put({"run_id": "b", "task": "sick", "metrics": {}, "device": "cpu x1", "train_time_s": 1400.0,
               "steps": 3400, "resumed_from": "x/checkpoint-2000"})
    assert training_cost(tmp_path) == ["cpu x1: 2 runs, 1.4 h of training (1 resumed run timed only after the "
                                       "resume, extrapolated to all their steps)"]  # 1,800 + 3,400 s


def test_dry_run_names_only_the_teachers_of_missing_distilled_runs(tmp_path, capsys):
    """A teacher whose distilled runs are all stored is not retrained, so the dry run must not list it."""
    from movprune.batch import _dry_run
    from movprune.profiles import get_profile
    from movprune.store import ResultStore

    configs = get_profile("minilm").all_configs(["sick", "squad"], [0])
    store = ResultStore(tmp_path / "runs")
    for c in configs:  # every run stored but SQuAD's distilled one
        if not (c.distill and c.task == "squad"):
            store.put({"run_id": c.run_id(), "task": c.task, "metrics": {}, "train_time_s": 1.0})
    _dry_run("minilm", ["sick", "squad"], [0], configs, store, tmp_path / "work")
    out = capsys.readouterr().out
    teacher_line = next(line for line in out.splitlines() if "retrained beside" in line)
    assert "1 stored distillation teacher(s)" in teacher_line and "squad-minilm-dense" in teacher_line
    assert "sick-minilm-dense" not in teacher_line
    # a teacher that is itself missing is listed once, as a run to train, not also as "retrained"
    dense = next(c for c in configs if c.task == "squad" and c.method == "dense")
    store.path(dense.run_id()).unlink()
    _dry_run("minilm", ["sick", "squad"], [0], configs, store, tmp_path / "work")
    out = capsys.readouterr().out
    assert f"  {dense.run_id()}" in out.splitlines() and "retrained" not in out


def test_page_tasks_add_the_stored_tasks_only_without_an_explicit_task_list():
    """The page of a default-task batch shows (and counts the missing runs of) every task with stored
    runs, e.g. SQuAD on the gpu profile; an explicit --tasks list is shown as given; the minilm profile's
    default tasks are all three."""
    from movprune.batch import page_tasks
    from movprune.profiles import get_profile

    prof = get_profile("gpu")
    assert page_tasks(prof, list(prof.tasks), True, {"sick", "squad"}) == ["sst2", "sick", "squad"]
    assert page_tasks(prof, list(prof.tasks), True, {"sick"}) == ["sst2", "sick"]
    assert page_tasks(prof, ["sick"], False, {"sick", "squad"}) == ["sick"]
    minilm = get_profile("minilm")
    assert page_tasks(minilm, list(minilm.tasks), True, set()) == ["sst2", "sick", "squad"]
