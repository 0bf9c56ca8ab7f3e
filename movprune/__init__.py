"""movprune: Movement Pruning (Sanh, Wolf & Rush, NeurIPS 2020) for any Hugging Face encoder.

    import movprune
    pruner = movprune.sparsify(model, movprune.PruningConfig(method="movement", remaining=0.10))
    ...train, calling pruner.update(step, total_steps) and adding pruner.regularization()...
    movprune.bake(model)   # a plain model with exact zeros
"""

from .accounting import remaining_weights, sparsity_report
from .pruner import (METHODS, PruningConfig, Pruner, bake, default_target_modules, find_targets,
                     from_pretrained, get_pruner, is_sparsified, save_pretrained, sparsify)
from .schedule import CubicSchedule

__version__ = "0.1.0"

__all__ = [
    "METHODS", "CubicSchedule", "PruningConfig", "Pruner", "bake", "default_target_modules",
    "find_targets", "from_pretrained", "get_pruner", "is_sparsified", "remaining_weights",
    "save_pretrained", "sparsify", "sparsity_report",
]
