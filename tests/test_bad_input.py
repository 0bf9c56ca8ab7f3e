"""Bad-input catalog: every case ends with one line on stderr, exit status 2, nothing written.

Each CLI case runs ``movprune.cli.main`` in-process against a tmp folder that already holds a
results store (a sentinel record) and a work folder (a sentinel checkpoint); afterwards both
trees must be byte-identical (no file changed, added or removed), so no case reached training.
Notebook parameters are checked through :func:`movprune.analysis.check_parameters`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from movprune.cli import main

GOOD_TSV = "sentence\tlabel\n" + "".join(f"{w} movie number {i}\t{i % 2}\n" for i, w in
                                        enumerate(["good", "bad", "fine", "awful", "great", "poor"] * 2))
# a valid tiny run (1 step) so each case differs from a runnable command by one thing
BASE = ["--model", "tiny", "--data-dir", "{data}", "--store", "{store}", "--work-dir", "{work}",
        "--max-steps", "1", "--max-train-examples", "8", "--max-eval-examples", "8", "--batch-size", "4",
        "--max-length", "16"]
BATCH = ["--results", "{root}/results", "--work-dir", "{work}"]


def _bad_data(name):
    """Data folder edits: (file under SST-2/, bytes)."""
    return {
        "empty_train_file": ("train.tsv", b""),
        "header_only": ("train.tsv", b"sentence\tlabel\n"),
        "missing_label_column": ("train.tsv", b"sentence\tscore\ngood\t1\n"),
        "bad_label_value": ("train.tsv", b"sentence\tlabel\ngood\t1\nbad\tmaybe\n"),
        "non_utf8": ("train.tsv", b"sentence\tlabel\ngood\t1\nbad \xff\xfe movie\t0\n"),
        "malformed_row": ("train.tsv", b"sentence\tlabel\ngood\t1\nbad\t0\textra\n"),
        "broken_dev_file": ("dev.tsv", b"sentence\tlabel\nfine\t3\n"),
    }[name]


# (case id, argv with {placeholders}, fragment of the one error line)
CASES = [
    # --- run config values --------------------------------------------------------------------
    ("method_unknown", ["run", "--method", "pruney", *BASE], "unknown pruning method 'pruney'"),
    ("v_zero", ["run", "--method", "movement", "--remaining", "0", *BASE], "remaining must be in (0, 1]"),
    ("v_above_one", ["run", "--method", "magnitude", "--remaining", "1.5", *BASE], "remaining must be in (0, 1]"),
    ("v_missing", ["run", "--method", "movement", *BASE], "needs remaining"),
    ("v_with_penalty_method", ["run", "--method", "l0", "--remaining", "0.1", *BASE], "takes final_lambda"),
    ("lambda_missing", ["run", "--method", "soft_movement", *BASE], "needs final_lambda"),
    ("lambda_negative", ["run", "--method", "l0", "--final-lambda", "-1", *BASE], "final_lambda must be a number >= 0"),
    ("lambda_with_topk_method", ["run", "--method", "movement", "--remaining", "0.1", "--final-lambda", "5", *BASE],
     "takes remaining=, not final_lambda"),
    ("dense_with_v", ["run", "--method", "dense", "--remaining", "0.5", *BASE], "takes neither"),
    ("tau_one", ["run", "--method", "soft_movement", "--final-lambda", "10", "--final-threshold", "1", *BASE],
     "final_threshold must be in [0, 1)"),
    ("tau_negative", ["run", "--method", "soft_movement", "--final-lambda", "10", "--final-threshold", "-0.1", *BASE],
     "final_threshold must be in [0, 1)"),
    ("temperature_zero", ["run", "--temperature", "0", *BASE], "temperature must be > 0"),
    ("alpha_ce_above_one", ["run", "--alpha-ce", "1.5", *BASE], "alpha_ce must be in [0, 1]"),
    ("alpha_distil_negative", ["run", "--alpha-distil", "-0.1", *BASE], "alpha_distil must be in [0, 1]"),
    ("seed_negative", ["run", "--seed", "-1", *BASE], "seed must be an integer >= 0"),
    ("epochs_zero", ["run", "--epochs", "0", *BASE], "epochs must be > 0"),
    ("max_steps_zero", ["run", *BASE, "--max-steps", "0"], "max_steps must be > 0"),
    ("batch_size_zero", ["run", *BASE, "--batch-size", "0"], "batch_size must be > 0"),
    ("max_length_zero", ["run", *BASE, "--max-length", "0"], "max_length must be > 0"),
    ("lr_zero", ["run", "--lr", "0", *BASE], "lr must be > 0"),
    ("lr_nan", ["run", "--lr", "nan", *BASE], "lr must be a finite number"),
    ("lambda_inf", ["run", "--method", "soft_movement", "--final-lambda", "inf", *BASE],
     "final_lambda must be a finite number"),
    ("epochs_inf", ["run", "--epochs", "inf", *BASE], "epochs must be a finite number"),
    ("remaining_minus_inf", ["run", "--method", "movement", "--remaining=-inf", *BASE],
     "remaining must be a finite number"),
    ("max_length_above_positions", ["run", *BASE, "--max-length", "600"], "exceeds model 'tiny'"),
    ("sparsity_warmup_steps_negative", ["run", "--method", "movement", "--remaining", "0.1",
                                        "--sparsity-warmup-steps", "-5", *BASE], "warmup_steps must be an integer >= 0"),
    ("score_lr_negative", ["run", "--score-lr", "-0.01", *BASE], "score_lr must be > 0"),
    ("lr_warmup_one", ["run", "--lr-warmup", "1", *BASE], "lr_warmup must be a fraction in [0, 1)"),
    ("sparsity_warmup_one", ["run", "--method", "movement", "--remaining", "0.1", "--sparsity-warmup", "1", *BASE],
     "warmup/cooldown must be fractions"),
    ("max_train_examples_zero", ["run", *BASE, "--max-train-examples", "0"], "max_train_examples must be > 0"),
    ("scope_unknown", ["run", "--method", "movement", "--remaining", "0.1", "--scope", "everywhere", *BASE],
     "unknown scope 'everywhere'"),
    ("scope_global_soft_movement", ["run", "--method", "soft_movement", "--final-lambda", "10", "--scope", "global",
                                    *BASE], "scope applies to top-k methods only"),
    ("task_unknown", ["run", "--task", "sst3", *BASE], "unknown task 'sst3'"),
    ("split_unknown", ["run", "--train-split", "trian", *BASE], "has no split 'trian'"),
    ("teacher_dir_without_distill", ["run", "--teacher-dir", "{teacher_missing}", *BASE],
     "teacher_dir is only used with distill"),
    ("sweep_one_bad_value", ["sweep", "--method", "movement", "--remaining", "0.1", "2", *BASE],
     "remaining must be in (0, 1]"),
    # --- command line ---------------------------------------------------------------------------
    ("flag_typo", ["run", "--methd", "movement", *BASE], "unrecognized arguments: --methd movement (did you mean --method?)"),
    ("value_wrong_type", ["run", "--seed", "one", *BASE], "argument --seed: invalid int value: 'one'"),
    ("flag_missing_value", ["run", *BASE, "--remaining"], "argument --remaining: expected one argument"),
    ("subcommand_typo", ["rnu", "--method", "movement"], "invalid choice: 'rnu'"),
    ("subcommand_missing", [], "the following arguments are required"),
    # --- data files -----------------------------------------------------------------------------
    ("data_folder_missing", ["run", *BASE, "--data-dir", "{root}/no-such-data"], "looked at"),
    ("data_empty_train_file", ["run", *BASE], "train.tsv: file is empty"),
    ("data_header_only", ["run", *BASE], "train.tsv: file has a header but no examples"),
    ("data_missing_label_column", ["run", *BASE], "train.tsv:1: header lacks column(s) ['label']"),
    ("data_bad_label_value", ["run", *BASE], "train.tsv:3: label 'maybe' not in"),
    ("data_non_utf8", ["run", *BASE], "train.tsv:3: not valid UTF-8"),
    ("data_malformed_row", ["run", *BASE], "train.tsv:3: malformed row"),
    ("data_broken_dev_file", ["run", *BASE], "dev.tsv:2: label '3' not in"),
    ("squad_not_json", ["run", "--task", "squad", *BASE], "dev-v1.1.json:1: not valid JSON"),
    # --- model folders --------------------------------------------------------------------------
    ("model_folder_missing", ["run", *BASE, "--model", "{root}/no-such-model"], "does not exist"),
    ("model_folder_without_config", ["run", *BASE, "--model", "{models}/noconfig"], "has no config.json"),
    ("model_config_not_json", ["run", *BASE, "--model", "{models}/badjson"], "config.json is not readable JSON"),
    ("model_not_an_encoder", ["run", *BASE, "--model", "{models}/gpt2"],
     "wrong architecture for the task: model_type 'gpt2'"),
    ("model_head_wrong_labels", ["run", *BASE, "--model", "{models}/bert3"],
     "wrong architecture for the task: its BertForSequenceClassification head has 3 outputs, the task needs 2"),
    ("model_without_weights", ["run", *BASE, "--model", "{models}/noweights"], "has no weights"),
    ("model_unknown_name_offline", ["run", *BASE, "--model", "bert-base-nosuch"], "the hub is offline"),
    # --- distillation teacher -------------------------------------------------------------------
    ("teacher_folder_missing", ["run", "--distill", "--teacher-dir", "{teacher_missing}", *BASE], "does not exist"),
    ("teacher_other_vocabulary", ["run", "--distill", "--teacher-dir", "{teacher_vocab}", *BASE],
     "uses a different vocabulary than the student"),
    # --- results store and run folder -----------------------------------------------------------
    ("store_not_writable", ["run", *BASE, "--store", "{store}/sentinel.json/runs"], "is not writable"),
    ("resume_different_config", ["run", "--method", "movement", "--remaining", "0.1", *BASE],
     "belongs to a different config (method 'magnitude' != 'movement'"),
    # --- batch ----------------------------------------------------------------------------------
    ("batch_unknown_profile", ["batch", "--profile", "huge", *BATCH], "unknown profile 'huge'"),
    ("batch_unknown_task", ["batch", "--profile", "smoke", "--tasks", "sst2,sst3", *BATCH],
     "has no budget for task(s) sst3"),
    ("batch_zero_seeds", ["batch", "--profile", "smoke", "--seeds", "0", *BATCH], "--seeds must be >= 1"),
    ("batch_only_typo", ["batch", "--only", "sweep", *BATCH], "argument --only: invalid choice: 'sweep'"),
]


def _snapshot(*roots: Path) -> dict:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """Read-only inputs shared by every case: model folders and teacher tokenizers."""
    root = tmp_path_factory.mktemp("inputs")
    models = root / "models"
    for name, config in {"gpt2": {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]},
                         "bert3": {"model_type": "bert", "architectures": ["BertForSequenceClassification"],
                                   "id2label": {"0": "a", "1": "b", "2": "c"}},
                         "noweights": {"model_type": "bert", "architectures": ["BertModel"]}}.items():
        (models / name).mkdir(parents=True)
        (models / name / "config.json").write_text(json.dumps(config))
    (models / "noconfig").mkdir()
    (models / "noconfig" / "model.safetensors").write_bytes(b"\0" * 8)
    (models / "badjson").mkdir()
    (models / "badjson" / "config.json").write_text('{"model_type": "bert",')
    # a teacher whose tokenizer is MiniLM's with one vocabulary entry changed
    from movprune.models import minilm_path

    src, teacher = Path(minilm_path()), root / "teacher_vocab"
    teacher.mkdir()
    for name in ("tokenizer_config.json", "special_tokens_map.json", "config.json"):
        shutil.copy(src / name, teacher / name)
    vocab = (src / "vocab.txt").read_text(encoding="utf-8").splitlines()
    vocab[2000] = "movprunezzq"
    (teacher / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return {"models": str(models), "teacher_vocab": str(teacher), "teacher_missing": str(root / "no-teacher")}


@pytest.fixture
def workspace(tmp_path, fixtures, monkeypatch):
    """A valid data folder, a store with a sentinel record, a work folder with a sentinel checkpoint."""
    monkeypatch.chdir(tmp_path)  # any default path (results/, checkpoints/) lands here
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data" / "SST-2"
    data.mkdir(parents=True)
    (data / "train.tsv").write_text(GOOD_TSV)
    (data / "dev.tsv").write_text(GOOD_TSV)
    (tmp_path / "data" / "squad").mkdir()
    (tmp_path / "data" / "squad" / "dev-v1.1.json").write_text('{"data": [')
    store, work = tmp_path / "runs", tmp_path / "work"
    store.mkdir()
    (store / "sentinel.json").write_text(json.dumps({"run_id": "sentinel", "metrics": {"accuracy": 50.0}}))
    ckpt = work / "sentinel-run" / "checkpoint-3"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(bytes(range(256)))
    (ckpt / "trainer_state.json").write_text('{"global_step": 3}')
    return {"root": str(tmp_path), "data": str(tmp_path / "data"), "store": str(store), "work": str(work),
            **fixtures}


@pytest.mark.parametrize("case, argv, fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_written(case, argv, fragment, workspace, capsys):
    root = Path(workspace["root"])
    argv = [a.format(**workspace) for a in argv]
    if case.startswith("data_") and case != "data_folder_missing":
        name, content = _bad_data(case[len("data_"):])
        (root / "data" / "SST-2" / name).write_bytes(content)
    if case == "resume_different_config":  # a run folder of this id, made by another config
        from movprune.train import RunConfig, bf16_native

        config = RunConfig(method="movement", remaining=0.1, model="tiny", max_steps=1, max_train_examples=8,
                           max_eval_examples=8, batch_size=4, max_length=16, bf16=bf16_native())  # as the CLI
        folder = root / "work" / config.run_id()
        folder.mkdir(parents=True)
        (folder / "run_config.json").write_text(json.dumps({**config.to_dict(), "method": "magnitude"}))
    before = _snapshot(root / "runs", root / "work")
    capsys.readouterr()

    rc = main(argv)

    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("movprune: error: "), err
    assert fragment in lines[0]
    assert "Traceback" not in err
    assert _snapshot(root / "runs", root / "work") == before  # nothing written, changed or removed
    assert not (root / "results").exists() and not (root / "checkpoints").exists()


def test_catalog_is_at_least_25_distinct_kinds():
    assert len({c[0] for c in CASES}) == len(CASES) >= 25


def test_resume_same_config_is_accepted(tmp_path):
    """The run-folder check refuses another config but not the run's own (or an unreadable) file."""
    from movprune.train import RunConfig, check_run_folder

    config = RunConfig(method="movement", remaining=0.1, data_dir="/a")
    (tmp_path / "run_config.json").write_text(json.dumps({**config.to_dict(), "data_dir": "/b"}))
    check_run_folder(tmp_path, config)  # locations are not part of the config's identity
    (tmp_path / "run_config.json").write_text('{"task": "ss')  # cut short by a kill: rewritten by the run
    check_run_folder(tmp_path, config)
    (tmp_path / "run_config.json").write_text(json.dumps({**config.to_dict(), "remaining": 0.03}))
    with pytest.raises(ValueError, match=r"different config \(remaining 0.03 != 0.1\)"):
        check_run_folder(tmp_path, config)


def test_teacher_config_drops_the_teacher_dir():
    from movprune.train import RunConfig

    teacher = RunConfig(method="movement", remaining=0.1, distill=True, teacher_dir="/t").teacher_config()
    assert teacher.method == "dense" and teacher.teacher_dir is None and not teacher.distill


# --- notebook parameters (papermill injects them; the notebooks call check_parameters first) -----
NOTEBOOK_CASES = [
    ("profile_not_a_string", dict(profile=3), "parameter profile must be one of"),
    ("profile_unknown", dict(profile="huge"), "parameter profile must be one of"),
    ("results_dir_not_a_path", dict(results_dir=5), "parameter results_dir must be a folder path"),
    ("results_dir_missing", dict(results_dir="{root}/nowhere"), "does not exist"),
    ("results_dir_without_store", dict(results_dir="{root}"), "has no runs/ folder"),
    ("tasks_wrong_type", dict(tasks=3), "parameter tasks must be a comma-separated string"),
    ("tasks_none", dict(tasks=None), "parameter tasks must be a comma-separated string"),
    ("tasks_empty", dict(tasks=" , "), "parameter tasks is empty"),
    ("tasks_unknown", dict(tasks="sst2,sst3"), "unknown task(s) sst3"),
]


@pytest.mark.parametrize("case, params, fragment", NOTEBOOK_CASES, ids=[c[0] for c in NOTEBOOK_CASES])
def test_notebook_parameters_one_line_error(case, params, fragment, tmp_path):
    from movprune.analysis import AnalysisError, check_parameters

    (tmp_path / "res" / "runs").mkdir(parents=True)
    good = dict(profile="minilm", results_dir=str(tmp_path / "res"), tasks="sst2")
    params = {k: v.format(root=tmp_path) if isinstance(v, str) and "{" in v else v for k, v in params.items()}
    before = _snapshot(tmp_path)
    with pytest.raises(AnalysisError) as info:
        check_parameters(**{**good, **params})
    message = str(info.value)
    assert message and "\n" not in message and fragment in message
    assert _snapshot(tmp_path) == before


def test_a_collapsed_teacher_is_warned_about_before_it_is_loaded(tmp_path):
    """A dense teacher whose record says it predicts one class teaches a constant: say so (a warning, since
    the tiny models of the smoke profile and of the tests do collapse)."""
    from movprune.store import ResultStore
    from movprune.train import RunConfig, final_model_dir, load_teacher

    cfg = RunConfig(model="tiny", method="movement", remaining=0.1, distill=True)
    tconf = cfg.teacher_config()
    model_dir = final_model_dir(tconf, tmp_path / "work")
    model_dir.mkdir(parents=True)
    (model_dir / "movprune_model.safetensors").write_bytes(b"")  # present: nothing is retrained
    store = ResultStore(tmp_path / "runs")
    store.put({"run_id": tconf.run_id(), "metrics": {"accuracy": 50.9}, "collapsed": True, "main_metric": "accuracy",
               "score": 50.9})
    with pytest.warns(UserWarning, match="predicts one class"):
        with pytest.raises(Exception):  # the placeholder model file itself does not load
            load_teacher(cfg, store, tmp_path / "work", tokenizer=None, progress=False)
