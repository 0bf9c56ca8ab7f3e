"""The Trainer pieces of a fine-pruning run: the ``Trainer`` subclass, its callbacks and its optimizer.

:class:`PruningTrainer` adds the pruning regularizer and optional distillation to the loss and
evaluates in dataset order; :class:`ScheduleCallback` steps the sparsity schedule before every
optimizer step; :class:`CollapseStopCallback` ends a run that collapsed (``--stop-on-collapse``);
:class:`TrainClock` keeps the training time across resumes. :mod:`movprune.train` assembles them
into a run. Importing this module imports ``transformers``' Trainer (slow): import it where a run
is built, not at the top of a command line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Optional

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from . import bf16 as bf16_mod
from .checkpoints import TRAIN_TIME_FILE
from .collapse import COLLAPSE_FRACTION
from .config import RunConfig
from .distill import distillation_loss
from .pruner import PENALTY_METHODS, find_targets

MAX_GRAD_NORM = 1.0


class PruningTrainer(Trainer):
    """Trainer + regularization + optional distillation; evaluation in dataset order."""

    def __init__(self, *args, pruner=None, teacher=None, run_config=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pruner, self.teacher, self.run_config = pruner, teacher, run_config
        # bf16 asked for on a CPU without bf16 hardware: fp32 kernels on bf16-rounded operands
        from .train import bf16_kernel  # late: tests stand in a machine's hardware on movprune.train

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

class TrainClock(TrainerCallback):
    """Keeps a run's training time across resumes: ``before`` seconds (from the checkpoint resumed
    from, None when it kept none) plus this process's, written into every checkpoint it saves."""

    def __init__(self, before: Optional[float] = None):
        self.before, self.started = before, None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.time()

    def total(self) -> float:
        """Seconds of training so far, the part before the resume included."""
        return (self.before or 0.0) + (time.time() - self.started if self.started else 0.0)

    def on_save(self, args, state, control, **kwargs):
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            tmp = ckpt / (TRAIN_TIME_FILE + ".tmp")
            tmp.write_text(json.dumps({"train_time_s": round(self.total(), 1), "step": state.global_step}))
            os.replace(tmp, ckpt / TRAIN_TIME_FILE)


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


def length_grouping(group: bool) -> dict:
    """Batches of similar lengths (less padding) or uniform shuffling, under this transformers' argument."""
    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    if "train_sampling_strategy" in names:
        return {"train_sampling_strategy": "group_by_length" if group else "random"}
    return {"group_by_length": group}
