"""When a run collapsed: its training loss settled at the loss of a model that predicts a constant.

A classifier that collapsed predicts the label prior, whose cross-entropy is the entropy of the
training labels (:func:`constant_loss`); a collapsed extractive-QA model gives every token the same
logits, a loss of ln(window length). :func:`collapse_step` finds where a logged loss curve reached that
level for good; ``--stop-on-collapse`` (:class:`movprune.trainer.CollapseStopCallback`) ends such a run.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

# a classification run counts as collapsed in training once its loss is within 3% of the loss of the
# best constant prediction, the entropy of the training labels (SST-2: 0.686 = 0.99 ln 2; SICK's
# 56/29/15 split: 0.98 = 0.89 ln 3, so ln 3 itself would never be reached)
COLLAPSE_FRACTION = 0.97


def constant_loss(labels, num_labels: int) -> float:
    """Cross-entropy (nats) of always predicting the label distribution of ``labels``: the training
    loss a collapsed classifier settles at."""
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=num_labels).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())

def collapse_ceiling(spec, train_ds) -> Optional[float]:
    """The training loss a collapsed model settles at, or None where there is no such level (regression).

    Classification: :func:`constant_loss` of the training labels. Extractive QA: a collapsed encoder
    maps every token to the same vector, so the start and end logits are equal over the window and
    the loss is ln(window length): the mean of that over the training windows (padding in a batch
    only raises it)."""
    if spec.kind == "classification":
        return constant_loss(train_ds["labels"], spec.num_labels)
    if spec.kind == "qa":
        return float(np.mean([math.log(len(ids)) for ids in train_ds["input_ids"]]))
    return None


def collapse_step(loss_curve, level: float, after: float = 0.0) -> Optional[int]:
    """First logged step after ``after`` from which the training loss stayed within 3% of ``level``
    (the loss of a collapsed model, :func:`collapse_ceiling`) to the end of the curve: a run that
    ended predicting a constant. None if it never did."""
    ceiling = COLLAPSE_FRACTION * level
    found = None
    for step, loss in loss_curve:
        if step <= after:
            continue
        if loss >= ceiling:
            found = step if found is None else found
        else:
            found = None
    return found
