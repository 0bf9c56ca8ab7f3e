"""Masks: the parametrizations that turn a weight W into a pruned weight W' = W * M.

Each class here is registered with ``torch.nn.utils.parametrize`` on the ``weight`` of an
``nn.Linear``, so the model's own code is untouched: whenever the model reads ``layer.weight`` it
gets the masked weight. The original weight lives at ``layer.parametrizations.weight.original``
and the importance scores, when the method learns them, at
``layer.parametrizations.weight[0].scores``; both are ordinary parameters in ``state_dict``.

Methods (Sanh, Wolf & Rush 2020, section 3 and appendix):

* ``MagnitudeMask``     M = Top_v(|W|)                  (no scores)
* ``MovementMask``      M = Top_v(S), straight-through: dL/dS = (dL/dW') * W
* ``SoftMovementMask``  M = 1[sigmoid(S) > tau], straight-through, L1 penalty on sigmoid(S)
* ``HardConcreteMask``  L0 regularization (Louizos et al. 2018): stochastic gates at train time,
                        deterministic gates at eval time, expected-L0 penalty.

Top-v selection may be *local* (each matrix keeps v of its entries) or *global* (one threshold
over all targeted matrices). Both go through a :class:`TopKSelector`, which computes the masks of
all its members at once and caches them until the importances or v change, so a forward pass
costs one selection per optimizer step, not one per access.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

# --------------------------------------------------------------------------------------------
# Exact top-k selection without a full sort.


def kth_largest(x: torch.Tensor, k: int, sample_size: int | None = None) -> torch.Tensor:
    """The k-th largest value of a 1-D tensor (1 <= k <= numel), exactly.

    ``torch.kthvalue`` over millions of entries costs hundreds of milliseconds on a CPU. We first
    bracket the answer between two order statistics of a small random sample, count what lies
    above the bracket, and run ``kthvalue`` only on the few entries inside it. If the bracket
    misses (rare), we fall back to ``kthvalue`` on everything, so the result is always exact.
    """
    return _kth_largest_and_count(x, k, sample_size)[0]


def _kth_largest_and_count(x: torch.Tensor, k: int, sample_size: int | None = None) -> tuple[torch.Tensor, int]:
    """``(t, c)``: t the k-th largest value of ``x`` and c the number of entries >= t (c > k on ties).

    The count comes almost free from the bracket (entries above it + entries inside it >= t), so
    :func:`topk_mask` needs no extra pass over ``x`` to detect ties.
    """
    n = x.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")

    def everything():
        t = x.kthvalue(n - k + 1).values
        return t, int(torch.count_nonzero(x >= t))

    if n <= 16384:
        return everything()
    # sample size ~ n^(2/3) balances the cost of the sample's order statistics against the size
    # of the bracket (which shrinks as 1/sqrt(sample))
    s = sample_size or min(65536, max(2048, int(n ** (2.0 / 3.0))))
    gen = torch.Generator(device="cpu").manual_seed(n * 7919 + k)
    idx = torch.randint(n, (s,), generator=gen).to(x.device)
    sample = x[idx]
    q = 1.0 - k / n  # fraction of entries below the answer
    margin = 6.0 * math.sqrt(max(q * (1.0 - q), 1.0 / s) / s) + 2.0 / s
    lo_q, hi_q = q - margin, q + margin
    # sample order statistics (kthvalue: no sort of the sample); a bound past either end is open
    lo = sample.kthvalue(max(1, math.floor(lo_q * s))).values if lo_q > 0.0 else None
    hi = sample.kthvalue(min(s, math.ceil(hi_q * s) + 1)).values if hi_q < 1.0 else None
    if lo is None and hi is None:
        return everything()
    if hi is None:
        n_above, inside = 0, x[x >= lo]
    elif lo is None:
        n_above, inside = int(torch.count_nonzero(x > hi)), x[x <= hi]
    else:
        n_above, inside = int(torch.count_nonzero(x > hi)), x[(x >= lo) & (x <= hi)]
    need = k - n_above
    if need < 1 or need > inside.numel():
        return everything()
    t = inside.kthvalue(inside.numel() - need + 1).values
    return t, n_above + int(torch.count_nonzero(inside >= t))


def topk_mask(x: torch.Tensor, k: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Mask (same shape as ``x``) with exactly ``k`` ones at the largest values.

    On the CPU, ties at the threshold are broken by position (first entries win), so the count is
    exact even when many scores are equal (e.g. movement scores still at their initial value).
    On other devices (CUDA) the mask comes from :func:`topk_mask_by_indices`, which never waits
    for the device; the count is exact there too, ties are broken by ``torch.topk``. ``dtype``:
    ``torch.bool`` or a float type (written directly, without a conversion pass).
    """
    flat = x.reshape(-1)
    n = flat.numel()
    if k >= n:
        return torch.ones_like(x, dtype=dtype)
    if k <= 0:
        return torch.zeros_like(x, dtype=dtype)
    if flat.device.type != "cpu":
        return topk_mask_by_indices(flat, k, dtype).view_as(x)
    return topk_mask_by_bracket(flat, k, dtype).view_as(x)


def topk_mask_by_bracket(x: torch.Tensor, k: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Flat mask of the k largest entries of 1-D ``x`` (1 <= k < numel) from the sampled bracket of
    :func:`kth_largest`; ties at the threshold are broken by position (first entries win)."""
    n = x.numel()
    thr, n_ge = _kth_largest_and_count(x, k)
    mask = torch.empty(n, dtype=dtype, device=x.device)
    torch.ge(x, thr, out=mask)
    extra = n_ge - k
    if extra > 0:  # ties at the threshold: keep the first ones only
        ties = torch.nonzero(x == thr).squeeze(1)
        mask[ties[ties.numel() - extra:]] = 0
    return mask


def topk_mask_by_indices(x: torch.Tensor, k: int, dtype: torch.dtype = torch.bool) -> torch.Tensor:
    """Flat mask with ones at the indices of ``torch.topk(x, k)`` (1 <= k < numel, ``x`` 1-D).

    No value ever travels back to the host, so on a GPU the selection is queued like any other
    kernel instead of stalling the step (the bracket of :func:`kth_largest` reads counts back).
    On a CPU it is slower than :func:`topk_mask`'s bracket, which is why only GPUs use it.
    """
    mask = torch.zeros(x.numel(), dtype=dtype, device=x.device)
    mask[torch.topk(x, k, sorted=False).indices] = 1
    return mask


# --------------------------------------------------------------------------------------------
# Straight-through estimator.


class _StraightThrough(torch.autograd.Function):
    """W' = W * M with dL/dW = dL/dW' * M and dL/dS = dL/dW' * W (M treated as identity in S)."""

    @staticmethod
    def forward(ctx, weight, scores, mask):
        ctx.save_for_backward(weight, mask)
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        weight, mask = ctx.saved_tensors
        return grad * mask, grad * weight, None


def straight_through(weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Apply a binary ``mask`` to ``weight`` and route the gradient to ``scores`` straight through."""
    return _StraightThrough.apply(weight, scores, mask)


# --------------------------------------------------------------------------------------------
# Top-v masks (magnitude, movement) and their selector.


# Fused optimizers (torch's fused AdamW / SGD; "adamw_torch_fused" is the Hugging Face Trainer's
# default) update parameters without bumping their version counter, so the selectors' cache key
# also carries this count of optimizer steps, incremented by a global post-step hook.
_optimizer_steps = 0


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    global _optimizer_steps
    _optimizer_steps += 1


register_optimizer_step_post_hook(_count_optimizer_step)


class TopKSelector:
    """Computes the top-v masks of one or several :class:`TopKMask` members.

    One selector per matrix gives local selection; one selector shared by all matrices gives
    global selection (a single threshold over the concatenated importances). Masks are cached
    and recomputed only when an importance tensor was modified in place (optimizer step,
    ``load_state_dict``) or the target fraction changed.
    """

    def __init__(self):
        self.members: list[TopKMask] = []
        self._key = None

    def add(self, member: "TopKMask") -> None:
        self.members.append(member)
        self._key = None

    def _state_key(self):
        # versions and pointers only: reading ``remaining`` (a device tensor) here would make
        # every forward pass wait for the GPU
        parts = []
        for m in self.members:
            t, r = m.importance_source(), m.remaining
            parts.append((t.data_ptr(), t._version, id(r), r.data_ptr(), r._version))
        return _optimizer_steps, tuple(parts)

    def refresh(self) -> None:
        """Recompute every member's mask if anything it depends on changed."""
        key = self._state_key()
        if key == self._key:
            return
        with torch.no_grad():
            if len(self.members) == 1:
                m = self.members[0]
                imp = m.importance()
                k = round(m.remaining_value() * imp.numel())
                m._set_mask(topk_mask(imp, k, dtype=m.mask.dtype))
            else:
                imps = [m.importance().reshape(-1) for m in self.members]
                flat = torch.cat(imps)
                k = round(self.members[0].remaining_value() * flat.numel())
                mask = topk_mask(flat, k, dtype=self.members[0].mask.dtype)
                for m, part in zip(self.members, torch.split(mask, [i.numel() for i in imps])):
                    m._set_mask(part.view_as(m.mask))
        self._key = key


class TopKMask(nn.Module):
    """Base of the top-v masks. ``remaining`` (the current v) is a buffer: it is saved with the model."""

    def __init__(self, weight: torch.Tensor, selector: TopKSelector):
        super().__init__()
        self.register_buffer("remaining", torch.tensor(1.0))
        self.register_buffer("mask", torch.ones_like(weight), persistent=False)
        # a plain attribute, not a submodule: the selector may be shared by many masks
        object.__setattr__(self, "selector", selector)
        object.__setattr__(self, "_weight_ref", None)
        selector.add(self)

    def _apply(self, fn, recurse=True):
        # ``model.to(torch.bfloat16)`` would round v (0.03 -> 0.030029) and change the kept
        # count: ``remaining`` keeps its dtype and follows only the device.
        remaining = self.remaining
        super()._apply(fn, recurse)
        self.remaining = remaining.to(self.remaining.device)
        return self

    def set_remaining(self, v: float) -> None:
        """Set the kept fraction v (what the schedule calls every step), remembering it on the
        host so that the selection does not have to read it back from the device."""
        self.remaining.fill_(v)
        # the value as the buffer holds it (float32 rounding included), so k is the same whether
        # it comes from here or from reading the buffer after load_state_dict
        held = torch.tensor(v, dtype=self.remaining.dtype).item()
        object.__setattr__(self, "_remaining_host", (id(self.remaining), self.remaining._version, held))

    def remaining_value(self) -> float:
        """v as a Python float (read from the buffer only if it changed behind our back, e.g.
        by ``load_state_dict``)."""
        r = self.remaining
        cached = getattr(self, "_remaining_host", None)
        if cached is None or cached[:2] != (id(r), r._version):
            cached = (id(r), r._version, float(r))
            object.__setattr__(self, "_remaining_host", cached)
        return cached[2]

    def _set_mask(self, mask: torch.Tensor) -> None:
        self.mask = mask.to(self.mask.dtype)  # no copy when the selector already wrote this dtype

    def importance_source(self) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def importance(self) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError

    def current_mask(self) -> torch.Tensor:
        """The binary mask the next forward pass will use."""
        self.selector.refresh()
        return self.mask


class MagnitudeMask(TopKMask):
    """Magnitude pruning: keep the v largest |W|. No scores; pruned weights get no gradient."""

    def bind(self, original: torch.Tensor) -> None:
        """Point at the unmasked weight (the pruner calls this right after registration)."""
        object.__setattr__(self, "_weight_ref", original)

    def importance_source(self):
        return self._weight_ref

    def importance(self):
        return self._weight_ref.abs()

    def forward(self, weight):
        return weight * self.current_mask()


class MovementMask(TopKMask):
    """Movement pruning: keep the v largest learned scores S (initialised to ``score_init``)."""

    def __init__(self, weight, selector, score_init: float = 0.0):
        super().__init__(weight, selector)
        self.scores = nn.Parameter(torch.full_like(weight, score_init))

    def importance_source(self):
        return self.scores

    def importance(self):
        return self.scores

    def forward(self, weight):
        return straight_through(weight, self.scores, self.current_mask())


# --------------------------------------------------------------------------------------------
# Threshold masks: soft movement and L0.


class SoftMovementMask(nn.Module):
    """Soft movement pruning: M = 1[sigmoid(S) > tau], straight-through to S.

    ``threshold`` (tau) is a buffer that the schedule moves from 0 to its final value; it is saved
    with the model, so evaluation after loading uses exactly the training-time threshold.
    """

    def __init__(self, weight: torch.Tensor, score_init: float = 0.0):
        super().__init__()
        self.scores = nn.Parameter(torch.full_like(weight, score_init))
        self.register_buffer("threshold", torch.tensor(0.0))

    def current_mask(self) -> torch.Tensor:
        with torch.no_grad():
            return (torch.sigmoid(self.scores) > self.threshold).to(self.scores.dtype)

    def forward(self, weight):
        return straight_through(weight, self.scores, self.current_mask())

    def penalty(self) -> torch.Tensor:
        """Mean sigmoid(S) of this matrix (its L1 penalty, before lambda)."""
        return torch.sigmoid(self.scores).mean()


class HardConcreteMask(nn.Module):
    """L0 regularization with hard-concrete gates (Louizos, Welling & Kingma 2018).

    Train: u ~ U(0, 1), s = sigmoid((log u - log(1 - u) + log_alpha) / beta),
    z = clamp(s * (r - l) + l, 0, 1), W' = W * z (gradients flow through z, no straight-through).
    Eval: z = clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1), deterministic; entries with
    sigmoid(log_alpha) <= -l / (r - l) are exactly zero. ``scores`` holds log_alpha.
    """

    def __init__(self, weight: torch.Tensor, score_init: float = 2.197, left: float = -0.1,
                 right: float = 1.1, beta: float = 2.0 / 3.0):
        super().__init__()
        self.scores = nn.Parameter(torch.full_like(weight, score_init))
        self.left, self.right, self.beta = left, right, beta

    def gates(self) -> torch.Tensor:
        """The gate values z used by the next forward pass (stochastic in training mode)."""
        if self.training:
            u = torch.rand_like(self.scores).clamp_(1e-6, 1.0 - 1e-6)
            s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + self.scores) / self.beta)
        else:
            s = torch.sigmoid(self.scores)
        return (s * (self.right - self.left) + self.left).clamp(0.0, 1.0)

    def current_mask(self) -> torch.Tensor:
        with torch.no_grad():
            return self.gates()

    def forward(self, weight):
        return weight * self.gates()

    def penalty(self) -> torch.Tensor:
        """Expected fraction of non-zero gates of this matrix (expected L0 / numel)."""
        return torch.sigmoid(self.scores - self.beta * math.log(-self.left / self.right)).mean()


MASK_TYPES = (TopKMask, SoftMovementMask, HardConcreteMask)
