"""AgeLabels: sorted distinct training ages <-> positions (RAPL Fig. 2)."""

import pytest
import torch

from agekit.data import AgeLabels


def test_labels_skip_missing_ages_like_agedb():
    # AgeDB has no 3-year-old: labels 1, 2, 4, ... and 4 sits at position 2 (Fig. 2)
    labels = AgeLabels.from_ages(torch.tensor([4, 1, 2, 2, 7, 4, 1]))
    assert labels.values.tolist() == [1, 2, 4, 7]
    assert labels.values.dtype == torch.int64
    assert labels.to_positions(torch.tensor([4, 1, 7, 2])).tolist() == [2, 0, 3, 1]
    assert len(labels) == labels.num_ages == 4


def test_round_trip_matches_a_python_dictionary():
    ages = torch.randint(0, 100, (500,), generator=torch.Generator().manual_seed(3))
    labels = AgeLabels.from_ages(ages)
    table = {age: i for i, age in enumerate(sorted(set(ages.tolist())))}
    positions = labels.to_positions(ages)
    assert positions.tolist() == [table[a] for a in ages.tolist()]
    assert torch.equal(labels.to_ages(positions), ages)


def test_keeps_shape_and_accepts_whole_floats():
    labels = AgeLabels.from_ages([10.0, 20.0, 30.0])
    grid = torch.tensor([[30.0, 10.0], [20.0, 20.0]])
    assert labels.to_positions(grid).tolist() == [[2, 0], [1, 1]]
    assert labels.to_ages(torch.tensor([[2, 0]])).tolist() == [[30, 10]]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda l: l.to_positions(torch.tensor([5])), r"\[5\]"),
        (lambda l: l.to_positions(torch.tensor([10.5])), "whole years"),
        (lambda l: l.to_positions(torch.tensor([float("nan")])), "NaN"),
        (lambda l: l.to_ages(torch.tensor([3])), "0..2"),
        (lambda l: l.to_ages(torch.tensor([-1])), "0..2"),
        (lambda l: l.to_ages(torch.tensor([1.0])), "integers"),
    ],
)
def test_bad_ages_and_positions_are_named(call, message):
    labels = AgeLabels.from_ages([10, 20, 30])
    with pytest.raises((ValueError, TypeError), match=message):
        call(labels)


def test_bad_label_sets():
    with pytest.raises(ValueError, match="empty"):
        AgeLabels.from_ages([])
    with pytest.raises(ValueError, match="NaN"):
        AgeLabels.from_ages([1.0, float("nan")])
    with pytest.raises(ValueError, match="increasing"):
        AgeLabels(torch.tensor([3, 2, 1]))
