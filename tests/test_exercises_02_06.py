"""The exercise checks of notebooks/02_metrics_and_evr.ipynb and 06_rapl_training.ipynb.

Each check must pass a correct solution (written here with plain loops, independent of
agekit) and catch the mistakes students plausibly make.
"""

import math

import pytest
import torch

from agekit import exercises

# ----------------------------------------------------------------------------- 02: eqs. 9, 10 and 1


def mae_by_loop(pred, true):
    return sum(abs(p - t) for p, t in zip(pred.tolist(), true.tolist())) / len(pred)


def cs_by_loop(pred, true, tolerance):
    return 100.0 * sum(abs(p - t) <= tolerance for p, t in zip(pred.tolist(), true.tolist())) / len(pred)


def expected_age_by_loop(logits, values):
    ages = []
    for row in logits.tolist():
        weights = [math.exp(z - max(row)) for z in row]
        ages.append(sum(w * v for w, v in zip(weights, values.tolist())) / sum(weights))
    return torch.tensor(ages)


def test_02_hand_example():
    # the worked example of lesson 02: errors 2, 4.5, 0.2, 4, 9 years
    true = torch.tensor([23, 35, 41, 8, 67])
    pred = torch.tensor([25.0, 30.5, 41.2, 12.0, 58.0])
    assert mae_by_loop(pred, true) == pytest.approx(3.94)
    assert cs_by_loop(pred, true, 5) == pytest.approx(80.0)
    # two labels with equal logits: the expectation is their midpoint
    assert expected_age_by_loop(torch.zeros(1, 2), torch.tensor([20.0, 30.0])).item() == pytest.approx(25.0)


def test_02_checks_accept_loop_solutions(capsys):
    exercises.check_mae(mae_by_loop)
    exercises.check_cumulative_score(cs_by_loop)
    exercises.check_expected_age(expected_age_by_loop)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("Correct:") for line in lines)


@pytest.mark.parametrize("check, mistake", [
    (exercises.check_mae, lambda p, t: float((p - t).abs().sum())),                        # a sum, not a mean
    (exercises.check_mae, lambda p, t: float((p - t).square().mean().sqrt())),             # RMSE, not MAE
    (exercises.check_cumulative_score, lambda p, t, tol: float(((p - t).abs() <= tol).float().mean())),  # fraction
    (exercises.check_cumulative_score, lambda p, t, tol: float(((p - t) <= tol).float().mean() * 100)),  # no abs
    (exercises.check_expected_age, lambda z, v: v[z.argmax(dim=1)]),                        # argmax, not expectation
    (exercises.check_expected_age, lambda z, v: torch.softmax(z, dim=0) @ v),               # softmax over the batch
])
def test_02_checks_catch_mistakes(check, mistake):
    with pytest.raises(AssertionError):
        check(mistake)


# ----------------------------------------------------------------------------- 06: eq. 12


def confidence_by_loop(est_ages, position_ages, tolerance):
    pairs = list(zip(est_ages.tolist(), position_ages.tolist()))
    return 100.0 * sum(abs(a - b) <= tolerance for a, b in pairs) / len(pairs)


def test_confidence_hand_example():
    # RAPL Table 5 style: 10 faces, differences 0, 1, 1, 2, 2, 2, 3, 3, 6, 12 years
    position = torch.full((10,), 30)
    est = position + torch.tensor([0.0, 1, -1, 2, -2, 2, 3, -3, 6, 12])
    assert [confidence_by_loop(est, position, t) for t in (0, 1, 2, 3, 5, 10)] == [10.0, 30.0, 60.0, 80.0, 80.0, 90.0]


def test_confidence_check_accepts_a_loop_solution(capsys):
    exercises.check_confidence_score(confidence_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda e, p, t: float(((e - p).abs() < t).float().mean() * 100),            # strict <: the edge is lost
    lambda e, p, t: float(((e - p) <= t).float().mean() * 100),                 # no absolute value
    lambda e, p, t: float(((e - p).abs() <= t).float().mean()),                 # a fraction, not percent
    lambda e, p, t: float(((e - p).abs() <= t).float().sum() / 10 * 100),       # always divided by 10
])
def test_confidence_check_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_confidence_score(mistake)


# ----------------------------------------------------------------------------- 06: eq. 8


def joint_by_hand(age, gender, position, lam, mu):
    total = float(age)
    if gender is not None:
        total += lam * float(gender)
    if position is not None:
        total += mu * float(position)
    return total


def test_joint_loss_hand_example():
    assert joint_by_hand(8.0, 0.5, 3.0, 1.0, 1.0) == 11.5
    assert joint_by_hand(8.0, 0.5, 3.0, 0.5, 2.0) == 14.25
    assert joint_by_hand(8.0, 0.5, None, 0.5, 2.0) == 8.25


def test_joint_loss_check_accepts_a_correct_solution(capsys):
    exercises.check_joint_loss(joint_by_hand)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda a, g, p, lam, mu: a + mu * g + lam * p,                                   # weights swapped (and no None)
    lambda a, g, p, lam, mu: joint_by_hand(a, p, g, lam, mu),                        # lam on position, mu on gender
    lambda a, g, p, lam, mu: a + (0 if g is None else g) + (0 if p is None else p),  # weights forgotten
    lambda a, g, p, lam, mu: joint_by_hand(a, g, p, lam, mu) / 3,                    # averaged
])
def test_joint_loss_check_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_joint_loss(mistake)


def test_joint_loss_check_explains_a_crash_on_none():
    with pytest.raises(AssertionError, match="None"):
        exercises.check_joint_loss(lambda a, g, p, lam, mu: a + lam * g + mu * p)


# ----------------------------------------------------------------------------- the lessons' plots


def test_age_probability_plot_marks_the_expectation_of_eq_1():
    from agekit.viz import plot_age_probabilities

    probabilities = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]])
    fig = plot_age_probabilities(probabilities, torch.tensor([10, 20, 30]), torch.tensor([12, 28]),
                                 images=torch.zeros(2, 3, 8, 8, dtype=torch.uint8))
    bars = [ax for ax in fig.axes if ax.patches]
    dashed = [[line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"] for ax in bars]
    assert dashed == [[15.0], [27.5]]  # 0.5 * 10 + 0.5 * 20 and 0.25 * 20 + 0.75 * 30


def test_confidence_plot_draws_the_whole_set_and_the_sample_range():
    from agekit.viz import plot_confidence_scores

    draws = torch.arange(100, dtype=torch.float64)[:, None].repeat(1, 2)  # 0..99 in both columns
    fig = plot_confidence_scores([1, 5], [40.0, 90.0], draws, sample=[30.0, 100.0], paper={1: 60.0})
    ax = fig.axes[0]
    lines = {line.get_label(): list(line.get_ydata()) for line in ax.get_lines()}
    assert lines["whole test set"] == [40.0, 90.0] and lines["one draw of 10 faces"] == [30.0, 100.0]
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(4.95) and band.max() == pytest.approx(94.05)  # 5 % and 95 % quantiles
