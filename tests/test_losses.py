"""Reference values of the SSL losses: NT-Xent, DINO, VICReg (and MAE's masked-patch MSE).

Each expected value is computed here by hand, or with numpy and explicit exp/log, from the loss's
published definition, never by calling memlib. Whether each method's loss falls in training on
real data is checked in tests/test_methods.py (test_method_trains_on_real_data: every method
registered in memlib.methods.METHODS) and tests/test_training.py.
"""

import math

import numpy as np
import pytest
import torch

from memlib.losses import (
    covariance_term,
    dino_loss,
    masked_patch_mse,
    nt_xent,
    variance_term,
    vicreg_loss,
)

# --------------------------------------------------------------------------------------- NT-Xent


def test_nt_xent_two_pairs_by_hand():
    # z1 normalises to u0 = (1, 0), u1 = (0, 1); z2 to v0 = (0.6, 0.8), v1 = (0.8, -0.6).
    z1 = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z2 = torch.tensor([[3.0, 4.0], [4.0, -3.0]])
    # Cosines: u0·u1 = 0, u0·v0 = 0.6, u0·v1 = 0.8, u1·v0 = 0.8, u1·v1 = -0.6, v0·v1 = 0.
    # τ = 0.5, so the logits are twice the cosines. Each anchor's loss is
    # −logit(positive) + log Σ_{k ≠ anchor} exp(logit(k)):
    rows = [
        -1.2 + math.log(math.exp(0.0) + math.exp(1.2) + math.exp(1.6)),  # u0: u1, v0 (positive), v1
        1.2 + math.log(math.exp(0.0) + math.exp(1.6) + math.exp(-1.2)),  # u1: u0, v0, v1 (positive)
        -1.2 + math.log(math.exp(1.2) + math.exp(1.6) + math.exp(0.0)),  # v0: u0 (positive), u1, v1
        1.2 + math.log(math.exp(1.6) + math.exp(-1.2) + math.exp(0.0)),  # v1: u0, u1 (positive), v0
    ]
    expected = sum(rows) / 4
    assert expected == pytest.approx(2.030190, abs=1e-6)
    assert nt_xent(z1, z2, temperature=0.5).item() == pytest.approx(expected, abs=1e-6)


def _nt_xent_numpy(z1, z2, tau):
    """NT-Xent (Chen et al. 2020, eq. 1, averaged over all 2N anchors) with explicit loops."""
    z = np.concatenate([z1, z2]).astype(np.float64)
    z = z / np.sqrt((z**2).sum(1, keepdims=True))
    n2, n = len(z), len(z1)
    total = 0.0
    for a in range(n2):
        pos = (a + n) % n2
        denom = sum(math.exp(float(z[a] @ z[k]) / tau) for k in range(n2) if k != a)
        total += -math.log(math.exp(float(z[a] @ z[pos]) / tau) / denom)
    return total / n2


@pytest.mark.parametrize("n,d,tau", [(5, 3, 0.5), (8, 16, 0.1), (3, 2, 1.0)])
def test_nt_xent_matches_a_loop_over_anchors(n, d, tau):
    rng = np.random.default_rng(n * 100 + d)
    z1, z2 = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    got = nt_xent(torch.tensor(z1, dtype=torch.float32), torch.tensor(z2, dtype=torch.float32), tau).item()
    assert got == pytest.approx(_nt_xent_numpy(z1, z2, tau), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("n", [1, 2, 4, 16])
@pytest.mark.parametrize("tau", [0.1, 0.5])
def test_nt_xent_of_identical_embeddings_is_log_2n_minus_1(n, tau):
    # All 2N embeddings equal (any length): each row's 2N − 1 logits are all 1/τ, so the positive
    # has probability 1 / (2N − 1) whatever τ is.
    v = torch.tensor([[0.3, -1.2, 2.0]])
    z1 = v.repeat(n, 1) * torch.arange(1, n + 1).unsqueeze(1)  # the norms differ, the directions do not
    z2 = v.repeat(n, 1) * 3
    assert nt_xent(z1, z2, tau).item() == pytest.approx(math.log(2 * n - 1), abs=1e-5)


@pytest.mark.parametrize("n,tau", [(2, 0.5), (4, 0.2), (6, 1.0)])
def test_nt_xent_of_aligned_orthonormal_pairs(n, tau):
    # z1 = z2 = the first n basis vectors: the positive's logit is 1/τ, the 2N − 2 negatives' are 0.
    z = torch.eye(n, n + 1)
    expected = -1 / tau + math.log(math.exp(1 / tau) + 2 * n - 2)
    assert nt_xent(z, z.clone(), tau).item() == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------------------- DINO


def _softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def _log_softmax(x):
    return x - x.max() - math.log(np.exp(x - x.max()).sum())


def test_dino_loss_by_hand():
    # 3 student views (2 global + 1 local), batch 2, K = 3; the teacher sees the 2 global views.
    ts, tt = 0.1, 0.04
    teacher = np.array(
        [
            [1.0, 0.0, -1.0],
            [0.2, 0.1, 0.0],  # global view 0, images 0 and 1
            [0.0, 0.5, 0.1],
            [0.3, 0.3, 0.3],
        ]
    )  # global view 1
    center = np.array([[0.1, -0.1, 0.0]])
    student = np.array(
        [
            [0.5, -0.2, 0.1],
            [0.0, 0.3, -0.4],  # view 0 (global)
            [1.0, 1.0, 0.0],
            [-0.5, 0.2, 0.2],  # view 1 (global)
            [0.2, 0.0, 0.4],
            [0.1, -0.1, 0.3],
        ]
    )  # view 2 (local)
    b = 2
    p_t = [[_softmax((teacher[v * b + i] - center[0]) / tt) for i in range(b)] for v in range(2)]
    log_p_s = [[_log_softmax(student[v * b + i] / ts) for i in range(b)] for v in range(3)]
    # Every teacher (global) view against every student view except itself.
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = np.mean([np.mean([-(p_t[t][i] * log_p_s[s][i]).sum() for i in range(b)]) for t, s in pairs])
    got = dino_loss(
        torch.tensor(student, dtype=torch.float32),
        torch.tensor(teacher, dtype=torch.float32),
        torch.tensor(center, dtype=torch.float32),
        n_views=3,
        student_temp=ts,
        teacher_temp=tt,
    )
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert expected == pytest.approx(2.95144, abs=1e-4)  # the figure the numpy lines above give


def test_dino_loss_with_a_uniform_target():
    # Centring makes both teacher rows constant, so the target is uniform (1/K each) and the loss of
    # a pair is logsumexp(s/τ_s) − mean(s/τ_s), the same for both pairs (n_views = 2, batch 1).
    student = torch.tensor([[0.2, 0.0, -0.2, 0.1], [0.0, 0.4, 0.0, 0.0]])
    teacher = torch.tensor([[1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0]])
    center = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    s = [[2.0, 0.0, -2.0, 1.0], [0.0, 4.0, 0.0, 0.0]]  # student / 0.1
    per_view = [math.log(sum(math.exp(x) for x in row)) - sum(row) / 4 for row in s]
    expected = (per_view[1] + per_view[0]) / 2  # teacher 0 → student 1, teacher 1 → student 0
    got = dino_loss(student, teacher, center, n_views=2, student_temp=0.1, teacher_temp=0.04)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_dino_loss_gives_no_gradient_to_the_teacher():
    student = torch.randn(4, 5, requires_grad=True)
    teacher = torch.randn(4, 5, requires_grad=True)
    dino_loss(student, teacher, torch.zeros(1, 5), n_views=2).backward()
    assert teacher.grad is None and student.grad is not None and student.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------- VICReg

EPS = 1e-4  # inside the square root of the variance term


def test_vicreg_terms_by_hand():
    z1 = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])
    z2 = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.6, 1.0]])
    # Invariance: mean squared difference over all 3·2 entries; z1 − z2 = [[0, −1], [1, 1], [1.4, 3]].
    inv = (0 + 1 + 1 + 1 + 1.96 + 9) / 6
    # Variance, mean over dimensions of max(0, 1 − sqrt(var + ε)), var unbiased (n − 1 = 2):
    # z1: var 1 and 4 → std ≥ 1 → 0. z2: column 0 = [0, 0, 0.6], mean 0.2, var (0.04 + 0.04 + 0.16) / 2
    # = 0.12; column 1 constant, var 0.
    v1 = 0.0
    v2 = ((1 - math.sqrt(0.12 + EPS)) + (1 - math.sqrt(0 + EPS))) / 2
    # Covariance, sum of squared off-diagonal entries / d: z1 centred = [[−1, −2], [0, 0], [1, 2]],
    # cov_01 = (2 + 0 + 2) / 2 = 2, so (2² + 2²) / 2 = 4; z2's constant column makes cov_01 = 0.
    c1, c2 = 4.0, 0.0
    out = vicreg_loss(z1, z2)
    assert out["invariance"].item() == pytest.approx(inv, rel=1e-6)
    assert out["variance"].item() == pytest.approx(v1 + v2, rel=1e-5)
    assert out["covariance"].item() == pytest.approx(c1 + c2, rel=1e-6)
    assert out["loss"].item() == pytest.approx(25 * inv + 25 * (v1 + v2) + 1 * (c1 + c2), rel=1e-5)
    assert out["loss"].item() == pytest.approx(82.7097, abs=1e-3)
    assert variance_term(z1).item() == 0 and variance_term(z2).item() == pytest.approx(v2, rel=1e-5)
    assert covariance_term(z1).item() == pytest.approx(c1) and covariance_term(z2).item() == 0
    weighted = vicreg_loss(z1, z2, sim_weight=2.0, var_weight=3.0, cov_weight=0.5)["loss"].item()
    assert weighted == pytest.approx(2 * inv + 3 * (v1 + v2) + 0.5 * (c1 + c2), rel=1e-5)


def test_vicreg_covariance_of_three_dimensions_by_hand():
    # Rows (x, y, w) with y = −x and w independent of both: cov(x, y) = −var(x), cov(x, w) = cov(y, w) = 0.
    z = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0]])
    # var(x) = 4 / 3 (unbiased, n − 1 = 3); off-diagonal: cov_xy = cov_yx = −4/3 → 2 · 16/9, / d = 3.
    assert covariance_term(z).item() == pytest.approx(2 * (4 / 3) ** 2 / 3, rel=1e-6)
    # Every std is sqrt(4/3 + ε) > 1: no variance penalty.
    assert variance_term(z).item() == 0


# --------------------------------------------------------------------------------------- MAE


def test_masked_patch_mse_by_hand():
    # One image, two patches of 2 pixels; only patch 1 is masked, so patch 0 counts for nothing.
    target = torch.tensor([[[5.0, 7.0], [0.0, 2.0]]])
    pred = torch.tensor([[[100.0, -100.0], [0.0, 0.0]]])
    mask = torch.tensor([[0.0, 1.0]])
    # norm_pix: patch 1 = [0, 2], mean 1, unbiased var 2 (as MAE's code, Tensor.var) → [−1, 1] / sqrt(2 + 1e-6).
    expected = (1 / (2 + 1e-6) + 1 / (2 + 1e-6)) / 2
    assert masked_patch_mse(pred, target, mask).item() == pytest.approx(expected, rel=1e-6)
    assert masked_patch_mse(pred, target, mask, norm_pix=False).item() == pytest.approx((0 + 4) / 2)
