"""The revised contrastive loss (Jeong et al., 2018, eqs. 1-4) and the multi-task Siamese loss."""

import itertools
import math

import pytest
import torch

from agekit.losses import revised_contrastive_loss
from agekit.models.siamese import SiameseOutput, siamese_loss


def loop_loss(embeddings, labels, margin, q):
    """Slow reference: an explicit double loop over the unordered pairs i < j."""
    total, pairs = 0.0, 0
    b = embeddings.shape[0]
    for i in range(b):
        for j in range(i + 1, b):
            d = sum(abs(embeddings[i, t] - embeddings[j, t]) for t in range(embeddings.shape[1]))  # eq. 1
            same = abs(float(labels[i]) - float(labels[j])) <= margin  # eq. 3
            if same:
                total = total + (2.0 / q) * d * d  # eq. 4, L+
            else:
                total = total + 2.0 * q * torch.exp(-2.77 * d / q)  # eq. 4, L-
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("margin, q", list(itertools.product([0, 2, 3.5, 5], [1.0, 10.0, 100.0])))
def test_matches_double_loop(margin, q):
    gen = torch.Generator().manual_seed(int(10 * margin + q))
    embeddings = torch.randn(7, 5, generator=gen, dtype=torch.float64) * 3
    ages = torch.tensor([20, 21, 23, 25, 25, 30, 34])
    expected = loop_loss(embeddings, ages, margin, q)
    got = revised_contrastive_loss(embeddings, ages, margin, q)
    assert got.shape == ()
    assert torch.allclose(got.double(), torch.as_tensor(expected, dtype=torch.float64), rtol=1e-5)


def test_hand_worked_three_samples():
    # e0 = (0, 0), e1 = (1, 2), e2 = (3, 0); ages 20, 22, 30; margin 3; Q = 100.
    # pair (0,1): D = 1 + 2 = 3, |20 - 22| = 2 <= 3, same:   (2/100) * 3^2          = 0.18
    # pair (0,2): D = 3 + 0 = 3, |20 - 30| = 10, different:  200 * e^(-2.77*3/100) = 200 * e^-0.0831 = 184.0518
    # pair (1,2): D = 2 + 2 = 4, |22 - 30| = 8, different:   200 * e^(-2.77*4/100) = 200 * e^-0.1108 = 179.0236
    # mean over the 3 pairs: (0.18 + 184.0518 + 179.0236) / 3 = 121.0851
    embeddings = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 0.0]])
    ages = torch.tensor([20, 22, 30])
    assert revised_contrastive_loss(embeddings, ages, margin=3).item() == pytest.approx(121.0851, abs=1e-3)
    # margin 1: the first pair becomes "different" too: (184.0518 * 2 + 179.0236) / 3 = 182.3757
    assert revised_contrastive_loss(embeddings, ages, margin=1).item() == pytest.approx(182.3757, abs=1e-3)
    # the margin is inclusive: |20 - 22| = 2 <= 2 is still the same class
    assert revised_contrastive_loss(embeddings, ages, margin=2).item() == pytest.approx(121.0851, abs=1e-3)


def test_gradient_matches_loop_and_is_finite():
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    base[5] = base[4]  # two identical embeddings: D = 0, where |x| has a kink
    ages = torch.tensor([18, 19, 30, 31, 45, 45])
    fast = base.clone().requires_grad_(True)
    slow = base.clone().requires_grad_(True)
    revised_contrastive_loss(fast, ages, margin=3, q=10.0).backward()
    loop_loss(slow, ages, 3, 10.0).backward()
    assert torch.isfinite(fast.grad).all()
    # rows 4 and 5 coincide: the sign of their difference is 0 in both computations
    assert torch.allclose(fast.grad.double(), slow.grad, atol=1e-6)


def _distance_after_step(embeddings, ages, margin, q, lr):
    x = embeddings.clone().requires_grad_(True)
    loss = revised_contrastive_loss(x, ages, margin, q)
    loss.backward()
    with torch.no_grad():
        stepped = x - lr * x.grad
    return loss.item(), revised_contrastive_loss(stepped, ages, margin, q).item(), (stepped[0] - stepped[1]).abs().sum().item()


@pytest.mark.parametrize("q", [10.0, 100.0])
def test_gradient_pulls_same_class_and_pushes_different_class(q):
    embeddings = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    d0 = 3.5
    # same class (ages 30 and 32, margin 3): the step lowers the loss and brings the pair closer
    before, after, d = _distance_after_step(embeddings, torch.tensor([30, 32]), 3, q, lr=0.05)
    assert after < before and d < d0
    # different class (ages 30 and 40): the step lowers the loss and moves the pair apart
    before, after, d = _distance_after_step(embeddings, torch.tensor([30, 40]), 3, q, lr=0.05)
    assert after < before and d > d0


def test_gradient_step_lowers_batch_loss():
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(8, 6, generator=gen).requires_grad_(True)
    ages = torch.tensor([20, 21, 22, 35, 36, 50, 52, 70])
    loss = revised_contrastive_loss(x, ages, margin=2)
    loss.backward()
    with torch.no_grad():
        assert revised_contrastive_loss(x - 0.01 * x.grad, ages, margin=2) < loss


def test_bad_inputs():
    x = torch.randn(4, 3)
    ages = torch.tensor([1, 2, 3, 4])
    with pytest.raises(ValueError, match="at least 2"):
        revised_contrastive_loss(x[:1], ages[:1], margin=3)
    with pytest.raises(ValueError, match="margin"):
        revised_contrastive_loss(x, ages, margin=-1)
    with pytest.raises(ValueError, match="Lengths do not match"):
        revised_contrastive_loss(x, ages[:3], margin=3)
    with pytest.raises(ValueError, match="q must be positive"):
        revised_contrastive_loss(x, ages, margin=3, q=0)
    with pytest.raises(ValueError, match="embeddings"):
        revised_contrastive_loss(x[0], ages, margin=3)


def _output(b=6, gender=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return SiameseOutput(
        age_embedding=torch.randn(b, 5, generator=gen),
        gender_embedding=torch.randn(b, 3, generator=gen) if gender else None,
        features=torch.randn(b, 8, generator=gen),
    )


def test_gender_term_uses_margin_zero():
    out = _output()
    ages = torch.tensor([20, 25, 30, 35, 40, 45])
    genders = torch.tensor([0, 1, 1, 0, 1, 0])
    total, parts = siamese_loss(out, ages, genders, margin=3)
    expected_gender = loop_loss(out.gender_embedding.double(), genders, 0, 100.0)
    assert parts["gender"].item() == pytest.approx(float(expected_gender), rel=1e-5)
    # with margin 1 on genders every pair would be "same": a different number
    wrong = loop_loss(out.gender_embedding.double(), genders, 1, 100.0)
    assert abs(parts["gender"].item() - float(wrong)) > 1e-3
    assert parts["age"].item() == pytest.approx(float(loop_loss(out.age_embedding.double(), ages, 3, 100.0)), rel=1e-5)
    assert total.item() == pytest.approx(parts["age"].item() + parts["gender"].item(), rel=1e-6)


def test_unknown_genders_leave_only_the_gender_term():
    out = _output()
    ages = torch.tensor([20, 25, 30, 35, 40, 45])
    genders = torch.tensor([0, -1, 1, 0, -1, 1])
    known = genders >= 0
    _, parts = siamese_loss(out, ages, genders, margin=3)
    expected = loop_loss(out.gender_embedding[known].double(), genders[known], 0, 100.0)
    assert parts["gender"].item() == pytest.approx(float(expected), rel=1e-5)
    # the age term still uses all six samples
    assert parts["age"].item() == pytest.approx(float(loop_loss(out.age_embedding.double(), ages, 3, 100.0)), rel=1e-5)


@pytest.mark.parametrize("genders", [None, torch.tensor([-1] * 6), torch.tensor([-1, -1, 0, -1, -1, -1])])
def test_age_only_when_no_gender_pairs(genders):
    out = _output()
    ages = torch.tensor([20, 25, 30, 35, 40, 45])
    total, parts = siamese_loss(out, ages, genders)
    assert parts["gender"].item() == 0.0
    assert total.item() == pytest.approx(parts["age"].item())


def test_age_only_model_ignores_genders():
    out = _output(gender=False)
    ages = torch.tensor([20, 25, 30, 35, 40, 45])
    total, parts = siamese_loss(out, ages, torch.tensor([0, 1, 0, 1, 0, 1]))
    assert "gender" not in parts
    assert total.item() == pytest.approx(revised_contrastive_loss(out.age_embedding, ages, 3).item())


def test_siamese_loss_checks_inputs():
    out = _output()
    with pytest.raises(TypeError, match="SiameseOutput"):
        siamese_loss(out.age_embedding, torch.arange(6))
    with pytest.raises(ValueError, match="Lengths do not match"):
        siamese_loss(out, torch.arange(6), torch.tensor([0, 1, 0]))


def test_q_scales_the_push_and_pull():
    # L- at D = 0 is 2Q, L+ at D = Q/2 is (2/Q)(Q/2)^2 = Q/2: check both for two Q values
    for q in (10.0, 100.0):
        same_point = torch.zeros(2, 1)
        assert revised_contrastive_loss(same_point, torch.tensor([0, 10]), 3, q).item() == pytest.approx(2 * q)
        apart = torch.tensor([[0.0], [q / 2]])
        assert revised_contrastive_loss(apart, torch.tensor([0, 1]), 3, q).item() == pytest.approx(q / 2)
        assert math.isfinite(revised_contrastive_loss(apart, torch.tensor([0, 10]), 3, q).item())
