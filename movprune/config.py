"""One fine-pruning run's configuration and its identity.

    config = RunConfig(task="sst2", model="minilm", method="movement", remaining=0.10)
    config.run_id()   # 'sst2-minilm-movement_v0.1_local-s0-<hash>': the record's and the run folder's name

Every field that changes a run's result goes into the id's hash; the same config twice is a cache
hit in the results store, and a killed run resumes from its folder ``<work_dir>/<run_id>``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from . import data as data_mod
from .pruner import PruningConfig

DEFAULT_STORE = "results/runs"
DEFAULT_WORK_DIR = "checkpoints"

# fields that do not change a run's result, so they stay out of its id
_NOT_IN_ID = ("data_dir", "teacher_dir", "save_steps", "eval_batch_size")
# fields added after records existed, with the value every earlier run had: a field at that value
# stays out of the id, so earlier records keep their ids (and old run folders still resume)
LEGACY_VALUES = {"sparsity_warmup_steps": None, "sparsity_cooldown_steps": None, "constant_lambda": False,
                 "bf16": False, "group_by_length": True, "stop_on_collapse": False, "eval_split": "eval",
                 "teacher_lr": None, "clip": "all"}


CLIP_MODES = ("all", "weights")  # RunConfig.clip

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


def final_model_dir(config: RunConfig, work_dir: str | os.PathLike = DEFAULT_WORK_DIR) -> Path:
    """Where a run saves the pruned model of ``config`` (``<work_dir>/<run_id>/final``)."""
    return Path(work_dir) / config.run_id() / "final"
