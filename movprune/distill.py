"""Logit distillation (Hinton et al. 2015), as used in the paper's second results table.

    loss = alpha_distil * KL(softmax(t / T) || softmax(s / T)) * T^2 + alpha_ce * task_loss

The paper uses alpha_distil = 0.9, alpha_ce = 0.1, T = 2 and a dense fine-tuned BERT-base as the
teacher. For extractive QA the KL term is averaged over the start and end logits; for a
regression head (STS-B) it is the squared error between the two predictions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """KL(teacher || student) on temperature-softened distributions, times T^2, batch mean."""
    if student_logits.shape[-1] == 1:  # regression head
        return F.mse_loss(student_logits, teacher_logits)
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1),
                    reduction="batchmean") * t * t


def distillation_loss(student_outputs, teacher_outputs, task_loss: torch.Tensor, alpha_distil: float = 0.9,
                      alpha_ce: float = 0.1, temperature: float = 2.0) -> torch.Tensor:
    """Combine the task loss with the distillation term for classification or QA outputs."""
    if hasattr(student_outputs, "start_logits") and getattr(student_outputs, "start_logits", None) is not None:
        kd = 0.5 * (kd_loss(student_outputs.start_logits, teacher_outputs.start_logits, temperature)
                    + kd_loss(student_outputs.end_logits, teacher_outputs.end_logits, temperature))
    else:
        kd = kd_loss(student_outputs.logits, teacher_outputs.logits, temperature)
    return alpha_distil * kd + alpha_ce * task_loss
