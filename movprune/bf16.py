"""bf16 autocast on CPUs without bf16 hardware, at fp32 speed.

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` a matrix product rounds its operands to bf16,
multiplies and accumulates in fp32, and rounds the result to bf16. CPUs with ``avx512_bf16`` / AMX do
this in hardware. On a CPU without them (AVX2 only) PyTorch's bf16 kernels are slow: a MiniLM-L6
training step measured 14.7x slower than the same step in fp32 (docs/performance.md).

The product of two bf16 numbers (8-bit significands) fits exactly in an fp32 (24-bit significand), so
the same arithmetic can be done by fp32 kernels: round the operands to bf16, convert them back to fp32,
multiply with the fast fp32 kernel (fp32 accumulation), round the result to bf16.
:class:`EmulatedBf16Matmuls` does exactly that for the operations autocast sends to bf16 that carry
the cost (``linear``, ``matmul``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``); every other operation
keeps autocast's own policy (GELU and dropout still run on bf16 tensors, layer norm on fp32 ones).
Attention (``scaled_dot_product_attention``) is left to autocast: in training, with dropout, PyTorch's
CPU kernel already computes it in fp32 on the bf16-rounded inputs.

What differs from a bf16 kernel is the order of the fp32 additions inside each product, as between any
two bf16 kernels. Measured against PyTorch's own bf16 kernel on an AVX2 CPU (docs/performance.md;
tests/test_bf16.py checks it): one ``linear`` of MiniLM's FFN shape (64 x 384 by 384 x 1536) agrees to
a relative 2e-5 (99.99% of outputs bit-identical) and its gradients to 6e-5, where fp32 differs from
both by ~3e-3; through MiniLM-L6's six layers the rare one-ulp differences of bf16 outputs add up to
0.5% of the logits, less than the 0.7% by which fp32 logits differ from bf16 ones.

Training uses it automatically (``movprune.train``) when a run asks for bf16 on a CPU where
:func:`movprune.train.bf16_native` is False; records note it in ``versions.bf16_kernel``.
"""

from __future__ import annotations

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

# the matrix products that CPU autocast runs in bf16
_PRODUCTS = {
    torch.nn.functional.linear, torch.matmul, torch.mm, torch.bmm, torch.addmm, torch.baddbmm,
    torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.__rmatmul__, torch.Tensor.mm,
    torch.Tensor.bmm, torch.Tensor.addmm, torch.Tensor.baddbmm,
}

# what a record says about how its bf16 matrix products were computed
NATIVE = "bf16 kernels"
EMULATED = "fp32 kernels on bf16-rounded operands (movprune.bf16)"


def _to_bf16_values(x):
    """A floating tensor rounded to bf16 and held in fp32 (exactly representable); others unchanged."""
    if isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.bfloat16):
        return x.to(torch.bfloat16).to(torch.float32)
    return x


def _to_bf16(x):
    if isinstance(x, torch.Tensor) and x.dtype == torch.float32:
        return x.to(torch.bfloat16)
    return x


def _cpu_bf16_autocast() -> bool:
    return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


class EmulatedBf16Matmuls(TorchFunctionMode):
    """Inside this mode, while CPU bf16 autocast is on, matrix products run as fp32 kernels on
    bf16-rounded operands and return bf16, as autocast's bf16 kernels would (module docstring).
    Outside autocast (e.g. a distillation teacher run in fp32) nothing changes.

        with EmulatedBf16Matmuls(), torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()   # the backward products are fp32 kernels too, on the same rounded values
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _PRODUCTS or "out" in kwargs or not _cpu_bf16_autocast():  # out=: autocast's own
            return func(*args, **kwargs)
        args, kwargs = tree_map(_to_bf16_values, args), tree_map(_to_bf16_values, kwargs)
        with torch.autocast("cpu", enabled=False):
            out = func(*args, **kwargs)
        return tree_map(_to_bf16, out)
