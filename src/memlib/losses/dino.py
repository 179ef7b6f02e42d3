"""DINO's self-distillation loss (Caron et al. 2021): centred, sharpened teacher
targets and cross-entropy against the student over pairs of different views."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dino_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    center: torch.Tensor,
    n_views: int,
    student_temp: float = 0.1,
    teacher_temp: float = 0.04,
) -> torch.Tensor:
    """Cross-entropy between teacher and student outputs over all pairs of different views.

    The teacher's output is centred (minus ``center``, against collapse to one
    dimension) and sharpened (low ``teacher_temp``, against collapse to the
    uniform distribution); it is a target, so no gradient flows into it.

    Parameters
    ----------
    student
        Student head outputs (logits) of all views, view-major: (n_views·B, K).
    teacher
        Teacher head outputs of the global views only, view-major: (n_global·B, K),
        the global views being the first ``n_global`` of the student's.
    center
        (1, K) running mean of the teacher outputs.
    n_views
        Number of student views (2 global + local).
    student_temp, teacher_temp
        Softmax temperatures of student and teacher.

    Returns
    -------
    torch.Tensor
        Scalar: mean over the (teacher view, student view) pairs with different
        views and over the batch.
    """
    if student.shape[0] % n_views:
        raise ValueError(f"dino_loss: {student.shape[0]} student rows are not a multiple of n_views={n_views}")
    b = student.shape[0] // n_views
    if teacher.shape[0] % b or teacher.shape[0] // b > n_views:
        raise ValueError(f"dino_loss: {teacher.shape[0]} teacher rows do not fit batch {b} and n_views={n_views}")
    log_p_s = F.log_softmax(student.float() / student_temp, dim=-1).split(b)
    p_t = F.softmax((teacher.float() - center) / teacher_temp, dim=-1).detach().split(b)
    total, pairs = 0.0, 0
    for i, t in enumerate(p_t):
        for j, s in enumerate(log_p_s):
            if i == j:  # a view does not predict itself
                continue
            total = total + (-(t * s).sum(-1)).mean()
            pairs += 1
    return total / pairs
