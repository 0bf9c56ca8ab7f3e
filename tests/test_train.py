"""Runs, store and CLI on the tiny random model and a few hundred real SST-2 / SICK examples."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from movprune.store import ResultStore
from movprune.train import RunConfig, run

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY = dict(model="tiny", max_train_examples=96, max_eval_examples=64, max_steps=6, batch_size=16,
            max_length=32, lr=1e-3, save_steps=3)


def test_run_id_is_stable_and_ignores_locations():
    a = RunConfig(task="sst2", method="movement", remaining=0.1, data_dir="/x")
    b = RunConfig(task="sst2", method="movement", remaining=0.1, data_dir="/y")
    c = RunConfig(task="sst2", method="movement", remaining=0.03)
    assert a.run_id() == b.run_id() != c.run_id()
    assert a.run_id().startswith("sst2-minilm-movement_v0.1_local-s0-")
    # integers where floats are meant (a profile's epochs=2, the CLI's 2.0) give the same id
    assert RunConfig(epochs=2, lr=1, final_threshold=0).run_id() == RunConfig(epochs=2.0, lr=1.0,
                                                                          final_threshold=0.0).run_id()


@pytest.mark.parametrize("kwargs, match", [
    (dict(task="nope"), "unknown task"),
    (dict(method="pruney"), "unknown pruning method"),
    (dict(method="movement", remaining=0.0), r"remaining must be in \(0, 1\]"),
    (dict(method="movement", remaining=1.2), r"remaining must be in \(0, 1\]"),
    (dict(method="soft_movement", final_lambda=-1.0), "final_lambda must be"),
    (dict(epochs=0), "epochs must be > 0"),
    (dict(temperature=-2), "temperature must be > 0"),
    (dict(alpha_ce=1.5), "alpha_ce must be in"),
    (dict(seed=-1), "seed must be"),
    (dict(max_steps=0), "max_steps must be > 0"),
])
def test_bad_run_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**kwargs)


def test_store_atomic_and_corruption(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"run_id": "a", "metrics": {"accuracy": 50.0}})
    assert store.get("a")["metrics"] == {"accuracy": 50.0}
    assert not list(tmp_path.glob("*.tmp"))
    (tmp_path / "b.json").write_text('{"run_id": "b", "metr')  # truncated record
    assert store.get("b") is None
    assert [r["run_id"] for r in store.records()] == ["a"]


def test_tiny_run_record_and_cache(tmp_path):
    cfg = RunConfig(task="sst2", method="movement", remaining=0.1, **TINY)
    rec = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
    assert rec["run_id"] == cfg.run_id()
    assert abs(rec["remaining"] - 0.1) < 1e-3
    assert 0.0 <= rec["metrics"]["accuracy"] <= 100.0
    assert set(rec["per_layer"]) == {"0", "1"}
    assert rec["remaining_paper"] > rec["remaining"]
    assert (tmp_path / "runs" / f"{cfg.run_id()}.npz").is_file()
    counts = rec["predicted_class_counts"]  # eval predictions per class; all in one = collapsed
    assert len(counts) == 2 and sum(counts) == 64 and rec["one_class"] == (max(counts) == 64)
    # "collapsed" has the one meaning of movprune.records (the loss at the constant-prediction level)
    assert rec["collapsed"] == (rec["collapse_step"] is not None or rec["stopped_at"] is not None)
    assert rec["steps"] == (rec["stopped_at"] or rec["budget_steps"])
    curve = rec["loss_curve"]  # the logged training loss, to see when a run went wrong
    assert len(curve) >= 2 and [s for s, _ in curve] == sorted({s for s, _ in curve})
    assert curve[-1][0] <= cfg.max_steps and all(loss > 0 for _, loss in curve)
    # the machine it trained on: training times compare only on like CPUs (bf16 native or emulated)
    from movprune.train import bf16_native, cpu_model

    assert rec["versions"]["cpu"] == cpu_model() and rec["versions"]["bf16_native"] == bf16_native()
    # the final model reloads with its masks and thresholds
    assert (tmp_path / "work" / cfg.run_id() / "final" / "movprune_model.safetensors").is_file()
    t0 = time.time()
    again = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
    assert again == rec and time.time() - t0 < 1.0


def test_soft_movement_and_distillation_on_sick(tmp_path):
    cfg = RunConfig(task="sick", method="soft_movement", final_lambda=10.0, distill=True, **TINY)
    rec = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
    teacher = ResultStore(tmp_path / "runs").get(cfg.teacher_config().run_id())
    assert teacher is not None and teacher["method"] == "dense"
    assert rec["distill"] is True and 0.0 < rec["remaining"] <= 1.0
    # the student names its teacher and that teacher's score, read beside the teacher's model
    assert rec["teacher"]["run_id"] == teacher["run_id"] and rec["teacher"]["score"] == teacher["score"]
    assert rec["teacher"]["source"] == "model folder" and rec["teacher"]["finished_at"] == teacher["finished_at"]


def test_teacher_provenance_follows_the_model_not_the_store(tmp_path):
    """A teacher retrained on another machine (or after its record was committed) has a model whose score is
    not the stored one: the student's record must carry the model's, from the file beside it; the store's
    record only when the folder has no such file; nothing invented for a hand-given teacher folder."""
    from movprune.train import RESULT_FILE, final_model_dir, teacher_provenance

    cfg = RunConfig(task="sst2", method="movement", remaining=0.1, distill=True, **TINY)
    tconf = cfg.teacher_config()
    store = ResultStore(tmp_path / "runs")
    store.put({"run_id": tconf.run_id(), "metrics": {"accuracy": 70.7}, "main_metric": "accuracy", "score": 70.7,
               "finished_at": "then"})
    folder = final_model_dir(tconf, tmp_path / "work")
    folder.mkdir(parents=True)
    old = teacher_provenance(cfg, store, tmp_path / "work")
    assert (old["score"], old["source"], old["run_id"]) == (70.7, "store", tconf.run_id())
    (folder / RESULT_FILE).write_text(json.dumps({"run_id": tconf.run_id(), "main_metric": "accuracy",
                                                  "score": 68.4, "finished_at": "now"}))
    new = teacher_provenance(cfg, store, tmp_path / "work")
    assert (new["score"], new["finished_at"], new["source"]) == (68.4, "now", "model folder")
    own = RunConfig(task="sst2", method="movement", remaining=0.1, distill=True, teacher_dir=str(tmp_path / "mine"),
                    **TINY)
    mine = teacher_provenance(own, store, tmp_path / "work")
    assert mine["source"] == "unknown" and mine["score"] is None and mine["run_id"] is None


def test_zero_encoder_control(tmp_path):
    cfg = RunConfig(task="sst2", method="zero_encoder", **TINY)
    rec = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
    assert rec["remaining"] == 0.0


def _cli(*args, cwd=None, timeout=300):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "movprune", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


@pytest.mark.parametrize("args, fragment", [
    (["run", "--task", "nosuchtask"], "unknown task"),
    (["run", "--method", "bogus"], "unknown pruning method"),
    (["run", "--method", "movement", "--remaining", "2"], "remaining must be in"),
    (["run", "--method", "l0", "--final-lambda", "-3"], "final_lambda must be"),
    (["run", "--model", "/no/such/folder"], "does not exist"),
    (["run", "--data-dir", "/tmp/definitely-empty-dir"], "looked at"),
    (["run", "--methd", "movement"], "unrecognized arguments"),
    (["batch", "--profile", "huge"], "unknown profile"),
])
def test_cli_bad_input_one_line(tmp_path, args, fragment):
    store = tmp_path / "runs"
    store.mkdir()
    (store / "keep.json").write_text("{}")
    out = _cli(*args, "--store", str(store)) if args[0] == "run" else _cli(*args)
    assert out.returncode == 2
    err = [line for line in out.stderr.strip().splitlines() if line and "Warning" not in line]
    assert fragment in err[-1]
    assert "Traceback" not in out.stderr
    assert (store / "keep.json").read_text() == "{}"


def test_cli_malformed_tsv_names_file_and_line(tmp_path):
    d = tmp_path / "data" / "SST-2"
    d.mkdir(parents=True)
    (d / "train.tsv").write_text("sentence\tlabel\ngood movie\t1\nbad row without label\n")
    (d / "dev.tsv").write_text("sentence\tlabel\nfine\t1\n")
    out = _cli("run", "--model", "tiny", "--data-dir", str(tmp_path / "data"), "--store", str(tmp_path / "runs"))
    assert out.returncode == 2
    assert "train.tsv" in out.stderr and "3" in out.stderr.strip().splitlines()[-1]


def test_cli_run_then_list(tmp_path):
    args = ["--model", "tiny", "--max-train-examples", "64", "--max-eval-examples", "32", "--max-steps", "2",
            "--batch-size", "16", "--max-length", "32", "--store", str(tmp_path / "runs"),
            "--work-dir", str(tmp_path / "work")]
    out = _cli("run", "--method", "magnitude", "--remaining", "0.5", *args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "remaining 0.5000" in out.stdout
    listed = _cli("list", "--store", str(tmp_path / "runs"))
    assert "magnitude_v0.5_local" in listed.stdout


def test_kill_9_resumes_from_checkpoint(tmp_path):
    """kill -9 mid-training; the same command resumes (not from zero) and ends like an unbroken run."""
    common = ["--model", "tiny", "--max-train-examples", "512", "--max-eval-examples", "64", "--max-steps", "120",
              "--batch-size", "16", "--max-length", "32", "--lr", "1e-3", "--method", "movement", "--remaining", "0.2",
              "--save-steps", "10"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    work, store = tmp_path / "work", tmp_path / "runs"
    cmd = [sys.executable, "-m", "movprune", "run", *common, "--store", str(store), "--work-dir", str(work)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and not list(work.glob("*/checkpoint-*/trainer_state.json")):
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(store.glob("*.json")), "a killed run must not leave a record"
    assert list(work.glob("*/checkpoint-*")), "no checkpoint was written before the kill"
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rec = json.loads(next(store.glob("*.json")).read_text())
    assert rec["resumed_from"] and "checkpoint-" in rec["resumed_from"]
    assert 0 < rec["train_time_before_resume_s"] < rec["train_time_s"]  # the killed part is counted
    # reference: the same config uninterrupted
    assert int(rec["resumed_from"].rsplit("-", 1)[1]) < 120, "the kill came after training had finished"
    ref = subprocess.run([*cmd[:-4], "--store", str(tmp_path / "ref"), "--work-dir", str(tmp_path / "refwork")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0
    ref_rec = json.loads(next((tmp_path / "ref").glob("*.json")).read_text())
    assert abs(ref_rec["metrics"]["accuracy"] - rec["metrics"]["accuracy"]) <= 0.1
    assert ref_rec["remaining"] == rec["remaining"]


def _ckpts(work):
    return sorted(work.glob("*/checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))


@pytest.mark.parametrize("damage", ["weights", "optimizer"])
def test_corrupted_checkpoint_falls_back(tmp_path, damage):
    """A truncated checkpoint is detected (weights) or fails to load (optimizer): the run falls back."""
    cfg = RunConfig(task="sst2", method="movement", remaining=0.2, **{**TINY, "max_steps": 9})
    store, work = tmp_path / "runs", tmp_path / "work"
    run(cfg, store=store, work_dir=work, keep_checkpoints=True, progress=False)
    (store / f"{cfg.run_id()}.json").unlink()
    newest = _ckpts(work)[-1]
    victim = next(newest.glob("*.safetensors")) if damage == "weights" else newest / "optimizer.pt"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    rec = run(cfg, store=store, work_dir=work, keep_checkpoints=True, progress=False)
    assert rec["resumed_from"] and newest.name not in rec["resumed_from"]
    assert abs(rec["remaining"] - 0.2) < 1e-3


def test_a_resumed_run_keeps_the_training_time_before_its_checkpoint(tmp_path):
    """Every checkpoint carries the training time so far; a run resumed from one adds it to its own."""
    from movprune.train import checkpoint_train_time

    cfg = RunConfig(task="sst2", method="movement", remaining=0.2, **{**TINY, "max_steps": 9})
    store, work = tmp_path / "runs", tmp_path / "work"
    first = run(cfg, store=store, work_dir=work, keep_checkpoints=True, progress=False)
    assert first["resumed_from"] is None and first["train_time_before_resume_s"] == 0.0
    times = [checkpoint_train_time(c) for c in _ckpts(work)]
    assert times and all(t is not None and 0 < t <= first["train_time_s"] for t in times)
    assert times == sorted(times)
    (store / f"{cfg.run_id()}.json").unlink()
    newest = _ckpts(work)[-1]
    again = run(cfg, store=store, work_dir=work, keep_checkpoints=True, progress=False)
    assert again["resumed_from"] == str(newest)
    assert again["train_time_before_resume_s"] == round(times[-1], 1)
    assert again["train_time_s"] >= again["train_time_before_resume_s"]
    assert checkpoint_train_time(tmp_path) is None  # a folder without the file: unknown, not zero


def test_a_distilled_run_resumed_where_pruning_starts_trains_like_an_unbroken_one(tmp_path, monkeypatch):
    """Resuming a distilled movement run from the checkpoint at the first pruned step (teacher reloaded,
    scores, optimizer, data order and random state restored) gives the same training loss, step for
    step, as the run that was never stopped: a run that went wrong after a resume went wrong by itself."""
    from transformers import TrainerCallback

    import movprune.train as T

    cfg = RunConfig(task="sick", method="movement", remaining=0.1, distill=True, sparsity_warmup_steps=10,
                    sparsity_cooldown_steps=2, **{**TINY, "max_train_examples": 192, "max_steps": 20, "save_steps": 5})
    teacher = cfg.teacher_config()
    run(teacher, store=tmp_path / "teacher", work_dir=tmp_path / "a", progress=False)
    shutil.copytree(tmp_path / "a" / teacher.run_id(), tmp_path / "b" / teacher.run_id())
    unbroken = run(cfg, store=tmp_path / "unbroken", work_dir=tmp_path / "a", progress=False)

    class StopAt10(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            control.should_training_stop = state.global_step >= 10

    build = T._build

    def build_and_stop_at_10(*args, **kwargs):  # the student only: its teacher is already trained
        built = build(*args, **kwargs)
        built["trainer"].add_callback(StopAt10())
        return built

    monkeypatch.setattr(T, "_build", build_and_stop_at_10)
    run(cfg, store=tmp_path / "cut", work_dir=tmp_path / "b", keep_checkpoints=True, progress=False)
    monkeypatch.setattr(T, "_build", build)
    shutil.rmtree(tmp_path / "b" / cfg.run_id() / "final")
    resumed = run(cfg, store=tmp_path / "resumed", work_dir=tmp_path / "b", progress=False)
    assert resumed["resumed_from"].endswith("checkpoint-10")
    assert resumed["loss_curve"] == unbroken["loss_curve"]
    assert resumed["remaining"] == unbroken["remaining"] and resumed["metrics"] == unbroken["metrics"]


def test_unwritable_store_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cfg = RunConfig(task="sst2", method="dense", **TINY)
    with pytest.raises(ValueError, match="not writable"):
        run(cfg, store=blocker / "runs", work_dir=tmp_path / "work", progress=False)
    assert not (tmp_path / "work").exists()


def test_cli_flags_a_collapsed_run():
    from movprune.cli import _fmt

    rec = {"run_id": "sst2-x", "task": "sst2", "metrics": {"accuracy": 50.9}, "remaining": 0.1,
           "remaining_paper": 0.1025, "train_time_s": 3.0, "collapsed": True}
    line = _fmt(rec, "work")
    assert "COLLAPSED" in line and "python -m movprune diagnose work/sst2-x/final --task sst2" in line
    assert "COLLAPSED" not in _fmt({**rec, "collapsed": False}) and "COLLAPSED" not in _fmt({**rec, "collapsed": None})


def _headless_folder(tmp_path):
    """A tiny pre-trained-style encoder folder without a classifier head (MiniLM's tokenizer)."""
    import transformers

    from movprune import models

    folder = tmp_path / "headless"
    config = transformers.BertConfig(vocab_size=models.load_tokenizer("tiny").vocab_size, **models.TINY)
    transformers.BertModel(config).save_pretrained(folder)
    models.load_tokenizer("tiny").save_pretrained(folder)
    return folder


def test_seed_decides_the_new_head(tmp_path):
    """One command, one model: the classifier head a pre-trained encoder gets is drawn from the run's
    seed, not from whatever state the global generator is in."""
    import torch
    from safetensors.torch import load_file

    folder = _headless_folder(tmp_path)
    heads = []
    for i, seed in enumerate((0, 0, 1)):
        torch.manual_seed(1000 + i)  # a different global state before each run
        torch.rand(17)
        cfg = RunConfig(task="sst2", **{**TINY, "model": str(folder), "max_steps": 1, "lr": 1e-12}, seed=seed,
                        method="dense")
        run(cfg, store=tmp_path / f"runs{i}", work_dir=tmp_path / f"work{i}", progress=False)
        weights = load_file(tmp_path / f"work{i}" / cfg.run_id() / "final" / "movprune_model.safetensors")
        heads.append(weights["classifier.weight"])
    assert torch.equal(heads[0], heads[1])
    assert not torch.allclose(heads[0], heads[2])


def test_teacher_follows_the_student_device(tmp_path):
    """The distillation teacher is moved to the Trainer's device (a GPU run had it on the CPU)."""
    import torch
    from transformers import TrainingArguments

    from movprune.train import _trainer_classes

    class Teacher(torch.nn.Linear):
        moved_to = []

        def to(self, *args, **kwargs):
            Teacher.moved_to.append(args[0] if args else kwargs.get("device"))
            return super().to(*args, **kwargs)

    PruningTrainer, _, _ = _trainer_classes()
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = PruningTrainer(model=torch.nn.Linear(2, 2), args=args, teacher=Teacher(2, 2))
    assert Teacher.moved_to == [trainer.args.device]


def test_new_fields_keep_earlier_run_ids():
    """Fields added later are left out of the id at the value earlier runs had, so committed records
    keep their ids; any other value makes a new id."""
    from movprune.profiles import get_profile

    # ids of records trained before later fields existed: the demo profile's (300-step SST-2, its records
    # retired with the profile's old name `small`) and the committed ones of the minilm profile
    demo = {c.run_id() for c in get_profile("demo").all_configs()}
    assert len(demo) == 36 and {"sst2-minilm-dense-s0-37ca5297a0", "sst2-minilm-movement_v0.1_local-s0-65616c652b"} <= demo
    committed = {p.stem for p in (REPO / "results" / "minilm" / "runs").glob("*.json")}
    assert len({c.run_id() for c in get_profile("minilm").all_configs()} & committed) >= 78
    legacy = RunConfig(task="sst2", method="movement", remaining=0.1, group_by_length=True)
    assert RunConfig(task="sst2", method="movement", remaining=0.1).run_id() != legacy.run_id()
    assert RunConfig(task="sst2", method="movement", remaining=0.1, group_by_length=True,
                     bf16=True).run_id() != legacy.run_id()
    ramped = RunConfig(task="sst2", method="l0", final_lambda=10.0, group_by_length=True, constant_lambda=False)
    assert RunConfig(task="sst2", method="l0", final_lambda=10.0, group_by_length=True).constant_lambda is True
    assert RunConfig(task="sst2", method="l0", final_lambda=10.0, group_by_length=True).run_id() != ramped.run_id()


def test_collapse_step_is_where_the_loss_stayed_at_ln2():
    import math

    from movprune.train import collapse_step

    ln2 = math.log(2)
    healthy = [[24, 0.69], [48, 0.45], [240, 0.55], [480, 0.35]]
    assert collapse_step(healthy, ln2, after=20) is None
    collapsed = [[24, 0.69], [168, 0.35], [192, 0.46], [240, 0.685], [264, 0.62], [288, ln2], [312, 0.69]]
    assert collapse_step(collapsed, ln2, after=180) == 288  # the last stretch at ln 2, not the first touch
    assert collapse_step(collapsed, ln2, after=300) == 312


def test_collapse_level_is_the_label_entropy():
    """A collapsed classifier predicts the label prior: SICK's (56/29/15%) loss is 0.98, below ln 3."""
    import math

    from movprune.data import load_task
    from movprune.train import collapse_step, constant_loss

    assert constant_loss([0, 1] * 50, 2) == pytest.approx(math.log(2))
    assert constant_loss([2] * 10, 3) == 0.0
    sick = [e["label"] for e in load_task("sick", None, "train")]
    level = constant_loss(sick, 3)
    assert 0.95 < level < 1.0 < 0.97 * math.log(3)
    prior_collapse = [[10, 0.4], [20, level + 0.01], [30, level - 0.02]]  # at the prior, not at ln 3
    assert collapse_step(prior_collapse, level) == 20 and collapse_step(prior_collapse, math.log(3)) is None


def test_stop_on_collapse_waits_for_pruning_and_patience():
    import math
    from types import SimpleNamespace

    from movprune.train import _trainer_classes

    _, _, Stop = _trainer_classes()
    cb = Stop(math.log(2), pruning_starts=100, patience_steps=50)
    control = SimpleNamespace(should_training_stop=False)

    def log(step, loss):
        cb.on_log(None, SimpleNamespace(global_step=step), control, logs={"loss": loss})
        return control.should_training_stop

    assert not log(50, 0.69) and not log(100, 0.69)  # before pruning starts: never
    assert not log(120, 0.69) and not log(140, 0.60)  # a dip below 0.97 ln 2 resets the streak
    assert not log(160, 0.69) and not log(200, 0.69)
    assert log(210, 0.68) and cb.stopped_at == 210    # 50 steps at ln 2 since step 160


def test_collapse_is_judged_on_the_task_loss_not_the_penalty(tmp_path):
    """Soft movement's logged loss carries lambda * penalty (far above ln 2 with a large lambda): the
    collapse check and the record's loss curve use the task's own loss, and the penalty has its own curve."""
    from types import SimpleNamespace

    from movprune.train import _trainer_classes

    _, _, Stop = _trainer_classes()
    cb = Stop(0.69, pruning_starts=0, patience_steps=1)
    control = SimpleNamespace(should_training_stop=False)
    for step in (10, 20, 30):
        cb.on_log(None, SimpleNamespace(global_step=step), control, logs={"loss": 50.0, "task_loss": 0.3})
    assert not control.should_training_stop and cb.stopped_at is None
    cfg = RunConfig(task="sst2", method="soft_movement", final_lambda=1000.0, stop_on_collapse=True,
                    **{**TINY, "max_steps": 40})
    rec = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
    assert rec["stopped_at"] is None
    penalty = dict(rec["penalty_curve"])
    assert set(penalty) == {s for s, _ in rec["loss_curve"]}
    assert max(penalty.values()) > 10 * max(l for _, l in rec["loss_curve"])  # lambda = 1000 dominates


def test_a_squad_run_is_checked_for_collapse_at_its_own_level(tmp_path, monkeypatch):
    """``stop_on_collapse`` on SQuAD watches the loss against ln(window length), not a label entropy
    (SQuAD has no labels); the record's collapse_step is judged on the same level."""
    from movprune import train as T

    seen = []
    real = T.collapse_ceiling

    def spy(spec, train_ds):
        seen.append((spec.kind, real(spec, train_ds)))
        return seen[-1][1]

    monkeypatch.setattr(T, "collapse_ceiling", spy)
    cfg = RunConfig(task="squad", method="movement", remaining=0.2, stop_on_collapse=True,
                    **{**TINY, "max_length": 96, "doc_stride": 32, "max_steps": 4, "max_eval_examples": 16})
    rec = run(cfg, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
    assert [kind for kind, _ in seen] == ["qa", "qa"]  # the stop callback, then the record's collapse_step
    assert 3.0 < seen[0][1] < math.log(96) + 1e-9     # ln of window lengths of at most 96 tokens
    assert rec["stopped_at"] is None and {"exact_match", "f1"} <= set(rec["metrics"])


def test_eval_split_scores_the_chosen_split(tmp_path):
    """``eval_split`` picks the scored split (SICK's test set), is part of the run id, and is checked."""
    dev = RunConfig(task="sick", method="dense", **{**TINY, "max_eval_examples": None, "max_steps": 2})
    test = RunConfig(task="sick", method="dense", eval_split="test", **{**TINY, "max_eval_examples": None,
                                                                      "max_steps": 2})
    assert dev.run_id() != test.run_id()
    assert RunConfig(eval_split="eval").run_id() == RunConfig().run_id()  # earlier records keep their ids
    for config, n in ((dev, 500), (test, 4927)):
        rec = run(config, store=tmp_path / "runs", work_dir=tmp_path / "work", progress=False)
        assert sum(rec["predicted_class_counts"]) == n
    from movprune.data import DataError

    with pytest.raises(DataError, match="split"):
        RunConfig(task="sick", eval_split="tset")
    with pytest.raises(ValueError, match="one eval split"):
        RunConfig(task="squad", eval_split="test")


def test_schedule_advice_for_early_or_fast_movement_schedules():
    """Movement runs that prune before 1,000 score updates or ramp over < 2,000 steps get a one-line note."""
    from movprune.train import schedule_advice

    short = RunConfig(method="movement", remaining=0.03, max_steps=300)
    note = schedule_advice(short, 300)
    assert note and "after 30 score updates" in note and "\n" not in note
    recipe = RunConfig(method="movement", remaining=0.03, max_steps=3400, sparsity_warmup_steps=1000,
                       sparsity_cooldown_steps=400)
    assert schedule_advice(recipe, 3400) is None
    assert schedule_advice(RunConfig(method="movement", remaining=0.1, sparsity_warmup_steps=1000,
                                     sparsity_cooldown_steps=400), 2400) is not None  # ramp of 1,000
    assert schedule_advice(RunConfig(method="magnitude", remaining=0.03), 300) is None


def test_bf16_flag_defaults_to_the_hardware_and_can_be_forced_either_way(monkeypatch):
    """--bf16 / --no-bf16 set it; without either the run follows bf16_native() (measured: same accuracy, 2.2x)."""
    from movprune import train
    from movprune.cli import _config_kwargs, build_parser

    real = train.bf16_native
    argv = ["run", "--task", "sst2", "--model", "tiny", "--method", "dense"]
    for native in (True, False):
        monkeypatch.setattr(train, "bf16_native", lambda native=native: native)
        assert _config_kwargs(build_parser().parse_args(argv))["bf16"] is native
        assert _config_kwargs(build_parser().parse_args(argv + ["--bf16"]))["bf16"] is True
        assert _config_kwargs(build_parser().parse_args(argv + ["--no-bf16"]))["bf16"] is False
    monkeypatch.setattr(train.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(train.Path, "read_text", lambda self: "flags : fpu avx2 avx512f")
    assert real() is False
    monkeypatch.setattr(train.Path, "read_text", lambda self: "flags : fpu avx512f avx512_bf16")
    assert real() is True


def test_clip_weights_only_leaves_scores_unclipped():
    import torch
    from movprune.train import RunConfig, clip_weights_only

    w, s = torch.nn.Parameter(torch.zeros(10)), torch.nn.Parameter(torch.zeros(10))
    opt = torch.optim.SGD([{"params": [w]}, {"params": [s]}], lr=0.0)
    clip_weights_only(opt)
    w.grad, s.grad = torch.full((10,), 3.0), torch.full((10,), 3.0)
    opt.step()
    assert abs(float(w.grad.norm()) - 1.0) < 1e-5  # clipped to norm 1
    assert torch.equal(s.grad, torch.full((10,), 3.0))  # scores untouched
    # the default keeps every earlier run id; "weights" is a new run; anything else is refused
    base = dict(task="sick", method="movement", remaining=0.03)
    assert RunConfig(**base).run_id() == RunConfig(**base, clip="all").run_id()
    assert RunConfig(**base).run_id() != RunConfig(**base, clip="weights").run_id()
    assert RunConfig(**base, clip="weights", distill=True).teacher_config().clip == "all"
    with pytest.raises(ValueError, match="clip must be one of"):
        RunConfig(**base, clip="scores")
