"""Profiles: which runs the paper's tables and figures need, at three scales.

* ``smoke`` - a random 2-layer BERT, a few hundred examples: the whole pipeline in minutes (CI).
* ``small`` - the default: MiniLM-L6 (offline) on SST-2 (and, with ``--tasks all``, SICK as
  the MNLI stand-in and the offline SQuAD split), the paper's recipe scaled to a 2-core CPU.
* ``paper`` - bert-base-uncased on MNLI / QQP / SQuAD from the hub with the authors'
  hyperparameters (reference sheet): for a user with GPUs and internet.

A profile turns into a list of :class:`~movprune.train.RunConfig`; the batch runs the missing ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from .train import RunConfig

SPARSITIES = (0.10, 0.03, 0.01)  # remaining fractions of the paper's tables


@dataclass
class TaskBudget:
    """Per-task training budget and data limits inside a profile."""

    max_steps: Optional[int] = None
    epochs: float = 1.0
    batch_size: int = 32
    max_length: int = 128
    lr: float = 3e-5
    train_split: str = "train"
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    doc_stride: int = 128


@dataclass
class Profile:
    """A named scale: model, tasks, budgets, sparsity grid and regularization grids."""

    name: str
    model: str
    tasks: tuple
    all_tasks: tuple
    budgets: dict
    sparsities: tuple = SPARSITIES
    soft_lambdas: tuple = ()
    l0_lambdas: tuple = ()
    seeds: tuple = (0,)
    score_lr: Optional[float] = None
    l0_score_lr: Optional[float] = None
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def base(self, task: str, seed: int) -> dict:
        b = dataclasses.asdict(self.budgets[task])
        return dict(task=task, model=self.model, seed=seed, **b)

    def configs(self, tasks=None, seeds=None) -> dict[str, list[RunConfig]]:
        """``{purpose: [RunConfig, ...]}`` for every table/figure, deduplicated by run id."""
        tasks = tasks or self.tasks
        seeds = seeds or self.seeds
        groups: dict[str, list[RunConfig]] = {}

        def add(group, **kw):
            groups.setdefault(group, []).append(RunConfig(**kw))

        for task in tasks:
            for seed in seeds:
                b = self.base(task, seed)
                add("dense", **b, method="dense")
                add("control", **b, method="zero_encoder")
                for distill in (False, True):
                    group = "table_kd" if distill else "table"
                    for v in self.sparsities:
                        for method in ("magnitude", "movement"):
                            add(group, **b, method=method, remaining=v, distill=distill, score_lr=self.score_lr)
                    for lam in self.soft_lambdas:
                        add(group, **b, method="soft_movement", final_lambda=lam, distill=distill,
                            score_lr=self.score_lr)
                    for lam in self.l0_lambdas:
                        add(group, **b, method="l0", final_lambda=lam, distill=distill, score_lr=self.l0_score_lr)
                for v in self.sparsities:
                    for method in ("magnitude", "movement"):
                        add("global", **b, method=method, remaining=v, scope="global", score_lr=self.score_lr)
        return groups

    def all_configs(self, tasks=None, seeds=None) -> list[RunConfig]:
        """Every run of the profile once, teachers (dense) first."""
        seen, out = set(), []
        for group in self.configs(tasks, seeds).values():
            for c in group:
                if c.run_id() not in seen:
                    seen.add(c.run_id())
                    out.append(c)
        return out


def _smoke() -> Profile:
    budget = TaskBudget(max_steps=30, batch_size=16, max_length=48, lr=1e-3, max_train_examples=480,
                        max_eval_examples=200)
    return Profile(
        name="smoke", model="tiny", tasks=("sst2",), all_tasks=("sst2", "sick"),
        budgets={"sst2": budget, "sick": budget},
        sparsities=(0.10, 0.03), soft_lambdas=(1.0, 50.0), l0_lambdas=(1.0, 50.0),
        notes="random 2-layer BERT (hidden 64), 480 training examples, 30 steps: checks the wiring, not the science",
    )


def _small() -> Profile:
    return Profile(
        name="small", model="minilm", tasks=("sst2",), all_tasks=("sst2", "sick", "squad"),
        budgets={
            # SST-2: phrase-level train set (short), 600 steps of 32 = 19,200 phrases (1/4 epoch)
            "sst2": TaskBudget(max_steps=600, batch_size=32, max_length=64, lr=5e-5),
            # SICK: 4,500 pairs, 4 epochs
            "sick": TaskBudget(max_steps=560, batch_size=32, max_length=64, lr=5e-5),
            # SQuAD offline split (train side of the dev file), 384 -> 256 tokens, 1,000 eval questions
            "squad": TaskBudget(max_steps=600, batch_size=16, max_length=256, doc_stride=96, lr=5e-5,
                                max_eval_examples=1000),
        },
        soft_lambdas=(10.0, 50.0, 200.0, 800.0), l0_lambdas=(5.0, 25.0, 100.0, 400.0),
        notes="MiniLM-L6 on CPU; steps scaled down ~100x from the paper, learning rates as in the paper",
    )


def _paper() -> Profile:
    return Profile(
        name="paper", model="bert-base-uncased", tasks=("mnli", "qqp", "squad"), all_tasks=("mnli", "qqp", "squad"),
        budgets={
            # the authors' sheet: batch 32, seq 128, lr 3e-5; MNLI 6 epochs (warmup 12k), QQP 10 epochs
            "mnli": TaskBudget(epochs=6, batch_size=32, max_length=128, lr=3e-5),
            "qqp": TaskBudget(epochs=10, batch_size=32, max_length=128, lr=3e-5),
            # SQuAD: batch 16, 10 epochs, seq 384, lr 3e-5
            "squad": TaskBudget(epochs=10, batch_size=16, max_length=384, doc_stride=128, lr=3e-5),
        },
        soft_lambdas=(1.0, 10.0, 100.0, 400.0, 1000.0, 2300.0), l0_lambdas=(10.0, 50.0, 150.0, 300.0, 600.0),
        notes="the authors' recipe; needs GPUs and the Hugging Face hub",
    )


PROFILES = {"smoke": _smoke, "small": _small, "paper": _paper}


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (smoke, small or paper)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]()
