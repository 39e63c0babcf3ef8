"""Checks for data: identities leaked across splits, parsing AgeDB's file names."""

from __future__ import annotations

from collections.abc import Callable

import torch

from agekit.exercises.base import _close, _matches_agekit, _over_trials


@_over_trials(_matches_agekit("your leakage count"))
def check_leaked_identities(student: Callable, trial: int, g: torch.Generator) -> None:
    """Exercise (01): ``student(identities [N], split_codes [N]) -> int``, people found in more than one split."""
    from agekit.data import find_leakage

    n_people = 20 + 10 * trial
    identities = torch.randint(0, n_people, (5 * n_people,), generator=g)
    codes = torch.randint(0, 3, (n_people,), generator=g)[identities]  # a clean split by person ...
    moved = torch.rand(len(identities), generator=g) < 0.1
    codes[moved] = torch.randint(0, 3, (int(moved.sum()),), generator=g)  # ... with some photos moved
    _close(
        "leaked identities", float(student(identities, codes)), float(len(find_leakage(identities, codes))),
        hint="Count people (not photos) whose photos fall in two or three splits; "
             "a person in val and test leaks too.",
    )


_AGEDB_CASES = [  # (image id, name, age, gender letter) in AgeDB's layout {image_id}_{Name}_{age}_{m|f}.jpg
    (0, "MariaCallas", 35, "f"), (17, "AlbertEinstein", 72, "m"), (2048, "José Martí", 40, "m"),
    (311, "Anne_Marie Duval", 28, "f"), (9, "Zoë Saldaña", 3, "f"), (45, "Søren_Kierkegaard_Jr", 101, "m"),
    (6006, "50Cent", 38, "m"), (12, "Nguyễn Thị Minh Khai", 29, "f"), (77, "Louis_XIV", 1, "m"),
    (1, "O'Brien-Smith", 55, "f"), (16487, "Björk Guðmundsdóttir", 47, "f"), (300, "A", 60, "m"),
]


_AGEDB_MALFORMED = [  # names the format does not fit: no image id, no gender, a word for the age, no name, ...
    "MariaCallas_35_f.jpg", "7_Bob_35_x.jpg", "8_Bob_old_m.jpg", "9__35_m.jpg", "10_Bob_35.jpg",
    "Portrait of Bob.jpg", "11_Bob_35_male.jpg",
]


def check_parse_agedb(student: Callable) -> None:
    """Exercise (10): ``student(file_name) -> (image_id, name, age, gender)``, or None when the name does not fit.

    file_name: an AgeDB file name ``{image_id}_{Name}_{age}_{m|f}.jpg``; gender 0 male,
    1 female (the paper's order). Compared with ``agekit.data.formats.parse_agedb``,
    which is run on empty files of these names, and with the image ids they were made from.
    """
    import tempfile
    from pathlib import Path

    from agekit.data.formats import parse_agedb

    names = [f"{i}_{name}_{age}_{g}.jpg" for i, name, age, g in _AGEDB_CASES] + _AGEDB_MALFORMED
    ids = [case[0] for case in _AGEDB_CASES] + [None] * len(_AGEDB_MALFORMED)
    with tempfile.TemporaryDirectory() as root:
        for k, name in enumerate(names):  # one folder per file: found by its folder whatever the OS does to names
            (Path(root) / f"{k:03d}").mkdir()
            (Path(root) / f"{k:03d}" / name).touch()
        parsed = {int(r.path.split("/")[0]): r for r in parse_agedb(Path(root)).records}
    for k, (name, image_id) in enumerate(zip(names, ids)):
        got = student(name)
        if k not in parsed:
            if got is not None:
                raise AssertionError(f"{name!r} does not fit the layout (agekit skips it), but you returned {got!r}; "
                                     "return None for it.")
            continue
        r = parsed[k]
        expected = (image_id, r.identity, r.age, r.gender)
        if got is None:
            raise AssertionError(f"{name!r}: expected {expected}, got None. Names may hold spaces, underscores, "
                                 "digits and accents.")
        try:
            got = (int(got[0]), got[1], int(got[2]), int(got[3]))
        except (TypeError, ValueError, IndexError):
            raise AssertionError(f"{name!r}: return (image_id, name, age, gender), got {got!r}.") from None
        if got != expected:
            raise AssertionError(
                f"{name!r}: expected {expected}, got {got}. Remove the extension, take the image id from the left "
                "and the age and the gender letter from the right; the name is everything in between, "
                "underscores included. Gender: m -> 0, f -> 1."
            )
    print(f"Correct: your parser agrees with agekit on all {len(names)} file names.")
