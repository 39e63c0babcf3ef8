"""Identity-disjoint, age-stratified train/val/test splits, and a leakage check.

A face data set holds several photos of one person. If the same person lands in
both training and test, the model can recognise the *person* instead of reading
the *age*, and the test error looks better than it is. The unified benchmark of
Paplham & Franc (CVPR 2024) therefore splits by identity and stratifies by age;
the RAPL authors' AgeDB split does not, which is a good lesson
(``notebooks/01_synthetic_faces.ipynb``).

Split codes: 0 = train, 1 = val, 2 = test.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agekit import _checks

SPLIT_NAMES = ("train", "val", "test")


def _factorize(identities) -> torch.Tensor:
    """Map any hashable identities (ints, strings) to int64 codes 0..k-1, in first-seen order."""
    if isinstance(identities, torch.Tensor):
        _, codes = torch.unique(identities, return_inverse=True)
        return codes.to(torch.int64)
    table: dict = {}
    return torch.tensor([table.setdefault(i, len(table)) for i in identities], dtype=torch.int64)


def _fractions(fractions: Sequence[float]) -> torch.Tensor:
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, val, test), got {fractions!r}.")
    values = [_checks.probability(f"fractions[{i}]", f) for i, f in enumerate(fractions)]
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"fractions must add up to 1, got {fractions!r} (sum {sum(values):.3f}).")
    return torch.tensor(values, dtype=torch.float64)


def identity_split(
    ages,
    identities,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    seed: int = 0,
    people_per_stratum: int = 25,
) -> torch.Tensor:
    """Assign every sample to train (0), val (1) or test (2), keeping each person in one split.

    ages: [N] whole or real ages; identities: N hashable person ids (tensor, list of
    ints or strings) -> int64 [N] split codes.

    People are sorted by their median age and cut into strata of about
    ``people_per_stratum`` people; inside a stratum they are shuffled (seeded) and
    dealt out so that each split receives its fraction of the stratum's *images*.
    So every split covers the whole age range and no person crosses splits.
    """
    ages = _checks.vector("ages", ages).to(torch.float64)
    ids = _factorize(identities)
    _checks.same_length(ages=ages, identities=ids)
    target = _fractions(fractions)
    people_per_stratum = _checks.positive_int("people_per_stratum", people_per_stratum)
    n_people = int(ids.max()) + 1
    wanted = int((target > 0).sum())
    if n_people < wanted:
        raise ValueError(
            f"Cannot make {wanted} identity-disjoint splits from only {n_people} identities; "
            "use more people (or set a fraction to 0)."
        )

    generator = torch.Generator().manual_seed(int(seed))
    counts = torch.bincount(ids, minlength=n_people).to(torch.float64)
    # median age per person: sort samples by (person, age) and take the middle one
    order = torch.argsort(ages, stable=True)
    order = order[torch.argsort(ids[order], stable=True)]
    starts = torch.cumsum(counts, 0) - counts
    person_age = ages[order][(starts + (counts - 1) // 2).long()]

    # strata of consecutive people by age, shuffled inside each stratum
    shuffle_key = torch.rand(n_people, generator=generator, dtype=torch.float64)
    by_age = torch.argsort(person_age + shuffle_key * 1e-9, stable=True)
    n_strata = max(1, n_people // people_per_stratum)
    stratum = torch.empty(n_people, dtype=torch.int64)
    stratum[by_age] = torch.arange(n_people) * n_strata // n_people
    dealing = torch.argsort(stratum.to(torch.float64) + shuffle_key * 0.5, stable=True)

    # within each stratum: the midpoint of each person's images on [0, 1] picks the split
    dealt_counts = counts[dealing]
    cumulative = torch.cumsum(dealt_counts, 0)
    stratum_sorted = stratum[dealing]
    stratum_total = torch.zeros(n_strata, dtype=torch.float64).index_add_(0, stratum_sorted, dealt_counts)
    stratum_start = torch.cumsum(stratum_total, 0) - stratum_total
    midpoint = (cumulative - dealt_counts / 2 - stratum_start[stratum_sorted]) / stratum_total[stratum_sorted]
    bounds = torch.cumsum(target, 0)[:2]
    person_split = torch.empty(n_people, dtype=torch.int64)
    person_split[dealing] = torch.bucketize(midpoint, bounds, right=True)

    _fill_empty_splits(person_split, counts, target)
    return person_split[ids]


def _fill_empty_splits(person_split: torch.Tensor, counts: torch.Tensor, target: torch.Tensor) -> None:
    """If a split that should exist got nobody (tiny data), move the smallest person of the largest split."""
    for split in range(3):
        if target[split] == 0 or bool((person_split == split).any()):
            continue
        sizes = torch.bincount(person_split, minlength=3)
        donor = int(torch.argmax(sizes))
        if sizes[donor] < 2:
            raise ValueError("Too few identities to fill every split; use more people.")
        candidates = torch.nonzero(person_split == donor).flatten()
        person = candidates[torch.argmin(counts[candidates])]
        person_split[person] = split


def random_split(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2), seed: int = 0) -> torch.Tensor:
    """A plain random split of n samples that ignores identity (leaks people; for the lesson)."""
    n = _checks.positive_int("n", n)
    target = _fractions(fractions)
    generator = torch.Generator().manual_seed(int(seed))
    position = torch.empty(n, dtype=torch.float64)
    position[torch.randperm(n, generator=generator)] = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    return torch.bucketize(position, torch.cumsum(target, 0)[:2], right=True)


def split_indices(split_codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """{"train": indices, "val": indices, "test": indices} from split codes [N]."""
    codes = _checks.vector("split_codes", split_codes, dtype=torch.int64)
    return {name: torch.nonzero(codes == i).flatten() for i, name in enumerate(SPLIT_NAMES)}


def find_leakage(identities, split_codes) -> dict[str, list[str]]:
    """Identities that appear in more than one split: {identity: [split names]}.

    An empty dict means the split is identity-disjoint.
    """
    codes = _checks.vector("split_codes", split_codes, dtype=torch.int64)
    names = identities.tolist() if isinstance(identities, torch.Tensor) else list(identities)
    _checks.same_length(identities=names, split_codes=codes)
    ids = _factorize(names)
    n_people = int(ids.max()) + 1 if len(ids) else 0
    present = torch.zeros(n_people, 3, dtype=torch.bool)
    present[ids, codes] = True
    shared = torch.nonzero(present.sum(1) > 1).flatten().tolist()
    first_name = {}
    for name, code in zip(names, ids.tolist()):
        first_name.setdefault(code, name)
    return {
        str(first_name[p]): [SPLIT_NAMES[s] for s in torch.nonzero(present[p]).flatten().tolist()] for p in shared
    }
