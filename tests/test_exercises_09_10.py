"""The exercise checks of notebooks/09_ablations.ipynb and notebooks/10_real_datasets.ipynb:
each passes a correct solution (written here independently) and catches a plausible mistake."""

import math
import re
import unicodedata

import numpy as np
import pytest

from agekit import exercises

# --- 09: mean, sample std and paired differences over seeds ---------------------------------


def mean_std_by_loop(values):
    n = len(values)
    mean = sum(values) / n
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def paired_by_loop(a, b):
    return mean_std_by_loop([x - y for x, y in zip(a, b)])


def test_mean_std_hand_example():
    # 4, 6, 8: mean 6, squared deviations 4 + 0 + 4 = 8, over n - 1 = 2 -> variance 4, std 2
    assert mean_std_by_loop([4.0, 6.0, 8.0]) == (6.0, 2.0)


def test_mean_std_accepts_a_correct_solution(capsys):
    exercises.check_mean_std(mean_std_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


@pytest.mark.parametrize("mistake", [
    lambda v: (float(np.mean(v)), float(np.std(v))),                       # population std (divides by n)
    lambda v: (float(np.median(v)), float(np.std(v, ddof=1))),             # median, not mean
    lambda v: float(np.mean(v)),                                            # one number, not two
])
def test_mean_std_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_mean_std(mistake)


def test_paired_difference_hand_example():
    # seeds move both methods together; the differences are 0.2, 0.4, 0.3
    a, b = [6.2, 5.4, 7.3], [6.0, 5.0, 7.0]
    mean, std = paired_by_loop(a, b)
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1)
    # unpaired, the same numbers look like noise: the two methods' own stds are ~0.95 each
    assert mean_std_by_loop(a)[1] > 0.9 and mean_std_by_loop(b)[1] > 0.9


def test_paired_difference_accepts_a_correct_solution(capsys):
    exercises.check_paired_difference(paired_by_loop)
    assert capsys.readouterr().out.startswith("Correct:")


def unpaired(a, b):
    """Difference of means with the two stds combined as if the seeds were independent."""
    (ma, sa), (mb, sb) = mean_std_by_loop(a), mean_std_by_loop(b)
    return ma - mb, math.sqrt(sa**2 + sb**2)


@pytest.mark.parametrize("mistake", [
    unpaired,                                                               # ignores the pairing
    lambda a, b: paired_by_loop(b, a),                                      # b - a: the wrong sign
    lambda a, b: mean_std_by_loop([abs(x - y) for x, y in zip(a, b)]),      # absolute differences
])
def test_paired_difference_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_paired_difference(mistake)


def test_seed_scores_share_a_seed_effect():
    # the check's data must make pairing matter, else it could not tell `unpaired` from the solution
    import torch

    a, b = exercises._seed_scores(torch.Generator().manual_seed(0), 6)
    assert paired_by_loop(a, b)[1] < 0.5 * unpaired(a, b)[1]


# --- 10: parsing AgeDB file names -------------------------------------------------------------


def parse_by_split(file_name):
    """Independent of agekit's regular expression: split off the id on the left, age and gender on the right."""
    stem = file_name.rsplit(".", 1)[0]
    head, sep, rest = stem.partition("_")
    parts = rest.rsplit("_", 2)
    if not sep or not head.isdigit() or len(parts) != 3:
        return None
    name, age, letter = parts
    if not name or not age.isdigit() or letter not in ("m", "f"):
        return None
    return int(head), name, int(age), "mf".index(letter)


def test_parse_agedb_hand_examples():
    assert parse_by_split("2048_José Martí_40_m.jpg") == (2048, "José Martí", 40, 0)
    assert parse_by_split("311_Anne_Marie Duval_28_f.jpg") == (311, "Anne_Marie Duval", 28, 1)
    assert parse_by_split("8_Bob_old_m.jpg") is None


def test_parse_agedb_cases_are_composed_unicode():
    # the package stores names in NFC; cases written in NFC keep the check fair on every OS
    assert all(unicodedata.is_normalized("NFC", name) for _, name, _, _ in exercises._AGEDB_CASES)


def test_parse_agedb_accepts_a_correct_solution(capsys):
    exercises.check_parse_agedb(parse_by_split)
    assert capsys.readouterr().out.startswith("Correct:")


def naive_split(file_name):
    """Splits on every underscore: breaks on names that contain one."""
    parts = file_name[:-4].split("_")
    if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit() or parts[3] not in "mf":
        return None
    return int(parts[0]), parts[1], int(parts[2]), "mf".index(parts[3])


@pytest.mark.parametrize("mistake", [
    naive_split,
    lambda f: None if parse_by_split(f) is None else parse_by_split(f)[:3] + (1 - parse_by_split(f)[3],),  # m=1
    lambda f: None if parse_by_split(f) is None else (parse_by_split(f)[1], parse_by_split(f)[0]) + parse_by_split(f)[2:],
    lambda f: (lambda m: m and (int(m[1]), m[2], int(m[3]), "mf".index(m[4])))(   # ages of two digits at most
        re.match(r"^(\d+)_(.+)_(\d{1,2})_([mf])\.jpg$", f)),
    lambda f: (0, "", 0, 0),                                                 # never None
])
def test_parse_agedb_catches_mistakes(mistake):
    with pytest.raises(AssertionError):
        exercises.check_parse_agedb(mistake)
