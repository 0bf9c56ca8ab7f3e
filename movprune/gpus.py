"""One run per GPU on one machine, without Ray: the local executor's worker processes, each pinned to a GPU.

``python -m movprune batch`` on a machine with GPUs runs as many runs at once as there are GPUs
(``--jobs`` says otherwise): every worker process sees one GPU (``CUDA_VISIBLE_DEVICES``), given out
round-robin, so ``--jobs 8`` on 4 GPUs puts two runs on each.
"""

from __future__ import annotations

import os
from typing import Optional

_PINNED: Optional[str] = None  # the GPU this worker process was given (None: not a pinned worker)


def visible_gpus() -> list:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them: that variable's entries when it
    is set, else ``0 .. n-1`` for the n GPUs torch sees (none on a machine without CUDA)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def device_slots(gpus: list, jobs: int) -> list:
    """The GPU of each of ``jobs`` worker processes: ``gpus`` round-robin."""
    return [gpus[i % len(gpus)] for i in range(jobs)] if gpus else []


def pin_device(slots) -> None:
    """Worker-process initializer: take one GPU from the queue ``slots`` and make it the only one this
    process sees (before CUDA starts in it)."""
    global _PINNED
    _PINNED = slots.get()
    os.environ["CUDA_VISIBLE_DEVICES"] = _PINNED


def pinned_gpu() -> Optional[str]:
    """The GPU :func:`pin_device` gave this process, or None."""
    return _PINNED


def process_pool(jobs: int, gpus: Optional[list] = None):
    """A pool of ``jobs`` fresh (spawned) worker processes; with ``gpus``, each pinned to one of them
    (:func:`device_slots`)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    context = mp.get_context("spawn")
    if not gpus:
        return ProcessPoolExecutor(jobs, mp_context=context)
    slots = context.Queue()
    for gpu in device_slots(gpus, jobs):
        slots.put(gpu)
    return ProcessPoolExecutor(jobs, mp_context=context, initializer=pin_device, initargs=(slots,))
