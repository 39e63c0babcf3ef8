"""RAPL's losses (eqs. 1, 2, 3, 7, 8) against slow loops and hand-worked examples."""

import math

import pytest
import torch

from agekit.losses import age_l1_loss, expected_age, gender_loss, joint_loss, position_loss


def test_expected_age_matches_an_explicit_loop():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(5, 7, generator=generator) * 3
    values = torch.tensor([1, 2, 4, 5, 9, 30, 101])
    got = expected_age(logits, values)
    for row in range(5):
        exps = [math.exp(float(v)) for v in logits[row]]
        total = sum(exps)
        want = sum(float(values[i]) * exps[i] / total for i in range(7))  # eq. 1
        assert got[row].item() == pytest.approx(want, rel=1e-5)


def test_expected_age_hand_example():
    # Two labels with equal scores: the expectation is their midpoint.
    assert expected_age(torch.zeros(1, 2), torch.tensor([20, 30])).item() == pytest.approx(25.0)
    # A dominant logit pulls the age to its label.
    assert expected_age(torch.tensor([[0.0, 50.0, 0.0]]), torch.tensor([1, 4, 9])).item() == pytest.approx(4.0)


def test_expected_age_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="age_values"):
        expected_age(torch.zeros(2, 3), torch.tensor([1, 2]))


def test_age_l1_loss_is_the_mean_absolute_error():
    pred = torch.tensor([20.5, 31.0, 40.0, 18.0])
    true = torch.tensor([20, 35, 38, 18])
    want = sum(abs(float(p) - float(t)) for p, t in zip(pred, true)) / 4  # eq. 2
    assert age_l1_loss(pred, true).item() == pytest.approx(want)
    assert want == pytest.approx((0.5 + 4 + 2 + 0) / 4)


def test_gender_loss_is_minus_log_softmax_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0], [1.0, 0.0]])
    genders = torch.tensor([0, 1, 1, -1])  # the last one is unknown and ignored
    terms = []
    for (l0, l1), g in zip(logits.tolist(), genders.tolist()):
        if g < 0:
            continue
        log_norm = math.log(math.exp(l0) + math.exp(l1))
        terms.append(-([l0, l1][g] - log_norm))  # eq. 3 with a one-hot g
    assert gender_loss(logits, genders).item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_gender_loss_without_known_genders_is_zero_but_connected():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = gender_loss(logits, torch.full((3,), -1))
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and torch.equal(logits.grad, torch.zeros(3, 2))


def test_position_loss_matches_a_loop():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 9, generator=generator)
    positions = torch.tensor([0, 8, 3, 3, 5, 1])
    want = 0.0
    for row, pos in enumerate(positions.tolist()):
        log_norm = math.log(sum(math.exp(float(v)) for v in logits[row]))
        want -= float(logits[row, pos]) - log_norm  # eq. 7, one-hot p
    assert position_loss(logits, positions).item() == pytest.approx(want / 6, rel=1e-6)


def test_joint_loss_combines_terms_with_lambda_and_mu():
    age, gender, position = torch.tensor(3.0), torch.tensor(0.5), torch.tensor(2.0)
    assert joint_loss(age, gender, position).item() == pytest.approx(5.5)  # eq. 8, lambda = mu = 1
    assert joint_loss(age, gender, position, lam=0.2, mu=3.0).item() == pytest.approx(3.0 + 0.1 + 6.0)
    assert joint_loss(age, None, position, mu=0.5).item() == pytest.approx(4.0)
    assert joint_loss(age, gender, None, lam=2.0).item() == pytest.approx(4.0)
    assert joint_loss(age).item() == pytest.approx(3.0)
