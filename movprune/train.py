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
"""

from __future__ import annotations

import dataclasses
import hashlib
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
from .distill import distillation_loss
from .pruner import PENALTY_METHODS, PruningConfig, find_targets, from_pretrained, save_pretrained, sparsify
from .store import ResultStore
from .provenance import stack_versions, train_fingerprint

DEFAULT_STORE = "results/runs"
DEFAULT_WORK_DIR = "checkpoints"
ANALYSIS_SAMPLE = 20000  # entries of one matrix kept per run for the weight-distribution figures
# a classification run counts as collapsed in training once its loss is within 3% of the loss of the
# best constant prediction, the entropy of the training labels (SST-2: 0.686 = 0.99 ln 2; SICK's
# 56/29/15 split: 0.98 = 0.89 ln 3, so ln 3 itself would never be reached)
COLLAPSE_FRACTION = 0.97


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


def constant_loss(labels, num_labels: int) -> float:
    """Cross-entropy (nats) of always predicting the label distribution of ``labels``: the training
    loss a collapsed classifier settles at."""
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=num_labels).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())

def collapse_ceiling(spec, train_ds) -> Optional[float]:
    """The training loss a collapsed model settles at, or None where there is no such level (regression).

    Classification: :func:`constant_loss` of the training labels. Extractive QA: a collapsed encoder
    maps every token to the same vector, so the start and end logits are equal over the window and
    the loss is ln(window length): the mean of that over the training windows (padding in a batch
    only raises it)."""
    if spec.kind == "classification":
        return constant_loss(train_ds["labels"], spec.num_labels)
    if spec.kind == "qa":
        return float(np.mean([math.log(len(ids)) for ids in train_ds["input_ids"]]))
    return None


# fields that do not change a run's result, so they stay out of its id
_NOT_IN_ID = ("data_dir", "teacher_dir", "save_steps", "eval_batch_size")
# fields added after records existed, with the value every earlier run had: a field at that value
# stays out of the id, so earlier records keep their ids (and old run folders still resume)
LEGACY_VALUES = {"sparsity_warmup_steps": None, "sparsity_cooldown_steps": None, "constant_lambda": False,
                 "bf16": False, "group_by_length": True, "stop_on_collapse": False, "eval_split": "eval",
                 "teacher_lr": None, "clip": "all"}


CLIP_MODES = ("all", "weights")  # RunConfig.clip
MAX_GRAD_NORM = 1.0

_FLOAT_FIELDS = ("remaining", "final_lambda", "final_threshold", "epochs", "lr", "score_lr", "lr_warmup",
                 "sparsity_warmup", "sparsity_cooldown", "alpha_distil", "alpha_ce", "temperature", "teacher_lr")


@dataclass
class RunConfig:
    """Everything that defines one fine-pruning run (see ``python -m movprune run --help``)."""

    task: str = "sst2"
    model: str = "minilm"
    method: str = "dense"
    remaining: Optional[float] = None
    scope: str = "local"
    final_lambda: Optional[float] = None
    final_threshold: float = 0.1
    distill: bool = False
    seed: int = 0
    epochs: float = 1.0
    max_steps: Optional[int] = None
    batch_size: int = 32
    max_length: int = 128
    lr: float = 3e-5
    score_lr: Optional[float] = None  # default 1e-2, L0 1e-1 (paper)
    lr_warmup: float = 0.1
    sparsity_warmup: float = 0.1
    sparsity_cooldown: float = 0.2
    sparsity_warmup_steps: Optional[int] = None    # optimizer steps before the first weight is pruned
    sparsity_cooldown_steps: Optional[int] = None  # optimizer steps at the final sparsity
    constant_lambda: Optional[bool] = None  # None: L0 constant, soft movement ramped (the authors' runs)
    bf16: bool = False              # bf16 autocast for training and eval (fp32 master weights)
    group_by_length: bool = False   # batches of similar lengths; False = uniform shuffling (paper)
    stop_on_collapse: bool = False  # end training early once the loss sits at the label entropy
    freeze_embeddings: bool = True
    alpha_distil: float = 0.9
    alpha_ce: float = 0.1
    temperature: float = 2.0
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    train_split: str = "train"
    eval_split: str = "eval"  # the split scored at the end (e.g. SICK's 4,927-pair "test")
    doc_stride: int = 128
    data_dir: Optional[str] = None
    teacher_dir: Optional[str] = None
    teacher_lr: Optional[float] = None  # the teacher's weight lr when it is not the student's (a profile's dense lr)
    # gradient clipping to norm 1: "all" clips weights and scores as one vector (the Trainer's and the
    # authors' way), "weights" clips the weights' gradients alone and leaves the scores' unclipped
    clip: str = "all"
    save_steps: int = 200
    eval_batch_size: int = 128

    def __post_init__(self):
        data_mod.get_task(self.task)  # unknown task -> DataError naming the valid ones
        # one config, one id: epochs=2 (a profile) and epochs=2.0 (the CLI) must hash alike
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(self, name, float(value))
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("epochs", "batch_size", "max_length", "lr", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0 or value != value:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if self.constant_lambda is None:
            self.constant_lambda = self.method == "l0"
        if not isinstance(self.save_steps, int) or self.save_steps <= 0:
            raise ValueError(f"save_steps must be a positive integer, got {self.save_steps!r}")
        if self.max_steps is not None and self.max_steps <= 0:
            raise ValueError(f"max_steps must be > 0, got {self.max_steps!r}")
        if self.score_lr is not None and self.score_lr <= 0:
            raise ValueError(f"score_lr must be > 0, got {self.score_lr!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        for name in ("alpha_distil", "alpha_ce"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not 0.0 <= self.lr_warmup < 1.0:
            raise ValueError(f"lr_warmup must be a fraction in [0, 1), got {self.lr_warmup!r}")
        for name in ("max_train_examples", "max_eval_examples"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        spec = data_mod.get_task(self.task)
        if spec.kind != "qa":
            data_mod._split_key(spec, self.train_split)  # unknown split -> DataError naming the valid ones
            data_mod._split_key(spec, self.eval_split)
        elif self.eval_split != "eval":
            raise ValueError("SQuAD has one eval split here (eval_split='eval')")
        if self.clip not in CLIP_MODES:
            raise ValueError(f"clip must be one of {', '.join(CLIP_MODES)}, got {self.clip!r}")
        if self.teacher_dir is not None and not self.distill:
            raise ValueError("teacher_dir is only used with distill=True (--distill)")
        if self.teacher_lr is not None and (not self.distill or self.teacher_dir is not None or self.teacher_lr <= 0):
            raise ValueError(f"teacher_lr must be > 0 and is only used with distill=True and no teacher_dir, "
                             f"got {self.teacher_lr!r}")
        self.pruning_config()  # validates method / remaining / lambda / threshold / schedule

    # ---- identity -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def run_id(self) -> str:
        """Stable id: readable prefix + hash of every field that changes the result."""
        key = {k: v for k, v in sorted(self.to_dict().items())
               if k not in _NOT_IN_ID and not (k in LEGACY_VALUES and v == LEGACY_VALUES[k])}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
        target = self.target_summary().replace(" ", "_").replace("=", "")
        kd = "-kd" if self.distill else ""
        return f"{self.task}-{self.model_slug()}-{target}{kd}-s{self.seed}-{digest}"

    def target_summary(self) -> str:
        """'movement v=0.1 local', 'soft_movement lambda=200', 'dense', 'zero_encoder'."""
        return "zero_encoder" if self.method == "zero_encoder" else self.pruning_config().target_summary

    def model_slug(self) -> str:
        return Path(self.model.rstrip("/")).name.replace("_", "-")

    def pruning_config(self) -> PruningConfig:
        if self.method == "zero_encoder":
            return PruningConfig(method="dense")
        return PruningConfig(method=self.method, remaining=self.remaining, scope=self.scope,
                             final_lambda=self.final_lambda, final_threshold=self.final_threshold,
                             warmup=self.sparsity_warmup, cooldown=self.sparsity_cooldown,
                             warmup_steps=self.sparsity_warmup_steps, cooldown_steps=self.sparsity_cooldown_steps,
                             constant_lambda=self.constant_lambda)

    def teacher_config(self) -> "RunConfig":
        """The dense, non-distilled run with the same data and budget: the distillation teacher.

        Everything but the pruning and distillation fields is kept (``stop_on_collapse`` too), and the
        weight lr is ``teacher_lr`` when set, so in a profile the teacher is the profile's own dense run,
        with its run id and record.
        """
        return dataclasses.replace(self, method="dense", remaining=None, scope="local", final_lambda=None,
                                   distill=False, score_lr=None, teacher_dir=None, constant_lambda=None,
                                   lr=self.teacher_lr or self.lr, teacher_lr=None, clip="all")


# ---------------------------------------------------------------------------------------------
# Trainer pieces


def _trainer_classes():
    """Imported lazily: transformers' Trainer is slow to import."""
    from transformers import Trainer, TrainerCallback

    from . import bf16 as bf16_mod

    class PruningTrainer(Trainer):
        """Trainer + regularization + optional distillation; evaluation in dataset order."""

        def __init__(self, *args, pruner=None, teacher=None, run_config=None, **kwargs):
            super().__init__(*args, **kwargs)
            self.pruner, self.teacher, self.run_config = pruner, teacher, run_config
            # bf16 asked for on a CPU without bf16 hardware: fp32 kernels on bf16-rounded operands
            self._emulate_bf16 = bf16_kernel(self.args.bf16) == bf16_mod.EMULATED
            if teacher is not None:
                teacher.to(self.args.device)  # the student's device (the Trainer moved the student)
            # sums since the last log of the task's own loss and of the regularizer: the logged "loss" is
            # their total (plus distillation), which for soft movement / L0 is dominated by lambda * penalty
            self._parts = {"task_loss": 0.0, "penalty": 0.0, "n": 0}

        def _get_eval_sampler(self, eval_dataset):
            # transformers >= 5 reuses length grouping for eval/predict; predictions must come back in
            # dataset order (SQuAD pairs them with its features by position)
            if eval_dataset is None or self.args.world_size > 1:
                return super()._get_eval_sampler(eval_dataset)
            return torch.utils.data.SequentialSampler(eval_dataset)

        def compute_loss_context_manager(self):
            # the Trainer enters this around every training and prediction forward (autocast comes from
            # accelerate, inside model.forward): the emulation acts only where autocast is on
            stack = super().compute_loss_context_manager()
            if self._emulate_bf16:
                stack.enter_context(bf16_mod.EmulatedBf16Matmuls())
            return stack

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = model(**inputs)
            loss = outputs.loss
            if self.teacher is not None:
                teacher_inputs = {k: v for k, v in inputs.items()
                                  if k not in ("labels", "start_positions", "end_positions")}
                with torch.no_grad():
                    teacher_outputs = self.teacher(**teacher_inputs)
                c = self.run_config
                loss = distillation_loss(outputs, teacher_outputs, loss, c.alpha_distil, c.alpha_ce, c.temperature)
            if model.training:
                self._parts["task_loss"] += outputs.loss.detach().float()
                self._parts["n"] += 1
            if self.pruner is not None:
                reg = self.pruner.regularization().to(loss.device)
                loss = loss + reg
                if model.training:
                    self._parts["penalty"] += reg.detach().float()
            return (loss, outputs) if return_outputs else loss

        def log(self, logs, *args, **kwargs):
            """Adds ``task_loss`` (the task's own loss, without regularizer or distillation) and, for
            soft movement / L0, ``penalty`` (lambda * penalty) to each training log, averaged since the last."""
            n = self._parts["n"]
            if "loss" in logs and n:
                logs["task_loss"] = round(float(self._parts["task_loss"]) / n, 4)
                if self.pruner is not None and self.pruner.config.method in PENALTY_METHODS:
                    logs["penalty"] = round(float(self._parts["penalty"]) / n, 4)
                self._parts = {"task_loss": 0.0, "penalty": 0.0, "n": 0}
            return super().log(logs, *args, **kwargs)

    class ScheduleCallback(TrainerCallback):
        """Steps the sparsity schedule before every optimizer step (and at the very end)."""

        def __init__(self, pruner):
            self.pruner = pruner

        def on_step_begin(self, args, state, control, **kwargs):
            self.pruner.update(state.global_step, state.max_steps)

        def on_train_end(self, args, state, control, **kwargs):
            self.pruner.update(state.max_steps, state.max_steps)

    class CollapseStopCallback(TrainerCallback):
        """Ends training once the logged loss has sat at a collapsed model's level (:func:`collapse_ceiling`)
        for ``patience_steps`` after pruning began (``--stop-on-collapse``): such runs have not recovered
        in any run we made, and the rest of their budget is better spent on another seed. The record
        keeps ``stopped_at``."""

        def __init__(self, ceiling: float, pruning_starts: float, patience_steps: int = 200):
            self.ceiling, self.pruning_starts, self.patience_steps = ceiling, pruning_starts, patience_steps
            self.since, self.stopped_at = None, None

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            loss = logs.get("task_loss", logs.get("loss"))  # never the regularizer: lambda * penalty is no collapse
            if loss is None or state.global_step <= self.pruning_starts:
                return
            if loss < COLLAPSE_FRACTION * self.ceiling:
                self.since = None
                return
            self.since = state.global_step if self.since is None else self.since
            if state.global_step - self.since >= self.patience_steps:
                self.stopped_at = state.global_step
                control.should_training_stop = True

    return PruningTrainer, ScheduleCallback, CollapseStopCallback


def build_optimizer(model, pruner, config: RunConfig):
    """AdamW with two groups: weights at ``lr``, scores at ``score_lr`` (paper: 1e-2, L0 1e-1)."""
    score_lr = config.score_lr or (1e-1 if config.method == "l0" else 1e-2)
    score_ids = {id(p) for p in pruner.score_parameters()}
    weights = [p for p in model.parameters() if p.requires_grad and id(p) not in score_ids]
    groups = [{"params": weights, "lr": config.lr, "weight_decay": 0.0}]
    if score_ids:
        groups.append({"params": pruner.score_parameters(), "lr": score_lr, "weight_decay": 0.0})
    return make_adamw(groups, lr=config.lr)


def clip_weights_only(optimizer, max_norm: float = MAX_GRAD_NORM) -> None:
    """Clip the gradients of the optimizer's first group (the weights, :func:`build_optimizer`) to
    ``max_norm`` before every step, leaving the scores' group unclipped (``RunConfig.clip="weights"``;
    the Trainer's own clipping must be off, ``max_grad_norm=0``)."""
    def hook(opt, args, kwargs):
        torch.nn.utils.clip_grad_norm_([p for p in opt.param_groups[0]["params"] if p.grad is not None], max_norm)

    optimizer.register_step_pre_hook(hook)


def make_adamw(groups, lr: float) -> torch.optim.AdamW:
    """AdamW, fused into one kernel per parameter group where torch has that for the device.

    Movement pruning doubles the optimizer's work (one score per weight); on a 2-core CPU the
    fused update of MiniLM's weights and scores takes ~13 ms instead of ~100 ms for the
    per-parameter loop (benchmarks/bench_step.py --optim). Same update rule, same results up
    to float rounding.
    """
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except (RuntimeError, ValueError, TypeError):  # a device or dtype without a fused kernel
        return torch.optim.AdamW(groups, lr=lr)


def freeze_embeddings(model) -> None:
    """Embeddings are not pruned and, as in the paper, not trained."""
    for name, p in model.named_parameters():
        if ".embeddings." in f".{name}" or name.startswith("embeddings."):
            p.requires_grad_(False)


def zero_encoder(model) -> None:
    """Control run: every targeted encoder weight set to zero and frozen (biases, LN, head train)."""
    with torch.no_grad():
        for module in find_targets(model).values():
            module.weight.zero_()
            module.weight.requires_grad_(False)


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


# ---------------------------------------------------------------------------------------------
# Checkpoints


def last_good_checkpoint(output_dir: Path) -> Optional[str]:
    """Newest ``checkpoint-N`` folder that has a complete trainer state, else None."""
    if not output_dir.is_dir():
        return None
    ckpts = sorted((p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for ckpt in ckpts:
        try:
            state = json.loads((ckpt / "trainer_state.json").read_text())
            weights = list(ckpt.glob("*.safetensors"))
            if (state.get("global_step") == int(ckpt.name.split("-")[-1]) and weights
                    and all(_safetensors_complete(w) for w in weights)):
                return str(ckpt)
        except (OSError, ValueError):
            pass
        print(f"warning: skipping incomplete checkpoint {ckpt}")
    return None


TRAIN_TIME_FILE = "movprune_train_time.json"


def checkpoint_train_time(checkpoint) -> Optional[float]:
    """Seconds of training that led up to ``checkpoint`` (written beside it by the run that saved it),
    or None for a checkpoint saved without it."""
    try:
        return float(json.loads((Path(checkpoint) / TRAIN_TIME_FILE).read_text())["train_time_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _train_clock(before: Optional[float]):
    """A callback that keeps a run's training time across resumes: ``before`` seconds (from the
    checkpoint resumed from) plus this process's, written into every checkpoint it saves."""
    from transformers import TrainerCallback

    class TrainClock(TrainerCallback):
        def __init__(self):
            self.before, self.started = before, None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.time()

        def total(self) -> float:
            return (self.before or 0.0) + (time.time() - self.started if self.started else 0.0)

        def on_save(self, args, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                tmp = ckpt / (TRAIN_TIME_FILE + ".tmp")
                tmp.write_text(json.dumps({"train_time_s": round(self.total(), 1), "step": state.global_step}))
                os.replace(tmp, ckpt / TRAIN_TIME_FILE)

    return TrainClock()


def check_run_folder(out_dir: Path, config: RunConfig) -> None:
    """Refuse to resume in a run folder whose ``run_config.json`` is another config.

    The folder name is the run id, so this only happens when a folder was edited, copied or
    reused by hand (or on a hash collision); resuming its checkpoints would silently mix runs.
    """
    path = Path(out_dir) / "run_config.json"
    if not path.is_file():
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(saved, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:  # a write cut short: this run rewrites it
        print(f"warning: unreadable {path} ({type(e).__name__}); rewriting it")
        return
    current = config.to_dict()
    diff = [k for k in current if k not in _NOT_IN_ID and saved.get(k, LEGACY_VALUES.get(k, "<missing>")) != current[k]]
    if diff:
        shown = ", ".join(f"{k} {saved.get(k, '<missing>')!r} != {current[k]!r}" for k in diff[:3])
        raise ValueError(f"run folder {out_dir} belongs to a different config ({shown}); refusing to resume "
                         f"from it: move it aside or use another --work-dir")


def _safetensors_complete(path: Path) -> bool:
    """True when the file is as long as its own header says (catches a write cut short)."""
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        return path.stat().st_size == 8 + n + end
    except (OSError, ValueError, KeyError, TypeError):
        return False


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
        dataloader_num_workers=0, bf16=config.bf16, **_length_grouping(config.group_by_length),
        use_cpu=not torch.cuda.is_available(),
    )
    PruningTrainer, ScheduleCallback, CollapseStopCallback = _trainer_classes()
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


def _length_grouping(group: bool) -> dict:
    """Batches of similar lengths (less padding) or uniform shuffling, under this transformers' argument."""
    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if group else "random"}
    return {"group_by_length": group}


# the schedule under which movement pruning did not collapse on MiniLM / SST-2 (docs/findings.md)
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


def collapse_step(loss_curve, level: float, after: float = 0.0) -> Optional[int]:
    """First logged step after ``after`` from which the training loss stayed within 3% of ``level``
    (the loss of a collapsed model, :func:`collapse_ceiling`) to the end of the curve: a run that
    ended predicting a constant. None if it never did."""
    ceiling = COLLAPSE_FRACTION * level
    found = None
    for step, loss in loss_curve:
        if step <= after:
            continue
        if loss >= ceiling:
            found = step if found is None else found
        else:
            found = None
    return found


def _is_load_error(e: Exception) -> bool:
    """Errors raised by loading a damaged checkpoint (truncated pickle / safetensors / json)."""
    import pickle

    return isinstance(e, (EOFError, pickle.UnpicklingError, RuntimeError, OSError, ValueError, KeyError))


def final_model_dir(config: RunConfig, work_dir: str | os.PathLike = DEFAULT_WORK_DIR) -> Path:
    """Where :func:`run` saves the pruned model of ``config`` (``<work_dir>/<run_id>/final``)."""
    return Path(work_dir) / config.run_id() / "final"


def run(config: RunConfig, store: ResultStore | str = DEFAULT_STORE, work_dir: str | os.PathLike = DEFAULT_WORK_DIR,
        force: bool = False, keep_checkpoints: bool = False, progress: bool = True) -> dict:
    """Run ``config`` (or return its stored record) and return the record.

    ``force`` retrains even when a record exists. Checkpoints go to ``work_dir/<run_id>``; the
    final model (with masks, scores and thresholds) to ``work_dir/<run_id>/final``.
    """
    store = ResultStore(store) if not isinstance(store, ResultStore) else store
    run_id = config.run_id()
    if not force:
        cached = store.get(run_id)
        if cached is not None:
            return cached
    # every check (store, model, run folder, data, teacher) before anything is written or trained
    store.check_writable()
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

    n_train = len(train_ds)
    steps_per_epoch = math.ceil(n_train / config.batch_size)
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
    targets, sample_name, sample_idx, pretrained_sample = (built["targets"], built["sample_name"],
                                                           built["sample_idx"], built["pretrained_sample"])

    pruner.update(max_steps, max_steps)
    t1 = time.time()
    stopped_at = built["collapse"].stopped_at if built["collapse"] is not None else None
    details: dict = {}
    metrics = evaluate(trainer, spec, eval_data, details)
    counts = details.get("predicted_class_counts")
    eval_time = time.time() - t1
    report = sparsity_report(model)

    final_dir = out_dir / "final"
    save_pretrained(model, str(final_dir), tokenizer)
    _save_analysis(store, run_id, model, targets, sample_name, sample_idx, pretrained_sample)

    logged = [h for h in trainer.state.log_history if "loss" in h]
    loss_curve = [[h["step"], round(float(h.get("task_loss", h["loss"])), 4)] for h in logged]
    penalty_curve = [[h["step"], h["penalty"]] for h in logged if "penalty" in h]
    pruning_starts, _ = config.pruning_config().schedule.bounds(max_steps)
    record = {
        "run_id": run_id,
        **{k: v for k, v in config.to_dict().items() if k not in ("data_dir", "teacher_dir")},
        "target": config.target_summary(),
        "target_remaining": config.remaining,  # the v asked for; "remaining" is what was measured
        "metrics": metrics,
        "main_metric": spec.main_metric,
        # classification: eval predictions per class; collapsed = every eval example in one class
        "predicted_class_counts": counts,
        "collapsed": max(counts) == sum(counts) if counts else None,
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
        "train_examples": n_train,
        # what decides the training data: a record pools with another only if both saw the same features
        "train_data": train_fingerprint(train_ds),
        "steps": max_steps,
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
        record["teacher"] = teacher_provenance(config, store, work_dir)
    store.put(record)
    _write_result_file(final_dir, record)
    if not keep_checkpoints:
        for ckpt in out_dir.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
    return store.get(run_id)  # exactly what a later cache hit returns


def _save_analysis(store, run_id, model, targets, name, idx, pretrained) -> None:
    """A fixed random sample of one matrix: pre-trained and fine-tuned weights, mask, scores."""
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
    path = store.side_file(run_id, ".npz")
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, matrix=np.array(name), **{k: v.astype(np.float16) for k, v in arrays.items()})
    os.replace(tmp, path)


RESULT_FILE = "movprune_result.json"  # beside a run's final model: the run id and score of *that* model
_RESULT_KEYS = ("run_id", "main_metric", "score", "remaining", "device", "finished_at")


def _write_result_file(final_dir: Path, record: dict) -> None:
    """Write the run's id, score and finish time beside its final model (atomically).

    A stored record and a model folder can part ways: a teacher retrained on another machine, or with the
    record kept from an earlier run. The file travels with the model, so a distilled run names the score of
    the teacher that actually taught it.
    """
    tmp = final_dir / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps({k: record.get(k) for k in _RESULT_KEYS}, indent=1))
    os.replace(tmp, final_dir / RESULT_FILE)


def teacher_provenance(config: RunConfig, store, work_dir) -> dict:
    """The teacher of a distilled ``config``, for its record: run id, score, device, finish time.

    Read from the result file beside the teacher's model (written by :func:`run`); from the store's
    record when the folder has none (a model saved before that file existed, or ``teacher_dir`` given by
    hand, which may hold any model: then only ``source`` is known). ``source`` says which.
    """
    store = ResultStore(store) if not isinstance(store, ResultStore) else store
    if config.teacher_dir:
        path, run_id = Path(config.teacher_dir), None
    else:
        tconf = config.teacher_config()
        path, run_id = final_model_dir(tconf, work_dir), tconf.run_id()
    info, source = {}, "unknown"
    try:
        info, source = json.loads((path / RESULT_FILE).read_text()), "model folder"
    except (OSError, ValueError):
        record = store.get(run_id) if run_id else None
        if record is not None:
            info, source = record, "store"
    out = {k: info.get(k) for k in _RESULT_KEYS}
    out["run_id"] = out["run_id"] or run_id
    return {**out, "source": source}


def load_teacher(config: RunConfig, store, work_dir, tokenizer, progress=True):
    """The dense teacher: ``config.teacher_dir`` if given, else the cached dense run (trained if missing)."""
    if config.teacher_dir:
        path = Path(config.teacher_dir)
    else:
        tconf = config.teacher_config()
        path = final_model_dir(tconf, work_dir)
        if not (path / "movprune_model.safetensors").is_file():
            if progress:
                print(f"training the distillation teacher {tconf.run_id()}")
            run(tconf, store, work_dir, force=True, progress=progress)
        store = ResultStore(store) if not isinstance(store, ResultStore) else store
        record = store.get(tconf.run_id())
        if record is not None and record.get("collapsed"):  # tiny smoke models do; a real teacher should not
            import warnings

            warnings.warn(f"the distillation teacher {tconf.run_id()} predicts one class "
                          f"({record.get('main_metric')} {record.get('score')}): its student learns a constant")
    if not path.is_dir():
        raise ValueError(f"teacher folder {path} does not exist")
    from transformers import AutoTokenizer

    try:
        teacher_tok = AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError):
        teacher_tok = None
    if teacher_tok is not None and teacher_tok.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"teacher {path} uses a different vocabulary than the student model {config.model!r}")
    if (path / "movprune_model.safetensors").is_file():
        teacher = from_pretrained(str(path))
    else:
        kind = data_mod.get_task(config.task).kind
        teacher = models.load_model(str(path), kind, data_mod.get_task(config.task).num_labels)
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
