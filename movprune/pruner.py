"""The pruner: attach masks to any Hugging Face encoder, step the schedule, bake the result.

    config = PruningConfig(method="movement", remaining=0.10, scope="global")
    pruner = sparsify(model, config)          # masks on the encoder's nn.Linear weights
    for step in range(total_steps):
        pruner.update(step, total_steps)      # cubic schedule: v, tau, lambda
        loss = task_loss + pruner.regularization()
        ...
    bake(model)                               # plain model, pruned weights are exact zeros

Targets are chosen by module name (regular expressions matched with ``re.search`` against the
full module name, like peft's ``target_modules``), with a default per architecture family.
The pruning config is written into ``model.config.movprune`` and every scheduled value
(v, tau) lives in a buffer of its mask, so :func:`save_pretrained` / :func:`from_pretrained`
restore a model that evaluates exactly as it did when saved, with no extra arguments.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import nn
from torch.nn.utils import parametrize

from .masks import (MASK_TYPES, HardConcreteMask, MagnitudeMask, MovementMask, SoftMovementMask,
                    TopKMask, TopKSelector)
from .schedule import CubicSchedule

METHODS = ("dense", "magnitude", "movement", "soft_movement", "l0")
TOPK_METHODS = ("magnitude", "movement")
PENALTY_METHODS = ("soft_movement", "l0")
SCOPES = ("local", "global")

# The six linear maps of a transformer block, per architecture family (model_type).
_BERT_LIKE = r"encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)$"
DEFAULT_TARGETS: dict[str, list[str]] = {
    **{t: [_BERT_LIKE] for t in ("bert", "roberta", "xlm-roberta", "electra", "camembert", "ernie")},
    "distilbert": [r"transformer\.layer\.\d+\.(attention\.(q_lin|k_lin|v_lin|out_lin)|ffn\.(lin1|lin2))$"],
    "mpnet": [r"encoder\.layer\.\d+\.(attention\.attn\.(q|k|v|o)|intermediate\.dense|output\.dense)$"],
}
DEFAULT_SCORE_INIT = {"movement": 0.0, "soft_movement": 0.0, "l0": 2.197}


@dataclass
class PruningConfig:
    """What to prune and how. Serialisable: ``PruningConfig(**config.to_dict())`` round-trips.

    Args:
        method: ``dense`` | ``magnitude`` | ``movement`` | ``soft_movement`` | ``l0``.
        remaining: final fraction v of targeted weights kept (top-k methods), in (0, 1].
        scope: ``local`` (each matrix keeps v) or ``global`` (one threshold over all targets);
            top-k methods only.
        final_lambda: final regularization weight (``soft_movement``, ``l0``), >= 0.
        final_threshold: final tau on sigmoid(S) for ``soft_movement`` (paper: 0.1), in [0, 1).
        warmup / cooldown: fractions of training before the ramp starts and after it ends.
        warmup_steps / cooldown_steps: the same in optimizer steps (override the fractions).
        constant_lambda: keep lambda at ``final_lambda`` from step 0 instead of ramping it with the
            cubic schedule. Default per method, as in the authors' runs: L0 constant (their
            threshold stays 1), soft movement ramped (lambda follows tau 0 -> ``final_threshold``).
        target_modules: regexes over module names; default per ``model.config.model_type``.
        score_init: initial score value (movement 0, soft movement 0, L0 2.197 = logit(0.9)).
        l0_left / l0_right / l0_beta: hard-concrete stretch interval and temperature.
    """

    method: str = "movement"
    remaining: Optional[float] = None
    scope: str = "local"
    final_lambda: Optional[float] = None
    final_threshold: float = 0.1
    warmup: float = 0.1
    cooldown: float = 0.2
    warmup_steps: Optional[int] = None
    cooldown_steps: Optional[int] = None
    constant_lambda: Optional[bool] = None
    target_modules: Optional[list] = None
    score_init: Optional[float] = None
    l0_left: float = -0.1
    l0_right: float = 1.1
    l0_beta: float = 2.0 / 3.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown pruning method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.scope not in SCOPES:
            raise ValueError(f"unknown scope {self.scope!r}; choose 'local' or 'global'")
        if self.method in TOPK_METHODS:
            if self.remaining is None:
                raise ValueError(f"method {self.method!r} needs remaining=v (fraction of weights kept), e.g. 0.10")
            if not isinstance(self.remaining, (int, float)) or not (0.0 < self.remaining <= 1.0):
                raise ValueError(f"remaining must be in (0, 1], got {self.remaining!r}")
            if self.final_lambda is not None:
                raise ValueError(f"method {self.method!r} takes remaining=, not final_lambda=")
        elif self.method in PENALTY_METHODS:
            if self.remaining is not None:
                raise ValueError(f"method {self.method!r} takes final_lambda= (it has no exact remaining fraction)")
            if self.final_lambda is None:
                raise ValueError(f"method {self.method!r} needs final_lambda (regularization weight), e.g. 100")
            if not isinstance(self.final_lambda, (int, float)) or self.final_lambda < 0 or self.final_lambda != self.final_lambda:
                raise ValueError(f"final_lambda must be a number >= 0, got {self.final_lambda!r}")
            if self.scope != "local":
                raise ValueError(f"scope applies to top-k methods only; {self.method!r} thresholds every matrix alike")
        elif self.remaining not in (None, 1.0) or self.final_lambda is not None:
            raise ValueError("method 'dense' takes neither remaining nor final_lambda")
        if not (0.0 <= self.final_threshold < 1.0):
            raise ValueError(f"final_threshold must be in [0, 1), got {self.final_threshold!r}")
        if self.target_modules is not None:
            if isinstance(self.target_modules, str):
                self.target_modules = [self.target_modules]
            self.target_modules = list(self.target_modules)
            for pattern in self.target_modules:
                try:
                    re.compile(pattern)
                except re.error as e:
                    raise ValueError(f"target_modules pattern {pattern!r} is not a valid regex: {e}") from None
        if not (self.l0_left < 0.0 and self.l0_right > 1.0 and self.l0_beta > 0):
            raise ValueError("hard-concrete needs l0_left < 0, l0_right > 1 and l0_beta > 0")
        if self.constant_lambda is None:
            self.constant_lambda = self.method == "l0"
        self.schedule  # validates warmup / cooldown

    @property
    def schedule(self) -> CubicSchedule:
        return CubicSchedule(self.warmup, self.cooldown, self.warmup_steps, self.cooldown_steps)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def target_summary(self) -> str:
        """A short human label: 'movement v=0.10 global', 'soft_movement lambda=200'."""
        if self.method in TOPK_METHODS:
            return f"{self.method} v={self.remaining:g} {self.scope}"
        if self.method in PENALTY_METHODS:
            return f"{self.method} lambda={self.final_lambda:g}"
        return "dense"


# --------------------------------------------------------------------------------------------
# Target selection


def default_target_modules(model: nn.Module) -> list[str]:
    """The default target patterns for ``model`` (by ``model.config.model_type``)."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in DEFAULT_TARGETS:
        raise ValueError(
            f"no default target modules for model_type {model_type!r}; pass target_modules=[regex, ...] "
            f"(known: {', '.join(sorted(DEFAULT_TARGETS))})"
        )
    return DEFAULT_TARGETS[model_type]


def find_targets(model: nn.Module, target_modules: Optional[list] = None) -> dict[str, nn.Linear]:
    """``{name: module}`` for every ``nn.Linear`` whose name matches one of the patterns."""
    patterns = target_modules or default_target_modules(model)
    compiled = [re.compile(p) for p in patterns]
    found = {name: m for name, m in model.named_modules()
             if isinstance(m, nn.Linear) and any(c.search(name) for c in compiled)}
    if not found:
        raise ValueError(f"target_modules {patterns} match no nn.Linear module of {type(model).__name__}")
    return found


def _masks(model: nn.Module) -> dict[str, nn.Module]:
    """``{module name: mask}`` for every masked linear layer in the model."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, MASK_TYPES):
                    out[name] = p
    return out


def is_sparsified(model: nn.Module) -> bool:
    """True when ``sparsify`` attached masks (or a dense pruner) to ``model``."""
    return bool(_masks(model)) or getattr(model, "_movprune_pruner", None) is not None


# --------------------------------------------------------------------------------------------
# The pruner


class Pruner:
    """Owns the masks attached by :func:`sparsify`; steps the schedule and computes the penalty."""

    def __init__(self, model: nn.Module, config: PruningConfig, targets: dict[str, nn.Linear]):
        self.model = model
        self.config = config
        self.target_names = list(targets)
        self.lambda_ = 0.0
        self.step = 0
        self.total_steps = None

    @property
    def masks(self) -> dict[str, nn.Module]:
        """``{module name: mask module}`` (empty for ``dense``)."""
        return _masks(self.model)

    def score_parameters(self) -> list[nn.Parameter]:
        """The learned scores (movement, soft movement, L0): they get their own learning rate."""
        return [m.scores for m in self.masks.values() if hasattr(m, "scores")]

    def update(self, step: int, total_steps: int) -> dict:
        """Set v / tau / lambda for ``step`` of ``total_steps``. Returns the values set."""
        cfg = self.config
        progress = cfg.schedule.progress(step, total_steps)
        self.step, self.total_steps = step, total_steps
        values = {"progress": progress}
        with torch.no_grad():
            if cfg.method in TOPK_METHODS:
                v = 1.0 + (cfg.remaining - 1.0) * progress
                for m in self.masks.values():
                    m.set_remaining(v)
                values["remaining"] = v
            elif cfg.method in PENALTY_METHODS:
                self.lambda_ = cfg.final_lambda * (1.0 if cfg.constant_lambda else progress)
                values["lambda"] = self.lambda_
                if cfg.method == "soft_movement":
                    tau = cfg.final_threshold * progress
                    for m in self.masks.values():
                        m.threshold.fill_(tau)
                    values["threshold"] = tau
        return values

    def regularization(self) -> torch.Tensor:
        """lambda * mean over matrices of each matrix's penalty; a zero tensor when there is none."""
        masks = [m for m in self.masks.values() if hasattr(m, "penalty")]
        if not masks or self.config.method not in PENALTY_METHODS:
            return torch.zeros(())
        penalty = torch.stack([m.penalty() for m in masks]).mean()
        return self.lambda_ * penalty


def sparsify(model: nn.Module, config: PruningConfig) -> Pruner:
    """Attach pruning masks to ``model``'s targeted linear weights and return their :class:`Pruner`.

    Works on any ``nn.Module`` whose linear layers can be named by regex; for Hugging Face models
    the default targets come from ``model.config.model_type``. Raises ``ValueError`` if the
    model is already sparsified or no module matches.
    """
    if not isinstance(config, PruningConfig):
        raise ValueError(f"config must be a PruningConfig, got {type(config).__name__}")
    if is_sparsified(model):
        raise ValueError("model is already sparsified; bake() it or start from a fresh model")
    targets = find_targets(model, config.target_modules)
    pruner = Pruner(model, config, targets)
    score_init = config.score_init if config.score_init is not None else DEFAULT_SCORE_INIT.get(config.method, 0.0)
    shared = TopKSelector() if config.scope == "global" else None
    for name, module in targets.items():
        w = module.weight
        if config.method == "dense":
            continue
        if config.method == "magnitude":
            mask = MagnitudeMask(w, shared or TopKSelector())
        elif config.method == "movement":
            mask = MovementMask(w, shared or TopKSelector(), score_init)
        elif config.method == "soft_movement":
            mask = SoftMovementMask(w, score_init)
        else:
            mask = HardConcreteMask(w, score_init, config.l0_left, config.l0_right, config.l0_beta)
        parametrize.register_parametrization(module, "weight", mask, unsafe=True)
        if isinstance(mask, MagnitudeMask):
            mask.bind(module.parametrizations.weight.original)
    object.__setattr__(model, "_movprune_pruner", pruner)
    if hasattr(model, "config"):
        model.config.movprune = config.to_dict()
    return pruner


def get_pruner(model: nn.Module) -> Pruner:
    """The pruner :func:`sparsify` attached to ``model``."""
    pruner = getattr(model, "_movprune_pruner", None)
    if pruner is None:
        raise ValueError("model has no movprune pruner; call movprune.sparsify(model, config) first")
    return pruner


def _own_class(module: nn.Module) -> None:
    """Give a parametrized module a generated class of its own before its parametrization is removed.

    ``parametrize`` swaps the module's class for a generated ``Parametrized<Cls>`` holding the
    ``weight`` property, and removal deletes that property from the class. ``copy.deepcopy`` shares
    the generated class between copy and original, so baking a copy would strip the original's
    ``weight`` (and baking the original would break the copy).
    """
    cls = module.__class__
    module.__class__ = type(cls.__name__, cls.__bases__,
                            {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")})


def bake(model: nn.Module) -> nn.Module:
    """Fold every mask into its weight and remove the parametrizations: a plain model is left.

    Masks are evaluated in eval mode (deterministic L0 gates); pruned entries become exact zeros.
    The pruning config stays in ``model.config.movprune_baked`` for the record.
    """
    masks = _masks(model)
    if not masks and getattr(model, "_movprune_pruner", None) is None:
        raise ValueError("model has no movprune masks to bake; call movprune.sparsify(model, config) first")
    was_training = model.training
    model.eval()
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name in masks:
            _own_class(modules[name])
            parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
    model.train(was_training)
    if hasattr(model, "_movprune_pruner"):
        object.__delattr__(model, "_movprune_pruner")
    if hasattr(model, "config") and hasattr(model.config, "movprune"):
        model.config.movprune_baked = model.config.movprune
        del model.config.movprune
    return model


# --------------------------------------------------------------------------------------------
# Save / load a masked model (scores, thresholds and config included)

WEIGHTS_NAME = "movprune_model.safetensors"


def save_pretrained(model: nn.Module, path: str, tokenizer=None) -> None:
    """Save a (masked or plain) Hugging Face model with everything needed to evaluate it."""
    from safetensors.torch import save_model

    os.makedirs(path, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # the class that from_pretrained must rebuild
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    if dtype is not None:  # the dtype from_pretrained rebuilds it in (a model cast with .double() stays float64)
        model.config.dtype = dtype
    model.config.save_pretrained(path)
    save_model(model, os.path.join(path, WEIGHTS_NAME))
    if tokenizer is not None:
        tokenizer.save_pretrained(path)


def from_pretrained(path: str, model_class=None) -> nn.Module:
    """Load a model written by :func:`save_pretrained`: masks re-attached, same logits as saved.

    ``model_class`` defaults to the class named in ``config.architectures``.
    """
    import transformers
    from safetensors.torch import load_model

    weights = os.path.join(path, WEIGHTS_NAME)
    if not os.path.isfile(weights):
        raise ValueError(f"{path} has no {WEIGHTS_NAME}; it was not written by movprune.save_pretrained")
    config = transformers.AutoConfig.from_pretrained(path)
    if model_class is None:
        arch = (getattr(config, "architectures", None) or [None])[0]
        model_class = getattr(transformers, arch, None) if arch else None
        if model_class is None:
            raise ValueError(f"cannot tell the model class of {path} (config.architectures={arch!r}); pass model_class=")
    model = model_class.from_config(config) if hasattr(model_class, "from_config") else model_class._from_config(config)
    pruning = getattr(config, "movprune", None)
    if pruning:
        sparsify(model, PruningConfig(**pruning))
    load_model(model, weights, strict=True)
    model.eval()
    return model
