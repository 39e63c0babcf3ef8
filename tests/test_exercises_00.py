"""The exercise check of notebooks/00_welcome.ipynb: it passes a correct solution
(written here with a plain loop) and catches plausible mistakes."""

import pytest
import torch

from agekit import exercises


def share_by_loop(ages, low, high):
    inside = sum(1 for a in ages.tolist() if low <= a <= high)
    return 100.0 * inside / len(ages)


def test_share_in_range_accepts_a_correct_solution(capsys):
    exercises.check_share_in_range(share_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


def test_share_in_range_hand_example():
    assert share_by_loop(torch.tensor([12, 13, 17, 18, 30]), 13, 17) == 40.0


@pytest.mark.parametrize("mistake", [
    lambda ages, low, high: float(((ages >= low) & (ages < high)).float().mean() * 100),    # upper end left out
    lambda ages, low, high: float(((ages > low) & (ages <= high)).float().mean() * 100),    # lower end left out
    lambda ages, low, high: float(((ages >= low) & (ages <= high)).float().mean()),         # a fraction, not percent
])
def test_share_in_range_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_share_in_range(mistake)
