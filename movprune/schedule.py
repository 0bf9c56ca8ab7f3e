"""The paper's cubic sparsity schedule (Zhu & Gupta 2018, as used by Sanh et al. 2020).

Training is split in three phases, measured in optimizer steps:

    [0, warmup)                       no pruning yet       progress = 0
    [warmup, total - cooldown)        cubic ramp           progress = 1 - (1 - x)^3
    [total - cooldown, total]         final value          progress = 1

where ``x`` goes linearly from 0 to 1 across the ramp. Every scheduled quantity is
``initial + (final - initial) * progress``: the remaining fraction v goes 1 -> v_final for the
top-k methods, the threshold tau goes 0 -> tau_final for soft movement, and the
regularization weight lambda goes 0 -> lambda_final (soft movement and L0).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CubicSchedule:
    """Cubic ramp with a warm-up and a cool-down, both given as fractions of the total steps.

    The paper expresses both as multiples of the learning-rate warm-up (e.g. MNLI: 1x / 1x of
    12,000 steps out of ~73,600); fractions keep a config valid when the step count is scaled.
    """

    warmup: float = 0.1
    cooldown: float = 0.2

    def __post_init__(self):
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
        start = self.warmup * total_steps
        end = total_steps - self.cooldown * total_steps
        if step <= start:
            return 0.0
        if step >= end:
            return 1.0
        x = (step - start) / (end - start)
        return 1.0 - (1.0 - x) ** 3

    def value(self, step: int, total_steps: int, initial: float, final: float) -> float:
        """The scheduled value at ``step``: ``initial`` during warm-up, ``final`` from the cool-down on."""
        return initial + (final - initial) * self.progress(step, total_steps)
