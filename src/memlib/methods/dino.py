"""DINO (Caron et al. 2021): self-distillation with no labels.

A student and a teacher (the exponential moving average of the student) see
multi-crop views; the student matches the teacher's centred and sharpened
output distribution on views other than its own.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..data.augment import MultiCrop
from ..losses.dino import dino_loss
from ..models.vit import ViTEncoder
from . import register
from .base import SSLMethod


class DINOHead(nn.Module):
    """DINO's projection head: 3-layer MLP with GELU → L2-normalised bottleneck →
    linear layer with unit-norm weight rows (DINO's weight-normalised last layer
    with its gain frozen at 1) to ``out_dim`` prototypes.

    Parameters
    ----------
    in_dim
        Input width (the encoder's pooled dimension).
    out_dim
        Number of output dimensions (DINO: 65536; smaller suits small data).
    hidden_dim, bottleneck_dim
        MLP widths (DINO: 2048 and 256).
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, hidden_dim: int = 512, bottleneck_dim: int = 128):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        self.last = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last, dim=-1))


class _Branch(nn.Module):
    """Encoder + head, the unit the teacher copies."""

    def __init__(self, encoder, head):
        super().__init__()
        self.encoder, self.head = encoder, head

    def forward(self, x):
        return self.head(self.encoder.pooled(x))


@register("dino")
class DINO(SSLMethod):
    """DINO with multi-crop, for ResNet and ViT encoders.

    The teacher is updated at the start of every :meth:`~memlib.methods.base.SSLMethod.training_step` as
    ``θ_t ← m θ_t + (1 − m) θ_s`` from the current student, so the shared
    training loop needs no hook; its parameters never receive gradients. The
    teacher and the centre are a submodule and a buffer, so they are part of
    the method's ``state_dict`` and a checkpointed run resumes exactly.
    ``self.encoder`` is the student's encoder (the one SSLMem and the probes use).

    Deviations from DINO, for small images and short runs: constant teacher
    momentum and temperature (DINO schedules both), smaller head, no blur or
    solarisation, local crops at the global resolution by default.

    Parameters
    ----------
    encoder
        Student encoder (ResNet or ViT); its pooled output feeds the head.
    out_dim, hidden_dim, bottleneck_dim
        :class:`DINOHead` sizes.
    student_temp, teacher_temp
        Softmax temperatures (DINO: 0.1 and 0.04–0.07).
    center_momentum
        Momentum of the running centre of the teacher outputs (DINO: 0.9; 1
        keeps the centre at 0).
    teacher_momentum
        EMA momentum m of the teacher (DINO: 0.996 rising to 1; 1 freezes the teacher).
    n_local
        Number of local crops next to the 2 global ones.
    local_size
        Side of the local crops; ``None`` = the encoder's image size (required for ViTs).
    augmentation
        ``None``: :class:`~memlib.data.augment.MultiCrop` at the encoder's image
        size. A ``MultiCrop``: used as is. Any other augmentation (such as the
        experiments' :class:`~memlib.data.augment.SimCLRAugment`): draws the 2
        global views, and the local views come from a ``MultiCrop``.
    """

    name = "dino"

    def __init__(
        self,
        encoder,
        out_dim: int = 1024,
        hidden_dim: int = 512,
        bottleneck_dim: int = 128,
        student_temp: float = 0.1,
        teacher_temp: float = 0.04,
        center_momentum: float = 0.9,
        teacher_momentum: float = 0.996,
        n_local: int = 2,
        local_size: int | None = None,
        augmentation=None,
    ):
        for name, v in (("student_temp", student_temp), ("teacher_temp", teacher_temp)):
            if not v > 0:
                raise ValueError(f"DINO: {name}={v!r} must be > 0 (DINO uses student 0.1, teacher 0.04)")
        for name, v in (("center_momentum", center_momentum), ("teacher_momentum", teacher_momentum)):
            if not 0 <= v <= 1:
                raise ValueError(f"DINO: {name}={v!r} must be in [0, 1] (DINO: 0.9 and 0.996; 1 freezes it)")
        if isinstance(augmentation, MultiCrop):
            n_local, local_size = augmentation.n_local, augmentation.local_size
        if isinstance(encoder, ViTEncoder) and local_size not in (None, encoder.img_size):
            raise ValueError(
                f"DINO: local_size={local_size} differs from the ViT's img_size={encoder.img_size}; its position "
                "embeddings are fixed-size, so use local_size=None with ViT encoders"
            )
        super().__init__(encoder)
        self.student = _Branch(encoder, DINOHead(encoder.pooled_dim, out_dim, hidden_dim, bottleneck_dim))
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        self.register_buffer("center", torch.zeros(1, out_dim))
        self.student_temp, self.teacher_temp = student_temp, teacher_temp
        self.center_momentum, self.teacher_momentum = center_momentum, teacher_momentum
        if isinstance(augmentation, MultiCrop):
            self.multicrop, self.augmentation = augmentation, None
        else:
            self.multicrop = MultiCrop(size=encoder.img_size, n_local=n_local, local_size=local_size)
            self.augmentation = augmentation  # if given, draws the global views

    def global_views(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The two global views, (2B, C, H, W), view-major."""
        if self.augmentation is None:
            return self.multicrop.global_views(images, generator)
        return self.augmentation(torch.cat([images, images]), generator)

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step of the teacher's parameters towards the student's."""
        s = list(self.student.parameters())
        t = list(self.teacher.parameters())
        # θ_t + (1 − m)(θ_s − θ_t) = m θ_t + (1 − m) θ_s, one fused kernel for all tensors (as timm's ModelEmaV3).
        torch._foreach_lerp_(t, s, 1 - self.teacher_momentum)

    def training_step(self, images, indices, labels, generator=None):
        self.update_teacher()
        global_views = self.global_views(images, generator)
        student_out = [self.student(global_views)]
        if self.multicrop.n_local:
            student_out.append(self.student(self.multicrop.local_views(images, generator)))
        with torch.no_grad():
            teacher_out = self.teacher(global_views)
        loss = dino_loss(
            torch.cat(student_out),
            teacher_out,
            self.center,
            2 + self.multicrop.n_local,
            self.student_temp,
            self.teacher_temp,
        )
        with torch.no_grad():
            # Entropy of the teacher's targets: near log(out_dim) is collapse to uniform, near 0 to one
            # dimension. The loss is this entropy plus KL(teacher ‖ student), so it is not monotone early on.
            p_t = F.softmax((teacher_out.float() - self.center) / self.teacher_temp, dim=-1)
            entropy = -(p_t * p_t.clamp_min(1e-12).log()).sum(-1).mean()
            # Centre update after the loss, as in DINO.
            batch_center = teacher_out.float().mean(dim=0, keepdim=True)
            self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)
        return {"loss": loss, "teacher_entropy": entropy}
