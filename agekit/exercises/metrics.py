"""Checks for measuring and comparing.

MAE, cumulative score, the share of ages in a range, the confidence score,
mean and spread over seeds, paired differences.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from agekit.exercises.base import _close, _matches_agekit, _over_trials


@_over_trials(_matches_agekit("your MAE"))
def check_mae(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (02): ``student(pred, true) -> float``, the mean absolute error (eq. 9)."""
    from agekit.metrics import mae

    pred, true = torch.rand(50, generator=g) * 80, torch.randint(0, 80, (50,), generator=g)
    _close("MAE", float(student(pred, true)), mae(pred, true), hint="Average |pred - true| over all samples.")


@_over_trials(_matches_agekit("your cumulative score"))
def check_cumulative_score(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (02): ``student(pred, true, tolerance) -> percent`` (eq. 10)."""
    from agekit.metrics import cumulative_score

    pred, true = torch.randint(0, 80, (60,), generator=g).float(), torch.randint(0, 80, (60,), generator=g)
    pred[:5] = true[:5].float() + 5  # exactly on the tolerance: these count
    _close(
        "CS", float(student(pred, true, 5)), cumulative_score(pred, true, 5),
        hint="Count errors <= tolerance (not <), and give a percentage.",
    )


@_over_trials(_matches_agekit("your share of ages in a range"))
def check_share_in_range(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (00): ``student(ages [N], low, high) -> percent`` of ages with low <= age <= high."""
    ages = torch.randint(0, 91, (200,), generator=g)
    low = int(torch.randint(0, 60, (1,), generator=g))
    high = low + int(torch.randint(1, 30, (1,), generator=g))
    ages[:4], ages[4:8] = low, high  # on the edges of the range: these count
    expected = ((ages >= low) & (ages <= high)).to(torch.float64).mean() * 100.0  # the key, written once here
    _close(
        "share", float(student(ages, low, high)), float(expected),
        hint="Count ages with low <= age <= high (both ends included), divide by the number of ages, times 100.",
    )


@_over_trials(_matches_agekit("your confidence score"))
def check_confidence_score(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (06): ``student(est_ages [N], position_ages [N], tolerance) -> percent`` (RAPL eq. 12)."""
    from agekit.metrics import confidence_score

    n, tolerance = 10 + 17 * trial, [1, 2, 3, 5, 10][trial % 5]
    position_ages = torch.randint(1, 91, (n,), generator=g)
    est_ages = position_ages.float() + torch.randn(n, generator=g) * 2 * tolerance
    est_ages[:3] = position_ages[:3].float() + tolerance  # exactly on the tolerance, above: these count
    est_ages[3:6] = position_ages[3:6].float() - tolerance  # ... and below
    _close(
        "confidence score", float(student(est_ages, position_ages, tolerance)),
        confidence_score(est_ages, position_ages, tolerance),
        hint="Count the faces whose two estimates differ by at most t years in either direction "
             "(|a - a_p| <= t), divide by the number of faces (not always 10), times 100.",
    )


def _seed_scores(g: torch.Generator, n: int) -> tuple[list[float], list[float]]:
    """Two methods' test MAEs over ``n`` seeds that share a large per-seed effect (data split, init)."""
    shared = torch.randn(n, generator=g, dtype=torch.float64) * 0.8  # what one seed does to every method
    a = 6.0 + shared + torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    b = 5.7 + shared + torch.randn(n, generator=g, dtype=torch.float64) * 0.1
    return a.tolist(), b.tolist()


def _pair_of_floats(name: str, got) -> tuple[float, float]:
    try:
        first, second = (float(v) for v in got)
    except (TypeError, ValueError):
        raise AssertionError(f"{name}: return two numbers (mean, std) as a tuple, got {got!r}.") from None
    return first, second


@_over_trials("Correct: your mean and sample standard deviation match Python's statistics module.")
def check_mean_std(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (09): ``student(values) -> (mean, std)`` of one method's scores over seeds (a list of floats).

    std is the sample standard deviation (divide by n - 1), compared with Python's
    ``statistics.mean`` and ``statistics.stdev``.
    """
    import statistics

    values, _ = _seed_scores(g, 2 + trial)
    mean, std = _pair_of_floats("mean_std", student(list(values)))
    _close("mean", mean, statistics.mean(values), hint="The mean is the sum divided by the number of seeds.")
    _close(
        "std", std, statistics.stdev(values),
        hint="Use the sample standard deviation: divide the squared deviations by n - 1, not n "
             "(numpy's np.std needs ddof=1; torch's Tensor.std already divides by n - 1).",
    )


@_over_trials("Correct: your paired differences match Python's statistics module.", seed=100)
def check_paired_difference(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (09): ``student(a, b) -> (mean, std)`` of the per-seed differences ``a[i] - b[i]``.

    a and b are two methods' scores over the same seeds (lists of floats); compared with
    ``statistics.mean`` and ``statistics.stdev`` of the differences.
    """
    import statistics

    a, b = _seed_scores(g, 3 + trial)
    differences = [x - y for x, y in zip(a, b)]
    mean, std = _pair_of_floats("paired_difference", student(list(a), list(b)))
    _close("mean difference", mean, statistics.mean(differences),
           hint="Subtract per seed, a[i] - b[i] (in that order), then average.")
    _close(
        "std of the differences", std, statistics.stdev(differences),
        hint="Pair the seeds: take the sample std (n - 1) of the per-seed differences a[i] - b[i], not a "
             "combination of the two methods' own stds; the shared seed effect cancels in the differences.",
    )
