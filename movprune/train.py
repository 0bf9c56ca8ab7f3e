"""Fine-pruning runs: one :class:`RunConfig` in, one result record out.

    record = run(RunConfig(task="sst2", model="minilm", method="movement", remaining=0.10))

A run loads the task and the model, attaches the masks, trains with the Hugging Face ``Trainer``
(so ``accelerate launch`` / ``torchrun``, mixed precision, checkpoints and resume come with it),
evaluates on the task's eval split, and writes a record into the results store. The paper's
recipe: AdamW, its own learning rate for the scores (1e-2; L0 1e-1), linear LR warm-up and
decay, the cubic sparsity schedule stepped every optimizer step, the regularizer added to the
loss, embeddings frozen, optional distillation from a dense fine-tuned teacher (trained and
cached automatically when missing).

Runs are keyed by :meth:`RunConfig.run_id`; the same config twice is a cache hit. A killed run
resumes from its last checkpoint when started again.

:func:`run_one` is a run without the store: it trains one config and returns its record and the
store's side files (:class:`RunOutput`); :func:`land` writes those into a store; :func:`run` is the
two together. The batch's local executor calls :func:`run`; the Ray executor calls :func:`run_one`
on a worker and lands its output on the driver (:mod:`movprune.cluster`). The pieces live in modules
of their own and are importable from here too: the config (:mod:`movprune.config`), the ``Trainer``
subclass and its callbacks (:mod:`movprune.trainer`), checkpoints (:mod:`movprune.checkpoints`), the
collapse level (:mod:`movprune.collapse`) and the distillation teacher (:mod:`movprune.teacher`).
"""

from __future__ import annotations

import io
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from . import data as data_mod
from . import models
from .accounting import sparsity_report
from .checkpoints import (TRAIN_TIME_FILE, _is_load_error, _safetensors_complete, check_run_folder,  # noqa: F401
                          checkpoint_train_time, last_good_checkpoint)
from .collapse import COLLAPSE_FRACTION, collapse_ceiling, collapse_step, constant_loss  # noqa: F401
from .config import (_FLOAT_FIELDS, _NOT_IN_ID, CLIP_MODES, DEFAULT_STORE, DEFAULT_WORK_DIR,  # noqa: F401
                     LEGACY_VALUES, RunConfig, final_model_dir)
from .provenance import stack_versions, train_fingerprint
from .pruner import find_targets, save_pretrained, sparsify
from .store import ResultStore
from .teacher import _RESULT_KEYS, RESULT_FILE, load_teacher, teacher_provenance  # noqa: F401
from .teacher import write_result_file as _write_result_file

ANALYSIS_SAMPLE = 20000  # entries of one matrix kept per run for the weight-distribution figures

# the Trainer pieces, importable from here; transformers' Trainer is imported on first use (slow)
_FROM_TRAINER = {"PruningTrainer": "PruningTrainer", "ScheduleCallback": "ScheduleCallback",
                 "CollapseStopCallback": "CollapseStopCallback", "TrainClock": "TrainClock",
                 "MAX_GRAD_NORM": "MAX_GRAD_NORM", "build_optimizer": "build_optimizer",
                 "clip_weights_only": "clip_weights_only", "make_adamw": "make_adamw",
                 "freeze_embeddings": "freeze_embeddings", "zero_encoder": "zero_encoder",
                 "_length_grouping": "length_grouping"}


def __getattr__(name):
    if name in _FROM_TRAINER:
        from . import trainer

        return getattr(trainer, _FROM_TRAINER[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _trainer_classes():
    """``(PruningTrainer, ScheduleCallback, CollapseStopCallback)`` from :mod:`movprune.trainer`
    (imported on the first call: transformers' Trainer is slow to import)."""
    from .trainer import CollapseStopCallback, PruningTrainer, ScheduleCallback

    return PruningTrainer, ScheduleCallback, CollapseStopCallback


def bf16_native() -> bool:
    """Does this machine run bf16 autocast natively: a CUDA GPU with bf16, or a CPU with avx512_bf16 / AMX?

    The command line's default for ``--bf16``: on this project's CPU (avx512_bf16) a whole run trained
    2.2x faster in bf16 than in fp32, and its accuracy (one seed each) stayed inside the bf16 seeds'
    spread (docs/findings.md); CPUs without native bf16 would emulate it, so they default to fp32.
    """
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, stay in fp32
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def emulated_bf16_note(what: str) -> str:
    """One line: ``what`` trains in bf16 autocast on a CPU without bf16 hardware, and how that is done."""
    return (f"{what} trains in bf16 autocast and this CPU has no bf16 hardware (no avx512_bf16 / AMX in "
            f"/proc/cpuinfo): its matrix products run as fp32 kernels on bf16-rounded operands, at about fp32 "
            f"speed (movprune.bf16; PyTorch's own bf16 kernels measured 14.7x slower on an AVX2-only CPU); "
            f"the record says so in versions.bf16_kernel")


def bf16_kernel(bf16: bool) -> Optional[str]:
    """How a run with ``bf16`` autocast computes its matrix products here: None (fp32 run),
    ``bf16.NATIVE`` (a GPU, or a CPU with avx512_bf16 / AMX) or ``bf16.EMULATED`` (a CPU without: fp32
    kernels on bf16-rounded operands, as fast as fp32, where PyTorch's own bf16 kernels were 14.7x
    slower; :mod:`movprune.bf16`)."""
    from . import bf16 as bf16_mod

    if not bf16:
        return None
    if torch.cuda.is_available() or bf16_native():
        return bf16_mod.NATIVE
    return bf16_mod.EMULATED


SAFE_WARMUP_STEPS, SAFE_RAMP_STEPS = 1000, 2000


def schedule_advice(config: RunConfig, max_steps: int) -> Optional[str]:
    """One line when a movement-pruning run prunes earlier or faster than the seed study found safe
    (first weight after >= 1,000 score updates, ramp >= 2,000 steps); None otherwise."""
    if config.method != "movement":
        return None
    start, end = config.pruning_config().schedule.bounds(max_steps)
    if start >= SAFE_WARMUP_STEPS and end - start >= SAFE_RAMP_STEPS:
        return None
    return (f"the first weight is pruned after {start:.0f} score updates and the ramp lasts {end - start:.0f} "
            f"steps; on MiniLM / SST-2 movement pruning collapsed with fewer than {SAFE_WARMUP_STEPS:,} updates "
            f"before pruning or, at 3% and 1%, a ramp under {SAFE_RAMP_STEPS:,} steps (docs/findings.md): e.g. "
            f"--sparsity-warmup-steps {SAFE_WARMUP_STEPS} --sparsity-cooldown-steps 400 --max-steps 3400")


# ---------------------------------------------------------------------------------------------
# Data


def _prepare_data(config: RunConfig, tokenizer):
    spec = data_mod.get_task(config.task)
    if spec.kind == "qa":
        from . import squad

        train_ex = squad.load_squad(config.data_dir, split="train")
        eval_ex = squad.load_squad(config.data_dir, split="eval")
        train_ex = data_mod.subsample(train_ex, config.max_train_examples, config.seed)
        eval_ex = data_mod.subsample(eval_ex, config.max_eval_examples, 0)
        train_ds = squad.prepare_train_features(train_ex, tokenizer, config.max_length, config.doc_stride)
        eval_feats = squad.prepare_eval_features(eval_ex, tokenizer, config.max_length, config.doc_stride)
        return spec, train_ds, (eval_ex, eval_feats)
    train_ex = data_mod.load_task(config.task, config.data_dir, config.train_split, config.max_train_examples, config.seed)
    eval_ex = data_mod.load_task(config.task, config.data_dir, config.eval_split, config.max_eval_examples, 0)
    train_ds = data_mod.tokenize_task(train_ex, tokenizer, config.max_length, config.task)
    eval_ds = data_mod.tokenize_task(eval_ex, tokenizer, config.max_length, config.task)
    return spec, train_ds, eval_ds


def evaluate(trainer, spec, eval_data, details: Optional[dict] = None) -> dict:
    """The task's metrics (in percent, like the paper) on the eval split.

    For classification, ``details`` (if given) receives ``predicted_class_counts``: how many eval
    examples went to each class (all in one = the run collapsed to a constant prediction).
    """
    from . import squad

    trainer.model.eval()
    if spec.kind == "qa":
        examples, features = eval_data
        model_inputs = features.remove_columns([c for c in features.column_names
                                                if c not in ("input_ids", "attention_mask", "token_type_ids")])
        out = trainer.predict(model_inputs)
        start, end = out.predictions[:2] if isinstance(out.predictions, tuple) else out.predictions
        preds = squad.postprocess_predictions(examples, features, start, end)
        return {k: float(v) for k, v in squad.squad_metrics(preds, examples).items()}
    out = trainer.predict(eval_data)
    logits = out.predictions[0] if isinstance(out.predictions, tuple) else out.predictions
    preds = logits.squeeze(-1) if spec.kind == "regression" else logits.argmax(-1)
    if details is not None and spec.kind == "classification":
        details["predicted_class_counts"] = np.bincount(preds, minlength=logits.shape[-1]).tolist()
    metrics = data_mod.compute_metrics(spec.name, preds, out.label_ids)
    return {k: 100.0 * float(v) for k, v in metrics.items()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere, "" when unknown)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _versions(bf16: bool) -> dict:
    """Software and machine a record was trained with: training times compare only on like machines
    (bf16 autocast is ~2.2x faster than fp32 on a CPU with avx512_bf16; on one without, it runs emulated at
    about fp32 speed, :mod:`movprune.bf16`)."""
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "machine": f"{platform.machine()} {os.cpu_count()} cpu",
            "cpu": cpu_model(), "bf16_native": bf16_native(), "bf16_kernel": bf16_kernel(bf16),
            **{k: v for k, v in stack_versions().items() if k not in ("torch", "transformers")}}


def _analysis_matrix(targets: dict) -> str:
    """The matrix sampled for the weight-distribution figures: middle layer's query (or first)."""
    names = list(targets)
    return names[len(names) // 2 - (len(names) // 2) % 6] if len(names) >= 6 else names[0]


# ---------------------------------------------------------------------------------------------
# The run


def _build(config, spec, tokenizer, train_ds, teacher, out_dir, max_steps, progress) -> dict:
    """A fresh model with masks, its optimizer and its Trainer."""
    from transformers import DataCollatorWithPadding, TrainingArguments, set_seed

    from .trainer import (MAX_GRAD_NORM, CollapseStopCallback, PruningTrainer, ScheduleCallback, build_optimizer,
                          clip_weights_only, freeze_embeddings, length_grouping, zero_encoder)

    set_seed(config.seed)  # before the model: a new classifier / QA head is drawn from the run's seed
    model = models.load_model(config.model, spec.kind, spec.num_labels, config.seed)
    if config.freeze_embeddings:
        freeze_embeddings(model)
    targets = find_targets(model)
    sample_name = _analysis_matrix(targets)
    gen = torch.Generator().manual_seed(0)
    sample_idx = torch.randperm(targets[sample_name].weight.numel(), generator=gen)[:ANALYSIS_SAMPLE]
    pretrained_sample = targets[sample_name].weight.detach().reshape(-1)[sample_idx].clone()
    if config.method == "zero_encoder":
        zero_encoder(model)
    pruner = sparsify(model, config.pruning_config())
    args = TrainingArguments(
        output_dir=str(out_dir), per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.eval_batch_size, max_steps=max_steps,
        learning_rate=config.lr, lr_scheduler_type="linear", warmup_steps=config.lr_warmup,
        weight_decay=0.0, max_grad_norm=MAX_GRAD_NORM if config.clip == "all" else 0.0, seed=config.seed, data_seed=config.seed,
        logging_steps=max(1, max_steps // 100), save_strategy="steps", save_steps=config.save_steps,
        save_total_limit=2, eval_strategy="no", report_to=[], disable_tqdm=not progress,
        dataloader_num_workers=0, bf16=config.bf16, **length_grouping(config.group_by_length),
        use_cpu=not torch.cuda.is_available(),
    )
    callbacks = [ScheduleCallback(pruner)]
    collapse = None
    ceiling = collapse_ceiling(spec, train_ds) if config.stop_on_collapse else None
    if ceiling is not None:
        start, _ = config.pruning_config().schedule.bounds(max_steps)
        collapse = CollapseStopCallback(ceiling, start)
        callbacks.append(collapse)
    optimizer = build_optimizer(model, pruner, config)
    if config.clip == "weights":
        clip_weights_only(optimizer)
    trainer = PruningTrainer(
        model=model, args=args, train_dataset=train_ds, data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer, optimizers=(optimizer, None),
        callbacks=callbacks, pruner=pruner, teacher=teacher, run_config=config,
    )
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return dict(trainer=trainer, model=model, pruner=pruner, targets=targets, sample_name=sample_name,
                sample_idx=sample_idx, pretrained_sample=pretrained_sample, collapse=collapse)


def _train_clock(before: Optional[float]):
    """A :class:`~movprune.trainer.TrainClock` that starts from ``before`` seconds."""
    from .trainer import TrainClock

    return TrainClock(before)


@dataclass
class RunOutput:
    """What one run produced for the results store: its record and the store's side files of the run
    (``{suffix: bytes}``, e.g. ``".npz"``: the weight sample of the distribution figures). The model itself
    stays in the run folder (``<work_dir>/<run_id>/final``)."""

    record: dict
    files: dict = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.record["run_id"]


def run_one(config: RunConfig, work_dir: str | os.PathLike = DEFAULT_WORK_DIR, store: ResultStore | str | None = None,
            progress: bool = True) -> RunOutput:
    """Train ``config`` and return its record and side files, writing nothing into a results store.

    Checkpoints go to ``work_dir/<run_id>`` (a killed run resumes from the newest complete one), the final
    model (with masks, scores and thresholds) to ``work_dir/<run_id>/final``. ``store`` is only read and
    written for a distillation teacher: the teacher's record is looked up there, and a teacher trained on
    the way (its model missing from ``work_dir``) is stored there. Raises on bad input before training.
    """
    store = ResultStore(store or DEFAULT_STORE) if not isinstance(store, ResultStore) else store
    run_id = config.run_id()
    spec = data_mod.get_task(config.task)
    models.check_model_name(config.model, spec.kind, spec.num_labels)
    models.check_max_length(config.model, config.max_length)
    out_dir = Path(work_dir) / run_id
    check_run_folder(out_dir, config)
    tokenizer = models.load_tokenizer(config.model)
    spec, train_ds, eval_data = _prepare_data(config, tokenizer)
    teacher = load_teacher(config, store, work_dir, tokenizer, progress) if config.distill else None

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "run_config.json.tmp"
    tmp.write_text(json.dumps(config.to_dict(), indent=1))
    os.replace(tmp, out_dir / "run_config.json")

    steps_per_epoch = math.ceil(len(train_ds) / config.batch_size)
    max_steps = config.max_steps or max(1, math.ceil(steps_per_epoch * config.epochs))
    resume = last_good_checkpoint(out_dir)
    advice = schedule_advice(config, max_steps)
    if advice:
        print(f"movprune: note: {advice}", file=sys.stderr)
    while True:
        built = _build(config, spec, tokenizer, train_ds, teacher, out_dir, max_steps, progress)
        trainer, model, pruner = built["trainer"], built["model"], built["pruner"]
        if resume and progress:
            print(f"resuming {run_id} from {resume}")
        before = checkpoint_train_time(resume) if resume else 0.0  # None: a checkpoint saved without it
        clock = _train_clock(before)
        trainer.add_callback(clock)
        try:
            trainer.train(resume_from_checkpoint=resume)
            break
        except Exception as e:  # a checkpoint that looked complete but does not load
            if resume is None or not _is_load_error(e):
                raise
            bad = Path(resume)
            bad.rename(bad.with_name("corrupt-" + bad.name))
            print(f"warning: checkpoint {bad} could not be loaded ({type(e).__name__}); "
                  f"moved aside, falling back to the previous one")
            resume = last_good_checkpoint(out_dir)
    train_time = clock.total()

    pruner.update(max_steps, max_steps)
    t1 = time.time()
    details: dict = {}
    metrics = evaluate(trainer, spec, eval_data, details)
    eval_time = time.time() - t1
    report = sparsity_report(model)

    final_dir = out_dir / "final"
    save_pretrained(model, str(final_dir), tokenizer)
    files = {".npz": analysis_sample(model, built["targets"], built["sample_name"], built["sample_idx"],
                                     built["pretrained_sample"])}
    record = make_record(
        config, spec, train_ds, metrics=metrics, counts=details.get("predicted_class_counts"), report=report,
        log_history=trainer.state.log_history, max_steps=max_steps,
        stopped_at=built["collapse"].stopped_at if built["collapse"] is not None else None,
        train_time=train_time, eval_time=eval_time, resume=resume, before=before,
        teacher=teacher_provenance(config, store, work_dir) if teacher is not None else None)
    _write_result_file(final_dir, record)
    return RunOutput(record, files)


def make_record(config: RunConfig, spec, train_ds, *, metrics: dict, counts, report: dict, log_history: list,
                max_steps: int, stopped_at, train_time: float, eval_time: float, resume, before,
                teacher: Optional[dict] = None) -> dict:
    """The result record of a finished run: its config, scores, sparsity, loss curve, timing and machine.

    ``counts``: eval predictions per class (classification); ``report``: :func:`sparsity_report` of the
    final model; ``log_history``: the Trainer's logs; ``resume`` / ``before``: the checkpoint the run
    resumed from and the training seconds it had kept; ``teacher``: :func:`teacher_provenance` of a
    distilled run."""
    logged = [h for h in log_history if "loss" in h]
    loss_curve = [[h["step"], round(float(h.get("task_loss", h["loss"])), 4)] for h in logged]
    penalty_curve = [[h["step"], h["penalty"]] for h in logged if "penalty" in h]
    pruning_starts, _ = config.pruning_config().schedule.bounds(max_steps)
    record = {
        "run_id": config.run_id(),
        **{k: v for k, v in config.to_dict().items() if k not in ("data_dir", "teacher_dir")},
        "target": config.target_summary(),
        "target_remaining": config.remaining,  # the v asked for; "remaining" is what was measured
        "metrics": metrics,
        "main_metric": spec.main_metric,
        # classification: eval predictions per class; one_class = every eval example in one class
        "predicted_class_counts": counts,
        "one_class": max(counts) == sum(counts) if counts else None,
        "score": metrics.get(spec.main_metric),
        "remaining": report["remaining"],
        "remaining_paper": report["remaining_paper"],
        "per_layer": {str(k): v for k, v in report["per_layer"].items()},
        "per_type": report["per_type"],
        "per_matrix": report["per_matrix"],
        # the task's training loss (without regularizer or distillation), logged every max_steps // 100
        # steps: shows *when* a run collapsed; soft movement / L0 also log lambda * penalty
        "loss_curve": loss_curve,
        **({"penalty_curve": penalty_curve} if penalty_curve else {}),
        "pruning_starts_at": pruning_starts if config.method != "dense" else None,
        # first logged step from which the loss stayed at the label entropy (classification), else None
        "collapse_step": (collapse_step(loss_curve, collapse_ceiling(spec, train_ds), pruning_starts)
                          if spec.kind != "regression" and config.method not in ("dense", "zero_encoder") else None),
        "stopped_at": stopped_at,  # --stop-on-collapse ended training here (final sparsity set, then eval)
        "train_examples": len(train_ds),
        # what decides the training data: a record pools with another only if both saw the same features
        "train_data": train_fingerprint(train_ds),
        "steps": stopped_at if stopped_at is not None else max_steps,  # the steps trained
        "budget_steps": max_steps,
        # training time of the whole run, resumed parts included (eval excluded); when resumed from a
        # checkpoint saved without its time, only this process's part (train_time_before_resume_s None)
        "train_time_s": round(train_time, 1),
        "eval_time_s": round(eval_time, 1),
        "resumed_from": resume,
        "train_time_before_resume_s": None if before is None else round(before, 1),
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{torch.get_num_threads()}",
        "versions": _versions(config.bf16),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if teacher is not None:  # which model taught it, and that model's own score (a retrained teacher's, too)
        record["teacher"] = teacher
    from .records import is_collapsed

    # the one meaning of "collapsed" (movprune.records): the training loss sat at the constant-prediction
    # level after pruning began until training ended (collapse_step or stopped_at set)
    record["collapsed"] = is_collapsed(record)
    return record


def analysis_sample(model, targets, name, idx, pretrained) -> bytes:
    """A fixed random sample of one matrix, as the bytes of an ``.npz``: pre-trained and fine-tuned
    weights, mask, scores (float16), and the matrix's name."""
    module = targets[name]
    model.eval()
    with torch.no_grad():
        masks = getattr(module, "parametrizations", None)
        if masks is not None:
            original = module.parametrizations.weight.original
            mask_mod = module.parametrizations.weight[0]
            mask = mask_mod.current_mask()
            scores = getattr(mask_mod, "scores", None)
        else:
            original, mask, scores = module.weight, (module.weight != 0).float(), None
        arrays = {"pretrained": pretrained.cpu().numpy(), "finetuned": original.reshape(-1)[idx].cpu().numpy(),
                  "mask": mask.reshape(-1)[idx].cpu().numpy()}
        if scores is not None:
            arrays["scores"] = scores.reshape(-1)[idx].cpu().numpy()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, matrix=np.array(name), **{k: v.astype(np.float16) for k, v in arrays.items()})
    return buffer.getvalue()


def land(store: ResultStore, output: RunOutput) -> dict:
    """Write a run's side files, then its record, into ``store``, each atomically (a reader never sees half
    a file; a record is only there once its side files are). Returns the record as stored."""
    store.root.mkdir(parents=True, exist_ok=True)
    for suffix, data in output.files.items():
        path = store.side_file(output.run_id, suffix)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    store.put(output.record)
    return store.get(output.run_id)


def remove_checkpoints(config: RunConfig, work_dir: str | os.PathLike = DEFAULT_WORK_DIR) -> None:
    """Delete the run's ``checkpoint-*`` folders (its final model stays)."""
    for ckpt in (Path(work_dir) / config.run_id()).glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)


def run(config: RunConfig, store: ResultStore | str = DEFAULT_STORE, work_dir: str | os.PathLike = DEFAULT_WORK_DIR,
        force: bool = False, keep_checkpoints: bool = False, progress: bool = True) -> dict:
    """Run ``config`` (or return its stored record) and return the record.

    ``force`` retrains even when a record exists. Checkpoints go to ``work_dir/<run_id>``; the
    final model (with masks, scores and thresholds) to ``work_dir/<run_id>/final``.
    """
    store = ResultStore(store) if not isinstance(store, ResultStore) else store
    if not force:
        cached = store.get(config.run_id())
        if cached is not None:
            return cached
    # every check (store, model, run folder, data, teacher) before anything is written or trained
    store.check_writable()
    stored = land(store, run_one(config, work_dir, store, progress))
    if not keep_checkpoints:
        remove_checkpoints(config, work_dir)
    return stored  # exactly what a later cache hit returns
