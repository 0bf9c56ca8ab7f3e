"""The paper's cubic sparsity schedule (Zhu & Gupta 2018, as used by Sanh et al. 2020).

Training is split in three phases, measured in optimizer steps:

    [0, warmup)                       no pruning yet       progress = 0
    [warmup, total - cooldown)        cubic ramp           progress = 1 - (1 - x)^3
    [total - cooldown, total]         final value          progress = 1

where ``x`` goes linearly from 0 to 1 across the ramp. Every scheduled quantity is
``initial + (final - initial) * progress``: the remaining fraction v goes 1 -> v_final for the
top-k methods, the threshold tau goes 0 -> tau_final for soft movement, and the
regularization weight lambda goes 0 -> lambda_final (soft movement; L0 keeps lambda constant by
default, as the authors' runs did).

Warm-up and cool-down are fractions of the total steps by default (a config stays valid when the
step count is scaled) or absolute optimizer steps (``warmup_steps`` / ``cooldown_steps``): how many
updates the scores get before the first weight is pruned is what decides whether movement pruning
survives a short budget (docs/findings.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class CubicSchedule:
    """Cubic ramp with a warm-up and a cool-down, as fractions of the total steps or in steps.

    The paper expresses both as multiples of the learning-rate warm-up (e.g. MNLI: 1x / 1x of
    12,000 steps out of ~73,600); fractions keep a config valid when the step count is scaled,
    ``warmup_steps`` / ``cooldown_steps`` fix them in optimizer steps whatever the total.
    """

    warmup: float = 0.1
    cooldown: float = 0.2
    warmup_steps: Optional[int] = None    # absolute steps; overrides ``warmup`` when given
    cooldown_steps: Optional[int] = None  # absolute steps; overrides ``cooldown`` when given

    def __post_init__(self):
        for name in ("warmup_steps", "cooldown_steps"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"schedule {name} must be an integer >= 0, got {value!r}")
        if not (0.0 <= self.warmup < 1.0 and 0.0 <= self.cooldown < 1.0):
            raise ValueError(f"schedule warmup/cooldown must be fractions in [0, 1), got {self.warmup}/{self.cooldown}")
        if self.warmup + self.cooldown >= 1.0:
            raise ValueError(
                f"schedule warmup + cooldown must leave room for the ramp (< 1), got {self.warmup} + {self.cooldown}"
            )

    def progress(self, step: int, total_steps: int) -> float:
        """Fraction of the way from the initial to the final value at ``step`` (0 <= p <= 1)."""
        if total_steps <= 0:
            raise ValueError(f"total_steps must be positive, got {total_steps}")
        start, end = self.bounds(total_steps)
        if step <= start:
            return 0.0
        if step >= end:
            return 1.0
        x = (step - start) / (end - start)
        return 1.0 - (1.0 - x) ** 3

    def bounds(self, total_steps: int) -> tuple[float, float]:
        """(first step of the ramp, first step at the final value) for a run of ``total_steps``."""
        start = self.warmup_steps if self.warmup_steps is not None else self.warmup * total_steps
        cool = self.cooldown_steps if self.cooldown_steps is not None else self.cooldown * total_steps
        if start + cool >= total_steps:
            raise ValueError(f"schedule warmup ({start:g} steps) + cooldown ({cool:g} steps) must leave room for "
                             f"the ramp in {total_steps} steps")
        return start, total_steps - cool

    def value(self, step: int, total_steps: int, initial: float, final: float) -> float:
        """The scheduled value at ``step``: ``initial`` during warm-up, ``final`` from the cool-down on."""
        return initial + (final - initial) * self.progress(step, total_steps)
