"""Metrics against hand-worked examples and plain-Python loops."""

import math
import random

import pytest
import torch

from agekit.metrics import accuracy, confidence_score, cumulative_score, error_by_age, mae, rmse, summarize


def test_worked_example():
    pred = [10.0, 22.0, 31.0, 50.0]
    true = [12, 20, 40, 50]
    # errors 2, 2, 9, 0
    assert mae(pred, true) == pytest.approx(13 / 4)
    assert rmse(pred, true) == pytest.approx(math.sqrt((4 + 4 + 81 + 0) / 4))
    assert cumulative_score(pred, true, 5) == pytest.approx(75.0)
    assert cumulative_score(pred, true, 2) == pytest.approx(75.0)  # |error| <= tolerance counts
    assert cumulative_score(pred, true, 1.9) == pytest.approx(25.0)


def test_against_python_loops_on_random_data():
    rng = random.Random(0)
    pred = [rng.uniform(0, 90) for _ in range(1001)]
    true = [rng.randint(0, 90) for _ in range(1001)]
    errors = [abs(p - t) for p, t in zip(pred, true)]
    assert mae(pred, true) == pytest.approx(sum(errors) / len(errors))
    assert rmse(pred, true) == pytest.approx(math.sqrt(sum(e * e for e in errors) / len(errors)))
    for tol in (0, 3, 5, 10):
        assert cumulative_score(pred, true, tol) == pytest.approx(100 * sum(e <= tol for e in errors) / len(errors))


def test_mae_is_per_sample_not_a_mean_of_batch_means():
    pred = torch.tensor([0.0, 0.0, 0.0, 10.0])
    true = torch.zeros(4)
    batch_means = (0.0 + (0.0 + 0.0 + 10.0) / 3) / 2  # batches of 1 and 3
    assert mae(pred, true) == pytest.approx(2.5)
    assert mae(pred, true) != pytest.approx(batch_means)


def test_accuracy_ignores_unknown_gender():
    assert accuracy([0, 1, 1, 0, 1], [0, 1, 0, -1, -1]) == pytest.approx(100 * 2 / 3)
    with pytest.raises(ValueError, match="no known"):
        accuracy([0, 1], [-1, -1])


def test_confidence_score_eq12():
    est = [20.2, 35.0, 60.0, 41.0, 8.0, 70.0, 30.0, 25.0, 50.0, 12.0]
    pos = [21, 30, 60, 47, 8, 66, 30, 19, 55, 12]
    # differences .8, 5, 0, 6, 0, 4, 0, 6, 5, 0
    assert confidence_score(est, pos, 5) == pytest.approx(80.0)
    assert confidence_score(est, pos, 3) == pytest.approx(50.0)
    assert confidence_score(est, pos, 0) == pytest.approx(40.0)


def test_error_by_age_matches_grouping_by_hand():
    pred = [11.0, 9.0, 20.0, 26.0, 31.0]
    true = [10, 10, 20, 24, 35]
    rows = error_by_age(pred, true)
    assert [r["age"] for r in rows] == [10, 20, 24, 35]
    assert rows[0] == {"age": 10, "count": 2, "mae": 1.0, "bias": 0.0}
    assert rows[2]["bias"] == pytest.approx(2.0) and rows[3]["bias"] == pytest.approx(-4.0)
    binned = error_by_age(pred, true, bin_width=10)
    assert [(r["age"], r["count"]) for r in binned] == [(10, 2), (20, 2), (30, 1)]
    assert binned[1]["mae"] == pytest.approx(1.0)


def test_summarize_keys():
    out = summarize([1.0, 2.0], [1, 3], [0, 1], [0, 0])
    assert set(out) == {"mae", "cs5", "rmse", "gender_acc"}
    assert out["gender_acc"] == pytest.approx(50.0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: mae([1.0, 2.0], [1.0]), "Lengths do not match"),
        (lambda: mae([float("nan")], [1.0]), "NaN"),
        (lambda: mae([], []), "empty"),
        (lambda: mae([[1.0]], [[1.0]]), "1-D"),
        (lambda: cumulative_score([1.0], [1.0], -1), "tolerance"),
        (lambda: confidence_score([1.0], [1.0], float("nan")), "tolerance"),
        (lambda: mae("12", [1.0]), "tensor, array or list"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
