"""Identity-disjoint, age-stratified splits and the leakage check."""

import pytest
import torch

from agekit.data import find_leakage, identity_split, random_split, split_indices


def _people(n_people=300, photos=(1, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    counts = torch.randint(photos[0], photos[1] + 1, (n_people,), generator=g)
    identities = torch.repeat_interleave(torch.arange(n_people), counts)
    base = torch.randint(1, 80, (n_people,), generator=g)
    ages = base[identities] + torch.randint(0, 10, (len(identities),), generator=g)
    return ages, identities


def test_no_person_crosses_splits_and_fractions_hold():
    ages, ids = _people()
    codes = identity_split(ages, ids, seed=1)
    assert codes.shape == ages.shape and codes.dtype == torch.int64
    for person in torch.unique(ids):
        assert len(torch.unique(codes[ids == person])) == 1
    assert find_leakage(ids, codes) == {}
    share = torch.bincount(codes, minlength=3).float() / len(codes)
    assert torch.allclose(share, torch.tensor([0.6, 0.2, 0.2]), atol=0.04)


def test_every_split_covers_the_age_range():
    ages, ids = _people(n_people=600)
    codes = identity_split(ages, ids)
    means = [ages[codes == s].float().mean() for s in range(3)]
    quartiles = [torch.quantile(ages[codes == s].float(), torch.tensor([0.25, 0.75])) for s in range(3)]
    assert max(means) - min(means) < 3.0
    for q in quartiles[1:]:
        assert torch.allclose(q, quartiles[0], atol=5.0)


def test_seeded_and_string_identities():
    ages, ids = _people(n_people=100)
    names = [f"person {i}" for i in ids.tolist()]
    a = identity_split(ages, names, seed=5)
    assert torch.equal(a, identity_split(ages, names, seed=5))
    assert torch.equal(a, identity_split(ages, ids, seed=5))  # same people, same result
    assert not torch.equal(a, identity_split(ages, ids, seed=6))


def test_tiny_data_still_fills_every_split():
    ages = torch.tensor([20, 21, 40, 41, 60])
    ids = torch.tensor([0, 0, 1, 1, 2])
    codes = identity_split(ages, ids)
    assert sorted(torch.unique(codes).tolist()) == [0, 1, 2]
    assert find_leakage(ids, codes) == {}


def test_random_split_leaks_and_leakage_is_reported_by_name():
    ages, ids = _people(n_people=50, photos=(4, 8))
    codes = random_split(len(ages), seed=0)
    assert torch.bincount(codes, minlength=3).tolist() == [round(0.6 * len(ages)), round(0.8 * len(ages)) - round(0.6 * len(ages)), len(ages) - round(0.8 * len(ages))]
    leaks = find_leakage([f"p{i}" for i in ids.tolist()], codes)
    assert len(leaks) > 10
    # check one report by hand
    person, splits = next(iter(leaks.items()))
    member = torch.tensor([f"p{i}" == person for i in ids.tolist()])
    expected = sorted({["train", "val", "test"][c] for c in codes[member].tolist()}, key=["train", "val", "test"].index)
    assert splits == expected and len(splits) > 1


def test_split_indices_partition():
    codes = torch.tensor([0, 2, 1, 0, 2])
    parts = split_indices(codes)
    assert parts["train"].tolist() == [0, 3] and parts["val"].tolist() == [2] and parts["test"].tolist() == [1, 4]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ages=[1, 2], identities=[0, 1]), "only 2 identities"),
        (dict(ages=[1, 2, 3], identities=[0, 1]), "Lengths do not match"),
        (dict(ages=[1.0, float("nan"), 3.0], identities=[0, 1, 2]), "NaN"),
        (dict(ages=[1, 2, 3], identities=[0, 1, 2], fractions=(0.5, 0.5, 0.5)), "add up to 1"),
        (dict(ages=[1, 2, 3], identities=[0, 1, 2], fractions=(0.5, 0.5)), "train, val, test"),
    ],
)
def test_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        identity_split(**kwargs)
