"""Profiles: which runs the paper's tables and figures need, at several scales.

* ``minilm`` - the default, and the sound replication: MiniLM-L6 (offline) on all of SST-2, on SICK
  (the MNLI stand-in) and on the offline SQuAD split, with the recipe under which the pruning methods
  do not collapse here (3,400 steps, first weight pruned after 1,000, ramp 2,000, bf16;
  docs/findings.md): ~25-65 min per SST-2 / SICK run and ~2 h per SQuAD run on one CPU core, or one
  GPU (scripts/gpu_minilm.py). Magnitude and movement at 10 / 3 / 1%; on SICK and SQuAD also soft
  movement and L0, distillation for a few cells, seeds 1-2 for the cells a claim rests on; on SICK
  global magnitude / movement, the clipping factor and the high-density crossover; the
  encoder-zeroed control. Its records are ``results/minilm/runs``.
* ``smoke`` - a random 2-layer BERT, a few hundred examples: the whole pipeline in minutes (tests).
* ``demo``  - a quick look, not a result: MiniLM-L6 on 9,600 SST-2 phrases for 300 steps, the whole
  grid in a few CPU hours. At this budget most pruned runs collapse to the majority class
  (docs/findings.md), so nothing renders or cites it; ``--profile demo`` trains it.
* ``gpu``   - MiniLM-L6 with the paper's learning rates and 2 epochs of all of SST-2 (the demo grid
  with ~16x its steps): for one GPU.
* ``paper`` - bert-base-uncased on MNLI / QQP / SQuAD from the hub with the authors'
  hyperparameters (reference sheet): for a user with GPUs and internet.

A profile turns into a list of :class:`~movprune.train.RunConfig`; the batch runs the missing ones.
A run's id hashes its config, not the profile's name: renaming a profile keeps its records.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional

from .data import get_task
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
    eval_split: str = "eval"        # the split scored (SICK: "test", 4,927 pairs; budgets chosen on dev)
    max_train_examples: Optional[int] = None
    max_eval_examples: Optional[int] = None
    doc_stride: int = 128
    lr_warmup: float = 0.1          # fraction of steps of linear LR warm-up
    sparsity_warmup: float = 0.1    # fraction of steps before pruning starts
    sparsity_cooldown: float = 0.2  # fraction of steps at the final sparsity
    sparsity_warmup_steps: Optional[int] = None    # the same in optimizer steps (overrides the fraction)
    sparsity_cooldown_steps: Optional[int] = None
    bf16: bool = False              # bf16 autocast (CPUs with avx512_bf16, GPUs)
    group_by_length: bool = False   # False: uniform shuffling, as the paper
    stop_on_collapse: bool = False  # end a run whose loss sits at a collapsed model's level after pruning began


def _control_budget(base: dict) -> dict:
    """The encoder-zeroed control's budget: the task's, but never stopped by the collapse rule on
    extractive QA. With the encoder zeroed each token still reaches the head through the residual path
    as its own embedding (position and segment included), so a QA head learns token-level priors while
    its loss sits near the collapsed level (SQuAD, minilm profile: stopped at step 578 with the loss still
    falling, 5.23 -> 4.86, F1 7.50); a classifier reads only [CLS], whose output no longer depends on
    the input, so there the rule ends a run that cannot learn anything (SST-2: the majority class)."""
    if base.get("stop_on_collapse") and get_task(base["task"]).kind == "qa":
        return {**base, "stop_on_collapse": False}
    return base


@dataclass
class Profile:
    """A named scale: model, tasks, budgets, sparsity grid and regularization grids."""

    name: str
    model: str
    tasks: tuple
    all_tasks: tuple
    budgets: dict
    sparsities: tuple = SPARSITIES
    soft_lambdas: tuple | dict = ()  # one grid for every task, or {task: grid}
    l0_lambdas: tuple | dict = ()
    seeds: tuple = (0,)
    score_lr: Optional[float] = None       # movement (paper 1e-2; ranking is invariant to its scale)
    soft_score_lr: Optional[float] = None  # soft movement (paper 1e-2)
    l0_score_lr: Optional[float] = None    # L0 (paper 1e-1)
    l0_constant_lambda: Optional[bool] = None  # None: constant, as the authors' runs; False: cubic ramp
    notes: str = ""
    method_lr: dict = field(default_factory=dict)  # {(task, method): weight lr} exceptions
    distill_options: tuple = (False, True)  # the tables without / with distillation
    # the global top-k runs (magnitude and movement at every sparsity) of the local-vs-global and per-layer
    # figures: True for every task, False for none, or a tuple of tasks
    with_global: bool | tuple = True
    with_control: bool = True  # the encoder-zeroed control run
    # cells trained for more seeds than ``seeds``: ((task, method, remaining), ...) for ``cell_seeds``;
    # for soft movement / L0 the third entry is the lambdas whose runs bracket the cell, e.g. (1000.0, 3000.0)
    seed_cells: tuple = ()
    cell_seeds: tuple = (0, 1, 2)
    # cells trained with distillation too (for ``seeds``), where distill_options leaves it out: the same
    # form as seed_cells; the dense run of the task is their teacher
    distill_cells: tuple = ()
    # distilled cells trained for ``cell_seeds`` (mean +- std beside their undistilled seed_cells)
    distill_seed_cells: tuple = ()
    # cells trained again with the weights' gradients clipped alone (``RunConfig.clip="weights"``) for
    # ``cell_seeds``: the clipping factor, beside the same cells clipped with their scores (the default)
    clip_cells: tuple = ()
    # the high-density end of the paper's Figure 2: {task: remaining fractions} where magnitude and
    # movement are trained for ``cell_seeds`` beyond ``sparsities`` (where the curves cross)
    crossover: dict = field(default_factory=dict)

    def lambdas(self, method: str, task: str) -> tuple:
        """The lambda grid of ``method`` ("soft_movement" or "l0") for ``task``."""
        grid = self.soft_lambdas if method == "soft_movement" else self.l0_lambdas
        return tuple(grid.get(task, ())) if isinstance(grid, dict) else tuple(grid)

    def base(self, task: str, seed: int) -> dict:
        b = dataclasses.asdict(self.budgets[task])
        return dict(task=task, model=self.model, seed=seed, **b)

    def configs(self, tasks=None, seeds=None) -> dict[str, list[RunConfig]]:
        """``{purpose: [RunConfig, ...]}`` for every table/figure, deduplicated by run id."""
        tasks = tasks or self.tasks
        seeds = seeds or self.seeds
        groups: dict[str, list[RunConfig]] = {}

        def add(group, **kw):
            lr = self.method_lr.get((kw["task"], kw["method"]))
            if lr is not None:
                kw["lr"] = lr
                if kw.get("distill"):  # the teacher is the task's dense run, at the dense lr
                    kw["teacher_lr"] = self.method_lr.get((kw["task"], "dense"), self.base(kw["task"], 0)["lr"])
            config, members = RunConfig(**kw), groups.setdefault(group, [])
            if all(c.run_id() != config.run_id() for c in members):
                members.append(config)

        for task in tasks:
            for seed in seeds:
                b = self.base(task, seed)
                add("dense", **b, method="dense")
                if self.with_control:
                    add("control", **_control_budget(b), method="zero_encoder")
                for distill in self.distill_options:
                    group = "table_kd" if distill else "table"
                    for v in self.sparsities:
                        for method in ("magnitude", "movement"):
                            add(group, **b, method=method, remaining=v, distill=distill, score_lr=self.score_lr)
                    for lam in self.lambdas("soft_movement", task):
                        add(group, **b, method="soft_movement", final_lambda=lam, distill=distill,
                            score_lr=self.soft_score_lr)
                    for lam in self.lambdas("l0", task):
                        add(group, **b, method="l0", final_lambda=lam, distill=distill, score_lr=self.l0_score_lr,
                            constant_lambda=self.l0_constant_lambda)
                wants_global = task in self.with_global if isinstance(self.with_global, tuple) else self.with_global
                for v in self.sparsities if wants_global else ():
                    for method in ("magnitude", "movement"):
                        add("global", **b, method=method, remaining=v, scope="global", score_lr=self.score_lr)
            for v in self.crossover.get(task, ()):
                for seed in self.cell_seeds:
                    for method in ("magnitude", "movement"):
                        add("crossover", **self.base(task, seed), method=method, remaining=v, score_lr=self.score_lr)
            for cell_task, method, v in self.clip_cells:
                for seed in self.cell_seeds if cell_task == task else ():
                    add("clip", **self.base(task, seed), method=method, remaining=v, score_lr=self.score_lr,
                        clip="weights")
            cells = [("table", c, self.cell_seeds, False) for c in self.seed_cells]  # mean +- std cells
            cells += [("table_kd", c, seeds, True) for c in self.distill_cells]
            cells += [("table_kd", c, self.cell_seeds, True) for c in self.distill_seed_cells]
            for group, (cell_task, method, v), cell_seeds, distill in cells:
                for seed in cell_seeds if cell_task == task else ():
                    if distill:  # the teacher: the task's dense run of that seed
                        add("dense", **self.base(task, seed), method="dense")
                    b = dict(self.base(task, seed), distill=distill)
                    if method == "soft_movement":
                        for lam in v:
                            add(group, **b, method=method, final_lambda=lam, score_lr=self.soft_score_lr)
                    elif method == "l0":
                        for lam in v:
                            add(group, **b, method=method, final_lambda=lam, score_lr=self.l0_score_lr,
                                constant_lambda=self.l0_constant_lambda)
                    else:
                        add(group, **b, method=method, remaining=v, score_lr=self.score_lr)
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
    budget = TaskBudget(max_steps=80, batch_size=16, max_length=48, lr=1e-3, max_train_examples=1280,
                        max_eval_examples=400, group_by_length=True)
    return Profile(
        name="smoke", model="tiny", tasks=("sst2",), all_tasks=("sst2", "sick"),
        budgets={"sst2": budget, "sick": budget},
        sparsities=(0.10, 0.03), soft_lambdas=(100.0, 1000.0), l0_lambdas=(100.0, 1000.0), soft_score_lr=0.1,
        notes="random 2-layer BERT (hidden 64), 1,280 training examples, 80 steps: checks the wiring, not the science",
    )


def _demo() -> Profile:
    """The former ``small`` profile (its run ids unchanged): 300 steps, most pruned runs collapse."""
    return Profile(
        name="demo", model="minilm", tasks=("sst2",), all_tasks=("sst2", "sick", "squad"),
        budgets={
            # SST-2: 300 steps of 32 = one pass over a fixed random 9,600 of the 76,961 training phrases
            # (length-grouped batches, L0 lambda ramped: the recipe its committed records were trained with)
            "sst2": TaskBudget(max_steps=300, batch_size=32, max_length=64, lr=5e-5, max_train_examples=9600,
                               group_by_length=True),
            # SICK: 4,500 pairs, about 2 epochs
            "sick": TaskBudget(max_steps=300, batch_size=32, max_length=64, lr=5e-5, group_by_length=True),
            # SQuAD offline split (36 train articles of the dev file), windows of 256 tokens, 1,000 eval questions
            "squad": TaskBudget(max_steps=300, batch_size=16, max_length=256, doc_stride=96, lr=5e-5,
                                max_eval_examples=1000, group_by_length=True),
        },
        l0_constant_lambda=False,
        # lambda grids from a calibration at this budget (soft 100 -> 34% remaining, 1000 -> 0.9%;
        # L0 100 -> 47%, 1000 -> 3.9%), spaced so that neighbouring runs bracket 10%, 3% and 1%
        soft_lambdas=(100.0, 300.0, 1000.0, 3000.0), l0_lambdas=(300.0, 1000.0, 3000.0, 10000.0),
        soft_score_lr=0.1,
        notes=("a quick demo, not a result (most pruned runs collapse to the majority class at this budget). "
               "MiniLM-L6 on a 2-core CPU: ~200x fewer steps than the paper (300 instead of ~60k), so the "
               "soft-movement score learning rate is raised 10x (1e-2 -> 1e-1, L0's paper value) to let "
               "scores cross the threshold in time; weight lr 5e-5 (paper 3e-5) for the short run"),
    )


# The recipe of the minilm profile (docs/findings.md, the seed study): 3,400 steps of batch 64 (2.8 epochs
# of SST-2's 76,961 phrases); the first weight pruned after 1,000 steps (fewer collapsed at 10%), the
# cubic ramp over 2,000 steps (over 1,000 steps movement collapsed at 3% and 1%), 400 steps at the end.
RECIPE_STEPS, RECIPE_WARMUP, RECIPE_RAMP = 3400, 1000, 2000
RECIPE = TaskBudget(max_steps=RECIPE_STEPS, batch_size=64, max_length=64, lr=5e-5, bf16=True, stop_on_collapse=True,
                    sparsity_warmup_steps=RECIPE_WARMUP,
                    sparsity_cooldown_steps=RECIPE_STEPS - RECIPE_WARMUP - RECIPE_RAMP)
# SICK (the MNLI stand-in): the same steps and schedule with batch 32 (4,500 pairs: ~24 epochs); pairs
# are at most 61 tokens; scored on the 4,927-pair test split (dev's 500 pairs give +-2 points of noise)
RECIPE_SICK = dataclasses.replace(RECIPE, batch_size=32, eval_split="test")
# SQuAD (offline split): 192-token windows, stride 64, batch 16 (docs/performance.md: a 384-token step
# costs 3.4x as much); ~1.6 s per step on one core
RECIPE_SQUAD = dataclasses.replace(RECIPE, batch_size=16, max_length=192, doc_stride=64)


def _minilm() -> Profile:
    """The sound replication (the default profile): MiniLM-L6 on SST-2, SICK and SQuAD with the recipe
    under which the methods do not collapse (``RECIPE``)."""
    return Profile(
        name="minilm", model="minilm", tasks=("sst2", "sick", "squad"), all_tasks=("sst2", "sick", "squad"),
        budgets={"sst2": RECIPE, "sick": RECIPE_SICK, "squad": RECIPE_SQUAD},
        score_lr=1e-2, distill_options=(False,), with_global=("sick",),
        # SICK only: soft movement (score lr 1e-2, the paper's) and L0 (score lr 1e-1), both with lambda
        # ramped on the pruning schedule; grids from a pilot at this budget (docs/findings.md)
        # SQuAD: the pilots (SICK's lambdas next to 3%) kept far more (seed 0: soft movement at 3,000
        # 39.9%, L0 at 1,000 15.7%), so its grids go up: 10,000 / 30,000 and 3,000 / 10,000 are meant to
        # bracket 10% and 3% with the pilots (docs/findings.md); they kept 7.8% and 0.13% on SQuAD, so
        # 15,000 is added to land near 3% (~3% by SICK's slope of log(kept) on log(lambda), ~1.7% by SQuAD's)
        # SICK's 5,000 checks the interpolated 3% cell (3,000 kept 7.4%, 10,000 0.53%: ~2.4% predicted;
        # it kept 2.8-3.0% in seeds 0-2)
        soft_lambdas={"sick": (1000.0, 3000.0, 5000.0, 10000.0), "squad": (3000.0, 10000.0, 15000.0, 30000.0)},
        l0_lambdas={"sick": (100.0, 300.0, 1000.0, 3000.0), "squad": (1000.0, 3000.0, 10000.0)},
        l0_constant_lambda=False,
        seed_cells=(("sst2", "movement", 0.1), ("sst2", "movement", 0.03),
                    ("sick", "movement", 0.03), ("sick", "magnitude", 0.03),
                    ("sick", "movement", 0.1), ("sick", "magnitude", 0.1),
                    # the runs bracketing soft movement's 3% (3,000-5,000) and 1% (5,000-10,000)
                    ("sick", "soft_movement", (3000.0, 5000.0, 10000.0)),
                    ("squad", "movement", 0.03), ("squad", "magnitude", 0.03)),
        distill_cells=(("sick", "movement", 0.1), ("sick", "movement", 0.03), ("squad", "movement", 0.03),
                       # distilled soft movement keeps more at the same lambda (10,000: 5.15% vs 0.53%
                       # undistilled, seed 0), so its grid is shifted up: 3,000 and 10,000 bracket 10%,
                       # 10,000 and 20,000 are meant to bracket 3%
                       ("sick", "soft_movement", (3000.0, 10000.0, 20000.0)),
                       # SQuAD, by the same shift: undistilled 15,000 kept 2.06% and 30,000 0.13%, so
                       # distilled (2.4-10x more kept on SICK) they are meant to bracket 3%
                       ("squad", "soft_movement", (15000.0, 30000.0))),
        # "distillation helps" is a claim about a method: SICK's distilled movement 3% gets seeds 1-2
        distill_seed_cells=(("sick", "movement", 0.03),),
        # does the recipe's success hang on clipping the scores' gradients with the weights'? (weights
        # alone: clip="weights"; docs/findings.md, section 1)
        clip_cells=(("sick", "movement", 0.03),),
        # the paper's Figure 2 crossover: magnitude as good as movement while most weights remain
        crossover={"sick": (0.5, 0.3)},
        notes=("MiniLM-L6: all of SST-2 for 3,400 steps of 64 (2.8 epochs), SICK for 3,400 steps of 32; the first "
               "weight pruned after 1,000 steps, the cubic ramp over the next 2,000 (the seed study of "
               "docs/findings.md), bf16 autocast; ~50-60 min per SST-2 run, ~25-50 min per SICK run (~65 min "
               "distilled) and ~2 h per SQuAD run on one core of a 2-core CPU (two runs side by side); on SICK "
               "also soft movement at four lambdas and "
               "L0 at four (score lr 1e-2 and 1e-1, lambda ramped on the pruning schedule), and with "
               "distillation movement at 10 / 3% and soft movement's lambdas, global magnitude and movement (the "
               "per-layer figure), magnitude, movement and distilled movement at 3% and magnitude and movement "
               "at 10% for 3 seeds (soft movement's 3% and 1% brackets too); the encoder-zeroed control; on SQuAD "
               "magnitude and movement (3% for 3 seeds), soft movement at four lambdas and L0 at "
               "three, movement at 3% and soft movement at two lambdas with distillation"),
    )


def _gpu() -> Profile:
    return Profile(
        name="gpu", model="minilm", tasks=("sst2",), all_tasks=("sst2", "sick", "squad"),
        budgets={
            # SST-2: 2 epochs over all 76,961 training phrases (~4,810 steps of 32), the paper's lr
            # (length-grouped batches, L0 lambda ramped: the recipe its committed records were trained with)
            "sst2": TaskBudget(epochs=2, batch_size=32, max_length=64, lr=3e-5, group_by_length=True),
            # SICK: 4,500 pairs, 10 epochs (~1,410 steps)
            "sick": TaskBudget(epochs=10, batch_size=32, max_length=128, lr=3e-5, group_by_length=True),
            # SQuAD offline split: 8,001 questions, 4 epochs of 384-token windows (~2,100 steps of 16)
            "squad": TaskBudget(epochs=4, batch_size=16, max_length=384, doc_stride=128, lr=3e-5,
                                group_by_length=True),
        },
        l0_constant_lambda=False,
        # lambda grids scaled from the demo (formerly small) profile's calibration by the number of score updates
        # (16x more steps; soft movement back at the paper's score lr 1e-2): not yet calibrated
        soft_lambdas=(30.0, 100.0, 300.0, 1000.0), l0_lambdas=(20.0, 60.0, 200.0, 600.0),
        notes=("MiniLM-L6 with the paper's learning rates and ~16x the demo profile's steps: for one GPU "
               "(the SST-2 grid is ~36 runs of ~5k steps)"),
    )


def _paper() -> Profile:
    return Profile(
        name="paper", model="bert-base-uncased", tasks=("mnli", "qqp", "squad"), all_tasks=("mnli", "qqp", "squad"),
        budgets={
            # The authors' sheet (../shared/reference): embeddings frozen, lr 3e-5, warm-up in steps and the
            # sparsity schedule's warm-up / cool-down as multiples of it, here as fractions of all steps.
            # MNLI: batch 32, 6 epochs (~73.6k steps), seq 128, warm-up 12,000 (0.163), schedule 1x / 1x
            "mnli": TaskBudget(epochs=6, batch_size=32, max_length=128, lr=3e-5, lr_warmup=0.163,
                               sparsity_warmup=0.163, sparsity_cooldown=0.163),
            # QQP: batch 32, 10 epochs (~113.7k steps), warm-up 11,000 (0.097), schedule 2x / 3x
            "qqp": TaskBudget(epochs=10, batch_size=32, max_length=128, lr=3e-5, lr_warmup=0.097,
                              sparsity_warmup=0.194, sparsity_cooldown=0.29),
            # SQuAD: batch 16, 10 epochs (~55.4k steps), seq 384, warm-up 5,400 (0.097), schedule 1x / 2x
            "squad": TaskBudget(epochs=10, batch_size=16, max_length=384, doc_stride=128, lr=3e-5, lr_warmup=0.097,
                                sparsity_warmup=0.097, sparsity_cooldown=0.195),
        },
        soft_lambdas=(1.0, 10.0, 100.0, 400.0, 1000.0, 2300.0), l0_lambdas=(10.0, 50.0, 150.0, 300.0, 600.0),
        method_lr={("qqp", "movement"): 3e-6},  # the authors' sheet
        notes="the authors' recipe; needs GPUs and the Hugging Face hub",
    )


PROFILES = {"minilm": _minilm, "smoke": _smoke, "demo": _demo, "gpu": _gpu, "paper": _paper}
DEFAULT_PROFILE = "minilm"


def get_profile(name: str) -> Profile:
    """The profile called ``name`` (minilm, smoke, demo, gpu or paper)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return PROFILES[name]()
