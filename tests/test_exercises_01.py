"""The exercise checks of notebooks/01_synthetic_faces.ipynb: each passes a correct
solution (written here independently, with plain loops) and catches a plausible mistake."""

import pytest
import torch

from agekit import exercises


def positions_by_loop(ages, label_values):
    values = [int(v) for v in label_values]
    return torch.tensor([values.index(int(a)) for a in ages], dtype=torch.int64)


def leaked_by_loop(identities, split_codes):
    splits = {}
    for person, code in zip(identities.tolist(), split_codes.tolist()):
        splits.setdefault(person, set()).add(code)
    return sum(len(s) > 1 for s in splits.values())


def test_to_positions_accepts_a_correct_solution(capsys):
    exercises.check_to_positions(positions_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


def test_to_positions_hand_example_matches_fig2():
    # AgeDB in RAPL Fig. 2 has no age 3: ages 1, 2, 4 sit at positions 0, 1, 2
    values = torch.tensor([1, 2, 4, 5, 101])
    assert positions_by_loop(torch.tensor([4, 1, 101]), values).tolist() == [2, 0, 4]


@pytest.mark.parametrize("mistake", [
    lambda ages, values: ages - values[0],                                  # ignores missing ages
    lambda ages, values: torch.searchsorted(values, ages, right=True),      # off by one
    lambda ages, values: (ages - values[0]).float(),                        # floats, and wrong
])
def test_to_positions_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_to_positions(mistake)


def test_leaked_identities_accepts_a_correct_solution(capsys):
    exercises.check_leaked_identities(leaked_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


def test_leaked_identities_hand_example():
    identities = torch.tensor([7, 7, 8, 8, 9, 9, 9])
    codes = torch.tensor([0, 0, 1, 2, 0, 1, 2])   # 7 clean; 8 in val and test; 9 in all three
    assert leaked_by_loop(identities, codes) == 2


def train_test_only(identities, codes):
    train = set(identities[codes == 0].tolist())
    return len(train & set(identities[codes == 2].tolist()))


def photos_not_people(identities, codes):
    leaked = {person for person in identities.tolist() if len(set(codes[identities == person].tolist())) > 1}
    return int(sum(int(person) in leaked for person in identities.tolist()))


@pytest.mark.parametrize("mistake", [train_test_only, photos_not_people])
def test_leaked_identities_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_leaked_identities(mistake)
